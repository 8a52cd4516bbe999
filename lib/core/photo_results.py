"""Each stage's answer on each scored photo, and each stage against the one before it on the same photos.

A stage writes `photo_results.json` into its folder: per scored split (validation, and test where the photos have
one), one row per photo with its file name inside the split's folder (`cats/cat.1000.jpg`, as `make predict` names a
photo inside the folder it is given), its label (0 cat, 1 dog), the calibrated P(dog) and whether the stage got it
right. From stage 2 on, the stage compares itself with the stage before it on the photos both scored, matched by
file name (`lib.core.uncertainty.compare`: fixed, broke, the difference with its 95% interval, the exact McNemar
p-value), and keeps the result in its `metrics.json` as `compared_with_previous`. The notebook's closing cell prints
`conclusion`, computed from those numbers, never typed in advance.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lib.core import records, report_split, stages, storage, uncertainty

PHOTO_RESULTS_FILE = "photo_results.json"


def write(folder: str | os.PathLike, results: dict[str, list[dict[str, Any]]]) -> Path:
    """Write a stage's `photo_results.json` atomically: per split, rows `{file, label, p_dog, right}`, one a line."""
    splits = [json.dumps(split) + ": [\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]"
              for split, rows in results.items()]
    return storage.write_text(Path(folder) / PHOTO_RESULTS_FILE, "{\n" + ",\n".join(splits) + "\n}\n")


def read(folder: str | os.PathLike) -> dict[str, list[dict[str, Any]]] | None:
    """A stage folder's per-photo results, or None where it has none (a stage from before they were written) or
    they cannot be read."""
    path = Path(folder) / PHOTO_RESULTS_FILE
    try:
        found = storage.read_json(path)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def compare_split(before: list[dict[str, Any]], after: list[dict[str, Any]], what: str, split: str,
                  photos: str = "") -> dict[str, Any]:
    """`after` (this stage's rows of one split) against `before` (the earlier stage's), matched by file name: the
    `uncertainty.PairedComparison` record, which photos (`photos`: in words, `lib.core.report_split.split_photos`),
    the sentence, and where the two stages did not score the same photos, a `note` saying so (the comparison is then
    on the photos both scored)."""
    earlier_flags, now_flags = matched_flags(before, after)
    comparison = uncertainty.compare(earlier_flags, now_flags)
    photos = photos or report_split.UNCOUNTED.get(split, f"{split} photos")
    record = {**comparison.record(), "split": split, "photos": photos, "sentence": comparison.sentence(what)}
    if len(earlier_flags) != len(before) or len(now_flags) != len(after):
        record["note"] = (f"The two stages scored different {split} photos ({len(before)} before, {len(after)} now): "
                          f"compared on the {len(now_flags)} both scored.")
    return record


def matched_flags(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> tuple[list[bool], list[bool]]:
    """The right-or-wrong flags of two stages' rows of one split on the photos both scored, matched by file name, in
    `after`'s order: the pairs a paired comparison counts."""
    earlier = {row["file"]: bool(row["right"]) for row in before}
    now = {row["file"]: bool(row["right"]) for row in after}
    shared = [name for name in now if name in earlier]
    return [earlier[name] for name in shared], [now[name] for name in shared]


def compare_stages(stage: stages.Stage, run_folder: str | os.PathLike, results: dict[str, list[dict[str, Any]]],
                   photos: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """This stage's per-photo `results` against those of the stage before it in `run_folder`, per split both scored
    (`photos`: each split's photos in words); {} for the first stage, or where the earlier stage left no per-photo
    results or has not completed (its results are then an older attempt's)."""
    folder = Path(run_folder) / (stage.previous or "")
    if not stage.previous or not (folder / records.METRICS_FILE).is_file():
        return {}
    earlier = read(folder) or {}
    return {split: compare_split(earlier[split], rows, what_changed(stage), split, (photos or {}).get(split, ""))
            for split, rows in results.items() if earlier.get(split)}


def what_changed(stage: stages.Stage) -> str:
    """What a comparison measures, as its sentence begins: `fine tuning (stage 3 against stage 2)`."""
    return f"{stage.title.lower()} (stage {stage.number} against stage {stage.number - 1})"


def _comparison(record: dict[str, Any]) -> uncertainty.PairedComparison:
    low, high = record["interval_95"]
    return uncertainty.PairedComparison(record["fixed"], record["broke"], record["total"], record["difference"],
                                        low, high, record["mcnemar_exact_p"])


def conclusion(metrics: records.Metrics) -> str:
    """What this run found, from its own numbers: the stage's accuracies with their intervals, then from stage 2 on what
    it changed against the stage before it on each split both scored (held-out or test photos first: they chose
    nothing) and
    whether that is distinguishable from no change on those photos."""
    stage = stages.get(metrics["stage"])
    found = f"What this run found: validation accuracy {records.accuracy_text(metrics, 'val_accuracy')} on the " \
            f"{report_split.photos_of(metrics, 'validation')}"
    if metrics.get("test_accuracy") is not None:
        found += (f"; {report_split.name_of(metrics)} accuracy {records.accuracy_text(metrics, 'test_accuracy')} on "
                  f"the {report_split.photos_of(metrics, 'test')}")
    lines = [found + "."]
    compared = metrics.get("compared_with_previous") or {}
    for split in sorted(compared, key=lambda name: (name != "test", name)):
        record = compared[split]
        lines.append(f"On the {record['photos']}, {_comparison(record).sentence(what_changed(stage))}"
                     + (f" {record['note']}" if record.get("note") else ""))
    if stage.previous and not compared:
        lines.append(f"No photo-by-photo comparison with stage {stage.number - 1}: it left no per-photo results in "
                     "this run.")
    if metrics.get("random_weights"):
        lines.append("RANDOM WEIGHTS: these numbers only show that the pipeline runs.")
    return "\n".join(lines)
