"""What killed processes leave behind, and `make clean`.

    python -m lib.run.housekeeping clean     (make clean)

A process killed while writing leaves its temporary files and folders: `.<name>.<random>.partial<suffix>` files
(`lib.core.storage.atomic_path`), `.unpack-*` and `.synthetic-*` folders (the data set being unpacked or drawn),
`.predictions-*` folders (`make predict`), and `vgg16-kernel-*` and `vgg16-worker-*` folders in the temporary
folder (a kernel's sockets, a worker's discarded writes). A runner removes those at its start when they are older
than `STALE_SECONDS` and no live process holds their lock (`lib.core.locks`: every writer holds one on what it is
building, and the kernel drops it when the writer dies). The temporary folder is shared with other checkouts of
the suite, whose versions may not lock: a kernel's folder there is removed only when no socket in it is open
(Linux lists them in /proc/net/unix), and a worker's only after `TEMPORARY_STALE_SECONDS`. The sweep looks at
the top of the outputs, cache and data folders and inside the folders there that carry the suite's marker
(`lib.core.marks`), never inside a folder the suite cannot prove it made, never through a link.

`make clean` removes the runs and caches the suite made, wherever `OUTPUTS_DIR` and `CACHE_DIR` point: marked run
and tool folders, the files the suite recorded writing loose in the outputs folder, and the cache's entries
(`lib.run.cache_commands`). A folder without the marker is refused with one line; a run a runner holds, and a cache
entry a running stage holds in use, are kept, and said so.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lib.core import locks, marks, paths
from lib.run import cache_commands

STALE_SECONDS = 300
TEMPORARY_STALE_SECONDS = 24 * 3600  # Far longer than a worker's single discarded write takes.
# Names of what a killed writer leaves, in the run, cache and data folders.
LEFTOVER_PREFIXES = (".unpack-", ".synthetic-", ".predictions-", marks.MAKING_PREFIX)
# A temporary file of `lib.core.storage.atomic_path`: `.<name>.<8 characters of tempfile>.partial<suffix>`.
TEMPORARY_FILE = re.compile(r"\..*\.[a-z0-9_]{8}\.partial[^/]*")


def is_leftover(name: str) -> bool:
    """Whether a file or folder name is one a writer gives what it has not finished."""
    return name.startswith(LEFTOVER_PREFIXES) or (name.startswith(".") and ".partial" in name)


def _stale(path: Path, now: float, seconds: float = STALE_SECONDS) -> bool:
    try:
        return now - path.lstat().st_mtime > seconds and not locks.is_held(path)
    except OSError:  # Gone already.
        return False


def open_sockets() -> set[str] | None:
    """The paths of the Unix sockets some process has open (Linux), or None where that cannot be known."""
    try:
        with open("/proc/net/unix") as table:
            return {line.split()[7] for line in table.readlines()[1:] if len(line.split()) > 7}
    except OSError:
        return None


def _temporary_leftovers(temporary: Path, now: float) -> list[Path]:
    """The kernels' and workers' folders in the shared temporary folder that nothing uses any more."""
    sockets = open_sockets()
    found = []
    for path in temporary.glob("vgg16-*"):
        if path.name.startswith("vgg16-kernel-"):
            in_use = sockets is None or any(socket.startswith(f"{path}/") for socket in sockets)
            if not in_use and _stale(path, now):
                found.append(path)
        elif path.name.startswith("vgg16-worker-") and _stale(path, now, TEMPORARY_STALE_SECONDS):
            found.append(path)
    return found


def _proven_leftover(path: Path) -> bool:
    """Whether `path`, at the top of a folder that may be a user's, is surely a leftover of the suite's: a marked
    folder (a synthetic set being drawn, a folder being made), or a file named as `atomic_path` names them."""
    if path.is_dir() and not path.is_symlink():
        return marks.is_marked(path)
    return bool(TEMPORARY_FILE.fullmatch(path.name))


def _leftovers_in(folder: Path) -> Iterator[Path]:
    """What killed writers may have left at the top of `folder` and anywhere inside its marked folders; never
    inside a folder without the suite's marker, never through a link (`os.walk` does not follow them). At the top
    of a folder that `OUTPUTS_DIR` or `CACHE_DIR` may name, only what is proven the suite's (`_proven_leftover`)."""
    trusted = folder == paths.default_data_dir().parent  # The project's own: a download unpacks there.
    children = sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
    for child in children:
        if is_leftover(child.name):
            yield from [child] if trusted or _proven_leftover(child) else []
        elif marks.is_marked(child):
            for parent, names, files in os.walk(child):
                yield from (Path(parent) / name for name in [*names, *files] if is_leftover(name))
                names[:] = [name for name in names if not is_leftover(name)]


