"""What a stage leaves behind: its output folder, `metrics.json`, and the notices shown in the notebook."""
from __future__ import annotations

import csv
import datetime
import io
import platform
import resource
from pathlib import Path
from typing import Any

from lib import paths, stages, storage
from lib.weights import WeightsChoice

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"


def stage_output_dir(output_dir: str, run_name: str, stage: str) -> Path:
    """The folder a stage writes to: `output_dir` when the runner gives one, else `outputs/<run>/<stage>`."""
    folder = Path(output_dir) if output_dir else paths.stage_dir(run_name or "interactive", stage)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def now() -> str:
    """The current time, ISO 8601 with time zone, to the second."""
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")


def weights_notice(weights: WeightsChoice):
    """A loud HTML banner when the conv base has random weights, else a one-line note (for `display`)."""
    from IPython.display import HTML

    if weights.is_random:
        return HTML(
            '<div style="background:#b00020;color:white;padding:10px;font-weight:bold;font-size:1.1em">'
            f"{weights.describe()} This run only checks that the pipeline works.</div>"
        )
    return HTML(f"<p>Conv base: {weights.describe()}</p>")


def parameter_values(stage: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The values of a stage notebook's parameters as the notebook sees them (pass `globals()`)."""
    from lib import params

    return {name: namespace[name] for name in params.read_parameters(params.notebook_path(stage))
            if name in namespace and name not in params.RUNNER_KEYS}


def build_metrics(stage: str, *, run_name: str, profile_name: str, weights: WeightsChoice,
                  preprocessing: str, image_size: int, evaluations: dict[str, dict],
                  best_epoch: int | None, epochs_run: int, extraction_seconds: float,
                  training_seconds: float, image_sets: dict, started: str,
                  parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The metrics every stage writes, with the same keys in every stage (stage-specific ones in extra).

    `evaluations` holds `training.evaluate` results by split: `validation`, and `test` when there is one.
    """
    from lib import distribute, evaluation, plots

    counts = {split: len(image_set) for split, image_set in image_sets.items()}
    skipped = [item for image_set in image_sets.values() for item in image_set.skipped]
    metrics = {
        "stage": stage,
        "status": "complete",
        "run_name": run_name,
        "profile": profile_name,
        **evaluation.metrics_of(evaluations),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "weights": weights.describe(),
        "weights_kind": weights.kind,
        "random_weights": weights.is_random,
        "weights_sha256": weights.sha256,
        "preprocessing": preprocessing,
        "image_size": image_size,
        "images": counts,
        "skipped_files": len(skipped),
        "skipped": [{"file": path, "reason": reason} for path, reason in skipped],
        "extraction_seconds": round(extraction_seconds, 2),
        "training_seconds": round(training_seconds, 2),
        "course_notes_val_accuracy": stages.get(stage).course_notes_val_accuracy,
        "started": started,
        "finished": now(),
        "host": platform.node(),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # This kernel's RSS.
        **distribute.current().record(),
        "parameters": parameters,
        "confusion_matrix_validation": plots.confusion_counts(image_sets["validation"].labels,
                                                              evaluations["validation"]["probabilities"]),
        "best_epoch_rule": "highest val_accuracy, ties broken by lowest val_loss",
    }
    metrics.update(extra)
    return metrics


def write_metrics(folder: Path, metrics: dict[str, Any]) -> Path:
    """Write `metrics.json` atomically; written last by a stage, so its presence means the stage ended."""
    return storage.write_json(Path(folder) / METRICS_FILE, metrics)


def summary_sentence(metrics: dict[str, Any]) -> str:
    """One sentence stating a stage's result, for the notebook's closing cell."""
    reference = metrics.get("course_notes_val_accuracy")
    text = (f"Validation accuracy {metrics['val_accuracy']:.2%} (loss {metrics['val_loss']:.4f}) at epoch "
            f"{metrics['best_epoch']} of {metrics['epochs_run']}")
    if reference:
        text += f", against about {reference:.0%} in the course notes"
    if metrics.get("test_accuracy") is not None:
        text += f"; test accuracy {metrics['test_accuracy']:.2%}"
    if metrics.get("val_ece") is not None:
        text += f"; calibration error (ECE) {metrics['val_ece']:.3f}"
    if metrics.get("val_accuracy_tta") is not None:
        text += f"; with test-time augmentation {metrics['val_accuracy_tta']:.2%}"
    text += "."
    if metrics.get("random_weights"):
        text += " RANDOM WEIGHTS: these numbers only show that the pipeline runs."
    return text


def table_html(rows: list[dict], title: str = ""):
    """Rows of dicts as an HTML table for `display` in a notebook (and so in its HTML report)."""
    import html

    from IPython.display import HTML

    if not rows:
        return HTML(f"<p>{html.escape(title)}: nothing to show.</p>")
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_format(row.get(column)))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    caption = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return HTML(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def stage_comparison(output_folder: Path, current: dict[str, float]) -> list[dict]:
    """Validation accuracy of each stage of the run (from their metrics, or `current`) and the course notes."""
    rows = []
    for stage in stages.STAGES:
        metrics_file = Path(output_folder).parent / stage.stem / METRICS_FILE
        value = current.get(stage.stem)
        if value is None and metrics_file.is_file():
            value = storage.read_json(metrics_file).get("val_accuracy")
        rows.append({"stage": stage.stem, "this run": value, "course notes": stage.course_notes_val_accuracy})
    return rows


def concatenate_histories(*parts: list[dict]) -> list[dict]:
    """History rows of consecutive phases as one list, epochs renumbered from 1."""
    rows = [dict(row) for part in parts for row in part]
    for number, row in enumerate(rows, start=1):
        row["epoch"] = number
    return rows


def read_history_csv(path: str | Path, phase: str | None = None) -> list[dict]:
    """History rows from a CSV written by `write_history_csv` (empty when the file is missing); empty cells
    are left out of their row, numbers are floats."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = [{key: (value if key == "phase" else float(value)) for key, value in row.items() if value != ""}
                for row in csv.DictReader(handle)]
    if phase:
        for row in rows:
            row["phase"] = phase
    return rows


def write_history_csv(path: str | Path, rows: list[dict]) -> Path:
    """Write history rows as CSV, atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return storage.write_text(path, buffer.getvalue())
