"""What one epoch's backup of each stage's trained model costs at 150x150: its size on disk and the time to write it
(random weights: the sizes do not depend on the values).

    .venv/bin/python tools/backup_size.py

See docs/resuming-and-cache.md; `lib.study.backup` writes these files.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402,F401  (TensorFlow's environment before TensorFlow)
from lib.core import paths  # noqa: E402
from lib.study import backup, models, training  # noqa: E402
from lib.study.weights import WeightsChoice  # noqa: E402

keras = training.keras
BLOCK5 = ["block5_conv1", "block5_conv2", "block5_conv3"]


def measure(name: str, model) -> None:
    """Compile `model` as the stages do, keep a best epoch, and write one backup of it; print its size and time."""
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)
    best = training.BestEpoch()
    best.set_model(model)
    best.on_epoch_end(0, {"val_accuracy": 0.9, "val_loss": 0.1})
    paths.outputs_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.outputs_root()) as folder:
        callback = backup.BackupAndRestore(folder, name, {"epochs": 1})
        callback.set_model(model)
        callback.stateful = [best]
        started = time.perf_counter()
        callback.on_epoch_end(0, {"loss": 0.5})
        seconds = time.perf_counter() - started
        size = (Path(folder) / "training.npz").stat().st_size
    print(f"{name}: {size / 1e6:.1f} MB, written in {seconds:.2f} s", flush=True)


def main(argv: list[str]) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(WeightsChoice("none", None, None), 150)
    classifier = models.build_classifier(base.output_shape[1:], 0.5)
    measure("stage 1 (the classifier on block5_pool features)",
            keras.Sequential([keras.Input(base.output_shape[1:]), *classifier.layers]))
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name in BLOCK5
    measure("stage 3 on a pool (block 5 and the classifier above block4_pool)",
            models.cut_base(base, classifier, "vgg16").top)
    augmentation = models.build_augmentation(40.0, 0.1, 0.1, 0.2, True, True, seed=1)
    measure("stage 2 or 3 online (the whole model)", models.build_end_to_end(base, classifier, "vgg16", augmentation))


if __name__ == "__main__":
    main(sys.argv[1:])
