"""Decoding photos: one file to a uint8 RGB array of the stage's size, and many files on a few threads.

Both the in-memory loader (`lib.study.photos`) and the disk store (`lib.study.imagestore`) decode through here, and
so does `make predict`. The size in a photo's header is checked before its pixels are decoded: a photo of more than
`MAX_PIXELS` is skipped like any unreadable file (a JPEG that large is first asked to decode at a reduced scale,
which its format allows), and the threads together decode at most `MAX_PIXELS` at once, so that decoding takes a
bounded amount of memory whatever the files: a flat 13,300 x 13,300 PNG is under 1 MB on disk and would decode to
0.5 GB, and several GB with the copies a conversion makes.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from lib import SuiteError

# The most pixels a photo may decode to: 50 million is an 8,660 x 5,770 photo, larger than most cameras' (bigger
# JPEGs decode at a reduced scale). Converting one holds up to about 16 bytes a pixel (a 7,000 x 7,000 RGBA PNG
# peaked at 0.78 GB, an RGB one at 0.40 GB), so the decoding threads together hold under 1 GB.
MAX_PIXELS = 50_000_000
# The formats a photo is decoded as, whatever its name says: Pillow knows many more, and opening some of them runs
# more than a decoder (EPS starts Ghostscript where it is installed).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
# After a photo this large, the memory freed is given back to the system at once: glibc keeps what a thread freed
# for that thread, and two threads that each decoded a large photo in turn would hold the memory of both.
TRIM_PIXELS = 16_000_000


class PhotoTooLarge(SuiteError):
    """A photo whose size, read from its header, is over `MAX_PIXELS`."""


class NotAPhoto(ValueError):
    """A file that is none of the `FORMATS` (whatever its name), or whose header none of them can read."""


# The system calls' errors that say the machine failed for a moment (the disk, the memory, a network file system),
# not that this photo cannot be read: worth a second try, and never cached as a bad photo.
TRANSIENT_ERRNOS = {errno.EIO, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ESTALE, errno.ETIMEDOUT, errno.EBUSY,
                    errno.ENFILE, errno.EMFILE}


def is_transient(error: BaseException) -> bool:
    """Whether a decode failed because of the machine rather than the photo: out of memory, or a system call's error
    in `TRANSIENT_ERRNOS` (EIO, ENOMEM, EAGAIN, ...). A photo the user may not read or that is gone (EACCES, ENOENT)
    is a problem of that photo: skipped with its reason like an unreadable one. Pillow's verdicts on the content (an
    unidentified, truncated or undecodable image) carry no errno, and neither does a photo too large."""
    return isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS)


class ReadFailed(SuiteError):
    """A photo could not be read for a reason of the machine (`is_transient`), twice: nothing was cached."""


class _PixelBudget:
    """The pixels being decoded at once by all threads, kept within `capacity`: a photo waits until it fits, and a
    photo alone always fits (no photo is over the capacity)."""

    def __init__(self, capacity: int):
        self.capacity, self.free = capacity, capacity
        self.condition = threading.Condition()

    @contextlib.contextmanager
    def held(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self.condition:
            self.condition.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            if pixels > TRIM_PIXELS:
                _return_freed_memory()
            with self.condition:
                self.free += pixels
                self.condition.notify_all()


def _return_freed_memory() -> None:
    """glibc's `malloc_trim`: freed memory of every thread back to the system (elsewhere, nothing to do)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


_BUDGET = _PixelBudget(MAX_PIXELS)


