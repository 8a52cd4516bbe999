"""Atomic file writing: a killed run leaves either the old file or the new one, never a truncated one.

Who writes is decided above this module: a process that must write nothing (a cluster's worker other than the
chief) is told so once with `discard_writes(True)` (`lib.study.distribute` does it), and every write here then goes
nowhere.
"""
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

from lib import SuiteError
from lib.core import locks

# The process's umask, read once: temporary files are created 0600, and a renamed file keeps that mode unless
# it is given the mode a plain `open(path, "w")` would have given it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def apply_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give `path` the permissions a normal write (or `mkdir`) would have: 0666 (0777) less the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)


_discarding = False


def discard_writes(discard: bool) -> None:
    """Make every later write of this process go nowhere (`True`), or reach the disk again (`False`)."""
    global _discarding
    _discarding = discard


def writes_here() -> bool:
    """Whether this process writes files (see `discard_writes`)."""
    return not _discarding


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it, rename it over `path` and fsync the folder.

    The temporary name keeps `path`'s suffix (or `suffix`), because some writers (Keras, NumPy) insist on
    one. On error the temporary file is removed and `path` is left as it was. While it is written, the temporary
    file is locked (`lib.core.locks`), so that a runner cleaning up what killed processes left behind spares it.
    """
    path = Path(path)
    if not writes_here():  # Told to discard its writes (a cluster's other workers).
        with tempfile.TemporaryDirectory(prefix="vgg16-worker-") as folder, locks.holding(folder):
            yield Path(folder) / f"discarded{suffix or path.suffix}"
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".partial{suffix or path.suffix}", dir=path.parent
    )
    os.close(handle)
    temporary = Path(temporary)
    try:
        with locks.holding(temporary), _explained_disk_errors(path):
            yield temporary
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            apply_umask(temporary)
            os.replace(temporary, path)
            sync_folder(path.parent)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def _explained_disk_errors(path: Path) -> Iterator[None]:
    """A full disk while writing `path` becomes a `SuiteError` naming the fix (nothing was left half-written)."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise SuiteError(f"The disk filled up while writing {path} (nothing was left half-written). Free "
                             "some space, or set CACHE_DIR or OUTPUTS_DIR to a larger disk.") from None
        raise


def sync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so that a rename into it (or out of it) survives a power cut as well as the file's data."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # Some file systems cannot sync a folder; the rename is then as safe as they make it.
        pass
    finally:
        os.close(descriptor)


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
    path = Path(path)
    if not writes_here():  # Discarding: not even into a temporary file.
        return path
    check_free_space(path.parent, sum(array.nbytes for array in arrays.values()), path.name)
    with atomic_path(path, suffix=".npz") as temporary:
        np.savez(temporary, **arrays)
    return path


def read_arrays(path: str | os.PathLike, usable: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True
                ) -> dict[str, np.ndarray] | None:
    """The arrays at `path` when the file is there, whole and `usable`; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
        return arrays if usable(arrays) else None
    except Exception:  # Damaged, or written by another version.
        return None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in chunks."""
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """The hex digest of a file by a `hashlib` algorithm (sha256, md5), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove(path: str | os.PathLike) -> None:
    """Remove a file if it exists (not while discarding writes)."""
    if not writes_here():
        return
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder and everything in it if it exists (not while discarding writes)."""
    if writes_here():
        shutil.rmtree(path, ignore_errors=True)
