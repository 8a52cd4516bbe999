"""Several seeds of one study on one page: `outputs/<run>-seeds/index.html` and `seeds.json`.

    python -m lib.pages.seeds <run> <seed> <seed> ...      (`make seeds` writes it after running the seeds)

`make seeds SEEDS="42 7 123"` (`lib.run.seeds`) runs the whole study once per seed into the runs `<run>-seed<N>`.
This page reads them back: per stage and per scored split (test photos first, which chose nothing; then the
validation photos, which chose each stage's best epoch), every seed's accuracy with its 95% interval and counts,
the mean over seeds, the smallest and largest (the range) and the sample standard deviation; and each stage against
the one before it, photo by photo: per seed (`lib.core.photo_results.compare_split`), the mean of the seeds'
differences and their range, and one comparison pooled over seeds (every photo of every seed as one pair). The
same photo in several seeds is not an independent pair, so the pooled interval and p-value are optimistic: the
per-seed rows and their range say how much a seed moves the result. A seed that failed or did not run is named,
and left out of every number.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from lib import SuiteError
from lib.core import marks, paths, photo_results, records, report_split, stages, storage, uncertainty
from lib.pages import html

SEEDS_FILE = "seeds.json"
FOLDER_KIND = "several seeds of one study"
# The scored splits, test first (no choice was made on it), by their name in `photo_results.json` and the prefix of
# their keys in `metrics.json`.
SPLIT_KEYS = {"test": "test", "validation": "val"}
SPREAD = ("mean over seeds; range: smallest to largest seed; standard deviation: the sample standard deviation "
          "across seeds (n - 1)")
POOLED_CAVEAT = ("Pooled: every photo of every seed counted as one pair (photo x seed). The same photo in several "
                 "seeds is not an independent pair, so the pooled interval and p-value are optimistic; the per-seed "
                 "comparisons and the range of their differences say how much a seed moves the result.")


def spread(values: list[float]) -> dict[str, float]:
    """The mean of `values`, their smallest and largest, the range (largest minus smallest) and the sample standard
    deviation (0 for a single value)."""
    if not values:
        raise ValueError("The spread of no values.")
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "range": max(values) - min(values),
            "standard_deviation": statistics.stdev(values) if len(values) > 1 else 0.0}


def seed_status(run: str) -> str | None:
    """None where every stage of `run` is complete; else what happened to it, from its manifest."""
    if not paths.run_dir(run).is_dir():
        return "not run"
    recorded = records.read_manifest(run).get("stages", {})
    for stage in stages.STAGES:
        record = recorded.get(stage.stem, {})
        if records.read_metrics(paths.stage_dir(run, stage.stem)) is None or record.get("status") in {
                "failed", "interrupted", "running"}:
            status = record.get("status") or "not run"
            return f"{stage.stem} {status}" + (f": {record['message']}" if record.get("message") else "")
    return None


def seed_accuracy(seed: int, run: str, metrics: records.Metrics, split: str) -> dict[str, Any]:
    """One seed's accuracy on one split: `uncertainty.Accuracy.record` where the stage kept its counts (the bare
    accuracy where not), the text the page shows, the seed and its run."""
    key = f"{SPLIT_KEYS[split]}_accuracy"
    counted = records.counted_accuracy(metrics, key)
    found = counted.record() if counted else {"accuracy": metrics[key], "correct": None, "total": None,
                                              "interval_95": None}
    return {"seed": seed, "run": run, **found, "text": records.accuracy_text(metrics, key)}


def pooled(per_seed: dict[int, tuple[list[bool], list[bool]]], stage: stages.Stage, split: str) -> dict[str, Any]:
    """A stage against the one before it over several seeds, from each seed's matched right-or-wrong flags (before,
    after): each seed's comparison, the mean of their differences and their range, and the comparison pooled over
    seeds (every photo of every seed one pair: optimistic, `POOLED_CAVEAT`)."""
    what = photo_results.what_changed(stage)
    each = {seed: uncertainty.compare(before, after) for seed, (before, after) in per_seed.items()}
    together = uncertainty.compare([flag for before, _ in per_seed.values() for flag in before],
                                   [flag for _, after in per_seed.values() for flag in after])
    differences = [comparison.difference for comparison in each.values()]
    return {"split": split, "seeds": list(each),
            "per_seed": [{"seed": seed, **comparison.record(), "sentence": comparison.sentence(f"seed {seed}")}
                         for seed, comparison in each.items()],
            "difference_over_seeds": spread(differences),
            "seeds_better": sum(found.distinguishable and found.difference > 0 for found in each.values()),
            "seeds_worse": sum(found.distinguishable and found.difference < 0 for found in each.values()),
            "pooled": {**together.record(), "pairs": together.total,
                       "sentence": pooled_sentence(together, f"{what}, {len(each)} seeds pooled",
                                                   [comparison.total for comparison in each.values()])},
            "caveat": POOLED_CAVEAT}


def pooled_sentence(comparison: uncertainty.PairedComparison, what: str, photos: list[int]) -> str:
    """The pooled comparison in words: its pairs are each seed's `photos` together, and its interval optimistic."""
    counted = (f"{photos[0]} photos x {len(photos)} seeds" if len(set(photos)) == 1 else
               f"{' + '.join(map(str, photos))} photos of {len(photos)} seeds")
    return (comparison.sentence(what, pairs="photo-seed pairs").removesuffix(".")
            + f" ({counted}; optimistic: the same photo in several seeds is not an independent pair).")


