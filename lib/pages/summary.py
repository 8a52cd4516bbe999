"""One page for a whole run: `outputs/<run>/index.html` and `summary.json`.

    python -m lib.pages.summary <run>        (also: make report RUN=<run>)

A table of the stages (validation accuracy, and the accuracy on photos no choice was made on: the test/ folder or the
held-out half of the validation photos, `lib.core.report_split`; each with its counts, its 95% interval and which
photos it comes from; best epoch, epochs run, time, the forecast) beside the course notes' numbers, each stage
against the one before it photo by photo (on which photos, and whether they chose anything), one figure with every
stage's validation curve, the published results on this kind of split, links to each stage's report, and plain
warnings when the run used random weights or a reduced profile. Images are embedded, so the page stands on its own.
"""
from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib import SuiteError
from lib.core import params, paths, records, report_split, stages, storage
from lib.pages import html

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _stage_summary(folder: Path, stage: stages.Stage, record: dict[str, Any]) -> dict[str, Any]:
    metrics = records.read_metrics(folder / stage.stem)
    if metrics is None:
        if record.get("status") == "waiting":
            return {"status": "waiting: runs after the stages above"}
        if record.get("status") in {"failed", "interrupted", "running", "not run"}:
            return {"status": f"{record['status']}: {record.get('message') or 'in progress'}"}
        return {"status": "not run or incomplete"}
    attempt = _last_attempt(folder, stage, record)
    if attempt:  # The result shown is the last complete one; its own record says how long it took.
        record = records.read_stage_record(folder / stage.stem) or {}
    history = records.read_history(folder / stage.stem / records.HISTORY_FILE)
    return {
        "status": "complete", **attempt,
        "val_accuracy": metrics["val_accuracy"], "val_loss": metrics["val_loss"],
        "test_accuracy": metrics.get("test_accuracy"), "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "seconds": record.get("seconds", round(metrics["extraction_seconds"] + metrics["training_seconds"], 1)),
        "forecast_seconds": record.get("forecast_seconds"),
        "forecast_at_start_seconds": record.get("forecast_at_start_seconds"),
        "course_notes_val_accuracy": stage.course_notes_val_accuracy,
        "random_weights": metrics["random_weights"], "weights": metrics["weights"],
        "profile": metrics["profile"], "started_from": metrics.get("started_from"),
        "report": f"{stage.stem}/{stage.stem}.html",
        "val_accuracy_curve": [row.get("val_accuracy") for row in history],
        **_counted(metrics), "compared_with_previous": metrics.get("compared_with_previous") or {},
        "report_split": metrics.get("report_split", "test" if metrics.get("test_accuracy") is not None else "none"),
        "split_photos": {split: report_split.photos_of(metrics, split) for split in ("validation", "test")
                         if metrics.get(f"{SPLIT_PREFIX[split]}_accuracy") is not None},
    }


SPLIT_PREFIX = {"validation": "val", "test": "test"}


def _counted(metrics: records.Metrics) -> dict[str, Any]:
    """Each split's accuracy with its counts and 95% interval where the stage kept them (None where not: an older
    run), and as the page shows it (`val_accuracy_text`; the bare accuracy where there are no counts)."""
    found: dict[str, Any] = {}
    for split in ("val", "test"):
        counted = records.counted_accuracy(metrics, f"{split}_accuracy")
        found.update({f"{split}_correct": counted.correct if counted else None,
                      f"{split}_total": counted.total if counted else None,
                      f"{split}_accuracy_interval_95": [counted.low, counted.high] if counted else None,
                      f"{split}_accuracy_text": records.accuracy_text(metrics, f"{split}_accuracy", digits=1)})
    return found


def _last_attempt(folder: Path, stage: stages.Stage, record: dict[str, Any]) -> dict[str, Any]:
    """Where a stage has a complete result and the manifest says a rerun of it failed, was interrupted or is running:
    how it ended, and the link to its report (`<stem>.rerun/`, `lib.run.rerun`); else {}."""
    verb = {"failed": "failed", "interrupted": "was interrupted", "running": "is running now"}.get(record.get("status"))
    if verb is None:
        return {}
    attempt = {"last_attempt": f"{verb}: {record['message']}" if record.get("message") else verb}
    report = paths.rerun_dir(folder.name, stage.stem) / f"{stage.stem}.html"
    if report.is_file():
        attempt["attempt_report"] = f"{report.parent.name}/{report.name}"
    return attempt


def _profile(manifest: dict[str, Any], stage_summaries: dict[str, dict]) -> dict[str, Any]:
    profile = manifest.get("profile") or {}
    if profile.get("name"):
        return profile
    # Runs made stage by stage without a manifest: the stages know their profile.
    names = {values.get("profile") for values in stage_summaries.values() if values.get("profile")}
    profile = {"name": names.pop() if len(names) == 1 else ", ".join(sorted(names)) or "unknown"}
    if (paths.PARAMS_DIR / f"{profile['name']}.yaml").is_file():
        profile["description"] = params.load_profile(profile["name"]).get("description", "")
    return profile


