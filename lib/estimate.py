"""A forecast of a run's duration from a short measurement of the conv base on this machine."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

import lib
from lib import devices, params, stages


def conv_base_rate(image_size: int, policy: str, batch_size: int = 32, batches: int = 2) -> float:
    """Images per second of a VGG16 conv base forward pass at `image_size` (random weights and images),
    in the Keras dtype `policy` the stages will compute in."""
    tf = lib.load_tensorflow()
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(image_size, image_size, 3))
    forward = tf.function(lambda images: base(images, training=False))
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)),
                         dtype=tf.float32)
    try:
        forward(images).numpy()  # Trace and warm up.
        started = time.perf_counter()
        for _ in range(batches):
            forward(images).numpy()
        return batches * batch_size / (time.perf_counter() - started)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def stage_seconds(stage: str, values: dict, image_counts: dict[str, int], rate: float) -> float:
    """Forecast seconds of one stage from its parameters, the image counts and the forward rate.

    Training images cost about 1.2 forward passes (stage 2: augmentation, classifier) or 1.4 (stage 3,
    block 5 trained too), as measured on a 2-core CPU; extraction one pass; everything else is small next
    to the conv base.
    """
    values = {**{name: parameter.default for name, parameter in params.declared(stage).items()}, **values}
    train = image_counts.get("train", 0)
    others = sum(count for split, count in image_counts.items() if split != "train")
    if stages.get(stage).trains_on == "features":
        return (train + others) / rate + 0.01 * values["epochs"] * train / 20
    per_epoch = (values["steps_per_epoch"] * values["batch_size"]) if values["steps_per_epoch"] else train
    trains_conv_layers = bool(values.get("unfreeze_layers"))
    seconds = others / rate + values["epochs"] * per_epoch * (1.4 if trains_conv_layers else 1.2) / rate
    if trains_conv_layers and values.get("start_from") == "scratch":
        seconds += values["classifier_epochs"] * per_epoch * 1.2 / rate
    return seconds


def image_counts(values: dict[str, Any], dataset: dict[str, Any]) -> dict[str, int]:
    """Photos per split that a stage will use, from the dataset fingerprint and `max_images_per_class`."""
    counts = {split: len(info["files"]) for split, info in dataset["splits"].items()}
    if values.get("max_images_per_class"):
        counts = {split: min(count, 2 * values["max_images_per_class"]) for split, count in counts.items()}
    return counts


def forecast(stems: list[str], resolved: dict[str, dict], fingerprints: dict[Any, Any]) -> dict[str, float]:
    """Print roughly how long each stage will take here, from a short conv-base measurement; return the
    seconds per stage (recorded in the manifest and shown beside the actual times on the summary page)."""
    gpus = devices.gpu_names()
    settings = {(values.get("image_size", 150), devices.compute_policy(values.get("mixed_precision", False), gpus))
                for values in resolved.values()}
    rates = {setting: conv_base_rate(*setting) for setting in settings}
    seconds = {}
    for stem in stems:
        values = resolved[stem]
        dataset = fingerprints[(values.get("data_dir", ""), values.get("weights", "imagenet"))][0]
        setting = (values.get("image_size", 150), devices.compute_policy(values.get("mixed_precision", False), gpus))
        seconds[stem] = stage_seconds(stem, values, image_counts(values, dataset), rates[setting])
        print(f"    forecast {stem}: about {seconds[stem] / 60:.0f} min", flush=True)
    rate_text = ", ".join(f"{rate:.0f} images/s at {size}px in {policy}" for (size, policy), rate in rates.items())
    print(f"    forecast total: about {sum(seconds.values()) / 60:.0f} min (conv base measured here: {rate_text}; "
          "cached features make it shorter)", flush=True)
    return seconds
