"""Photo sets larger than memory: decoded once into a disk cache and read a batch at a time.

The `image_store` parameter chooses where a stage keeps its decoded photos: `memory` (every photo of every
split decoded into one array, as always), `disk` (decoded once, in chunks, into a raw uint8 file under the
cache folder, then read back only as the stage needs them: a batch for the conv base, a few photos for a
figure), or `auto` (memory while the decoded photos take at most `MEMORY_SHARE` of the memory available,
else disk). With `disk`, a stage's memory grows with the features it keeps, not with the photos.

In a cluster the chief decodes and writes the file; the other workers wait for it and read it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from lib import SuiteError
from lib.core import storage
from lib.study import cache, decode

IMAGE_STORES = ("auto", "memory", "disk")
MEMORY_SHARE = 0.25  # `auto` keeps the decoded photos in memory up to this share of the memory available.
CHUNK = 1024  # Photos decoded (and held) at a time when writing the disk store.


def available_memory() -> int:
    """Bytes of memory available to new work (`MemAvailable`), or the physical memory where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose(image_store: str, photos: int, image_size: int) -> str:
    """`memory` or `disk` for `photos` decoded at `image_size` (`auto` decides by the memory available)."""
    if image_store not in IMAGE_STORES:
        raise SuiteError(f"image_store={image_store!r}: use one of {', '.join(IMAGE_STORES)}.")
    if image_store != "auto":
        return image_store
    needed, available = photos * image_size * image_size * 3, available_memory()
    if needed <= MEMORY_SHARE * available:
        return "memory"
    print(f"image_store=auto: the {photos} decoded photos would take {needed / 1e9:.1f} GB, more than "
          f"{MEMORY_SHARE:.0%} of the {available / 1e9:.1f} GB available: reading them from a disk cache.", flush=True)
    return "disk"


@dataclasses.dataclass(frozen=True)
class DiskImages:
    """Decoded photos `(count, size, size, 3)` uint8 in a raw file, read when indexed: a slice, an index
    array or one index gives a NumPy array; `[:, :, ::-1]` gives the same photos mirrored (read lazily)."""

    path: Path
    count: int
    size: int
    mirrored: bool = False
    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, self.size, self.size, 3)

    def __len__(self) -> int:
        return self.count

    def _rows(self, start: int, stop: int) -> np.ndarray:
        row = self.size * self.size * 3
        with open(self.path, "rb") as handle:
            handle.seek(start * row)
            rows = np.fromfile(handle, dtype=np.uint8, count=max(stop - start, 0) * row)
        rows = rows.reshape(-1, self.size, self.size, 3)
        return np.ascontiguousarray(rows[:, :, ::-1]) if self.mirrored else rows

    def __getitem__(self, index):
        if isinstance(index, tuple):
            if index == (slice(None), slice(None), slice(None, None, -1)):
                return dataclasses.replace(self, mirrored=not self.mirrored)
            raise TypeError(f"DiskImages supports [:, :, ::-1] as its only multi-axis index, not {index!r}.")
        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
            return self._rows(start, stop) if step == 1 else self[np.arange(start, stop, step)]
        if np.ndim(index) == 0:
            position = int(index) % self.count
            return self._rows(position, position + 1)[0]
        indices = np.asarray(index)
        indices = np.flatnonzero(indices) if indices.dtype == bool else indices.astype(int)
        rows = [self._rows(position, position + 1) for position in indices % max(self.count, 1)]
        return np.concatenate(rows) if rows else np.zeros((0, self.size, self.size, 3), dtype=np.uint8)

    def __array__(self, dtype=None, copy=None):
        array = self._rows(0, self.count)
        return array.astype(dtype) if dtype is not None else array


def _write(files: list[Path], image_size: int, errors: dict[str, str], raw: Path, label: str) -> dict[str, np.ndarray]:
    """Decode `files` a chunk at a time straight into the raw file (atomically); returns the index to store, the
    mask of the files that decoded."""
    masks = []
    storage.check_free_space(raw.parent, len(files) * image_size * image_size * 3, raw.name)
    with storage.atomic_path(raw) as temporary, open(temporary, "wb") as handle:
        for start in range(0, len(files), CHUNK):
            end = min(start + CHUNK, len(files))
            images, ok = decode.decode_files(files[start:end], image_size, errors, cached=True,
                                           label=f"{label} {start + 1}-{end} of {len(files)}")
            handle.write(images[ok].tobytes())
            masks.append(ok)
    return {"ok": np.concatenate(masks) if masks else np.zeros(0, dtype=bool)}


def load(files: list[Path], image_size: int, errors: dict[str, str], cache_file: Path, label: str
         ) -> tuple[DiskImages, np.ndarray]:
    """The photos of `files` in a disk store beside `cache_file` (decoded now unless stored): the images and
    the mask of the files that decoded. The store's index is a cache entry written after the raw file, so it
    is complete when the index is there and the raw file has the size the index says (in a cluster only the
    chief decodes: `lib.study.cache`)."""
    raw, index = cache_file.with_suffix(".u8"), cache_file.with_suffix(".index.npz")
    row = image_size * image_size * 3
    arrays, _ = cache.cached_arrays(
        index, lambda: _write(files, image_size, errors, raw, label), chief_computes=True,
        usable=lambda arrays: raw.is_file() and raw.stat().st_size == int(arrays["ok"].sum()) * row)
    cache.note_used(raw)  # Read a batch at a time for the whole stage: in use, kept by cleaning.
    ok = arrays["ok"]
    if not ok.any():
        raise SuiteError(f"No image among the {len(files)} files of {label} could be decoded: check that they are "
                         "photos.")
    print(f"Reading {int(ok.sum())} decoded {label} photos from {raw} as needed ({raw.stat().st_size / 1e6:.0f} MB "
          "on disk).", flush=True)
    return DiskImages(raw, int(ok.sum()), image_size), ok
