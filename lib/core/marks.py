"""The marker that says a folder was made by this suite, and the removal that trusts nothing else.

Every folder the suite makes for itself (a run folder, a cache's `features/`, `images/` and `pool/`, a synthetic
photo set, a measurement's work folder) gets a small JSON file, `.suite-made`, naming the suite and what the
folder holds, written when the folder is made. `make clean`, `make clean-cache` and the runner's sweep of what
killed processes left remove only marked folders: a folder without the marker (a user's own, or one made by an
older version of the suite) is refused with one line. The files the suite writes loose in a folder it may not own
(`compare.html` in the outputs folder) are listed in that folder's `.suite-made-files` instead. Removal never
follows a link: a link is removed as a link, its target left as it was.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

MARKER_FILE = ".suite-made"
FILES_RECORD = ".suite-made-files"
SUITE = "vgg16 transfer-learning notebook suite"
# Folders are made under this prefix with their marker inside, then renamed into place (the sweep knows it).
MAKING_PREFIX = ".making-"
# The kinds of the folders that are cache entries of their own, at the top of the cache folder.
SYNTHETIC_PHOTOS = "synthetic photos"
PHOTO_LINKS = "benchmark photo links"
CACHE_FOLDER_KINDS = (SYNTHETIC_PHOTOS, PHOTO_LINKS)


def _payload(kind: str) -> dict[str, str]:
    return {"made_by": SUITE, "kind": kind}


def mark(folder: str | os.PathLike, kind: str) -> None:
    """Write the marker into `folder`, which this process has just made (atomically; not while discarding
    writes, `lib.core.storage.discard_writes`)."""
    from lib.core import storage  # Here: `make clean` reads markers with Python alone, before NumPy is installed.

    storage.write_json(Path(folder) / MARKER_FILE, _payload(kind))


def make_folder(folder: str | os.PathLike, kind: str) -> Path:
    """`folder`, made with its marker inside when it does not exist yet (made under a temporary name and renamed
    into place, so it never exists without its marker); an existing folder is left as it is, marked or not."""
    from lib.core import storage

    folder = Path(folder)
    if folder.is_dir() or not storage.writes_here():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=MAKING_PREFIX, dir=folder.parent))
    try:
        mark(building, kind)
        storage.apply_umask(building, folder=True)  # mkdtemp made it 0700.
        os.rename(building, folder)
    except OSError:  # Another process made it first.
        remove(building)
    return folder


def record_files(folder: str | os.PathLike, names: list[str]) -> None:
    """Add `names` to the record of the files the suite writes loose in `folder` (`FILES_RECORD`), a folder the
    suite may not own (the outputs folder's `compare.html`): `make clean` removes only the files recorded there."""
    from lib.core import storage

    known = set(recorded_files(folder))
    if not known.issuperset(names):
        storage.write_json(Path(folder) / FILES_RECORD, {"made_by": SUITE, "files": sorted(known.union(names))})


def recorded_files(folder: str | os.PathLike) -> list[str]:
    """The names of the files the suite recorded writing loose in `folder` (`record_files`)."""
    record = Path(folder) / FILES_RECORD
    try:
        payload = json.loads(record.read_text(encoding="utf-8")) if stat.S_ISREG(record.lstat().st_mode) else {}
        names = payload.get("files", []) if payload.get("made_by") == SUITE else []
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")]


def is_marked(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a real folder (not a link) holding the suite's marker (a regular file, not a link)."""
    folder = Path(folder)
    try:
        if not stat.S_ISDIR(folder.lstat().st_mode) or not stat.S_ISREG((folder / MARKER_FILE).lstat().st_mode):
            return False
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")).get("made_by") == SUITE
    except (OSError, ValueError, AttributeError):
        return False


def kind_of(folder: str | os.PathLike) -> str | None:
    """What a marked folder holds, as its marker says; None for a folder without the marker."""
    if not is_marked(folder):
        return None
    return str(json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8")).get("kind", ""))


def refusal(folders: list[Path]) -> str:
    """The one line that says `folders` were kept because the suite cannot prove it made them."""
    named = ", ".join(str(folder) for folder in folders[:5]) + (f" and {len(folders) - 5} more"
                                                                  if len(folders) > 5 else "")
    return (f"Kept {named}: not made by this suite (no {MARKER_FILE} marker). Older versions of the suite made no "
            "marker: remove what is yours to delete by hand (rm -r <folder>).")


def remove(path: str | os.PathLike) -> None:
    """Remove `path` without following links: a link or a file is unlinked, a real folder removed with everything
    in it (links inside removed as links, `shutil.rmtree` never follows them)."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(path.lstat().st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
