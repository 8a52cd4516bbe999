"""The photos of a data set on disk: the folder layout (`<split>/cats`, `<split>/dogs`), which files are photos
and which are skipped (with why), the splits present, and a fingerprint of the photos' contents.

Class order is fixed (cats = 0, dogs = 1) whatever the order on disk. Nothing here opens a photo's pixels.
"""
from __future__ import annotations

import dataclasses
import hashlib
import stat
from pathlib import Path

import numpy as np

from lib import SuiteError
from lib.core import storage

CLASS_NAMES = ("cats", "dogs")
SPLITS = ("train", "validation", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}  # Decoded only as these formats.
# Files that photo folders collect and that are no images: skipped silently, and counted.
HOUSEKEEPING_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclasses.dataclass
class SplitListing:
    """The image files of one split, their labels, and what was skipped (path and reason)."""

    split: str
    files: list[Path]
    labels: np.ndarray
    skipped: list[tuple[str, str]]


def _class_folders(split_dir: Path) -> dict[str, Path]:
    return {child.name.lower(): child for child in split_dir.iterdir() if child.is_dir()}


def special_file(path: Path) -> str | None:
    """What `path` (no folder) is when it is no file to read, in words: a link to nothing, a named pipe (opening one
    waits for a writer, for ever), a socket or a device; None for a file. Found without opening it."""
    try:
        mode = path.stat().st_mode
    except OSError as error:  # A link whose target is gone, or a loop of links.
        return f"a link to nothing ({error.strerror.lower()})"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket", stat.S_ISBLK: "a device",
             stat.S_ISCHR: "a device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"{kind}, not a photo (never opened)"


def list_split(root: Path, split: str) -> SplitListing:
    """List the image files of `root/split/{cats,dogs}` with labels, checking the folder layout.

    A missing split or class folder, an extra class folder, or a class with no images is an error that
    names the folder; non-image files are skipped and reported.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise SuiteError(
            f"Split folder {split_dir} is missing: the dataset needs train/ and validation/ "
            "(test/ is optional), each with cats/ and dogs/ inside."
        )
    folders = _class_folders(split_dir)
    extra = sorted(set(folders) - set(CLASS_NAMES))
    if extra:
        raise SuiteError(
            f"{split_dir} holds class folders {extra} besides cats/ and dogs/: this suite is a two-class "
            "classifier. Move the extra folders out of the dataset."
        )
    files: list[Path] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    for label, name in enumerate(CLASS_NAMES):
        if name not in folders:
            raise SuiteError(f"Class folder {split_dir / name} is missing: put the {name} photos there.")
        found = []
        for path in sorted(folders[name].rglob("*")):
            if path.is_dir():
                continue
            if kind := special_file(path):
                skipped.append((str(path), kind))
            elif path.name.lower() in HOUSEKEEPING_FILES or path.name.startswith("._"):
                skipped.append((str(path), "not an image (system file)"))
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((str(path), f"not an image ({path.suffix or 'no'} extension)"))
            elif path.stat().st_size == 0:
                skipped.append((str(path), "empty file"))
            else:
                found.append(path)
        if not found:
            raise SuiteError(
                f"Class folder {folders[name]} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
        files.extend(found)
        labels.extend([label] * len(found))
    return SplitListing(split, files, np.asarray(labels, dtype=np.int32), skipped)


def available_splits(root: Path) -> list[str]:
    """The splits present under `root`: train and validation (required), and test when it exists."""
    return [split for split in SPLITS if split != "test" or (Path(root) / "test").is_dir()]


def fingerprint_files(files: list[Path], root: Path) -> str:
    """SHA-256 over the relative paths and contents of `files`: changes when any image changes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(bytes.fromhex(storage.file_sha256(path)))
    return digest.hexdigest()
