"""What killed processes leave behind, and `make clean`.

    python -m lib.run.housekeeping clean     (make clean)

A process killed while writing leaves its temporary files and folders: `.<name>.<random>.partial<suffix>` files
(`lib.core.storage.atomic_path`), `.unpack-*` and `.synthetic-*` folders (the data set being unpacked or drawn),
`.predictions-*` folders (`make predict`), and `vgg16-kernel-*` and `vgg16-worker-*` folders in the temporary
folder (a kernel's sockets, a worker's discarded writes). A runner removes those at its start when they are older
than `STALE_SECONDS` and no live process holds their lock (`lib.core.locks`: every writer holds one on what it is
building, and the kernel drops it when the writer dies). The temporary folder is shared with other checkouts of
the suite, whose versions may not lock: a kernel's folder there is removed only when no socket in it is open
(Linux lists them in /proc/net/unix), and a worker's only after `TEMPORARY_STALE_SECONDS`. `make clean` removes
the runs and caches: all of the project's own `outputs/`; in a folder named by `OUTPUTS_DIR` or `CACHE_DIR`, only
what the suite put there.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lib.core import locks, paths

STALE_SECONDS = 300
TEMPORARY_STALE_SECONDS = 24 * 3600  # Far longer than a worker's single discarded write takes.
# Names of what a killed writer leaves, in the run, cache and data folders.
LEFTOVER_PREFIXES = (".unpack-", ".synthetic-", ".predictions-")
# What the suite writes into OUTPUTS_DIR besides run folders, and into CACHE_DIR.
OUTPUTS_ENTRIES = ("cache", "bench", "scale", "pool-table", "compare.html", "compare.json")
CACHE_ENTRIES = ("images", "features", "pool", "synthetic_cats_and_dogs*", "bench-subset-*", "bench-synthetic-*")


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


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(folders: list[Path] | None = None, temporary: Path | None = None) -> list[Path]:
    """Remove what killed writers left in `folders` (default: the outputs, cache and data folders) and in the
    temporary folder, when it is older than `STALE_SECONDS` and unlocked; returns what was removed."""
    now = time.time()
    folders = folders if folders is not None else [paths.outputs_root(), paths.cache_root(),
                                                    paths.default_data_dir().parent]
    removed = []
    for folder in dict.fromkeys(folders):
        for parent, names, files in os.walk(folder):
            for name in [*names, *files]:
                path = Path(parent) / name
                if is_leftover(name) and _stale(path, now):
                    _delete(path)
                    removed.append(path)
            names[:] = [name for name in names if not is_leftover(name)]
    for path in _temporary_leftovers(temporary or Path(tempfile.gettempdir()), now):
        _delete(path)
        removed.append(path)
    return removed


def _suite_entries(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The entries of `folder` that the suite made: those named in `names` (glob patterns), run folders (a
    manifest, or a stage's folder, inside), and leftovers."""
    from lib.core import records, stages

    found = [path for name in names for path in folder.glob(name)]
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.is_dir() and ((child / records.MANIFEST_FILE).is_file()
                               or any((child / stem).is_dir() for stem in stages.STEMS)):
            found.append(child)
        elif is_leftover(child.name):
            found.append(child)
    return sorted(set(found))


def clean() -> list[Path]:
    """`make clean`: the runs and caches. The project's own `outputs/` is emptied (but for `.gitkeep`); a folder
    that `OUTPUTS_DIR` or `CACHE_DIR` names loses only what the suite made there, in case it holds more. A run
    folder that a runner is working on is kept, and said so. Returns what was removed."""
    outputs, cache = paths.outputs_root(), paths.cache_root()
    if outputs == (paths.PROJECT_ROOT / "outputs").resolve():
        targets = [child for child in outputs.iterdir() if child.name != ".gitkeep"] if outputs.is_dir() else []
    else:
        targets = _suite_entries(outputs, OUTPUTS_ENTRIES)
    if outputs not in cache.parents:
        targets += _suite_entries(cache, CACHE_ENTRIES)
    removed = []
    for path in targets:
        if locks.is_held(path / locks.RUN_LOCK_FILE):
            print(f"Kept {path}: a runner is working on it.", flush=True)
            continue
        _delete(path)
        removed.append(path)
    return removed


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments != ["clean"]:
        print("Usage: python -m lib.run.housekeeping clean", file=sys.stderr)
        return 2
    removed = clean()
    print(f"Removed {len(removed)} runs, caches and other entries made by the suite.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