def _span(manifest: dict[str, Any]) -> dict[str, Any]:
    complete = [record for record in manifest.get("stages", {}).values() if record.get("status") == "complete"]
    if not complete or not all(isinstance(record.get("started"), (int, float)) for record in complete):
        return {"stages_started": None, "stages_finished": None, "stage_seconds_total": None}

    def stamp(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")

    return {"stages_started": stamp(min(record["started"] for record in complete)),
            "stages_finished": stamp(max(record["finished"] for record in complete)),
            "stage_seconds_total": round(sum(record.get("seconds", 0) for record in complete), 1)}


def collect(run: str) -> dict[str, Any]:
    """The numbers of every completed stage of a run, as written to `summary.json`."""
    folder = paths.run_dir(run)
    if not folder.is_dir():
        raise SuiteError(f"No run folder {folder}: run a stage with RUN={run} first.")
    manifest = records.read_manifest(run)
    entries = manifest.get("stages", {})
    stage_summaries = {stage.stem: _stage_summary(folder, stage, entries.get(stage.stem, {}))
                       for stage in stages.STAGES}
    return {"run": run, "profile": _profile(manifest, stage_summaries), "stages": stage_summaries,
            **_span(manifest), "random_weights": any(s.get("random_weights") for s in stage_summaries.values()),
            "started": manifest.get("started"), "finished": manifest.get("finished"),
            "status": manifest.get("status"), "budget": manifest.get("budget")}


def validation_curves(curves: dict[str, list[float]], references: dict[str, float] | None = None,
                      title: str = "Validation accuracy per epoch") -> Figure:
    """Several stages' validation accuracy curves on one axis, with reference levels as dotted lines; a matplotlib
    `Figure` (matplotlib is imported here, so that importing the page costs nothing until it draws)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(8, 4))
    for (name, values), colour in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        axis.plot(range(1, len(values) + 1), values, "o-", markersize=3, label=name, color=colour)
        if references and name in references:
            axis.axhline(references[name], linestyle=":", color=colour, linewidth=1)
    axis.set_xlabel("Epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("Validation accuracy")
    axis.set_title(title + (" (dotted: course-notes reference)" if references else ""))
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def _figure(summary: dict[str, Any]) -> str | None:
    curves = {stages.get(stem).heading: values["val_accuracy_curve"] for stem, values in summary["stages"].items()
              if values.get("val_accuracy_curve")}
    if not curves:
        return None
    references = {stage.heading: stage.course_notes_val_accuracy for stage in stages.STAGES}
    return html.figure_data_uri(validation_curves(curves, references))


def _messages(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    profile = summary.get("profile") or {}
    warnings, notes = [], []
    if summary["random_weights"]:
        warnings.append("RANDOM WEIGHTS: this run's conv base was not trained on ImageNet (weights=none). "
                        "Its accuracies only show that the pipeline runs.")
    if summary.get("status") == "running":
        notes.append("Running now: this page is rewritten as each stage starts and ends, and reloads itself every "
                     "30 seconds.")
    if summary.get("status") in {"failed", "interrupted"}:
        warnings.append(f"This run {summary['status']}: the stages below marked incomplete did not finish.")
    reduced = profile.get("name") and profile.get("name") != "full"
    if reduced:  # One notice: how the schedule was chosen when it was, else what the profile is for.
        notes.append(f"Reduced profile '{profile.get('name')}', not the full reference schedule: "
                     + (profile.get("choice") or profile.get("description", "")))
    elif profile.get("choice"):
        notes.append(profile["choice"])
    notes.extend((summary.get("budget") or {}).get("notes", []))
    return warnings, notes


def render(summary: dict[str, Any]) -> str:
    """The standalone HTML page."""
    warnings, notes = _messages(summary)
    rows = [{"heading": stages.get(stem).heading, **values} for stem, values in summary["stages"].items()]
    for row in rows:
        row.setdefault("forecast_seconds", None)
        row.setdefault("last_attempt", "")
        row.setdefault("attempt_report", "")
        row.setdefault("compared_with_previous", {})
        at_start = html.duration(row.get("forecast_at_start_seconds"))  # Shown where it reads otherwise.
        row["forecast_at_start"] = at_start if at_start != html.duration(row["forecast_seconds"]) else ""
    references = [{"heading": stage.heading, **vars(reference)} for stage in stages.STAGES
                  for reference in stage.references]
    return html.render("summary.html.j2", run=summary["run"], profile=summary.get("profile") or {},
                        warnings=warnings, notes=notes, rows=rows, figure=_figure(summary), references=references,
                        any_forecast=any(row.get("forecast_seconds") for row in rows),
                        stages_started=summary.get("stages_started"),
                        stages_finished=summary.get("stages_finished"),
                        stage_seconds_total=summary.get("stage_seconds_total"),
                        live=summary.get("status") == "running")


def write(run: str) -> Path:
    """Write `summary.json` and `index.html` of a run; returns the page's path."""
    summary = collect(run)
    folder = paths.run_dir(run)
    storage.write_json(folder / "summary.json", summary)
    return storage.write_text(folder / "index.html", render(summary))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m lib.pages.summary <run>", file=sys.stderr)
        sys.exit(2)
    try:
        print(write(sys.argv[1]))
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(2)
