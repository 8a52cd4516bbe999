"""Running the frozen part of the conv base once per image, with an on-disk cache.

The cache key holds everything that changes the output: the split's image contents (fingerprint), the
weights file (sha256), image size, preprocessing, and the layer where the frozen part ends. A rerun with
other classifier settings therefore extracts nothing; a changed photo or weights file extracts again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np

from lib import models, paths, storage
from lib.data import ImageSet
from lib.weights import WeightsChoice

EXTRACTION_BATCH_SIZE = 32
_FEATURE_FORMAT = "features-1"


def cache_key(image_set: ImageSet, weights: WeightsChoice, image_size: int, preprocessing: str,
              cut_layer: str) -> str:
    """Key of a feature cache entry (see module docstring)."""
    import keras

    parts = [_FEATURE_FORMAT, image_set.fingerprint, weights.sha256 or "random-init", str(image_size),
             preprocessing, cut_layer, keras.__version__, keras.mixed_precision.global_policy().name]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def extract(extractor, images: np.ndarray, label: str = "images",
            batch_size: int = EXTRACTION_BATCH_SIZE) -> np.ndarray:
    """Run `extractor` over `images` in batches, printing progress with images/s and time left.

    NumPy batches go straight into one compiled function: no tf.data pipeline to plan, nothing to
    autotune, and the last smaller batch costs one extra trace only.
    """
    import tensorflow as tf

    forward = models.compiled(extractor, "forward", lambda: lambda batch: extractor(batch, training=False))
    outputs = []
    started = time.perf_counter()
    next_report = started + 10.0
    for start in range(0, len(images), batch_size):
        # float32 on disk whatever the compute precision (bfloat16 arrays do not round-trip through .npz).
        outputs.append(forward(tf.constant(images[start:start + batch_size])).numpy().astype("float32"))
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
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)


def cached_features(extractor, image_set: ImageSet, weights: WeightsChoice, image_size: int,
                    preprocessing: str, cut_layer: str) -> tuple[np.ndarray, float, bool]:
    """Features of `image_set` from the cache, or extracted and cached now.

    Returns `(features, seconds spent extracting, whether they came from the cache)`. Cache entries are
    written atomically, so two processes extracting the same split at once both end with a whole file.
    """
    key = cache_key(image_set, weights, image_size, preprocessing, cut_layer)
    path = paths.cache_root() / "features" / f"{image_set.split}-{cut_layer}-{preprocessing}-{key}.npz"
    started = time.perf_counter()
    arrays, from_cache = storage.cached_arrays(
        path, lambda: {"features": extract(extractor, image_set.images, label=image_set.split)},
        usable=lambda arrays: len(arrays["features"]) == len(image_set))
    if from_cache:
        print(f"Loaded cached {image_set.split} features {arrays['features'].shape} from {path.name}.", flush=True)
        return arrays["features"], 0.0, True
    return arrays["features"], time.perf_counter() - started, False


@dataclasses.dataclass
class SplitFeatures:
    """Features of several data splits at one cut: arrays by split, seconds spent extracting, cache hits."""

    arrays: dict[str, np.ndarray]
    seconds: float
    from_cache: dict[str, bool]


def at_cut(cut: models.CutBase, image_sets: dict, splits, weights: WeightsChoice, image_size: int,
           preprocessing: str) -> SplitFeatures:
    """`cached_features` for each of the data `splits`, through the frozen part of a `models.CutBase`."""
    results = {split: cached_features(cut.frozen, image_sets[split], weights, image_size, preprocessing,
                                      cut.cut_layer) for split in splits}
    return SplitFeatures({split: result[0] for split, result in results.items()},
                         sum(result[1] for result in results.values()),
                         {split: result[2] for split, result in results.items()})
