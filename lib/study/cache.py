"""Cache entries of arrays (decoded photos, conv features, pool variants): their keys, and files that every worker
of a cluster agrees on.

A conv output is cached under a key that holds everything that changes it (`CacheKey`): a rerun with other
classifier settings therefore extracts nothing; a changed photo or weights file extracts again. A cache entry is
one `.npz` file written atomically (`lib.core.storage`). On one machine it is there and usable, or it is computed
and written. In a cluster the chief's answer holds for every worker, so that all of them take
the same branch (collective operations need it): they compute together or not at all, and none looks for the file
again before the chief has written it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lib import SuiteError
from lib.core import locks, marks, paths, storage
from lib.study import distribute

Usable = Callable[[dict[str, np.ndarray]], bool]
# The cut that every stage's frozen part reaches: cached once, and the others derived from it.
SHARED_CUT = "block4_pool"
# Fingerprint suffixes: a split's photos mirrored left to right (test-time augmentation), and features computed
# from its block-4 maps mirrored left to right (stage 1's feature_flips).
MIRROR_PHOTOS = "|mirror"
MIRROR_MAPS = "|mirror-maps"
_FEATURE_FORMAT = "features-1"
# The cache entries this process has read or written: a stage records them (`metrics.json`'s `cache_entries`),
# so that `make cache` can say which runs use an entry and `make clean-cache` keeps those.
_used: set[Path] = set()
# The shared "in use" locks this process holds on the entries' files and folders, until it ends (a stage's
# kernel ends with its stage): `make clean-cache` and `make clean` keep an entry while someone holds one.
_in_use: dict[Path, int] = {}


def note_used(path: str | os.PathLike) -> None:
    """Remember that this process uses the cache entry at `path`, and hold it in use while it lives (ignored
    outside the cache folder). The first use of a kind of entry (`paths.CACHE_KINDS`) makes its folder, with the
    suite's marker (`lib.core.marks`), so that cleaning can tell it from a user's own folder of that name."""
    path, root = Path(path).resolve(), paths.cache_root()
    if not path.is_relative_to(root) or path == root:
        return
    _used.add(path)
    top = path.relative_to(root).parts[0]
    if top in paths.CACHE_KINDS and path.parent == root / top:
        marks.make_folder(root / top, paths.CACHE_KINDS[top])
    if path not in _in_use and (path.exists() or path.is_symlink()):
        descriptor = locks.hold_shared(path)
        if descriptor is not None:
            _in_use[path] = descriptor


def release_in_use() -> None:
    """Let go of every entry this process holds in use (`note_used`), as its end would: for a process that goes
    on after its stage (the tests)."""
    while _in_use:
        locks.release(_in_use.popitem()[1])


def used_entries() -> list[str]:
    """The cache entries this process used, by name: their paths in the cache folder without suffixes."""
    return sorted({paths.cache_entry_name(path) for path in _used})


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """Everything that decides a cached conv output of one data split (see the module docstring)."""

    split: str
    fingerprint: str
    weights_sha256: str | None
    image_size: int
    preprocessing: str
    policy: str

    def path(self, cut_layer: str, folder: str = "features", *extra: str) -> Path:
        """The cache file of the output at `cut_layer` (with `extra` key parts, e.g. a pool variant's)."""
        parts = [_FEATURE_FORMAT, self.fingerprint, self.weights_sha256 or "random-init", str(self.image_size),
                 self.preprocessing, cut_layer, keras_version(), self.policy, *extra]
        key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
        label = "-".join([self.split, cut_layer, *([extra[0]] if extra else [self.preprocessing])])
        return paths.cache_root() / folder / f"{label}-{key}.npz"


def keras_version() -> str:
    """The installed Keras version (without importing Keras)."""
    import importlib.metadata

    return importlib.metadata.version("keras")


def _chiefs_arrays(path: Path, usable: Usable) -> dict[str, np.ndarray]:
    """On a worker of a cluster: the arrays the chief has at `path`; a `SuiteError` when this worker cannot
    read them."""
    arrays = storage.read_arrays(path, usable)
    if arrays is None:
        raise SuiteError(f"This worker cannot read {path}, which the cluster's chief has: the workers must share "
                         "one file system for CACHE_DIR and OUTPUTS_DIR.")
    return arrays


def stored_arrays(path: str | os.PathLike, usable: Usable = lambda arrays: True) -> dict[str, np.ndarray] | None:
    """The usable arrays stored at `path`, or None (a damaged or unusable file is removed). In a cluster the
    chief's answer holds for every worker: arrays on all of them, or None on all."""
    path = Path(path)
    note_used(path)
    arrays = storage.read_arrays(path, usable)
    if distribute.chief_decides(arrays is not None):
        return arrays if arrays is not None else _chiefs_arrays(path, usable)
    storage.remove(path)
    return None


def cached_arrays(path: str | os.PathLike, compute: Callable[[], dict[str, np.ndarray]],
                  usable: Usable = lambda arrays: True, chief_computes: bool = False
                  ) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays stored at `path` when it holds usable ones, else `compute()`'s, written there atomically.

    Returns `(arrays, whether they came from the file)`. A damaged file, or one from another format that
    `usable` rejects, is removed and computed again; two processes computing the same entry at once both
    end with a whole file. With `chief_computes` (a computation without collective operations, such as decoding
    photos) only a cluster's chief computes, and the other workers read what it wrote.
    """
    path = Path(path)
    arrays = stored_arrays(path, usable)
    if arrays is not None:
        return arrays, True
    if chief_computes and not distribute.is_chief():
        return distribute.wait_for_chief(lambda: storage.read_arrays(path, usable), str(path)), True
    arrays = compute()
    storage.write_arrays(path, **arrays)
    note_used(path)  # In use from now on, as a stored entry is.
    distribute.barrier()
    return arrays, False
