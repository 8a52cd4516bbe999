"""The augmentation pool: augmented photos pushed through the frozen part of the conv base once, not every epoch.

In stages 2 and 3 everything up to the cut is frozen, so an augmented photo's output there depends only on
the photo and its random transform. With `augmentation_pool: K`, each training photo gets K random
augmented variants, computed once per run and cached by content like the other caches (seeded: the same
seed gives the same pool), and stored in float16. The photo itself, unaugmented, joins them for free (its
output is already cached for stage 1). Each epoch then draws one of the K + 1 per photo, in a new order,
and trains only what is above the cut: the classifier in stage 2 (seconds per epoch), block 5 and the
classifier in stage 3. One pool at `cache.SHARED_CUT` serves both stages; stage 2 runs the frozen block 5
over it once. With `augmentation_pool: 0` the stages augment every epoch afresh (online), as the course notes.

Each variant is its own cache file, written atomically: a computation that is killed leaves the finished
variants whole and nothing that looks complete for the others, and a larger K reuses the smaller pool.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from lib import SuiteError
from lib.core import storage
from lib.study import batches, cache, distribute, features, models
from lib.study.photos import ImageSet
from lib.study.weights import WeightsChoice

# The pool is held in memory while a stage trains: keep it under this, and say so when it would not fit.
MEMORY_LIMIT_BYTES = 4 * 1024 ** 3
_POOL_FORMAT = "pool-1"


@dataclasses.dataclass
class TrainingData:
    """What a stage trains on: its stream of batches (photos for the end-to-end model, or pooled features for the layers
    above the cut), its steps per epoch, how it was made, and its one-time cost."""

    stream: Any
    steps_per_epoch: int
    description: str
    seconds: float = 0.0
    pool_bytes: int = 0

    def record(self) -> dict[str, Any]:
        """What `metrics.json` records of it: what the stage trained on, and the pool's cost and size."""
        return {"trained_on": self.description, "pool_seconds": round(self.seconds, 2), "pool_bytes": self.pool_bytes}


def pool_bytes(images: int, augmentation_pool: int, shape: tuple[int, ...]) -> int:
    """Bytes of a pool of `augmentation_pool` + 1 float16 outputs of `shape` per photo."""
    return images * (augmentation_pool + 1) * int(np.prod(shape)) * 2


def check_memory(images: int, augmentation_pool: int, shape: tuple[int, ...], cut_layer: str) -> int:
    """The pool's size in bytes; a `SuiteError` naming the fix when it would exceed `MEMORY_LIMIT_BYTES`."""
    size = pool_bytes(images, augmentation_pool, shape)
    if size > MEMORY_LIMIT_BYTES:
        fitting = MEMORY_LIMIT_BYTES // pool_bytes(images, 0, shape) - 1
        raise SuiteError(
            f"augmentation_pool={augmentation_pool} would need {size / 1e9:.1f} GB at {cut_layer} for {images} photos "
            f"(limit {MEMORY_LIMIT_BYTES / 1e9:.1f} GB). Use augmentation_pool={max(fitting, 0)} or less, a smaller "
            "image_size, or augmentation_pool=0 (online augmentation, no pool).")
    return size


def variant_seed(seed: int, variant: int) -> int:
    """The seed of variant number `variant` (from 0): each variant reproducible on its own, whatever the pool's
    size."""
    return seed * 1000 + variant + 1


def variant_path(key: cache.CacheKey, cut_layer: str, augmentation: dict[str, Any], seed: int,
                 variant: int) -> Path:
    """The cache file of one pool variant."""
    return key.path(cut_layer, "pool", f"v{variant}", _POOL_FORMAT, json.dumps(augmentation, sort_keys=True),
                    str(variant_seed(seed, variant)), str(features.EXTRACTION_BATCH_SIZE))


def compute_variant(cut: models.CutBase, cut_layer: str, image_set: ImageSet, augmentation: dict[str, Any],
                    seed: int, variant: int) -> np.ndarray:
    """One random augmented variant of every photo, through the conv base up to `cut_layer`, in float16."""
    import keras

    augmenter = models.build_augmentation(**augmentation, seed=variant_seed(seed, variant))
    frozen = models.conv_segment(cut.conv_base, cut_layer, preprocessing=cut.preprocessing)
    pipeline = keras.Sequential([augmenter, frozen], name=f"pool_variant_{variant}")
    return features.extract(pipeline, image_set.images, label=f"pool variant {variant + 1}", training=True,
                            dtype="float16")