def _checked_size(image: Image.Image, image_size: int) -> int:
    """The pixels `image` (opened, not yet decoded) will decode to; a JPEG over the limit is set to decode at the
    smallest scale still at least `image_size` (its format's DCT scaling), and what is still over it raises
    `PhotoTooLarge`."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.draft("RGB", (image_size, image_size))  # Only JPEGs can; other formats keep their size.
        if image.size[0] * image.size[1] > MAX_PIXELS:
            raise PhotoTooLarge(f"{width}x{height} pixels ({width * height / 1e6:.1f} million), over the limit of "
                                f"{MAX_PIXELS / 1e6:.0f} million pixels for one photo")
    return image.size[0] * image.size[1]


def decode(path: Path, image_size: int) -> np.ndarray:
    """One photo as a uint8 `(image_size, image_size, 3)` RGB array: first frame, transparency on white. A photo
    over `MAX_PIXELS` raises `PhotoTooLarge` before its pixels are decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings about odd metadata; its size warning is ours to make.
        try:
            opened = Image.open(path, formats=FORMATS)  # Reads the header only.
        except Image.UnidentifiedImageError:
            raise NotAPhoto(f"not a {', '.join(FORMATS[:-1])} or WebP image: other formats are never opened") from None
        except Image.DecompressionBombError as error:  # Over twice PIL's own limit: PIL refuses to open it.
            raise PhotoTooLarge(f"over the limit of {MAX_PIXELS / 1e6:.0f} million pixels for one photo ({error})"
                                ) from None
        try:
            # close() frees the pixels (leaving `with Image.open(...)` does not) before the budget is given back.
            with _BUDGET.held(_checked_size(opened, image_size)), contextlib.closing(opened):
                return _to_array(opened, image_size)
        finally:
            opened.close()  # Also when it was too large to decode (closing twice does nothing).


def _to_array(image: Image.Image, image_size: int) -> np.ndarray:
    """An opened photo as the uint8 RGB array of `decode` (its copies are freed when this returns)."""
    image.seek(0)  # First frame of an animated GIF.
    if image.mode in {"RGBA", "LA", "P", "PA"}:
        # Flatten transparency onto white rather than onto whatever the hidden pixels hold.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")  # Grayscale, CMYK, 16-bit: all to 8-bit RGB.
    image = image.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def decode_files(files: list[Path], image_size: int, errors: dict[str, str], label: str = "images",
                 cached: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize `files` on a few threads: uint8 images and a mask of the files that decoded.

    Why a file failed goes into `errors` (path: reason); progress is printed every 500 images. A failure of the
    machine rather than of the photo (`is_transient`) is tried again once, alone; when it fails again the photo is
    skipped with a reason that says so, or, when what is decoded is to be `cached` as the photos' verdict, the
    command stops with `ReadFailed` so that the failure is never kept as a bad photo.
    """
    started = time.perf_counter()
    images = np.zeros((len(files), image_size, image_size, 3), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    transient: dict[int, BaseException] = {}

    def decode_one(index: int) -> None:
        try:
            images[index] = decode(files[index], image_size)
            ok[index] = True
            transient.pop(index, None)
            errors.pop(str(files[index]), None)  # Failed the first time only.
        except Exception as error:
            errors[str(files[index])] = _reason(error)
            if is_transient(error):
                transient[index] = error

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(decode_one, range(len(files))), start=1):
            if done % 500 == 0:
                print(f"  decoding {label}: {done}/{len(files)} images", flush=True)
    for index in list(transient):  # Alone now: what the other threads held is free.
        decode_one(index)
    if cached and transient:
        index, error = next(iter(transient.items()))
        others = f" and {len(transient) - 1} other photo(s)" if len(transient) > 1 else ""
        raise ReadFailed(f"Could not read {files[index]}{others} ({type(error).__name__}: {error}): a failure of the "
                         "disk or the memory, not of the photos. Nothing was cached; run the same command again once "
                         "the machine is well.")
    print(f"Decoded {int(ok.sum())} {label} images to {image_size}x{image_size} in "
          f"{time.perf_counter() - started:.1f} s.", flush=True)
    return images, ok


def _reason(error: Exception) -> str:
    """Why a photo was skipped, in words."""
    if isinstance(error, PhotoTooLarge):
        return f"too large: {error}"
    if isinstance(error, NotAPhoto):
        return f"could not be decoded ({error})"
    if is_transient(error):
        return (f"could not be read ({type(error).__name__}: {error}): a failure of the disk or the memory, not of "
                "the photo; run the command again")
    return f"could not be decoded ({type(error).__name__}: {error})"
