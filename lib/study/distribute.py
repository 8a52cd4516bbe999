"""Several devices or machines through TensorFlow's own distribution engine (`tf.distribute`).

The `distribution` parameter of every stage picks the strategy, once, at the stage's start:

- `none`: one device, as always.
- `mirrored`: `MirroredStrategy` over all local GPUs; on a machine without one, the CPU split into `replicas`
  logical devices (2 when `replicas` is 0): the same code path as several GPUs, for testing.
- `multi_worker`: `MultiWorkerMirroredStrategy` over the machines that `TF_CONFIG` names (the standard way: a
  JSON cluster of `worker` addresses and this machine's `task`); `make run-all WORKERS=2` starts such a
  cluster on this machine's loopback address.
- `auto`: `mirrored` when more than one GPU is visible, else `none`.

The strategy is made the current one (`tf.distribute.experimental_set_strategy`: what `with strategy.scope()`
does, for the rest of the kernel), so the models, optimizers and metrics the notebook creates afterwards are
mirrored without any change to it.

Batch and learning rate: `batch_size` stays the *global* batch. Each step takes `batch_size` photos, splits
them between the replicas (`batch_size / replicas` each) and averages the gradient over all of them, so a step
is the same step as on one device and the learning rates need no scaling: a run under a strategy trains the
same model as without one (within float rounding, when nothing random differs), and reaches it faster.
(Keeping `batch_size` per replica instead would multiply the global batch by the replicas and call for the
learning rate to grow with it, changing the results the study reports.)

With `multi_worker`, Keras's `fit` fails with the pinned TensorFlow 2.21 / Keras 3.15 ("Attempt to convert a
value (PerReplica...) with an unsupported type"; tensorflow issue 72388, keras issue 20585), so training runs
in a loop of our own (`lib.study.training` calls `fit_multi_worker`): each worker draws the same seeded global
batches and keeps its replicas' slices of them, and `strategy.run` steps the replicas together. Only the
chief (worker 0) writes files (the others are told to discard theirs: `lib.core.storage.discard_writes`), and
every worker takes part in the collective operations: feature extraction splits each batch between all
replicas and gathers the results in the original order (`forward`); the pool's random variants are shared out
whole between the workers and exchanged (`share_out`), so that the pool does not depend on the cluster's shape.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any

from lib import SuiteError
from lib.core import storage

DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "auto")
# How long a collective operation waits for the other workers before the run fails (a worker that died).
# (A worker may wait that long for another that computes the pool variants it was given.)
WORKER_TIMEOUT_SECONDS = int(os.environ.get("SUITE_WORKER_TIMEOUT", "3600"))
CHIEF_WAIT_SECONDS = 24 * 3600  # How long the other workers wait for the chief to decode photos on its own.


@dataclasses.dataclass
class Distribution:
    """The strategy a stage runs under, and where this process stands in it."""

    name: str = "none"
    strategy: Any = None
    replicas: int = 1
    workers: int = 1
    worker_index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def spans_replicas(self) -> bool:
        return self.strategy is not None and self.replicas > 1

    def record(self) -> dict[str, Any]:
        """What `metrics.json` and the manifest record."""
        return {"distribution": self.name, "replicas": self.replicas, "workers": self.workers}

    def describe(self) -> str:
        if self.strategy is None:
            return "distribution: none (one device)"
        devices = ", ".join(self.strategy.extended.worker_devices)
        return (f"distribution: {self.name}, {self.replicas} replicas on {self.workers} worker(s) (this is worker "
                f"{self.worker_index}{', the chief' if self.is_chief else ''}; devices here: {devices})")


_current = Distribution()
_compiled: dict[str, Any] = {}  # Collective functions of the current strategy, traced once.


def current() -> Distribution:
    """The distribution set up for this process (`none` until `setup`)."""
    return _current


def is_chief() -> bool:
    """Whether this process writes outputs: always, unless it is a worker other than the chief."""
    return _current.is_chief


def cluster_spec(environment: dict[str, str] | None = None) -> tuple[int, int]:
    """`(workers, this worker's index)` from `TF_CONFIG`; the chief is index 0. A `SuiteError` when unusable."""
    text = (os.environ if environment is None else environment).get("TF_CONFIG", "")
    if not text:
        raise SuiteError("distribution=multi_worker needs TF_CONFIG (the cluster's worker addresses and this "
                         "machine's task; see the README), or `make run-all WORKERS=2` for a local cluster.")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        if task["type"] not in ("chief", "worker"):
            raise ValueError(f"task type {task['type']!r}: this suite runs chief and worker tasks only")
        offset = 1 if task["type"] == "worker" and cluster.get("chief") else 0
        return len(members), offset + int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise SuiteError(f"TF_CONFIG is not a usable cluster description ({type(error).__name__}: {error}); it "
                         'must look like {"cluster": {"worker": ["host1:port", ...]}, "task": {"type": "worker", '
                         '"index": 0}}.') from None


def resolve_name(distribution: str, gpus: list[str]) -> str:
    """`auto` made concrete: `mirrored` with more than one GPU, else `none`."""
    if distribution not in DISTRIBUTIONS:
        raise SuiteError(f"distribution={distribution!r}: use one of {', '.join(DISTRIBUTIONS)}.")
    if distribution == "auto":
        return "mirrored" if len(gpus) > 1 else "none"
    return distribution


def _mirrored(gpus: list[str], replicas: int):
    """`MirroredStrategy` over the local GPUs, or over `replicas` (default 2) logical CPU devices."""
    import tensorflow as tf

    if gpus:
        names = [f"/gpu:{index}" for index in range(len(gpus))][: replicas or None]
        return tf.distribute.MirroredStrategy(names)
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * (replicas or 2)
    if tf.config.get_logical_device_configuration(cpu) != wanted:
        try:
            tf.config.set_logical_device_configuration(cpu, wanted)
        except RuntimeError:
            raise SuiteError("distribution=mirrored on a CPU splits it into logical devices, which TensorFlow "
                             "allows only before it starts computing: restart the kernel and run the notebook "
                             "from the top.") from None
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])


def _multi_worker():
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=WORKER_TIMEOUT_SECONDS)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def setup(distribution: str, replicas: int, gpus: list[str]) -> Distribution:
    """Create the strategy `distribution` asks for and make it current; returns (and remembers) it. Called
    once per stage, before anything computes (a second call with the same choice returns the first)."""
    global _current
    import tensorflow as tf

    name = resolve_name(distribution, gpus)
    if _current.name == name and (name != "mirrored" or not replicas or replicas == _current.replicas):
        return _current
    if name == "none":
        tf.distribute.experimental_set_strategy(None)
        _current = Distribution()
        storage.discard_writes(False)
        return _current
    workers, index = cluster_spec() if name == "multi_worker" else (1, 0)
    strategy = _multi_worker() if name == "multi_worker" else _mirrored(gpus, replicas)
    tf.distribute.experimental_set_strategy(strategy)
    _compiled.clear()
    _current = Distribution(name, strategy, strategy.num_replicas_in_sync, workers, index)
    storage.discard_writes(not _current.is_chief)  # Only the chief writes files.
    return _current


def check_batch(batch_size: int) -> None:
    """A `SuiteError` naming the fix when the global `batch_size` does not split evenly between the replicas
    (Keras's `fit` under `MirroredStrategy` fails on uneven shares with "Inputs to operation AddN ... must have
    the same size and shape")."""
    replicas = _current.replicas
    if batch_size and batch_size % replicas:
        raise SuiteError(f"batch_size={batch_size} does not split evenly between the {replicas} replicas of "
                         f"distribution={_current.name}: use a multiple of {replicas} (batch_size is the global "
                         f"batch), e.g. batch_size={batch_size + replicas - batch_size % replicas}, or other replicas.")


def _slice_bounds(rows: int, replica: int, replicas: int) -> tuple[int, int]:
    """Replica `replica`'s contiguous share of `rows` rows (shares differ by at most one row)."""
    return rows * replica // replicas, rows * (replica + 1) // replicas


def forward(function, batch):
    """`function(batch)` computed by all replicas, each on its share of the rows, gathered back in the
    original order; plain `function(batch)` without a strategy. Every worker must call it with the same batch.
    Shares are padded to one size (gathering needs equal shapes) and the padding dropped afterwards."""
    import tensorflow as tf

    distribution = _current
    if not distribution.spans_replicas:
        return function(batch)
    strategy, rows, replicas = distribution.strategy, int(batch.shape[0]), distribution.replicas
    size = max(-(-rows // replicas), 1)
    bounds = [_slice_bounds(rows, replica, replicas) for replica in range(replicas)]

    def share(context):
        start, end = bounds[context.replica_id_in_sync_group]
        padding = tf.zeros([size - (end - start), *batch.shape[1:]], dtype=batch.dtype)
        return tf.concat([batch[start:end], padding], axis=0)

    shares = strategy.experimental_distribute_values_from_function(share)
    gathered = strategy.gather(strategy.run(function, args=(shares,)), axis=0)
    kept = [replica * size + offset for replica, (start, end) in enumerate(bounds) for offset in range(end - start)]
    return tf.gather(gathered, kept)


def _sum_over_workers(value: float) -> float:
    """The sum of `value` over all replicas of a cluster (a collective: every worker must call it)."""
    import tensorflow as tf

    strategy = _current.strategy
    if "sum" not in _compiled:
        @tf.function
        def total(share):
            return strategy.reduce("SUM", strategy.run(lambda: tf.identity(share)), axis=None)
        _compiled["sum"] = total
    return float(_compiled["sum"](tf.constant(value / len(strategy.extended.worker_devices))))


@contextlib.contextmanager
def local():
    """A computation of this worker alone: variables created inside (a random layer's seed state) are not
    mirrored, since creating a mirrored variable is a collective operation the other workers would have to join."""
    import tensorflow as tf

    strategy = _current.strategy
    if strategy is not None:
        tf.distribute.experimental_set_strategy(None)
    try:
        yield
    finally:
        if strategy is not None:
            tf.distribute.experimental_set_strategy(strategy)


def share_out(items: list, compute, shape: tuple[int, ...], dtype: str) -> dict:
    """`{item: compute(item)}` for every item, on every worker; in a cluster each worker computes every
    `workers`-th item (no collective operation while they compute), then each result, an array of `shape`
    and `dtype`, goes to all workers."""
    distribution = _current
    if distribution.name != "multi_worker" or distribution.workers == 1:
        return {item: compute(item) for item in items}
    with local():
        mine = {item: compute(item) for position, item in enumerate(items)
                if position % distribution.workers == distribution.worker_index}
    return {item: _from_worker(mine.get(item), position % distribution.workers, shape, dtype)
            for position, item in enumerate(items)}


def _from_worker(array, owner: int, shape: tuple[int, ...], dtype: str):
    """`array` of worker `owner` on every worker: a sum over all replicas where only the owner's first replica
    contributes (exact: the others add zeros)."""
    import numpy as np
    import tensorflow as tf

    strategy = _current.strategy
    value = tf.constant(array if array is not None else np.zeros(shape, dtype))
    first = owner * len(strategy.extended.worker_devices)

    def contribute():
        keep = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, first)
        return tf.where(keep, value, tf.zeros_like(value))

    return strategy.reduce("SUM", strategy.run(contribute), axis=None).numpy().astype(dtype)


def barrier() -> None:
    """Wait until every worker gets here (after the chief wrote a file the others will look for)."""
    if _current.name == "multi_worker" and _current.workers > 1:
        _sum_over_workers(1.0)


def wait_for_chief(ready, what: str):
    """On a worker other than the chief: wait (outside any timed collective operation, however long the chief
    takes) until `ready()` returns what the chief has written to `what` (None until then), meet the chief at
    a barrier, and return it."""
    import time

    deadline = time.time() + CHIEF_WAIT_SECONDS
    while (result := ready()) is None:
        if time.time() > deadline:
            raise SuiteError(f"Waited {CHIEF_WAIT_SECONDS} s for the cluster's chief to write {what}: is it still "
                             "running, and do the workers share its file system (CACHE_DIR)?")
        time.sleep(1.0)
    barrier()
    return result


def chief_decides(answer: bool) -> bool:
    """In a cluster, the chief's `answer` for every worker (so that all take the same branch, as collective
    operations need); elsewhere `answer`."""
    if _current.name != "multi_worker" or _current.workers == 1:
        return answer
    return _sum_over_workers(1.0 if answer and _current.is_chief else 0.0) > 0.5


def _replica_inputs(dataset, distribution: Distribution, local_replicas: int):
    """This worker's input: the same seeded global batches as every worker's, each cut into the slices of this
    worker's replicas (worker-major replica numbering), with the global batch's row count for the loss."""
    import tensorflow as tf

    first = distribution.worker_index * local_replicas

    def slices(inputs, labels):
        rows = tf.shape(inputs)[0]

        def one(local):
            start, end = _slice_bounds(rows, first + tf.cast(local, tf.int32), distribution.replicas)
            return inputs[start:end], labels[start:end], rows

        return tf.data.Dataset.range(local_replicas).map(one)

    return dataset.flat_map(slices)


def _train_step(model, strategy):
    """One synchronous step of every replica: the loss is the global batch's mean, the gradients are summed
    across replicas by the optimizer; returns the summed loss, correct count and rows."""
    import keras
    import tensorflow as tf

    optimizer, variables = model.optimizer, model.trainable_variables

    def replica_step(inputs, labels, rows):
        with tf.GradientTape() as tape:
            probabilities = tf.cast(model(inputs, training=True), tf.float32)
            losses = keras.losses.binary_crossentropy(labels[:, None], probabilities)
            loss = tf.reduce_sum(losses) / tf.cast(rows, tf.float32)
            scaled = optimizer.scale_loss(loss)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        correct = tf.reduce_sum(tf.cast((probabilities[:, 0] > 0.5) == (labels > 0.5), tf.float32))
        return loss, correct, tf.cast(tf.shape(labels)[0], tf.float32)

    @tf.function
    def step(iterator):
        return [strategy.reduce("SUM", value, axis=None) for value in strategy.run(replica_step, next(iterator))]

    return step


def fit_multi_worker(model, dataset, *, epochs: int, steps_per_epoch: int, callbacks: list,
                     verbose: int = 2, initial_epoch: int = 0) -> dict[str, list[float]]:
    """Keras's `fit` for `multi_worker`, where Keras's own fails: the epochs from `initial_epoch` (0-based) to
    `epochs` of `steps_per_epoch` synchronous steps over an endless `dataset` of global batches, with the
    callbacks' `on_train_begin`, `on_epoch_end` and `on_train_end`; returns the history of these epochs as `fit`
    would (`loss`, `accuracy` and what the callbacks add to the logs)."""
    import time

    distribution = _current
    strategy = distribution.strategy
    inputs = _replica_inputs(dataset, distribution, len(strategy.extended.worker_devices))
    iterator = iter(strategy.distribute_datasets_from_function(lambda context: inputs))
    model.optimizer.build(model.trainable_variables)
    step = _train_step(model, strategy)
    history: dict[str, list[float]] = {}
    for callback in callbacks:
        callback.set_model(model)
    for callback in callbacks:  # After the optimizer is built: a backup restores its variables here.
        callback.on_train_begin({})
    for epoch in range(initial_epoch, epochs):
        started, totals = time.perf_counter(), [0.0, 0.0, 0.0]
        for _ in range(steps_per_epoch):
            totals = [total + float(value) for total, value in zip(totals, step(iterator))]
        logs = {"loss": totals[0] / steps_per_epoch, "accuracy": totals[1] / max(totals[2], 1.0)}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.0f}s - "
                  + " - ".join(f"{key}: {value:.4f}" for key, value in logs.items()), flush=True)
    for callback in callbacks:
        callback.on_train_end({})
    return history
