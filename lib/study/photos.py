"""The cats-vs-dogs photos of a stage: finding the data set (a folder, the download, or the synthetic set), and
decoding each split once.

Every image is decoded and resized once, then kept in memory (or in a disk store, `lib.study.imagestore`) and in a
disk cache under `paths.cache_root()` (never inside the dataset folder, which may be read-only), so no epoch decodes
a JPEG again. The layout and the listing of the files are `lib.study.listing`'s.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from lib import SuiteError
from lib.core import params, paths
from lib.core import report_split as report_split_rules
from lib.study import cache, decode, distribute, imagestore, listing, photo_download, synthetic

# Bump when decoding or resizing changes, so cached decoded images are not reused.
_DECODER_VERSION = "pil-bilinear-rgb-2"  # 2: photos over decode.MAX_PIXELS are skipped (JPEGs decoded smaller).


@dataclasses.dataclass
class ImageSet:
    """Decoded images of one split: uint8 `(n, size, size, 3)`, labels `(n,)`, and their origin."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    skipped: list[tuple[str, str]]
    fingerprint: str
    folder: str = ""  # The split's folder, where it differs from `split` (the held-out half of validation/).

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        """The split in words: `held-out` for the held-back half of the validation photos, else its split."""
        return "held-out" if self.split == "test" and self.folder == "validation" else self.split

def resolve_data_dir(data_dir: str = "") -> Path:
    """Find the dataset root: `DATA_DIR` if set, else `data_dir`; `synthetic` builds the tiny test set.

    Empty means the project's own download folder, fetched from the public address when it is missing.
    A path that does not exist is an error (it is never silently replaced by a download).
    """
    chosen = params.overridden("data_dir", data_dir)
    if chosen.split(":")[0] == synthetic.SYNTHETIC_VALUE:
        sized = synthetic.synthetic_of_size(chosen) if ":" in chosen else (paths.synthetic_data_dir(),)
        root = synthetic.make_synthetic_dataset(*sized)
        cache.note_used(root)  # Generated into the cache: an entry of its own.
        return root
    if not chosen:
        target = paths.default_data_dir()
        if not (target / "train").is_dir():
            photo_download.download_photos(target)
        return target
    root = Path(chosen).expanduser().resolve()
    if not root.is_dir():
        raise SuiteError(
            f"Dataset folder {root} does not exist. Set the data_dir parameter or the DATA_DIR "
            "environment variable to a folder holding train/cats, train/dogs, validation/cats and "
            "validation/dogs (for example DATA_DIR=~/data/cats_and_dogs_small)."
        )
    return root

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
    split_listing = listing.list_split(root, split)
    files, labels = split_listing.files, split_listing.labels
    if max_images_per_class:
        keep = np.concatenate([np.flatnonzero(labels == label)[:max_images_per_class] for label in (0, 1)])
        files, labels = [files[i] for i in keep], labels[keep]
    fingerprint = listing.fingerprint_files(files, root)
    cache_file = image_cache_file(split, fingerprint, image_size)
    errors: dict[str, str] = {}

    def decode_all() -> dict[str, np.ndarray]:
        images, ok = decode.decode_files(files, image_size, errors, label=split, cached=use_cache)
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
    skipped = list(split_listing.skipped) + [(str(path), errors.get(str(path), "could not be decoded"))
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

def load_image_sets(
    root: str | os.PathLike, image_size: int, max_images_per_class: int = 0, image_store: str = "memory",
    report_split: str = "auto",
) -> dict[str, ImageSet]:
    """Load the splits a stage uses, in memory or in a disk store (`image_store`: memory, disk, or auto by the memory
    available; see `lib.study.imagestore`): train, validation, and the photos it reports on without choosing on them
    (`report_split`, `lib.core.report_split`): `test` from the test/ folder, or the held-out half of validation/."""
    splits = listing.available_splits(Path(root))
    chosen = report_split_rules.resolve(report_split, "test" in splits)
    splits = [split for split in splits if split != "test" or chosen == "test"]
    if image_store != "memory":
        photos = sum(len(listing.list_split(Path(root), split).files) for split in splits)
        if max_images_per_class:
            photos = min(photos, 2 * max_images_per_class * len(splits))
        image_store = imagestore.choose(image_store, photos, image_size)
        image_store = "disk" if distribute.chief_decides(image_store == "disk") else "memory"  # The chief's.
    image_sets = {split: load_split(root, split, image_size, max_images_per_class, image_store=image_store)
                  for split in splits}
    if chosen == "held_out":
        image_sets["validation"], image_sets["test"] = hold_out(image_sets["validation"])
    return image_sets


def hold_out(validation: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The validation photos split in two (`report_split.held_out_mask`): those that choose, and those held back."""
    held = report_split_rules.held_out_mask(validation.files, validation.labels)

    def part(keep: np.ndarray, split: str) -> ImageSet:
        return ImageSet(split, validation.images[keep], validation.labels[keep],
                        [path for path, kept in zip(validation.files, keep) if kept],
                        validation.skipped if split == "validation" else [],
                        report_split_rules.part_fingerprint(validation.fingerprint, split), "validation")

    if not held.any() or held.all():
        raise SuiteError(f"report_split = 'held_out' needs at least two validation photos of each class; there are "
                         f"{len(validation)}. Add photos, or set report_split=none.")
    return part(~held, "validation"), part(held, "test")

def describe(image_sets: dict[str, ImageSet]) -> dict[str, str]:
    """Photos per split, for display, by the split's name in words (`ImageSet.name`: the held-out half of the
    validation photos is `held-out`): `{"train": "2000 images (1000 dogs)", ...}`."""
    return {image_set.name: f"{len(image_set)} images ({int(image_set.labels.sum())} dogs)"
            for image_set in image_sets.values()}
