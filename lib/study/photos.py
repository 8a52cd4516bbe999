"""The cats-vs-dogs photos: finding or downloading them, checking the folders, decoding once, tf.data.

Class order is fixed (cats = 0, dogs = 1) whatever the order on disk. Every image is decoded and resized
once, then kept in memory and in a disk cache under `paths.cache_root()` (never inside the dataset
folder, which may be read-only), so no epoch decodes a JPEG again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lib import SuiteError
from lib.core import download, locks, marks, params, paths, storage
from lib.study import batches, cache, decode, distribute, imagestore

CLASS_NAMES = ("cats", "dogs")
SPLITS = ("train", "validation", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}
# Files that photo folders collect and that are no images: skipped silently, and counted.
HOUSEKEEPING_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
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
SYNTHETIC_VALUE = "synthetic"
# Bump when decoding or resizing changes, so cached decoded images are not reused.
_DECODER_VERSION = "pil-bilinear-rgb-2"  # 2: photos over decode.MAX_PIXELS are skipped (JPEGs decoded smaller).


@dataclasses.dataclass
class SplitListing:
    """The image files of one split, their labels, and what was skipped (path and reason)."""

    split: str
    files: list[Path]
    labels: np.ndarray
    skipped: list[tuple[str, str]]


@dataclasses.dataclass
class ImageSet:
    """Decoded images of one split: uint8 `(n, size, size, 3)`, labels `(n,)`, and their origin."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    skipped: list[tuple[str, str]]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_dir(data_dir: str = "") -> Path:
    """Find the dataset root: `DATA_DIR` if set, else `data_dir`; `synthetic` builds the tiny test set.

    Empty means the project's own download folder, fetched from the public address when it is missing.
    A path that does not exist is an error (it is never silently replaced by a download).
    """
    chosen = params.overridden("data_dir", data_dir)
    if chosen.split(":")[0] == SYNTHETIC_VALUE:
        sized = synthetic_of_size(chosen) if ":" in chosen else (paths.synthetic_data_dir(),)
        root = make_synthetic_dataset(*sized)
        cache.note_used(root)  # Generated into the cache: an entry of its own.
        return root
    if not chosen:
        target = paths.default_data_dir()
        if not (target / "train").is_dir():
            download_dataset(target)
        return target
    root = Path(chosen).expanduser().resolve()
    if not root.is_dir():
        raise SuiteError(
            f"Dataset folder {root} does not exist. Set the data_dir parameter or the DATA_DIR "
            "environment variable to a folder holding train/cats, train/dogs, validation/cats and "
            "validation/dogs (for example DATA_DIR=~/data/cats_and_dogs_small)."
        )
    return root


