"""A stage's start and end in one object.

`start` opens a stage from its notebook's parameters: it checks the devices (a GPU when one is required), sets up
the distribution strategy before anything computes, seeds Python, NumPy and TensorFlow, sets the compute precision
and makes the stage's folder. The `StageRun` it returns knows the stage, its folder, its start time, its parameters
and precision; it saves what the stage hands on and writes the stage's records (`history.csv`, and last
`metrics.json`, in the schema of `lib.core.records`).
"""
from __future__ import annotations

import dataclasses
import html
import platform
import resource
from pathlib import Path
from typing import Any

from lib.core import (
    devices,
    marks,
    params,
    paths,
    photo_results,
    records,
    report_split,
    stages,
    storage,
    uncertainty,
    versions,
)
from lib.study import backup, cache, distribute, evaluation, models, plots, scores, training
from lib.study.weights import WeightsChoice


@dataclasses.dataclass
class StageRun:
    """A stage being run: its registry entry, parameter values, output folder, start time and precision."""

    stage: stages.Stage
    parameters: dict[str, Any]
    folder: Path
    started: str
    precision: str
    run_name: str
    profile_name: str

    def save_history(self, rows: list[dict]) -> None:
        """Write the stage's `history.csv` (one row per epoch)."""
        records.write_history(self.folder / records.HISTORY_FILE, rows)

    def save_figure(self, figure, name: str) -> None:
        """Save a figure into the stage's folder as PNG (it stays open, so the notebook shows it)."""
        plots.save(figure, self.folder / name)

    def hand_off(self, model) -> None:
        """Save the model the stage hands off to the next (its registry `hand_off_model`: stage 1's classifier, later
        the whole model)."""
        path = self.folder / self.stage.hand_off_model
        models.save_model(model, path)
        print(f"Saved {path.name} for the next stage and for predictions.", flush=True)

    def backup_and_restore(self, phase: str = "training") -> backup.BackupAndRestore:
        """The callback that backs up a training phase of this stage after every epoch and resumes it there when
        the stage runs again (`lib.study.backup`); `phase` names it when a stage trains more than once."""
        return backup.BackupAndRestore(paths.backup_dir(self.folder), self.stage.stem, self.parameters, phase)

    def finish(self, *, weights: WeightsChoice, image_sets: dict, evaluations: dict[str, scores.Evaluation],
               fitted: training.FitResult, extraction_seconds: float, **extra: Any) -> records.Metrics:
        """Write the stage's per-photo results and `metrics.json` (last: its presence means the stage ended), with
        the comparison against the stage before it photo by photo, and print the result in a sentence.

        `evaluations` holds `lib.study.evaluation.evaluate`'s results by split; `extra` adds the stage's own keys.
        """
        answers = evaluation.photo_results(image_sets, evaluations)
        photo_results.write(self.folder, answers)
        photos = _photos_record(image_sets)
        compared = photo_results.compare_stages(self.stage, self.folder.parent, answers, photos["split_photos"])
        metrics = records.Metrics(
            stage=self.stage.stem, status="complete", run_name=self.run_name, profile=self.profile_name,
            **evaluation.metrics_of(evaluations), best_epoch=fitted.best_epoch, epochs_run=len(fitted.rows),
            **_weights_record(weights), preprocessing=self.parameters["preprocessing"],
            image_size=self.parameters["image_size"], **photos,
            extraction_seconds=round(extraction_seconds, 2), training_seconds=round(fitted.seconds, 2),
            course_notes_val_accuracy=self.stage.course_notes_val_accuracy, started=self.started,
            finished=records.now(), host=platform.node(),
            peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # This kernel's.
            **distribute.current().record(), parameters=self.parameters,
            confusion_matrix_validation=scores.confusion_counts(image_sets["validation"].labels,
                                                                evaluations["validation"].probabilities),
            best_epoch_rule="highest val_accuracy, ties broken by lowest val_loss", precision=self.precision,
            cache_entries=cache.used_entries())
        if compared:
            metrics["compared_with_previous"] = compared
        metrics.update(extra)
        records.write_metrics(self.folder, metrics)
        storage.remove_tree(paths.backup_dir(self.folder))  # Complete: nothing left to resume.
        print(records.sentence(metrics), flush=True)
        return metrics


