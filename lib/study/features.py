"""Running the frozen part of the conv base once per image, with an on-disk cache.

The cache key (`lib.study.cache.CacheKey`) holds everything that changes the output: the split's image contents
(fingerprint), the weights file (sha256), image size, preprocessing, the layer where the frozen part ends, and the
precision.
A rerun with other classifier settings therefore extracts nothing; a changed photo or weights file
extracts again.

Blocks 1-4 are 91% of VGG16's work at 150x150 and frozen in every stage, so their output (`SHARED_CUT`) is
computed once per photo for the whole run: stage 1's features and stage 2's validation features are block 5 run
over it, and stage 3 trains on top of it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from lib import SuiteError
from lib.study import cache, distribute, models
from lib.study.cache import MIRROR_MAPS, SHARED_CUT, CacheKey
from lib.study.photos import ImageSet
from lib.study.weights import WeightsChoice

EXTRACTION_BATCH_SIZE = 32
def cache_key_of(image_set: ImageSet, weights: WeightsChoice, cut: models.CutBase) -> CacheKey:
    """The cache key of a data split's outputs through a cut conv base, in the current precision."""
    import keras

    return CacheKey(image_set.split, image_set.fingerprint, weights.sha256, cut.conv_base.input_shape[1],
                    cut.preprocessing, keras.mixed_precision.global_policy().name)


def extract(extractor, images: np.ndarray, label: str = "images", batch_size: int = EXTRACTION_BATCH_SIZE,
            training: bool = False, dtype: str = "float32") -> np.ndarray:
    """Run `extractor` over `images` in batches, printing progress with images/s and time left.

    NumPy batches go straight into one compiled function: no tf.data pipeline to plan, nothing to
    autotune, and the last smaller batch costs one extra trace only. `training=True` runs random layers
    (augmentation) as in training; the result is stored in `dtype`.
    """
    import tensorflow as tf

    forward = models.traced(extractor, f"forward-{training}",
                              lambda: lambda batch: extractor(batch, training=training))
    outputs = []
    started = time.perf_counter()
    next_report = started + 10.0
    for start in range(0, len(images), batch_size):
        # float32 (or float16) on disk whatever the compute precision: bfloat16 does not round-trip through .npz.
        batch = images[start:start + batch_size]
        # A stored pool is float16: widened here (exactly), so no half-precision tensor reaches TensorFlow, whose
        # oneDNN kernels log an error for one on CPUs without AVX-512 before computing it another way.
        batch = tf.constant(batch.astype(np.float32) if batch.dtype == np.float16 else batch)
        # Split between the replicas, unless random layers run: replicas would draw the same numbers for their
        # shares (and a pool must not depend on the replica count: its cache key does not name it).
        result = forward(batch) if training else distribute.forward(forward, batch)
        outputs.append(result.numpy().astype(dtype))
        done = min(start + batch_size, len(images))
        now = time.perf_counter()
        if now >= next_report and done < len(images):
            rate = done / (now - started)
            print(f"  extracting {label}: {done}/{len(images)} images, {rate:.1f} images/s, "
                  f"about {(len(images) - done) / rate:.0f} s left", flush=True)
            next_report = now + 30.0
    elapsed = time.perf_counter() - started
    print(f"Extracted {label}: {len(images)} images in {elapsed:.1f} s "
          f"({len(images) / max(elapsed, 1e-9):.1f} images/s).", flush=True)
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=dtype)


def after_shared_cut(conv_base, cut_layer: str) -> bool:
    """Whether `cut_layer` lies beyond `SHARED_CUT`, so that its features derive from the shared cache."""
    names = models.layer_names(conv_base)
    return SHARED_CUT in names and names.index(cut_layer) > names.index(SHARED_CUT)


def features_at_cut(cut: models.CutBase, image_set: ImageSet, weights: WeightsChoice,
                    cut_layer: str | None = None, mirror_maps: bool = False) -> tuple[np.ndarray, float, bool]:
    """Features of `image_set` at `cut_layer` (default: the cut's) from the cache, or computed and cached now.

    Beyond the shared cut they are computed from the cached block-4 output (itself computed first if
    needed); with `mirror_maps`, from that output mirrored left to right (`MIRROR_MAPS`). Returns `(features,
    seconds spent computing, whether they came from the cache)`. Cache entries are written atomically, so two
    processes computing the same split at once both end whole.
    """
    cut_layer = cut_layer or cut.cut_layer
    if mirror_maps and not after_shared_cut(cut.conv_base, cut_layer):
        raise SuiteError(f"Mirrored {SHARED_CUT} maps need a cut beyond {SHARED_CUT}, not at {cut_layer}.")
    key = cache_key_of(image_set, weights, cut)
    if mirror_maps:
        key = dataclasses.replace(key, fingerprint=key.fingerprint + MIRROR_MAPS)
    path = key.path(cut_layer)
    started = time.perf_counter()

    def compute() -> dict[str, np.ndarray]:
        if after_shared_cut(cut.conv_base, cut_layer):
            shared, _, _ = features_at_cut(cut, image_set, weights, SHARED_CUT)
            segment = models.conv_segment(cut.conv_base, cut_layer, start=SHARED_CUT)
            label = f"{image_set.name} ({SHARED_CUT}{' mirrored' if mirror_maps else ''} to {cut_layer})"
            return {"features": extract(segment, shared[:, :, ::-1] if mirror_maps else shared, label=label)}
        segment = models.conv_segment(cut.conv_base, cut_layer, preprocessing=cut.preprocessing)
        return {"features": extract(segment, image_set.images, label=image_set.name)}

    arrays, from_cache = cache.cached_arrays(path, compute,
                                               usable=lambda arrays: len(arrays["features"]) == len(image_set))
    if from_cache:
        print(f"Loaded cached {image_set.name} features {arrays['features'].shape} at {cut_layer}"
              f"{' (mirrored maps)' if mirror_maps else ''}.", flush=True)
        return arrays["features"], 0.0, True
    return arrays["features"], time.perf_counter() - started, False


@dataclasses.dataclass
class SplitFeatures:
    """Features of several data splits at one cut: arrays by split, seconds spent extracting, cache hits."""

    arrays: dict[str, np.ndarray]
    seconds: float
    from_cache: dict[str, bool]


def at_cut(cut: models.CutBase, image_sets: dict, splits, weights: WeightsChoice) -> SplitFeatures:
    """`features_at_cut` for each of the data `splits`, at the cut of a `models.CutBase`."""
    results = {split: features_at_cut(cut, image_sets[split], weights) for split in splits}
    return SplitFeatures({split: result[0] for split, result in results.items()},
                         sum(result[1] for result in results.values()),
                         {split: result[2] for split, result in results.items()})


def training_features(cut: models.CutBase, image_set: ImageSet, arrays: dict[str, np.ndarray], weights: WeightsChoice,
                      feature_flips: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Stage 1's training inputs and labels: the training split's features at the cut, and with `feature_flips` also
    those of its block-4 maps mirrored left to right (block 5 over them once: about a tenth of a conv-base pass
    at 150x150), so the classifier sees each photo both ways round. Returns `(inputs, labels, seconds spent)`."""
    inputs, labels = arrays["train"], image_set.labels
    if not feature_flips:
        return inputs, labels, 0.0
    mirrored, seconds, _ = features_at_cut(cut, image_set, weights, mirror_maps=True)
    return np.concatenate([inputs, mirrored]), np.concatenate([labels, labels]), seconds