def pool_at(cut: models.CutBase, cut_layer: str, image_set: ImageSet, weights: WeightsChoice,
            augmentation: dict[str, Any], seed: int, augmentation_pool: int) -> tuple[np.ndarray, float]:
    """The pool at `cut_layer`: `(photos, augmentation_pool + 1, ...)` float16, the unaugmented output first; and
    the seconds spent computing what was not cached."""
    unaugmented, seconds, _ = features.features_at_cut(cut, image_set, weights, cut_layer)
    check_memory(len(image_set), augmentation_pool, unaugmented.shape[1:], cut_layer)
    pool = np.empty((len(image_set), augmentation_pool + 1, *unaugmented.shape[1:]), dtype=np.float16)
    pool[:, 0] = unaugmented
    key = features.cache_key_of(image_set, weights, cut)
    files = [variant_path(key, cut_layer, augmentation, seed, variant) for variant in range(augmentation_pool)]
    stored = {variant: cache.stored_arrays(files[variant], lambda arrays: arrays["features"].shape
                                           == unaugmented.shape) for variant in range(augmentation_pool)}
    missing, written = [variant for variant, arrays in stored.items() if arrays is None], set()

    def compute(variant: int) -> np.ndarray:  # Each stored as soon as computed: a kill keeps the finished ones.
        array = compute_variant(cut, cut_layer, image_set, augmentation, seed, variant)
        storage.write_arrays(files[variant], features=array)
        written.add(variant)
        return array

    started = time.perf_counter()
    computed = distribute.share_out(missing, compute, unaugmented.shape, "float16")  # Split between workers.
    for variant, array in computed.items():
        if variant not in written:  # Computed by another worker of a cluster: the chief stores it.
            storage.write_arrays(files[variant], features=array)
    for file in files:  # Written now: held in use like those that were stored (`cache.note_used`).
        cache.note_used(file)
    if missing:
        distribute.barrier()
        seconds += time.perf_counter() - started
    for variant in range(augmentation_pool):
        pool[:, variant + 1] = computed[variant] if variant in computed else stored[variant]["features"]
    return pool, seconds


def through_frozen_layers(cut: models.CutBase, pool: np.ndarray, start: str) -> np.ndarray:
    """Run the frozen layers after `start` up to the cut over every entry of a pool (stage 2: block 5)."""
    segment = models.conv_segment(cut.conv_base, cut.cut_layer, start=start)
    flat = pool.reshape(-1, *pool.shape[2:])
    result = features.extract(segment, flat, label=f"pool ({start} to {cut.cut_layer})", dtype="float16")
    return result.reshape(pool.shape[0], pool.shape[1], *result.shape[1:])


def build(cut: models.CutBase, image_set: ImageSet, weights: WeightsChoice, augmentation: dict[str, Any],
          seed: int, augmentation_pool: int) -> tuple[np.ndarray, float]:
    """The pool at the stage's cut, computed at the shared cut when the stage's cut lies beyond it."""
    if features.after_shared_cut(cut.conv_base, cut.cut_layer):
        shared, seconds = pool_at(cut, cache.SHARED_CUT, image_set, weights, augmentation, seed, augmentation_pool)
        started = time.perf_counter()
        return through_frozen_layers(cut, shared, cache.SHARED_CUT), seconds + time.perf_counter() - started
    return pool_at(cut, cut.cut_layer, image_set, weights, augmentation, seed, augmentation_pool)


def pooled_stream(pool: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                   feature_flips: bool = False) -> batches.BatchStream:
    """An endless stream of batches drawn from a pool (`lib.study.batches`): each pass over the photos visits them
    in a new order and takes one of each photo's entries at random (seeded by the pass, so reproducible and
    resumable). With `feature_flips`, half of the entries, at random, are also mirrored left to right where they
    are stored: the flip of the feature map at the cut (as LOFF-TA augments cached features), not the features of
    the mirrored photo; a free augmentation that doubles the variants block 5 sees."""
    import tensorflow as tf

    labels = labels.astype("float32")

    def pass_draws(generator: np.random.Generator):  # Which entry of each photo, and which are mirrored.
        choice = generator.integers(0, pool.shape[1], len(pool))
        return choice, (generator.random(len(pool)) < 0.5 if feature_flips else None)

    def draw(chosen: np.ndarray, draws) -> tuple[np.ndarray, np.ndarray]:
        choice, flip = draws
        batch = pool[chosen, choice[chosen]].astype("float32")
        if flip is not None:
            batch[flip[chosen]] = batch[flip[chosen]][:, :, ::-1]  # Axis 2: the feature map's width.
        return batch, labels[chosen]

    signature = (tf.TensorSpec((None, *pool.shape[2:]), tf.float32), tf.TensorSpec((None,), tf.float32))
    return batches.BatchStream(len(pool), batch_size, seed, True, draw, signature, pass_draws)


def training_data(cut: models.CutBase, image_set: ImageSet, *, augmentation_pool: int, augmentation: dict[str, Any],
                  batch_size: int, steps_per_epoch: int, seed: int, weights: WeightsChoice,
                  feature_flips: bool = False) -> TrainingData:
    """What a stage trains on: the training photos, for the end-to-end model to augment every epoch
    (`augmentation_pool` 0), or a pool of `augmentation_pool` variants per photo at the cut, for the layers above
    it (`cut.top`; `feature_flips`: see `pooled_stream`). The notebook chooses and compiles the model that goes
    with it. `steps_per_epoch` 0 means one pass over the photos."""
    if not augmentation_pool:
        stream = batches.make_batch_stream(image_set.images, image_set.labels, batch_size, shuffle=True, seed=seed)
        return TrainingData(stream, steps_per_epoch,
                            "photos augmented afresh every epoch (augmentation_pool=0)")
    pool, seconds = build(cut, image_set, weights, augmentation, seed, augmentation_pool)
    members = f"{augmentation_pool} augmented variant{'s' * (augmentation_pool != 1)}"
    description = (f"a pool of {members} + the photo itself per training photo, at {cut.cut_layer}: "
                   f"{pool.shape[0]} x {pool.shape[1]} x {pool.shape[2:]} float16, {pool.nbytes / 1e6:.0f} MB"
                   + (", feature maps mirrored at random" if feature_flips else ""))
    print(f"Training on {description}.", flush=True)
    steps = steps_per_epoch or -(-len(pool) // batch_size)
    stream = pooled_stream(pool, image_set.labels, batch_size, seed, feature_flips)
    return TrainingData(stream, steps, description, seconds, pool.nbytes)
