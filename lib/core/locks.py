"""Operating-system file locks: one runner per run folder, and the files and folders a live process is still
writing.

A lock here is `flock` on an open file or folder: the kernel drops it when the holder closes it or dies, however
it dies (SIGKILL included), so a lock is never left behind by a killed process. Writers hold one on what they are
building (a temporary file, an unpacking folder, a kernel's socket folder); the clean-up of leftovers removes only
what nobody holds (`lib.run.housekeeping`). A run folder's `.runner.lock` is held by the runner working on it for
the whole command; it also says who that runner is, for the message a second runner gets. A stage holds a shared
lock on each cache entry it uses (`hold_shared`), so that cleaning, which takes an exclusive one, keeps it.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

from lib import SuiteError

RUN_LOCK_FILE = ".runner.lock"


def try_lock(path: str | os.PathLike) -> int | None:
    """Open `path` (a file or a folder) and lock it without waiting: the descriptor, which holds the lock until it
    is closed (`release`), or None when another process holds it or `path` is gone."""
    return _locked(path, os.O_RDONLY, fcntl.LOCK_EX)


def _locked(path: str | os.PathLike, flags: int, operation: int) -> int | None:
    """`path` opened with `flags` and locked by `operation` without waiting; None when either fails."""
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def release(descriptor: int | None) -> None:
    """Close a descriptor from `try_lock`, which releases its lock."""
    if descriptor is not None:
        with contextlib.suppress(OSError):
            os.close(descriptor)


def is_held(path: str | os.PathLike) -> bool:
    """Whether some process (this one included, through another descriptor) holds a lock on `path` now; a path that
    exists but cannot be opened counts as held."""
    descriptor = try_lock(path)
    if descriptor is None:
        return Path(path).exists()
    release(descriptor)
    return False


def hold_shared(path: str | os.PathLike) -> int | None:
    """Take a shared lock on `path` (a file or a folder, never through a link) without waiting, to say "in use":
    any number of readers hold one together, and a cleaner's exclusive lock (`try_lock`) fails while one does. The
    descriptor, held until it is closed (`release`); None when `path` is gone, a link, or locked for removal."""
    return _locked(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, fcntl.LOCK_SH)


@contextlib.contextmanager
def holding(path: str | os.PathLike) -> Iterator[None]:
    """Hold a lock on `path` (which this process has just created) for the length of the block, so that the
    clean-up of leftovers leaves it alone while it is being written."""
    descriptor = try_lock(path)
    try:
        yield
    finally:
        release(descriptor)


class RunInUse(SuiteError):
    """Another runner holds the run folder's lock; the message says which process and since when (the runner adds
    what to do)."""


def open_for_writing(path: str | os.PathLike, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """Open `path` for writing without following a link: a link planted at `path` (in a folder others can write
    to) is refused with a `SuiteError` instead of clobbering the file the link points at. A descriptor."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
    raise SuiteError(f"{path} is a link: the suite never writes through a link there, which could make it overwrite "
                     "the file the link points to. Remove the link (or find who made it), then run again.")


def hold_file(path: Path) -> int:
    """Take the lock of the file at `path` (created if need be, never through a link) without waiting, and write
    who holds it in it: the descriptor, which holds the lock until it is closed. `RunInUse`, saying who holds it,
    when another process does; a `SuiteError` when `path` is a link."""
    descriptor = open_for_writing(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise RunInUse(_holder(path)) from None
    # Written in place, not renamed: the lock belongs to this file, and a reader only ever wants the holder's line.
    os.ftruncate(descriptor, 0)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.pwrite(descriptor, f"process {os.getpid()} on {platform.node()} since {started}: "
                          f"{' '.join(sys.argv)[:300]}\n".encode(), 0)
    return descriptor


def hold_run(folder: Path) -> int:
    """Take the run folder's lock for this runner, for the rest of the command (the descriptor is returned so that
    the caller can keep it, and close it to let go early); `RunInUse` when another runner holds it, a `SuiteError`
    when the lock file's name is a link."""
    folder.mkdir(parents=True, exist_ok=True)
    return hold_file(folder / RUN_LOCK_FILE)


def _holder(path: Path) -> str:
    try:
        holder = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        holder = ""
    return holder or "a process that has not yet written its name"
