"""Which photos a run reports on without having chosen anything on them: the `report_split` parameter.

The validation photos choose each stage's best epoch, its temperature and the stage the next one starts from, so an
accuracy measured on them is optimistic. Every run therefore also scores photos no choice was made on:

- `test`: the data set's own `test/` folder (an error when there is none);
- `held_out`: half of the validation photos, held back from every choice. Within each class the photos are ranked
  by the SHA-256 of `HELD_OUT_KEY` and the file's name, and the first half of that ranking (the smaller half when a
  class has an odd count) is held out: the same photos on every machine and every seed, whatever order the files
  are listed in. The other half are the validation photos the stage chooses on;
- `auto` (the default): `test` when the photos have a `test/` folder, else `held_out`;
- `none`: validation photos only, as the course notes did.

Inside a stage the held-back photos play the part of the test split (`image_sets["test"]`, the `test_*` keys of
`metrics.json`); `metrics.json` says which photos they are (`report_split`, `split_photos`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lib import SuiteError

CHOICES = ("auto", "test", "held_out", "none")
HELD_OUT_KEY = "vgg16-suite held-out photos 1"
# Each scored split's photos in words, before their count; also what a stage from before `split_photos` was recorded
# is shown with.
UNCOUNTED = {"validation": "validation photos (these chose the best epoch)",
             "test": "test photos (no choice made on them)"}


def resolve(choice: str, has_test: bool) -> str:
    """The report split a run uses (`test`, `held_out` or `none`) for the parameter value `choice`, given whether the
    photos have a `test/` folder."""
    if choice not in CHOICES:
        raise SuiteError(f"report_split = {choice!r} is not one of {', '.join(CHOICES)}.")
    if choice == "auto":
        return "test" if has_test else "held_out"
    if choice == "test" and not has_test:
        raise SuiteError("report_split = 'test', but the photos have no test/ folder (test/cats, test/dogs): add one, "
                         "or set report_split=auto to hold back half of the validation photos instead.")
    return choice


def held_out_mask(files: list[str] | list[Path], labels: np.ndarray) -> np.ndarray:
    """Which of the validation photos `files` (with their `labels`) are held back from every choice: per class, the
    first half of the files ranked by the SHA-256 of `HELD_OUT_KEY` and the file's name."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = sorted(members, key=lambda index: hashlib.sha256(
            f"{HELD_OUT_KEY}|{Path(files[index]).name}".encode()).hexdigest())
        mask[ranks[: len(members) // 2]] = True
    return mask


def part_fingerprint(fingerprint: str, split: str) -> str:
    """The fingerprint of one half of the validation photos (`split`: `validation` for the half that chooses, `test`
    for the held-out one), from the whole folder's: the key their caches are kept under."""
    part = "held-out half" if split == "test" else "choosing half"
    return hashlib.sha256(f"{fingerprint}|{part}".encode()).hexdigest()


def counts(split_counts: dict[str, int], choice: str) -> dict[str, int]:
    """Photos per split a stage scores under `choice` (the forecast's count; `held_out` moves about half of the
    validation photos to the report split, by class as `held_out_mask` does, here without the classes: n // 2)."""
    found = dict(split_counts)
    chosen = resolve(choice, "test" in found)
    if chosen == "held_out":
        found["test"] = found.get("validation", 0) // 2
        found["validation"] = found.get("validation", 0) - found["test"]
    elif chosen == "none":
        found.pop("test", None)
    return found


def split_photos(chosen: str, images: dict[str, int]) -> dict[str, str]:
    """What each scored split's photos are, in words, for `metrics.json` and every page: how many, where from, and
    whether they chose anything."""
    counted = {split: f"{images[split]} " for split in ("validation", "test") if images.get(split) is not None}
    words = {split: counted.get(split, "") + text for split, text in UNCOUNTED.items()}
    if chosen == "held_out":
        words["validation"] = (counted.get("validation", "") + "validation photos (these chose the best epoch; the "
                               "other half of the validation folder is held out)")
        words["test"] = counted.get("test", "") + "held-out photos (half of the validation folder: no choice made on " \
                                                  "them)"
    elif chosen == "none":
        words.pop("test")
    return words


def photos_of(metrics: dict[str, Any], split: str) -> str:
    """The words for a stage's `split` photos (`split_photos`), from its metrics."""
    return (metrics.get("split_photos") or UNCOUNTED).get(split, f"{split} photos")


def name_of(metrics: dict[str, Any]) -> str:
    """What a stage's report split is called in a sentence: `held-out` for half of the validation folder, else
    `test`."""
    return "held-out" if metrics.get("report_split") == "held_out" else "test"
