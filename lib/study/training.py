"""Training helpers: seeding and precision, the callbacks the stages train with (validation on cached features,
the best epoch), `fit` (Keras's, or the multi-worker loop where Keras's fails), and history rows."""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time

import numpy as np

import lib
from lib.core import devices
from lib.study import backup, batches, distribute, models

lib.load_tensorflow()  # Keras starts TensorFlow: this way without TensorFlow's native start-up log lines.
import keras  # noqa: E402  (after the quiet start above)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also turn on TF op determinism.

    Op determinism makes GPU runs repeatable at some cost in speed; on CPU, seeding alone already gives
    repeatable runs for the ops this suite uses.
    """
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def configure_precision(mixed_precision: bool, gpus: list[str]) -> str:
    """Set Keras's global dtype policy (`devices.compute_policy`) and return its name (part of cache keys).

    With `mixed_precision`, layers compute in 16 bits and keep float32 weights where that is native here;
    elsewhere float32. The classifier's output layer always computes in float32.
    """
    policy = devices.compute_policy(mixed_precision, gpus)
    keras.mixed_precision.set_global_policy(policy)
    return policy


class CachedValidation(keras.callbacks.Callback):
    """Validate each epoch on cached features instead of running the frozen conv base again.

    `top` shares its weights with the model being trained and starts where the frozen part ends, so its
    loss and accuracy on the cached validation features equal a full-model evaluation of the images. The
    results go into the epoch's logs as `val_loss` and `val_accuracy`, where History, the progress line
    and the callbacks after this one see them.
    """

    def __init__(self, top: keras.Model, features: np.ndarray, labels: np.ndarray, batch_size: int = 64):
        super().__init__()
        self.top = top
        self.features = features
        self.labels = labels.astype("float32")
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        results = loss_and_accuracy(self.top, self.features, self.labels, self.batch_size)
        if logs is not None:
            logs["val_loss"] = results.loss
            logs["val_accuracy"] = results.accuracy


class BestEpoch(keras.callbacks.Callback):
    """Remember the weights of the best epoch and restore them when training ends.

    Best means the highest `val_accuracy`, ties broken by the lower `val_loss`: accuracy is what the
    study reports, and loss separates epochs that classify the same number of images correctly.
    """

    def __init__(self):
        super().__init__()
        self.best_epoch: int | None = None  # 1-based
        self.best_score = (-math.inf, -math.inf)
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        score = (logs.get("val_accuracy", -math.inf), -logs.get("val_loss", math.inf))
        if score > self.best_score:
            self.best_score = score
            self.best_epoch = epoch + 1
            self.best_weights = [np.array(w) for w in self.model.get_weights()]

    def get_state(self) -> dict:
        """What a backup keeps of it (`lib.study.backup`): the best epoch, its score and its weights."""
        return {"best_epoch": self.best_epoch, "best_score": list(self.best_score), "best_weights": self.best_weights}

    def set_state(self, state: dict) -> None:
        """Take up the state `get_state` gave, read back from a backup."""
        self.best_epoch, self.best_score = state["best_epoch"], tuple(state["best_score"])
        self.best_weights = state["best_weights"]

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            print(f"Restored the weights of epoch {self.best_epoch} (best validation accuracy "
                  f"{self.best_score[0]:.4f}, loss {-self.best_score[1]:.4f}).", flush=True)


@dataclasses.dataclass
class FitResult:
    """What a training phase leaves: its history rows, best epoch (1-based, within it) and duration."""

    rows: list[dict]
    best_epoch: int | None
    seconds: float

    def then(self, later: FitResult) -> FitResult:
        """This phase followed by a `later` one, as one result: the later phase's best epoch, counted across both
        (a stage's result is the model its last phase ends with)."""
        best = None if later.best_epoch is None else len(self.rows) + later.best_epoch
        return FitResult(self.rows + later.rows, best, self.seconds + later.seconds)


def fit(model: keras.Model, train_data: batches.BatchStream, *, epochs: int, callbacks: list, steps_per_epoch: int = 0,
        verbose: int = 2, phase: str | None = None, first_epoch: int = 1) -> FitResult:
    """`model.fit` on the batches of `train_data` with `callbacks`; returns the history rows, the best epoch that a
    `BestEpoch` among the callbacks kept, and the duration.

    `steps_per_epoch` 0 means one pass over the examples per epoch. With a `BackupAndRestore` among the callbacks
    (`StageRun.backup_and_restore`), a phase that was interrupted resumes after its last finished epoch, the
    batches read on from there, and the history holds every epoch. TensorBoard writes only on a cluster's chief.
    Under `distribution=multi_worker`, where Keras's own `fit` fails, the same epochs and callbacks run in the
    suite's loop (`lib.study.distribute`).
    """
    started = time.perf_counter()
    steps = steps_per_epoch or train_data.batches_per_pass
    callbacks = sorted((callback for callback in callbacks if distribute.is_chief()
                        or not isinstance(callback, keras.callbacks.TensorBoard)),
                       key=lambda callback: isinstance(callback, backup.BackupAndRestore))  # The backup last.
    restorer = next((callback for callback in callbacks if isinstance(callback, backup.BackupAndRestore)), None)
    initial_epoch = restorer.prepare(model, callbacks, epochs) if restorer else 0
    dataset = train_data.dataset(initial_epoch * steps)  # Batch number k * steps starts epoch k + 1.
    if distribute.current().name == "multi_worker":
        history = distribute.fit_multi_worker(model, dataset, epochs=epochs, steps_per_epoch=steps,
                                              callbacks=callbacks, verbose=verbose, initial_epoch=initial_epoch)
    else:
        history = model.fit(dataset, steps_per_epoch=steps, epochs=epochs, initial_epoch=initial_epoch,
                            verbose=verbose, shuffle=False, callbacks=callbacks).history
    if restorer:
        history = restorer.history  # The epochs before the interruption too.
    best = next((callback.best_epoch for callback in callbacks if isinstance(callback, BestEpoch)), None)
    return FitResult(history_rows(history, phase, first_epoch), best, time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class Scored:
    """A model's numbers on one split from one pass: mean loss, accuracy, P(dog) and the logits per photo."""

    loss: float
    accuracy: float
    probabilities: np.ndarray
    logits: np.ndarray


def loss_and_accuracy(top: keras.Model, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> Scored:
    """Loss, accuracy, probabilities and logits of the classifier or a model ending in it (`Dense(1, sigmoid)`
    last), on in-memory inputs, from one pass (above a cut at block 4, block 5 runs once per photo).

    The loss is Keras's own binary cross-entropy computed on the model's output tensor, so (as in `fit`
    and `evaluate`) it uses the sigmoid's logits and is not capped for confidently wrong predictions:
    the numbers equal what Keras reports for the same model and data.
    """
    labels = np.asarray(labels, dtype="float32").reshape(-1)
    logits, probabilities, losses = forward_batches(top, inputs, labels, batch_size)
    accuracy = float(np.mean((probabilities > 0.5) == (labels > 0.5))) if len(labels) else float("nan")
    return Scored(float(np.mean(losses)) if len(losses) else float("nan"), accuracy, probabilities, logits)


def forward_batches(top: keras.Model, inputs: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 64
                    ) -> list[np.ndarray]:
    """The logits of a model ending in the classifier (its score before the sigmoid: unlike P(dog) it does not
    saturate at 0 or 1 in float32), and with `labels` also P(dog) and per-photo losses, batch by batch through
    one traced function."""
    import tensorflow as tf

    layers = list(top.layers)
    if hasattr(layers[-1], "layers"):  # The classifier nested last (else `top` is the classifier itself).
        layers[-1:] = layers[-1].layers
    *layers, output = [layer for layer in layers if not isinstance(layer, keras.layers.InputLayer)]
    kernel, bias = output.weights

    def make():
        def forward(batch, *batch_labels):
            for layer in layers:
                batch = layer(batch, training=False)
            found = [tf.reshape(tf.matmul(tf.cast(batch, tf.float32), kernel) + bias, [-1])]
            if batch_labels:
                probabilities = output(batch, training=False)
                losses = keras.losses.binary_crossentropy(batch_labels[0][:, None], probabilities)
                found += [tf.reshape(tf.cast(probabilities, tf.float32), [-1]), tf.cast(losses, tf.float32)]
            return found
        return forward

    function = models.traced(top, "logits" if labels is None else "loss_and_accuracy", make)
    parts = []
    for start in range(0, len(inputs), batch_size):
        given = [] if labels is None else [tf.constant(labels[start:start + batch_size])]
        parts.append([part.numpy().reshape(-1) for part in function(tf.constant(inputs[start:start + batch_size]),
                                                                     *given)])
    columns = list(zip(*parts)) or [[np.zeros((0,), dtype="float32")]] * (1 if labels is None else 3)
    return [np.concatenate(column).astype(float if index == 0 else "float32") for index, column in enumerate(columns)]


def history_rows(history: dict[str, list[float]], phase: str | None = None, first_epoch: int = 1
                 ) -> list[dict]:
    """A Keras `History.history` dict as rows `{epoch, [phase], metric: value...}`."""
    keys = sorted(history)
    count = len(history[keys[0]]) if keys else 0
    rows = []
    for index in range(count):
        row = {"epoch": first_epoch + index}
        if phase:
            row["phase"] = phase
        row.update({key: float(history[key][index]) for key in keys})
        rows.append(row)
    return rows


def concatenate_histories(*parts: list[dict]) -> list[dict]:
    """History rows of consecutive phases as one list, epochs renumbered from 1."""
    rows = [dict(row) for part in parts for row in part]
    for number, row in enumerate(rows, start=1):
        row["epoch"] = number
    return rows
