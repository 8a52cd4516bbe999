"""Atomic file writing: a killed run leaves either the old file or the new one, never a truncated one."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# The process's umask, read once: temporary files are created 0600, and a renamed file keeps that mode unless
# it is given the mode a plain `open(path, "w")` would have given it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def apply_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give `path` the permissions a normal write (or `mkdir`) would have: 0666 (0777) less the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)


def _writes_here() -> bool:
    """Whether this process writes files: not when it is a worker other than the chief of a cluster."""
    from lib import distribute

    return distribute.is_chief()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    The temporary name keeps `path`'s suffix (or `suffix`), because some writers (Keras, NumPy) insist on
    one. On error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    if not _writes_here():  # A worker other than the chief: what it writes goes nowhere (lib.distribute).
        with tempfile.TemporaryDirectory(prefix="vgg16-worker-") as folder:
            yield Path(folder) / f"discarded{suffix or path.suffix}"
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".partial{suffix or path.suffix}", dir=path.parent
    )
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        apply_umask(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write `payload` as indented JSON atomically; NumPy scalars and paths are converted."""
    return write_text(path, json.dumps(payload, indent=2, default=_json_default, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_free_space(folder: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Raise a `SuiteError` naming the fix when `folder`'s disk has less than `needed_bytes` free."""
    from lib import SuiteError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes * 1.05 + (16 << 20):
        raise SuiteError(
            f"Not enough disk space for {what}: {needed_bytes / 1e6:.0f} MB needed, {free / 1e6:.0f} MB free in "
            f"{folder}. Free some space, or set CACHE_DIR (caches) or OUTPUTS_DIR (runs) to a larger disk."
        )


def write_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write NumPy arrays to an uncompressed `.npz` atomically, after checking there is room for them."""
    from lib import SuiteError

    path = Path(path)
    if not _writes_here():  # A worker other than the chief: not even into a temporary file.
        return path
    check_free_space(path.parent, sum(array.nbytes for array in arrays.values()), path.name)
    try:
        with atomic_path(path, suffix=".npz") as temporary:
            np.savez(temporary, **arrays)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise SuiteError(f"The disk filled up while writing {path} (nothing was left half-written). Free "
                             "some space, or set CACHE_DIR or OUTPUTS_DIR to a larger disk.") from None
        raise
    return path


def _read_usable(path: Path, usable: Callable[[dict[str, np.ndarray]], bool]) -> dict[str, np.ndarray] | None:
    """The arrays at `path` when the file is there, whole and `usable`; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
        return arrays if usable(arrays) else None
    except Exception:  # Damaged, or written by another version.
        return None


def _chiefs_arrays(path: Path, usable: Callable[[dict[str, np.ndarray]], bool]) -> dict[str, np.ndarray]:
    """On a worker of a cluster: the arrays the chief has at `path`; a `SuiteError` when this worker cannot
    read them."""
    from lib import SuiteError

    arrays = _read_usable(path, usable)
    if arrays is None:
        raise SuiteError(f"This worker cannot read {path}, which the cluster's chief has: the workers must share "
                         "one file system for CACHE_DIR and OUTPUTS_DIR.")
    return arrays


def stored_arrays(path: str | os.PathLike, usable: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True
                  ) -> dict[str, np.ndarray] | None:
    """The usable arrays stored at `path`, or None (a damaged or unusable file is removed). In a cluster the
    chief's answer holds for every worker: arrays on all of them, or None on all."""
    from lib import distribute

    path = Path(path)
    arrays = _read_usable(path, usable)
    if distribute.chief_decides(arrays is not None):
        return arrays if arrays is not None else _chiefs_arrays(path, usable)
    remove(path)
    return None


def cached_arrays(path: str | os.PathLike, compute: Callable[[], dict[str, np.ndarray]],
                  usable: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True,
                  chief_computes: bool = False) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays stored at `path` when it holds usable ones, else `compute()`'s, written there atomically.

    Returns `(arrays, whether they came from the file)`. A damaged file, or one from another format that
    `usable` rejects, is removed and computed again; two processes computing the same entry at once both
    end with a whole file. In a cluster the chief's answer holds for every worker (they compute together
    or not at all), and none looks for the file again before the chief has written it; with
    `chief_computes` (a computation without collective operations, such as decoding photos) only the chief
    computes, and the other workers read what it wrote.
    """
    from lib import distribute

    path = Path(path)
    arrays = stored_arrays(path, usable)
    if arrays is not None:
        return arrays, True
    if chief_computes and not distribute.is_chief():
        return distribute.wait_for_chief(lambda: _read_usable(path, usable), str(path)), True
    arrays = compute()
    write_arrays(path, **arrays)
    distribute.barrier()
    return arrays, False


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove(path: str | os.PathLike) -> None:
    """Remove a file if it exists (not on a worker other than the chief: it writes nothing)."""
    if not _writes_here():
        return
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
