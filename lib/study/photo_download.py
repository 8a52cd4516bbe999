"""Downloading TensorFlow's public `cats_and_dogs_filtered.zip` and unpacking it into place, checked (its zip CRCs,
its layout, its image counts, room on the disk) so that an interrupted or wrong download never looks like the data
set (`lib.core.download` fetches the archive).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from lib import SuiteError
from lib.core import download, locks, storage
from lib.study import listing

DATASET_URLS = (
    "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
    "https://download.mlcc.google.com/mledu-datasets/cats_and_dogs_filtered.zip",
)
EXPECTED_COUNTS = {"train": 2000, "validation": 1000}
ARCHIVE_NAME = "cats_and_dogs_filtered.zip"
# No checksum of this archive is published (none in TensorFlow's tutorials, Keras or TensorFlow Datasets), so a
# download is checked by the CRC of every member of the zip and by the image counts. Set its sha256 here, once
# known, and an archive that differs is refused.
DATASET_SHA256: str | None = None
# The archive is 68 MB: a server that announces or sends more than this is not sending it. A slow connection still
# has an hour for it (68 MB at 20 kB/s).
DATASET_MAX_BYTES = 256 << 20
DATASET_DEADLINE_SECONDS = 3600


def download_photos(target: Path, urls: tuple[str, ...] = DATASET_URLS,
                     expected_counts: dict[str, int] | None = None) -> Path:
    """Download and unpack TensorFlow's public `cats_and_dogs_filtered.zip` into `target`.

    Tries each known address in turn; offline, stops with a message naming what was tried and how to point
    `DATA_DIR` at a local copy. The archive is downloaded under a temporary name and kept in `downloads/` beside
    `target` only when whole; an archive found damaged (an interrupted download of an older version), or that
    turns out not to be the data set, is removed with a message saying so. It is unpacked beside `target` and
    renamed into place, so an interrupted run never leaves what looks like a data set; two runs downloading at once
    each end with the same whole data set.
    """
    archive = target.parent / "downloads" / ARCHIVE_NAME
    problem = archive_problem(archive) if archive.is_file() else None
    if problem:
        storage.remove(archive)
        print(f"The dataset archive {archive} was damaged ({problem}): removed; downloading it again.", flush=True)
    if not archive.is_file():
        _download_archive(archive, urls, target)
        problem = archive_problem(archive)
        if problem:
            storage.remove(archive)
            raise SuiteError(f"The downloaded dataset archive was damaged ({problem}) and was removed. Run the same "
                             "command again to download it again, or point DATA_DIR at a local copy.")
    _check_room_to_unpack(archive, target)
    try:
        _unpack(archive, target, expected_counts or EXPECTED_COUNTS)
    except SuiteError as error:
        storage.remove(archive)
        raise SuiteError(f"{error} The archive {archive} was removed: run the same command again to download it "
                         "again, or point DATA_DIR at a local copy with train/ and validation/.") from None
    return target


def archive_problem(archive: Path) -> str | None:
    """What is wrong with a downloaded dataset archive (not a whole zip, a member whose CRC fails, a sha256 other than
    `DATASET_SHA256`), or None."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            broken = bundle.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"{type(error).__name__}: {error}"
    if broken:
        return f"{broken} fails its CRC check"
    if DATASET_SHA256 and storage.file_sha256(archive) != DATASET_SHA256:
        return f"its sha256 is not the published {DATASET_SHA256}"
    return None


def _check_room_to_unpack(archive: Path, target: Path) -> None:
    """A `SuiteError` naming the fix, before anything is unpacked, when `target`'s disk has no room for the
    archive's members (their uncompressed sizes, plus a margin); the archive is kept for the next try."""
    with zipfile.ZipFile(archive) as bundle:
        unpacked = sum(member.file_size for member in bundle.infolist())
    storage.check_free_space(target.parent, unpacked, f"unpacking {archive.name} (kept for the next try)")


def _download_archive(archive: Path, urls: tuple[str, ...], target: Path) -> None:
    """Fetch the archive from the first address that answers, under a temporary name (`lib.core.download`)."""
    errors = []
    for url in urls:
        try:
            sha256 = download.fetch(url, archive, ("sha256", DATASET_SHA256) if DATASET_SHA256 else None,
                                    deadline_seconds=DATASET_DEADLINE_SECONDS, max_bytes=DATASET_MAX_BYTES)
            print(f"Downloaded {url} ({archive.stat().st_size / 1e6:.1f} MB, sha256 {sha256}).", flush=True)
            return
        except SuiteError as error:
            if not isinstance(error, download.DownloadFailed):
                raise  # No room on the disk: another address would not help.
            errors.append(f"{url}: {error}")
        except Exception as error:  # urllib raises several types for one failure; each is reported.
            errors.append(f"{url}: {type(error).__name__}: {error}")
    raise SuiteError(
        "No dataset found and the download failed (offline?). Tried:\n  " + "\n  ".join(errors)
        + "\nPoint DATA_DIR (or the data_dir parameter) at a local copy with train/ and validation/ folders of "
        f"cats/ and dogs/, or place the unpacked archive at {target}."
    )


def _unpack(archive: Path, target: Path, expected_counts: dict[str, int]) -> None:
    """Unpack `archive` into a folder beside `target`, check it holds the data set, and rename it into place."""
    unpack_dir = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with locks.holding(unpack_dir):
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(unpack_dir)
            train = next(unpack_dir.glob("**/train"), None)
            if train is None:
                raise SuiteError(f"The dataset archive holds no train/ folder: it is not {ARCHIVE_NAME}.")
            for split, expected in expected_counts.items():
                found = len(listing.list_split(train.parent, split).files)
                if found != expected:
                    raise SuiteError(f"Downloaded dataset has {found} {split} images, expected {expected}.")
            storage.apply_umask(train.parent, folder=True)  # mkdtemp made 0700 what may be the unpacked root.
            try:
                os.replace(train.parent, target)
            except OSError:
                if not (target / "train").is_dir():
                    raise
                # Another run unpacked the same archive first: its copy is the same.
            storage.sync_folder(target.parent)
    finally:
        shutil.rmtree(unpack_dir, ignore_errors=True)