def stage_split(stage: stages.Stage, split: str, complete: dict[int, str]) -> dict[str, Any] | None:
    """One stage's row for one split over the complete seeds (seed -> run): every seed's accuracy, their spread,
    and the comparison with the stage before it (None where a seed kept no per-photo results); None where a seed
    did not score the split."""
    metrics = {seed: records.read_metrics(paths.stage_dir(run, stage.stem)) or {} for seed, run in complete.items()}
    if not complete or any(values.get(f"{SPLIT_KEYS[split]}_accuracy") is None for values in metrics.values()):
        return None
    accuracies = [seed_accuracy(seed, complete[seed], metrics[seed], split) for seed in complete]
    flags = {}
    for seed, run in complete.items():
        after = (photo_results.read(paths.stage_dir(run, stage.stem)) or {}).get(split)
        before = (photo_results.read(paths.stage_dir(run, stage.previous)) or {}).get(split) if stage.previous else None
        if after and before:
            flags[seed] = photo_results.matched_flags(before, after)
    compared = pooled(flags, stage, split) if stage.previous and len(flags) == len(complete) else None
    first = metrics[next(iter(complete))]
    return {"split": split, "name": report_split.name_of(first) if split == "test" else split,
            "photos": report_split.photos_of(first, split), "per_seed": accuracies,
            **spread([row["accuracy"] for row in accuracies]), "compared_with_previous": compared}


def collect(run: str, seeds: list[int], failures: dict[int, str] | None = None) -> dict[str, Any]:
    """What `seeds.json` holds for the runs `<run>-seed<N>` of `seeds`: which seeds completed, which did not and
    why (`failures`, seed -> message, from the command that ran them, else the run's manifest), and per stage and
    split the numbers over the complete seeds (`stage_split`)."""
    failures = dict(failures or {})
    runs = {seed: paths.seed_run(run, seed) for seed in seeds}
    for seed, name in runs.items():
        status = "; ".join(filter(None, [seed_status(name), failures.get(seed)]))
        if status:
            failures[seed] = status
    complete = {seed: name for seed, name in runs.items() if seed not in failures}
    found: dict[str, Any] = {
        "run": run, "seeds": seeds, "runs": {str(seed): name for seed, name in runs.items()},
        "complete_seeds": list(complete), "failed_seeds": {str(seed): message for seed, message in failures.items()},
        "spread": SPREAD, "stages": {}}
    for stage in stages.STAGES:
        splits = {split: stage_split(stage, split, complete) for split in SPLIT_KEYS}
        found["stages"][stage.stem] = {"heading": stage.heading,
                                       "splits": {split: row for split, row in splits.items() if row}}
    return found


def complete_runs(name: str) -> list[str] | None:
    """The runs of the complete seeds that the seeds folder `name` (`<run>-seeds`) recorded in its `seeds.json`, for
    `make compare RUNS="<run>-seeds"`; None where `name` is not such a folder."""
    path = paths.run_dir(name) / SEEDS_FILE
    if not path.is_file():
        return None
    try:
        recorded = storage.read_json(path)
        return [recorded["runs"][str(seed)] for seed in recorded["complete_seeds"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SuiteError(f"{path} cannot be read ({type(error).__name__}: {error}): run make seeds again to "
                         "rewrite it.") from None


def render(collected: dict[str, Any]) -> str:
    """The standalone HTML page."""
    return html.render("seeds.html.j2", collected=collected, caveat=POOLED_CAVEAT)


def write(run: str, seeds: list[int], failures: dict[int, str] | None = None) -> Path:
    """Write `outputs/<run>-seeds/seeds.json` and `index.html` (the folder marked as the suite's); returns the
    page's path."""
    collected = collect(run, seeds, failures)
    folder = marks.make_folder(paths.seeds_dir(run), FOLDER_KIND)
    if marks.kind_of(folder) != FOLDER_KIND:  # A folder of the user's, or a run named like it: never written over.
        raise SuiteError(f"{folder} is in the way of the seeds' page and was not made for it by this suite: move it, "
                         "or give the seeds another RUN name.")
    storage.write_json(folder / SEEDS_FILE, collected)
    return storage.write_text(folder / "index.html", render(collected))


def main(arguments: list[str]) -> int:
    """`python -m lib.pages.seeds <run> <seed> ...`: rewrite the page from the seeds' runs; the exit status."""
    try:
        if len(arguments) < 2:
            raise SuiteError("Give the run and its seeds: python -m lib.pages.seeds <run> <seed> <seed> ...")
        try:
            seeds = [int(seed) for seed in arguments[1:]]
        except ValueError:
            raise SuiteError(f"Seeds are whole numbers, not {' '.join(arguments[1:])!r}.") from None
        print(write(arguments[0], seeds))
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
