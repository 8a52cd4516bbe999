"""The synthetic data set: a tiny two-class image set in the data set's layout, generated once into the cache, for
smoke runs, tests and measurements at scale (`data_dir=synthetic` or `synthetic:N`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lib import SuiteError
from lib.core import locks, marks, paths, storage
from lib.study import listing

SYNTHETIC_VALUE = "synthetic"


def synthetic_of_size(value: str) -> tuple[Path, dict[str, int]]:
    """`synthetic:N`: where a synthetic set of N photos goes, and its split sizes (half for training, a
    quarter each for validation and test), for measurements at scale."""
    try:
        photos = int(value.split(":", 1)[1])
    except ValueError:
        photos = 0
    if photos < 8:
        raise SuiteError(f"data_dir={value!r}: give the number of synthetic photos, at least 8 (synthetic:2000).")
    counts = {"train": photos // 2, "validation": photos // 4, "test": photos - photos // 2 - photos // 4}
    return paths.synthetic_data_dir().with_name(f"synthetic_cats_and_dogs_{photos}"), counts


def make_synthetic_dataset(root: Path, counts: dict[str, int] | None = None, size: int = 64) -> Path:
    """Generate (once) a tiny two-class image set in the dataset layout, for smoke runs and tests.

    "Cats" are warm images with round blobs, "dogs" cool images with bars: a pattern that even a
    randomly initialised VGG16 plus a small head can learn a little, so smoke runs exercise real training.
    """
    counts = counts or {"train": 24, "validation": 12, "test": 12}
    if (root / "done").is_file():
        return root
    if root.exists() and not marks.is_marked(root):
        raise SuiteError(f"{root} is in the way of the synthetic photo set and was not made by this suite: move it, "
                         "or set CACHE_DIR to another folder.")
    marks.remove(root)  # Left half-built by an interrupted run.
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    with locks.holding(building):
        marks.mark(building, marks.SYNTHETIC_PHOTOS)  # First: even a half-built set says who made it.
        _draw_synthetic(building, counts, size)
    storage.apply_umask(building, folder=True)  # mkdtemp made it 0700.
    try:
        os.replace(building, root)
        storage.sync_folder(root.parent)
    except OSError:  # Another process finished first; its copy is identical.
        shutil.rmtree(building, ignore_errors=True)
    return root


def _draw_synthetic(building: Path, counts: dict[str, int], size: int) -> None:
    """Draw the synthetic photos into `building` (see `make_synthetic_dataset`), and mark it done."""
    generator = np.random.default_rng(1234)
    for split, count in counts.items():
        for label, name in enumerate(listing.CLASS_NAMES):
            folder = building / split / name
            folder.mkdir(parents=True)
            for index in range(count // 2):
                base = np.array([200, 120, 60]) if label == 0 else np.array([60, 120, 200])
                pixels = np.clip(base + generator.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                draw = ImageDraw.Draw(image)
                for _ in range(3):
                    x, y = generator.integers(0, size - 16, 2)
                    extent = int(generator.integers(8, 16))
                    if label == 0:
                        draw.ellipse([x, y, x + extent, y + extent], fill=(250, 230, 90))
                    else:
                        draw.rectangle([x, 0, x + extent // 3, size], fill=(20, 40, 90))
                image.save(folder / f"{name[:-1]}.{index}.jpg", quality=90)
    (building / "done").write_text("complete\n")
