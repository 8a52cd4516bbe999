"""Decoding photos: one file to a uint8 RGB array of the stage's size, and many files on a few threads.

Both the in-memory loader (`lib.study.photos`) and the disk store (`lib.study.imagestore`) decode through here.
"""
from __future__ import annotations

import concurrent.futures
import os
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image


def decode(path: Path, image_size: int) -> np.ndarray:
    """One photo as a uint8 `(image_size, image_size, 3)` RGB array: first frame, transparency on white."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings about odd metadata in otherwise good files.
        with Image.open(path) as image:
            image.seek(0)  # First frame of an animated GIF.
            if image.mode in {"RGBA", "LA", "P", "PA"}:
                # Flatten transparency onto white rather than onto whatever the hidden pixels hold.
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            image = image.convert("RGB")  # Grayscale, CMYK, 16-bit: all to 8-bit RGB.
            image = image.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)


def decode_files(files: list[Path], image_size: int, errors: dict[str, str], label: str = "images"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize `files` on a few threads: uint8 images and a mask of the files that decoded.

    Why a file failed goes into `errors` (path: reason); progress is printed every 500 images.
    """
    started = time.perf_counter()
    images = np.zeros((len(files), image_size, image_size, 3), dtype=np.uint8)
    ok = np.ones(len(files), dtype=bool)

    def decode_one(index: int) -> None:
        try:
            images[index] = decode(files[index], image_size)
        except Exception as error:
            ok[index] = False
            errors[str(files[index])] = f"could not be decoded ({type(error).__name__}: {error})"

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(decode_one, range(len(files))), start=1):
            if done % 500 == 0:
                print(f"  decoding {label}: {done}/{len(files)} images", flush=True)
    print(f"Decoded {int(ok.sum())} {label} images to {image_size}x{image_size} in "
          f"{time.perf_counter() - started:.1f} s.", flush=True)
    return images, ok


