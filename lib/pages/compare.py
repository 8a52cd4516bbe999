"""One page comparing runs: `outputs/compare.html` and `compare.json`.

    python -m lib.pages.compare <run> <run> ...      (make compare RUNS="a b ...")

A folder that `make seeds` wrote (`<run>-seeds`) stands for the runs of its complete seeds: `make compare
RUNS="smoke-seeds"` compares the seeds of one study, `RUNS="a-seeds b-seeds"` two studies' seeds side by side.

For each stage: the parameters that differ between the runs (what is the same is left out), validation and
held-out accuracy (the test/ folder or the held-out half of the validation photos: `lib.core.report_split`; and
with test-time augmentation where a run measured it) with their counts and 95% intervals where the run kept them,
calibration error, best epoch and time; and one figure per stage with every run's validation curve.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lib import SuiteError
from lib.core import marks, paths, records, report_split, stages, storage
from lib.pages import html, seeds, summary

SCORES = ("val_accuracy", "test_accuracy", "val_accuracy_tta", "test_accuracy_tta", "val_ece", "test_ece")
ACCURACIES = SCORES[:4]  # Shown with their 95% interval and counts where the run kept them.


def stage_results(run: str, stage: stages.Stage, record: dict[str, Any]) -> dict[str, Any] | None:
    """A run's numbers for one stage, or None when the stage has not completed there."""
    folder = paths.stage_dir(run, stage.stem)
    metrics = records.read_metrics(folder)
    if metrics is None:
        return None
    history = records.read_history(folder / records.HISTORY_FILE)
    return {**{score: metrics.get(score) for score in SCORES},
            **{f"{score}_text": records.accuracy_text(metrics, score, digits=1) for score in ACCURACIES},
            **{f"{score}_counted": _counted(metrics, score) for score in ACCURACIES},
            "held_out_photos": "" if metrics.get("test_accuracy") is None else report_split.photos_of(metrics, "test"),
            "best_epoch": metrics.get("best_epoch"),
            "epochs_run": metrics.get("epochs_run"), "parameters": metrics.get("parameters", {}),
            "seconds": record.get("seconds", metrics.get("extraction_seconds", 0) + metrics.get("training_seconds", 0)),
            "curve": [row.get("val_accuracy") for row in history], "report": f"{run}/{stage.stem}/{stage.stem}.html"}


def _counted(metrics: records.Metrics, score: str) -> dict[str, Any] | None:
    """An accuracy's counts and 95% interval (`uncertainty.Accuracy.record`), None where the run kept none."""
    counted = records.counted_accuracy(metrics, score)
    return counted.record() if counted else None


def expand_seeds(runs: list[str]) -> list[str]:
    """`runs` with each folder that `make seeds` wrote (`<run>-seeds`, `lib.pages.seeds`) replaced by the runs of its
    complete seeds, each run once."""
    expanded: list[str] = []
    for run in runs:
        for name in seeds.complete_runs(paths.check_run_name(run)) or [run]:
            if name not in expanded:
                expanded.append(name)
    return expanded


def collect(runs: list[str]) -> dict[str, Any]:
    """Every run's results per stage, and the parameters that differ between runs, per stage. A folder of `make
    seeds` stands for the runs of its complete seeds."""
    runs = expand_seeds(runs)
    if len(runs) < 2:
        raise SuiteError("Give at least two runs to compare: make compare RUNS=\"run-a run-b\".")
    missing = [run for run in runs if not (paths.run_dir(paths.check_run_name(run)) / records.MANIFEST_FILE).is_file()]
    if missing:
        root = paths.outputs_root()
        known = ", ".join(sorted(p.name for p in root.iterdir() if (p / records.MANIFEST_FILE).is_file())
                          if root.is_dir() else [])
        raise SuiteError(f"No run folder for {', '.join(missing)}. Runs here: {known or 'none yet'}.")
    found: dict[str, Any] = {"runs": runs, "stages": {}}
    for stage in stages.STAGES:
        results = {run: stage_results(run, stage, records.read_manifest(run).get("stages", {}).get(stage.stem, {}))
                   for run in runs}
        present = {run: result for run, result in results.items() if result}
        names = sorted({name for result in present.values() for name in result["parameters"]} - {"output_dir"})
        differing = {name: {run: result["parameters"].get(name) for run, result in present.items()} for name in names
                     if len({repr(result["parameters"].get(name)) for result in present.values()}) > 1}
        found["stages"][stage.stem] = {"heading": stage.heading, "results": results, "differing": differing}
    return found


def _figure(collected: dict[str, Any]) -> str | None:
    import matplotlib.pyplot as plt

    with_curves = [(stem, values) for stem, values in collected["stages"].items()
                   if any(result and result["curve"] for result in values["results"].values())]
    if not with_curves:
        return None
    figure, axes = plt.subplots(1, len(with_curves), figsize=(5.5 * len(with_curves), 3.8), squeeze=False)
    for axis, (stem, values) in zip(axes[0], with_curves):
        for run, result in values["results"].items():
            if result and result["curve"]:
                axis.plot(range(1, len(result["curve"]) + 1), result["curve"], "o-", markersize=3, label=run)
        axis.axhline(stages.get(stem).course_notes_val_accuracy, linestyle=":", color="grey", linewidth=1)
        axis.set_title(f"{values['heading']}: validation accuracy")
        axis.set_xlabel("Epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return html.figure_data_uri(figure)


def write(runs: list[str]) -> Path:
    """Write `outputs/compare.html` and `compare.json`; returns the page's path."""
    collected = collect(runs)
    root = paths.outputs_root()
    marks.record_files(root, ["compare.json", "compare.html"])  # Before writing: `make clean` may remove them.
    storage.write_json(root / "compare.json", collected)
    summaries = {run: summary.collect(run) for run in collected["runs"]}
    page = html.render("compare.html.j2", compared=collected, summaries=summaries, figure=_figure(collected),
                        scores=SCORES)
    return storage.write_text(root / "compare.html", page)


if __name__ == "__main__":
    try:
        print(write(sys.argv[1:]))
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(2)
