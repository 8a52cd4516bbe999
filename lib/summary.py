"""One page for a whole run: `outputs/<run>/index.html` and `summary.json`.

    python -m lib.summary <run>        (also: make report RUN=<run>)

A table of the stages (validation and test accuracy, best epoch, epochs run, time) beside the course
notes' numbers, one figure with every stage's validation curve, links to each stage's report, and plain
warnings when the run used random weights or a reduced profile. Images are embedded, so the page stands on
its own.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import sys
from pathlib import Path
from typing import Any

from lib import SuiteError, paths, plots, reporting, storage

STAGE_TITLES = {
    "01_feature_extraction": "1. Feature extraction",
    "02_data_augmentation": "2. Data augmentation",
    "03_fine_tuning": "3. Fine tuning",
}


def _history(folder: Path) -> list[dict]:
    history = folder / "history.csv"
    if not history.is_file():
        return []
    with open(history, newline="") as handle:
        return [{key: (float(value) if key not in {"phase"} and value != "" else value)
                 for key, value in row.items()} for row in csv.DictReader(handle)]


def collect(run: str) -> dict[str, Any]:
    """The numbers of every completed stage of a run, as written to `summary.json`."""
    folder = paths.run_dir(run)
    if not folder.is_dir():
        raise SuiteError(f"No run folder {folder}: run a stage with RUN={run} first.")
    manifest_file = folder / "manifest.json"
    manifest = storage.read_json(manifest_file) if manifest_file.is_file() else {}
    stages = {}
    for stage in paths.STAGES:
        metrics_file = folder / stage / reporting.METRICS_FILE
        if not metrics_file.is_file():
            stages[stage] = {"status": "not run or incomplete"}
            continue
        metrics = storage.read_json(metrics_file)
        stage_record = manifest.get("stages", {}).get(stage, {})
        stages[stage] = {
            "status": "complete",
            "val_accuracy": metrics["val_accuracy"], "val_loss": metrics["val_loss"],
            "test_accuracy": metrics.get("test_accuracy"), "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
            "seconds": stage_record.get("seconds",
                                        round(metrics["extraction_seconds"] + metrics["training_seconds"], 1)),
            "course_notes_val_accuracy": reporting.COURSE_NOTES_VAL_ACCURACY[stage],
            "random_weights": metrics["random_weights"], "weights": metrics["weights"],
            "profile": metrics["profile"], "started_from": metrics.get("started_from"),
            "report": f"{stage}/{stage}.html",
            "val_accuracy_curve": [row.get("val_accuracy") for row in _history(folder / stage)],
        }
    profile = manifest.get("profile") or {}
    if not profile.get("name"):  # Runs made stage by stage without a manifest: the stages know their profile.
        names = {values.get("profile") for values in stages.values() if values.get("profile")}
        profile = {"name": names.pop() if len(names) == 1 else ", ".join(sorted(names)) or "unknown"}
        if profile["name"] in {"cpu", "smoke", "full"}:
            from lib import params

            profile["description"] = params.load_profile(profile["name"]).get("description", "")
    records = [record for record in manifest.get("stages", {}).values() if record.get("status") == "complete"]
    span = {}
    if records and all(isinstance(record.get("started"), (int, float)) for record in records):
        import datetime

        def stamp(seconds: float) -> str:
            return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")

        span = {"stages_started": stamp(min(record["started"] for record in records)),
                "stages_finished": stamp(max(record["finished"] for record in records)),
                "stage_seconds_total": round(sum(record.get("seconds", 0) for record in records), 1)}
    return {"run": run, "profile": profile, "stages": stages, **span,
            "random_weights": any(s.get("random_weights") for s in stages.values()),
            "started": manifest.get("started"), "finished": manifest.get("finished")}


def _figure_data_uri(summary: dict[str, Any]) -> str | None:
    curves = {STAGE_TITLES[stage]: values["val_accuracy_curve"] for stage, values in summary["stages"].items()
              if values.get("val_accuracy_curve")}
    if not curves:
        return None
    references = {STAGE_TITLES[stage]: reporting.COURSE_NOTES_VAL_ACCURACY[stage] for stage in summary["stages"]}
    figure = plots.validation_curves(curves, references)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _span(summary: dict[str, Any]) -> str:
    if not summary.get("stages_started"):
        return ""
    return (f"Stages ran from {html.escape(summary['stages_started'])} to {html.escape(summary['stages_finished'])}, "
            f"{_duration(summary['stage_seconds_total'])} of stage time in all.")


def _percent(value: Any) -> str:
    return "" if value is None else f"{value:.1%}"


def render(summary: dict[str, Any]) -> str:
    """The standalone HTML page."""
    profile = summary.get("profile") or {}
    warnings, notes = [], []
    if summary["random_weights"]:
        warnings.append("RANDOM WEIGHTS: this run's conv base was not trained on ImageNet (weights=none). "
                        "Its accuracies only show that the pipeline runs.")
    if profile.get("name") and profile.get("name") != "full":
        notes.append(f"<b>Reduced profile '{html.escape(str(profile.get('name')))}'</b>, not the full reference "
                     f"schedule: {html.escape(str(profile.get('description', '')))}")
    if profile.get("choice"):
        notes.append(html.escape(profile["choice"]))
    rows = []
    for stage, values in summary["stages"].items():
        if values["status"] != "complete":
            rows.append(f"<tr><td>{STAGE_TITLES[stage]}</td><td colspan='7'>{values['status']}</td></tr>")
            continue
        rows.append(
            f"<tr><td><a href='{values['report']}'>{STAGE_TITLES[stage]}</a></td>"
            f"<td><b>{_percent(values['val_accuracy'])}</b></td><td>{_percent(values['course_notes_val_accuracy'])}</td>"
            f"<td>{_percent(values['test_accuracy']) or 'no test split'}</td><td>{values['best_epoch']}</td>"
            f"<td>{values['epochs_run']}</td><td>{_duration(values['seconds'])}</td>"
            f"<td>{html.escape(str(values.get('started_from') or ''))}</td></tr>")
    figure = _figure_data_uri(summary)
    warning_html = "".join(f"<p class='warning'>{text}</p>" for text in warnings)
    warning_html += "".join(f"<p class='note'>{text}</p>" for text in notes)
    figure_html = f"<img alt='validation accuracy per epoch' src='{figure}'>" if figure else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Run {html.escape(summary['run'])}: VGG16 cats vs dogs</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: .35em .7em; text-align: left; }}
th {{ background: #f0f0f0; }} .warning {{ background: #b00020; color: white; padding: .6em; font-weight: bold; }}
.note {{ background: #fff4d6; border-left: 4px solid #d9a400; padding: .5em .8em; }}
img {{ max-width: 100%; }} .meta {{ color: #555; font-size: .9em; }}
</style></head><body>
<h1>VGG16 transfer learning on cats vs dogs: run <code>{html.escape(summary['run'])}</code></h1>
{warning_html}
<p class="meta">Profile: {html.escape(str(profile.get('name', 'unknown')))}. {_span(summary)}
Details of the run (parameters, versions, data and weights fingerprints): <a href="manifest.json">manifest.json</a>.</p>
<table><thead><tr><th>stage</th><th>validation accuracy</th><th>course notes</th><th>test accuracy</th>
<th>best epoch</th><th>epochs run</th><th>time</th><th>started from</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{figure_html}
<p class="meta">Best epoch: highest validation accuracy, ties broken by lowest validation loss. Each stage's name links to its full report.</p>
</body></html>
"""


def write(run: str) -> Path:
    """Write `summary.json` and `index.html` of a run; returns the page's path."""
    summary = collect(run)
    folder = paths.run_dir(run)
    storage.write_json(folder / "summary.json", summary)
    return storage.write_text(folder / "index.html", render(summary))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m lib.summary <run>", file=sys.stderr)
        sys.exit(2)
    try:
        print(write(sys.argv[1]))
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(2)
