"""A rough forecast of a run's duration from a short measurement of the conv base on this machine."""
from __future__ import annotations

import time

import numpy as np

import lib


def conv_base_rate(image_size: int, mixed_precision: bool = False, batch_size: int = 32, batches: int = 2
                   ) -> float:
    """Images per second of a VGG16 conv base forward pass at `image_size` (random weights and images),
    in the precision the stages will use."""
    tf = lib.load_tensorflow()
    import keras

    from lib import training

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    policy = ("mixed_float16" if gpus else "mixed_bfloat16" if training.cpu_has_bfloat16() else "float32"
              ) if mixed_precision else "float32"
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
    train = image_counts.get("train", 0)
    others = sum(count for split, count in image_counts.items() if split != "train")
    if stage == "01_feature_extraction":
        return (train + others) / rate + 0.01 * values.get("epochs", 30) * train / 20
    steps = values.get("steps_per_epoch", 100)
    per_epoch = (steps * values.get("batch_size", 20)) if steps else train
    if stage == "02_data_augmentation":
        return others / rate + values.get("epochs", 50) * per_epoch * 1.2 / rate
    seconds = others / rate + values.get("epochs", 100) * per_epoch * 1.4 / rate
    if values.get("start_from", "auto") == "scratch":
        seconds += values.get("classifier_epochs", 30) * per_epoch * 1.2 / rate
    return seconds