def synthetic_of_size(value: str) -> tuple[Path, dict[str, int]]:
    """`synthetic:N`: where a synthetic set of N photos goes, and its split sizes (half for training, a
    quarter each for validation and test), for measurements at scale."""
    try:
        photos = int(value.split(":", 1)[1])
    except ValueError:
        photos = 0
    if photos < 8:
        raise SuiteError(f"data_dir={value!r}: give the number of synthetic photos, at least 8 (synthetic:2000).")
    counts = {"train": photos // 2, "validation": photos // 4, "test": photos - photos // 2 - photos // 4}
    return paths.synthetic_data_dir().with_name(f"synthetic_cats_and_dogs_{photos}"), counts


def download_dataset(target: Path, urls: tuple[str, ...] = DATASET_URLS,
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


def _download_archive(archive: Path, urls: tuple[str, ...], target: Path) -> None:
    """Fetch the archive from the first address that answers, under a temporary name (`lib.core.download`)."""
    errors = []
    for url in urls:
        try:
            sha256 = download.fetch(url, archive, ("sha256", DATASET_SHA256) if DATASET_SHA256 else None)
            print(f"Downloaded {url} ({archive.stat().st_size / 1e6:.1f} MB, sha256 {sha256}).", flush=True)
            return
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
                found = len(list_split(train.parent, split).files)
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


def _class_folders(split_dir: Path) -> dict[str, Path]:
    return {child.name.lower(): child for child in split_dir.iterdir() if child.is_dir()}


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
            if not path.is_file():
                continue
            if path.name.lower() in HOUSEKEEPING_FILES or path.name.startswith("._"):
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


def image_cache_file(split: str, fingerprint: str, image_size: int) -> Path:
    """Where the decoded images of a split (by its files' fingerprint) are cached at `image_size`."""
    key = hashlib.sha256(f"{fingerprint}|{image_size}|{_DECODER_VERSION}".encode()).hexdigest()[:24]
    return paths.cache_root() / "images" / f"{split}-{image_size}px-{key}.npz"


def load_split(
    root: str | os.PathLike, split: str, image_size: int, max_images_per_class: int = 0,
    use_cache: bool = True, image_store: str = "memory",
) -> ImageSet:
    """Decode one split to an in-memory `ImageSet`, from the disk cache when it holds the same images; with
    `image_store="disk"`, to a disk store read as needed (`lib.study.imagestore`).

    A file that cannot be decoded (corrupt, truncated, not really an image) is skipped with a warning and
    listed in `skipped`; the run goes on with the others.
    """
    root = Path(root)
    listing = list_split(root, split)
    files, labels = listing.files, listing.labels
    if max_images_per_class:
        keep = np.concatenate([np.flatnonzero(labels == label)[:max_images_per_class] for label in (0, 1)])
        files, labels = [files[i] for i in keep], labels[keep]
    fingerprint = fingerprint_files(files, root)
    cache_file = image_cache_file(split, fingerprint, image_size)
    errors: dict[str, str] = {}

    def decode_all() -> dict[str, np.ndarray]:
        images, ok = decode.decode_files(files, image_size, errors, label=split)
        if not ok.any():
            raise SuiteError(f"No image in {root / split} could be decoded: check that they are photos.")
        return {"images": images[ok], "ok": ok}

    if use_cache and image_store == "disk":
        images, ok = imagestore.load(files, image_size, errors, cache_file, split)
        arrays = {"images": images, "ok": ok}
    elif use_cache:
        arrays, _ = cache.cached_arrays(cache_file, decode_all, usable=lambda arrays: len(arrays["ok"]) == len(files),
                                          chief_computes=True)  # In a cluster the others read what it decoded.
    else:
        arrays = decode_all()
    ok = arrays["ok"]
    skipped = list(listing.skipped) + [(str(path), errors.get(str(path), "could not be decoded"))
                                       for path, good in zip(files, ok) if not good]
    _report_skipped(split, skipped)
    return ImageSet(split, arrays["images"], labels[ok], [str(path) for path, good in zip(files, ok) if good],
                    skipped, fingerprint)


def _report_skipped(split: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        print(f"WARNING: skipped {len(skipped)} file(s) in {split}:", file=sys.stderr, flush=True)
        for path, reason in skipped[:10]:
            print(f"  {path}: {reason}", file=sys.stderr, flush=True)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr, flush=True)


def load_dataset(
    root: str | os.PathLike, image_size: int, max_images_per_class: int = 0, image_store: str = "memory"
) -> dict[str, ImageSet]:
    """Load every available split (train, validation, and test when present), in memory or in a disk store
    (`image_store`: memory, disk, or auto by the memory available; see `lib.study.imagestore`)."""
    splits = available_splits(Path(root))
    if image_store != "memory":
        photos = sum(len(list_split(Path(root), split).files) for split in splits)
        if max_images_per_class:
            photos = min(photos, 2 * max_images_per_class * len(splits))
        image_store = imagestore.choose(image_store, photos, image_size)
        image_store = "disk" if distribute.chief_decides(image_store == "disk") else "memory"  # The chief's.
    return {split: load_split(root, split, image_size, max_images_per_class, image_store=image_store)
            for split in splits}


def describe(image_sets: dict[str, ImageSet]) -> dict[str, str]:
    """Photos per split, for display: `{"train": "2000 images (1000 dogs)", ...}`."""
    return {split: f"{len(image_set)} images ({int(image_set.labels.sum())} dogs)"
            for split, image_set in image_sets.items()}


def make_tf_dataset(inputs: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                    seed: int = 0) -> batches.BatchStream:
    """Batch inputs (images or features, in memory or in a disk store) into an endless stream of training batches
    (`lib.study.batches`): with `shuffle`, each pass in a new order drawn from `(seed, pass)`, so that a resumed
    stage can start the stream where it stopped."""
    import tensorflow as tf

    labels = labels.astype("float32")
    on_disk = isinstance(inputs, imagestore.DiskImages)
    shape = (None, inputs.size, inputs.size, 3) if on_disk else (None, *inputs.shape[1:])
    dtype = tf.uint8 if on_disk else tf.as_dtype(inputs.dtype)
    return batches.BatchStream(len(labels), batch_size, seed, shuffle,
                               lambda chosen, draws: (inputs[chosen], labels[chosen]),
                               (tf.TensorSpec(shape, dtype), tf.TensorSpec((None,), tf.float32)),
                               sort_batches=on_disk and shuffle)


def make_synthetic_dataset(root: Path, counts: dict[str, int] | None = None, size: int = 64) -> Path:
    """Generate (once) a tiny two-class image set in the dataset layout, for smoke runs and tests.

    "Cats" are warm images with round blobs, "dogs" cool images with bars: a pattern that even a
    randomly initialised VGG16 plus a small head can learn a little, so smoke runs exercise real training.
    """
    counts = counts or {"train": 24, "validation": 12, "test": 12}
    if (root / "done").is_file():
        return root
    if root.exists() and not marks.is_marked(root):
        raise SuiteError(f"{root} is in the way of the synthetic photo set and was not made by this suite: move it, "
                         "or set CACHE_DIR to another folder.")
    marks.remove(root)  # Left half-built by an interrupted run.
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    with locks.holding(building):
        marks.mark(building, marks.SYNTHETIC_PHOTOS)  # First: even a half-built set says who made it.
        _draw_synthetic(building, counts, size)
    storage.apply_umask(building, folder=True)  # mkdtemp made it 0700.
    try:
        os.replace(building, root)
        storage.sync_folder(root.parent)
    except OSError:  # Another process finished first; its copy is identical.
        shutil.rmtree(building, ignore_errors=True)
    return root


def _draw_synthetic(building: Path, counts: dict[str, int], size: int) -> None:
    """Draw the synthetic photos into `building` (see `make_synthetic_dataset`), and mark it done."""
    generator = np.random.default_rng(1234)
    for split, count in counts.items():
        for label, name in enumerate(CLASS_NAMES):
            folder = building / split / name
            folder.mkdir(parents=True)
            for index in range(count // 2):
                base = np.array([200, 120, 60]) if label == 0 else np.array([60, 120, 200])
                pixels = np.clip(base + generator.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                draw = ImageDraw.Draw(image)
                for _ in range(3):
                    x, y = generator.integers(0, size - 16, 2)
                    extent = int(generator.integers(8, 16))
                    if label == 0:
                        draw.ellipse([x, y, x + extent, y + extent], fill=(250, 230, 90))
                    else:
                        draw.rectangle([x, 0, x + extent // 3, size], fill=(20, 40, 90))
                image.save(folder / f"{name[:-1]}.{index}.jpg", quality=90)
    (building / "done").write_text("complete\n")


def main() -> int:
    """`make data`: find or download the dataset, check its layout, print the image count per split."""
    try:
        root = resolve_data_dir()
        print(root)
        for split in available_splits(root):
            listing = list_split(root, split)
            print(f"  {split}: {len(listing.files)} images ({int(listing.labels.sum())} dogs), "
                  f"{len(listing.skipped)} other files skipped")
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
