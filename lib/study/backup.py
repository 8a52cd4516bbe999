"""A training phase backed up after every epoch, and resumed from there when the same stage runs again.

`BackupAndRestore` (the suite's counterpart of Keras's callback of that name, which keeps neither the history
nor other callbacks' state) writes one file per phase, `<stage folder>/backup/<phase>.npz`, atomically at the
end of every epoch: every variable of the model being trained (weights, and the random-number state of its
Dropout and augmentation layers), the optimizer's variables (step count, RMSprop averages), the history so far,
the stage's parameters, and the state of every other callback that has one. A callback has state worth keeping
when it offers the protocol `get_state()` -> dict and `set_state(dict)`; the dict's values are JSON values,
NumPy arrays or lists of NumPy arrays (`lib.study.training.BestEpoch` does; so would a weight-averaging
callback). The training batches are a function of the seed and the batch's number (`lib.study.batches`), so a
resumed phase sees the batches, random draws and updates an uninterrupted run would have: it ends with the same
best epoch, history and accuracy. A backup made with other parameters or another Keras is discarded with a
message; the runner also discards it when the photos, weights, code or earlier stages changed, or on FORCE=1,
and `StageRun.finish` removes the folder once the stage is complete.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import lib
from lib.core import storage
from lib.study import cache

lib.load_tensorflow()
import keras  # noqa: E402  (after the quiet start above)

_FORMAT = "backup-1"


def _pack(prefix: str, value: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """One state value as a JSON description, its arrays (if any) added to `arrays` under `prefix`."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"array": prefix}
    if isinstance(value, list) and value and all(isinstance(item, np.ndarray) for item in value):
        arrays.update({f"{prefix}-{index}": item for index, item in enumerate(value)})
        return {"arrays": prefix, "count": len(value)}
    return {"value": value}


def _unpack(description: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The value `_pack` described."""
    if "array" in description:
        return arrays[description["array"]]
    if "arrays" in description:
        return [arrays[f"{description['arrays']}-{index}"] for index in range(description["count"])]
    return description["value"]


def _json_values(values: dict[str, Any]) -> dict[str, Any]:
    """`values` as they read back from JSON (tuples become lists, paths strings), for comparisons."""
    return json.loads(json.dumps(values, default=str))


def _values_of(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(variable) for variable in variables]


class BackupAndRestore(keras.callbacks.Callback):
    """Back up a training phase at the end of every epoch; restore it when `lib.study.training.fit` starts the same
    phase again (see the module docstring). Put it last among the callbacks: it keeps what the others did in
    the epoch (`training.fit` moves it there)."""

    def __init__(self, folder: str | Path, stage: str, parameters: dict[str, Any], phase: str = "training"):
        super().__init__()
        self.path = Path(folder) / f"{phase}.npz"
        self.stage, self.phase = stage, phase
        self.parameters = _json_values(parameters)
        self.history: dict[str, list[float]] = {}
        self.stateful: list = []
        self._restored: dict[str, np.ndarray] | None = None
        self._meta: dict[str, Any] = {}

    def _where(self) -> str:
        return self.stage if self.phase == "training" else f"{self.stage} ({self.phase} phase)"

    def _mismatch(self, meta: dict[str, Any], model, callbacks: list) -> str:
        """Why a stored backup cannot be resumed here ("" when it can)."""
        if meta.get("format") != _FORMAT:
            return "written by another version of the suite"
        before, now = meta.get("parameters", {}), self.parameters
        changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
        if changed:
            return "parameters changed: " + ", ".join(f"{key} {before.get(key)!r} -> {now.get(key)!r}"
                                                      for key in changed)
        if meta.get("keras") != cache.keras_version():
            return f"keras {meta.get('keras')} -> {cache.keras_version()}"
        shapes = [list(variable.shape) for variable in model.variables]
        if meta.get("model_shapes") != shapes or meta.get("callbacks") != [type(c).__name__ for c in callbacks]:
            return "the model or its callbacks differ"
        return ""

    def prepare(self, model, callbacks: list, epochs: int) -> int:
        """Read this phase's backup, if any, before training starts; return the epoch to start from (0: the first).
        A backup that does not match the parameters, Keras, the model or the callbacks is discarded, saying why."""
        self.stateful = [callback for callback in callbacks if callback is not self and hasattr(callback, "get_state")]
        arrays = cache.stored_arrays(self.path, lambda stored: "meta" in stored)
        if arrays is None:
            return 0
        meta = json.loads(str(arrays["meta"]))
        why = self._mismatch(meta, model, self.stateful)
        if why:
            print(f"Discarded the backup of {self._where()} after epoch {meta.get('epochs_done')}: {why}. "
                  "Training starts at epoch 1.", flush=True)
            storage.remove(self.path)
            return 0
        self._restored, self._meta, self.history = arrays, meta, meta["history"]
        done = min(meta["epochs_done"], epochs)
        if done >= epochs:
            print(f"{self._where()}: all {epochs} epochs were done before it stopped; taken from its backup.",
                  flush=True)
        else:
            print(f"Resuming {self._where()} at epoch {done + 1} of {epochs} (backed up after epoch {done}).",
                  flush=True)
        return done

    def on_train_begin(self, logs=None):
        if self._restored is None:
            return
        arrays, meta = self._restored, self._meta
        if not self.model.optimizer.built:  # Keras builds it at the first step, after this: too late to restore.
            self.model.optimizer.build(self.model.trainable_variables)
        optimizer_variables = self.model.optimizer.variables
        if meta["optimizer_variables"] != len(optimizer_variables):
            raise lib.SuiteError(f"The backup {self.path} does not fit this optimizer: delete it (or run with "
                                 "FORCE=1) to train this stage from its first epoch.")
        for index, variable in enumerate(self.model.variables):
            variable.assign(arrays[f"model-{index}"])
        for index, variable in enumerate(optimizer_variables):
            variable.assign(arrays[f"optimizer-{index}"])
        for callback, state in zip(self.stateful, meta["states"]):
            callback.set_state({key: _unpack(value, arrays) for key, value in state.items()})
        self._restored = None

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        arrays: dict[str, np.ndarray] = {}
        arrays.update({f"model-{index}": value for index, value in enumerate(_values_of(self.model.variables))})
        optimizer_values = _values_of(self.model.optimizer.variables)
        arrays.update({f"optimizer-{index}": value for index, value in enumerate(optimizer_values)})
        states = [{key: _pack(f"callback{number}-{key}", value, arrays) for key, value in callback.get_state().items()}
                  for number, callback in enumerate(self.stateful)]
        meta = {"format": _FORMAT, "stage": self.stage, "phase": self.phase, "epochs_done": epoch + 1,
                "parameters": self.parameters, "keras": cache.keras_version(), "history": self.history,
                "model_shapes": [list(variable.shape) for variable in self.model.variables],
                "optimizer_variables": len(optimizer_values),
                "callbacks": [type(callback).__name__ for callback in self.stateful], "states": states}
        storage.write_arrays(self.path, meta=np.array(json.dumps(meta, default=float)), **arrays)