def remove_leftovers(folders: list[Path] | None = None, temporary: Path | None = None) -> list[Path]:
    """Remove what killed writers left in `folders` (default: the outputs, cache and data folders; see
    `_leftovers_in`) and in the temporary folder, when it is older than `STALE_SECONDS` and unlocked; returns what
    was removed."""
    now = time.time()
    folders = folders if folders is not None else [paths.outputs_root(), paths.cache_root(),
                                                    paths.default_data_dir().parent]
    removed = [path for folder in dict.fromkeys(folders) for path in _leftovers_in(folder) if _stale(path, now)]
    removed += _temporary_leftovers(temporary or Path(tempfile.gettempdir()), now)
    for path in removed:
        marks.remove(path)
    return removed


def _empty_kind_folders(cache: Path) -> list[Path]:
    """The cache's marked `features/`, `images/` and `pool/` folders that hold nothing but their marker."""
    folders = [cache / kind for kind in paths.CACHE_KINDS if marks.is_marked(cache / kind)]
    return [folder for folder in folders if {child.name for child in folder.iterdir()} <= {marks.MARKER_FILE}]


def clean() -> int:
    """`make clean`: the runs and caches the suite made, in the outputs and cache folders wherever they are (see
    the module docstring). A folder without the suite's marker is refused with one line; a run folder that a runner
    is working on, and a cache entry a running stage uses, are kept, and said so. Returns how many entries it
    removed."""
    outputs, cache = paths.outputs_root(), paths.cache_root()
    removed = remove_leftovers([outputs, cache], temporary=Path(tempfile.gettempdir()))
    # The cache's own, when the cache is the outputs folder: cleaned entry by entry, keeping those in use.
    cache_owned = {cache_commands.owner(members[0]) for members in cache_commands.entries().values()}
    cache_owned |= {cache, *(cache / kind for kind in paths.CACHE_KINDS)}
    cleaning = cache_commands.clean(everything=True)
    removed += _empty_kind_folders(cache)
    recorded = marks.recorded_files(outputs)
    children = sorted(outputs.iterdir()) if outputs.is_dir() else []
    held: list[int] = []  # The run locks taken: a runner that starts meanwhile stops at once, naming this command.
    for child in [child for child in children if child not in cache_owned and not child.name.startswith(".")]:
        if child.name in recorded and child.is_file() and not child.is_symlink():
            removed.append(child)
        elif not marks.is_marked(child):
            cleaning.refused.append(child)
        elif (lock := _run_lock(child)) is None:
            print(f"Kept {child}: a runner is working on it.", flush=True)
        else:
            held += [lock] if lock >= 0 else []
            removed.append(child)
    removed += [outputs / marks.FILES_RECORD] if recorded else []
    try:
        for path in removed:
            marks.remove(path)
    finally:
        for lock in held:
            locks.release(lock)
    for line in cleaning.kept_lines():
        print(line, flush=True)
    return len(removed) + cleaning.removed


def _run_lock(folder: Path) -> int | None:
    """The run lock of `folder` taken without waiting, held while the folder is removed (-1: a folder no runner
    ever locked); None when a runner holds it."""
    lock_file = folder / locks.RUN_LOCK_FILE
    if not lock_file.exists():
        return -1
    return locks.try_lock(lock_file)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments != ["clean"]:
        print("Usage: python -m lib.run.housekeeping clean", file=sys.stderr)
        return 2
    removed = clean()
    print(f"Removed {removed} runs, caches and other entries made by the suite.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
