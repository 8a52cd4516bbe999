"""Measure what tf.data autotuning costs the stage-2 training loop on this machine.

    .venv/bin/python tools/autotune_check.py [--images 400] [--epochs 5] [--repeats 2]

Trains the stage-2 model (frozen VGG16 + classifier, in-graph augmentation, the cpu profile's precision)
on random in-memory photos, alternating a default `tf.data` pipeline (autotune on, `prefetch(AUTOTUNE)`)
with the suite's (`batches.make_batch_stream`: autotune off), and prints wall time, CPU time per wall second,
and each epoch's seconds. Idle cores show as CPU/wall well below the number of cores.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402

tf = lib.load_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from lib.study import batches, models, training  # noqa: E402
from lib.study.weights import WeightsChoice  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(round(time.perf_counter() - self.started, 1))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(dataset, epochs: int) -> tuple[float, float, list[float]]:
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(WeightsChoice("none", None, None), 150)
    model = models.build_end_to_end(base, models.build_classifier(base.output_shape[1:]), "vgg16",
                                    models.build_augmentation(seed=0))
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=2e-5), loss="binary_crossentropy",
                  metrics=["accuracy"])
    timer = EpochTimer()
    cpu, started = cpu_seconds(), time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    return time.perf_counter() - started, cpu_seconds() - cpu, timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()
    training.configure_precision(True, [])
    images = np.random.default_rng(0).uniform(0, 255, (arguments.images, 150, 150, 3)).astype("uint8")
    labels = (np.arange(arguments.images) % 2).astype("float32")
    autotuned = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(labels), seed=0).batch(20)
                 .prefetch(tf.data.AUTOTUNE))
    stream = batches.make_batch_stream(images, labels, 20, shuffle=True)
    suite = stream.dataset().take(stream.batches_per_pass)  # One pass per epoch, as the autotuned one.
    for _ in range(arguments.repeats):
        for label, dataset in (("tf.data default (autotune on)", autotuned), ("suite (autotune off)", suite)):
            wall, cpu, epochs = train(dataset, arguments.epochs)
            print(f"{label:30s} wall {wall:5.1f} s, CPU/wall {cpu / wall:.2f}, epochs {epochs}", flush=True)


if __name__ == "__main__":
    main()