def _weights_record(weights: WeightsChoice) -> dict[str, Any]:
    return {"weights": weights.describe(), "weights_kind": weights.kind, "random_weights": weights.is_random,
            "weights_sha256": weights.sha256}


def _photos_record(image_sets: dict) -> dict[str, Any]:
    skipped = [item for image_set in image_sets.values() for item in image_set.skipped]
    images = {split: len(image_set) for split, image_set in image_sets.items()}
    chosen = "none" if "test" not in image_sets else "held_out" if image_sets["test"].folder else "test"
    return {"images": images, "report_split": chosen, "split_photos": report_split.split_photos(chosen, images),
            "skipped_files": len(skipped), "skipped": [{"file": path, "reason": reason} for path, reason in skipped]}


def parameter_values(stem: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The values of a stage notebook's parameters as the notebook sees them (pass `globals()`), the runner's
    own keys left out."""
    return {name: namespace[name] for name in params.declared(stem)
            if name in namespace and name not in params.RUNNER_KEYS}


def start(stem: str, namespace: dict[str, Any]) -> StageRun:
    """Open stage `stem` with the parameter values in `namespace` (the notebook's `globals()`): devices (a
    `SuiteError` when a GPU is required and missing), the distribution strategy (`batch_size` must split evenly
    between its replicas), seeds, the compute precision, and the stage's folder: the runner's `output_dir`, else
    `outputs/<run_name>/<stem>`."""
    values = parameter_values(stem, namespace)
    for warning in versions.check():  # A SuiteError for a TensorFlow or Keras older than supported.
        print(f"Warning: {warning}", flush=True)
    gpus = devices.check(values["require_gpu"])
    distribution = distribute.setup(values["distribution"], values["replicas"], gpus)
    distribute.check_batch(values.get("batch_size", 0))
    training.seed_everything(values["seed"], values["deterministic"])
    precision = training.configure_precision(values["mixed_precision"], gpus)
    native = " (no native 16-bit compute here)" if values["mixed_precision"] and precision == "float32" else ""
    print(f"Devices: {devices.describe_devices(gpus)}; {distribution.describe()}; precision {precision}{native}.",
          flush=True)
    run_name = namespace.get("run_name") or "interactive"
    if not namespace.get("output_dir"):  # Opened in Jupyter: the run folder is made here, marked as the suite's.
        marks.make_folder(paths.run_dir(run_name), "run")
    folder = Path(namespace.get("output_dir") or paths.stage_dir(run_name, stem))
    folder.mkdir(parents=True, exist_ok=True)
    if not any(paths.backup_dir(folder).glob("*.npz")):  # A fresh start: no earlier attempt's curves in TensorBoard.
        storage.remove_tree(folder / "logs")
    return StageRun(stages.get(stem), values, folder, records.now(), precision, run_name,
                    namespace.get("profile_name", "notebook defaults"))


def weights_notice(weights: WeightsChoice):
    """A loud HTML banner when the conv base has random weights, else a one-line note (for `display`)."""
    from IPython.display import HTML

    described = html.escape(weights.describe())  # It names a file: its name is text, never markup.
    if weights.is_random:
        return HTML(
            '<div style="background:#b00020;color:white;padding:10px;font-weight:bold;font-size:1.1em">'
            f"{described} This run only checks that the pipeline works.</div>"
        )
    return HTML(f"<p>Conv base: {described}</p>")


def table(rows: list[dict], title: str = ""):
    """Rows of dicts as an HTML table for `display` in a notebook (and so in its HTML report)."""
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


def stage_comparison(run: StageRun, accuracy: float, right: Any = None) -> list[dict]:
    """Validation accuracy of each stage of the run (this one's is `accuracy`, with its 95% interval and counts
    from `right`, its per-photo answers, when given; the others' from their metrics) beside the course notes'."""
    rows = []
    for stage in stages.STAGES:
        metrics = records.read_metrics(run.folder.parent / stage.stem) or {}
        value, counted = metrics.get("val_accuracy"), records.counted_accuracy(metrics, "val_accuracy")
        if stage.stem == run.stage.stem:
            value = accuracy
            counted = uncertainty.accuracy_of([bool(flag) for flag in right]) if right is not None else None
        rows.append({"stage": stage.stem, "this run": value, "95% interval (counts)": counted.text() if counted else "",
                     "course notes": stage.course_notes_val_accuracy})
    return rows
