"""The records a run writes, in one documented schema: each stage's `metrics.json`, `stage.json` and `history.csv`,
and the run's `manifest.json` with one entry per stage.

Who writes what: a stage's notebook writes `history.csv` and, last, `metrics.json` (`lib.study.stage_run`); the
runner writes `stage.json` once the stage's report is rendered (so its presence means the stage is complete) and
keeps `manifest.json` true at every step (`lib.run.manifest`). Pages and the runner read them through here.
"""
from __future__ import annotations

import csv
import datetime
import io
import os
import platform
import time
from pathlib import Path
from typing import Any, TypedDict

from lib.core import locks, paths, report_split, storage, uncertainty

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
STAGE_FILE = "stage.json"
MANIFEST_FILE = "manifest.json"


class Metrics(TypedDict, total=False):
    """`<run>/<stage>/metrics.json`: a stage's results, written last by its notebook.

    Every stage writes the keys down to `best_epoch_rule`; `val_*`/`test_*` scores are None where a split is
    missing, the `*_tta` ones appear only with test-time augmentation. Stages 2 and 3 add what they trained on.
    Each accuracy `<split>_accuracy[_tta]` comes with its counts (`<split>_correct[_tta]` of `<split>_total` photos)
    and its 95% Wilson interval (`<split>_accuracy[_tta]_interval_95`, [low, high]); runs older than these keys
    lack them, and are shown with the bare accuracy (`accuracy_text`).
    """

    stage: str  # The notebook stem.
    status: str  # "complete".
    run_name: str
    profile: str
    val_accuracy: float
    val_loss: float
    val_ece: float  # Expected calibration error of the model's own P(dog).
    val_ece_calibrated: float  # ... after the temperature fitted on the validation photos.
    val_accuracy_tta: float  # With test-time augmentation (the photo and its mirror image).
    val_ece_tta: float
    test_accuracy: float | None
    test_loss: float | None
    test_ece: float | None
    test_ece_calibrated: float | None
    test_accuracy_tta: float
    test_ece_tta: float
    val_correct: int  # Validation photos classified right, of `val_total`.
    val_total: int
    val_accuracy_interval_95: list[float]  # [low, high]: the 95% Wilson interval of `val_accuracy`.
    val_correct_tta: int
    val_accuracy_tta_interval_95: list[float]
    test_correct: int | None
    test_total: int | None
    test_accuracy_interval_95: list[float] | None
    test_correct_tta: int
    test_accuracy_tta_interval_95: list[float]
    # From stage 2 on: this stage against the one before it, photo by photo on each scored split
    # (`lib.core.photo_results.compare_stages`): fixed, broke, difference and its interval, McNemar p, a sentence.
    compared_with_previous: dict[str, dict[str, Any]]
    temperature: float
    reliability_validation: list[dict[str, Any]]
    reliability_validation_uncalibrated: list[dict[str, Any]]
    best_epoch: int | None  # 1-based, counted across the stage's phases.
    epochs_run: int
    weights: str  # One line describing the conv base's weights.
    weights_kind: str  # "imagenet", "file" or "none".
    random_weights: bool
    weights_sha256: str | None
    preprocessing: str
    image_size: int
    images: dict[str, int]  # Photos per split.
    report_split: str  # Which photos `test_*` scores: "test" (test/), "held_out" (half of validation/), "none".
    split_photos: dict[str, str]  # Per scored split, its photos in words (`lib.core.report_split.split_photos`).
    skipped_files: int
    skipped: list[dict[str, str]]  # {"file", "reason"}.
    extraction_seconds: float
    training_seconds: float
    course_notes_val_accuracy: float
    started: str  # ISO 8601.
    finished: str
    host: str
    peak_memory_mb: float  # The kernel's peak resident memory.
    distribution: str
    replicas: int
    workers: int
    parameters: dict[str, Any]  # The notebook's parameter values.
    confusion_matrix_validation: list[list[int]]
    best_epoch_rule: str
    cache_entries: list[str]  # The cache entries the stage read or wrote (`make cache`, `make clean-cache`).
    precision: str  # The Keras dtype policy the stage computed in.
    features_from_cache: dict[str, bool]
    started_from: str  # Stages 2 and 3: the earlier stage's result, or scratch, and why.
    trained_on: str  # Stages 2 and 3: online augmentation or the pool.
    pool_seconds: float
    pool_bytes: int
    unfrozen_layers: list[str]  # Stage 3.
    cached_at: str
    fine_tuning_epochs: int
    classifier_phase_epochs: int
    trainable_parameters: int
    frozen_parameters: int


class StageRecord(TypedDict, total=False):
    """`<run>/<stage>/stage.json`: written by the runner once the stage completed and its report is rendered."""

    stage: str
    status: str  # "complete".
    run: str
    profile: str
    profile_path: str
    parameters: dict[str, Any]  # As checked by the runner (the profile's values and overrides).
    parameters_hash: str
    started: float  # Seconds since the epoch.
    finished: float
    seconds: float
    notebook: str  # File names in the stage's folder.
    report: str
    inputs: dict[str, Any]  # What the stage read, fingerprinted (`lib.run.freshness.stage_inputs`).
    inputs_hash: str
    distribution: str | None
    replicas: int | None
    workers: int | None


class ManifestStage(StageRecord, total=False):
    """One stage's entry in `manifest.json`: `running` with its parameters while a runner works on it, then its
    `stage.json` record and the forecast (complete), or a status and a message (`failed`, `interrupted`)."""

    message: str
    forecast_seconds: float | None  # Just before the stage ran.
    forecast_at_start_seconds: float  # At the command's start, where the stage's steps were measured again.
    skipped_this_time: bool


class Manifest(TypedDict, total=False):
    """`<run>/manifest.json`: what the run was made from and how each stage ended (`lib.run.manifest`)."""

    run: str
    profile: dict[str, Any]  # name, path, description, and why it was chosen.
    schedule: dict[str, Any] | None  # PROFILE=auto's sizing on a CPU.
    command: str
    started: str
    finished: str | None
    status: str  # running, complete, failed or interrupted.
    runner: dict[str, Any]  # pid and host of the runner.
    versions: dict[str, str]
    git: dict[str, Any]
    hardware: dict[str, Any]
    environment: dict[str, str | None]
    stages: dict[str, ManifestStage]
    inputs: list[dict[str, Any]]
    seed: Any
    budget: dict[str, Any]  # Epochs cut to keep BUDGET_MINUTES (`lib.run.budget`), when any were.


def now() -> str:
    """The current time, ISO 8601 with time zone, to the second."""
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="seconds")


def stage_record(*, stem: str, run: str, profile: dict[str, Any], parameters: dict[str, Any], parameters_hash: str,
                 seconds: float, finished: float, inputs: dict[str, Any], metrics: Metrics) -> StageRecord:
    """The `stage.json` record of a stage that completed in `seconds`, ending at `finished`."""
    return StageRecord(
        stage=stem, status="complete", run=run, profile=profile["name"], profile_path=profile["path"],
        parameters=parameters, parameters_hash=parameters_hash, started=finished - seconds, finished=finished,
        seconds=round(seconds, 1), notebook=f"{stem}.ipynb", report=f"{stem}.html", inputs=inputs,
        inputs_hash=inputs["hash"], distribution=metrics.get("distribution"), replicas=metrics.get("replicas"),
        workers=metrics.get("workers"))


# What reading a damaged record as missing means, by file name.
_READ_AS_MISSING = {MANIFEST_FILE: "the manifest starts afresh (each stage's stage.json still says whether it "
                                   "completed)",
                    STAGE_FILE: "the stage counts as not complete and the same command redoes it",
                    METRICS_FILE: "the stage counts as not complete and the same command redoes it"}


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON record of a run folder (`manifest.json`, `stage.json`, `metrics.json`), or None when it is missing.

    A damaged one (not JSON, not UTF-8, or not a JSON object: a disk that filled up, a hand edit) is set aside as
    `<name>.corrupt-<time>`, never deleted, said in one line, and read as missing: its stage is not complete.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = storage.read_json(path)
        problem = "" if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
    except ValueError as error:  # JSON's and UTF-8's errors both are.
        problem = f"{type(error).__name__}: {error}"
    if not problem:
        return value
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, aside)
    except OSError:  # Set aside by another reader a moment ago, or a read-only folder: read as missing all the same.
        aside = path
    print(f"{path} is damaged ({problem}); set aside as {aside.name}: "
          f"{_READ_AS_MISSING.get(path.name, 'read as missing')}.", flush=True)
    return None


def read_metrics(folder: str | os.PathLike) -> Metrics | None:
    """A stage folder's `metrics.json`, or None when the stage has not completed there (or it is damaged:
    `read_record`)."""
    return read_record(Path(folder) / METRICS_FILE)


def read_stage_record(folder: str | os.PathLike) -> StageRecord | None:
    """A stage folder's `stage.json`, or None when the stage has not completed there (or it is damaged:
    `read_record`)."""
    return read_record(Path(folder) / STAGE_FILE)


def attempt_folder(run: str, stem: str) -> Path:
    """The folder a stage's next attempt runs in: the stage's own, unless it holds a complete result (its
    `stage.json`), which stays readable there until a complete new one replaces it; then `paths.rerun_dir`."""
    folder = paths.stage_dir(run, stem)
    return paths.rerun_dir(run, stem) if (folder / STAGE_FILE).is_file() else folder


def write_metrics(folder: str | os.PathLike, metrics: Metrics) -> Path:
    """Write `metrics.json` atomically; written last by a stage, so its presence means the stage ended."""
    return storage.write_json(Path(folder) / METRICS_FILE, metrics)


def read_history(path: str | os.PathLike, phase: str | None = None) -> list[dict]:
    """History rows from a CSV written by `write_history` (empty when the file is missing); empty cells are left
    out of their row, numbers are floats; `phase` labels every row."""
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


def write_history(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write history rows (`{epoch, [phase], metric: value, ...}`) as CSV, atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return storage.write_text(path, csv_text(rows, columns))


# What makes a spreadsheet read a cell as a formula when it is the cell's first character (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text beginning with `=`, `+`, `-`, `@`, a tab or a carriage
    return gets a leading single quote (OWASP's advice for CSV injection); numbers and other text are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """`rows` as CSV text with a header of `columns` (keys of a row outside them are left out), every text cell made
    `spreadsheet_safe` and quoted as RFC 4180 says where it needs to be."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def _runner_alive(run: str, manifest: Manifest) -> bool:
    lock = paths.run_dir(run) / locks.RUN_LOCK_FILE
    if lock.is_file() and not locks.is_held(lock):  # A runner holds it as long as it lives: this one is gone,
        return False  # whichever process has its id now.
    runner = manifest.get("runner") or {}
    if runner.get("host") != platform.node() or not runner.get("pid"):
        return False
    try:
        os.kill(runner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    return True


def close_running_stages(manifest: Manifest, status: str, message: str) -> None:
    """No stage is shown `running` or `waiting` once its runner is gone: a running one gets `status` and `message`,
    a waiting one `not run`."""
    for record in manifest.get("stages", {}).values():
        if record.get("status") == "running":
            record.update(status=status, message=message)
        elif record.get("status") == "waiting":
            record.update(status="not run", message="the command stopped before this stage")


def read_manifest(run: str) -> Manifest:
    """The run's manifest ({} when there is none, or when it is damaged: `read_record`), with a runner that is gone
    shown as `interrupted`: a stage is `running` only while a runner works on it."""
    manifest: Manifest | None = read_record(paths.run_dir(run) / MANIFEST_FILE)
    if manifest is None:
        return Manifest()
    if manifest.get("status") == "running" and not _runner_alive(run, manifest):
        manifest["status"] = "interrupted"
        close_running_stages(manifest, "interrupted", "the runner was killed while this stage ran")
    elif manifest.get("status") != "running":
        close_running_stages(manifest, "interrupted", "the runner stopped while this stage ran")
    return manifest


def counted_accuracy(metrics: Metrics, key: str) -> uncertainty.Accuracy | None:
    """The accuracy `key` of a stage (`val_accuracy`, `test_accuracy_tta`, ...) with its counts and 95% interval, or
    None where the stage kept no counts (a run older than them, or no such score)."""
    split, _, mirrors = key.partition("_accuracy")
    correct, total = metrics.get(f"{split}_correct{mirrors}"), metrics.get(f"{split}_total")
    if metrics.get(key) is None or correct is None or not total:
        return None
    return uncertainty.accuracy(int(correct), int(total))


def accuracy_text(metrics: Metrics, key: str, digits: int = 2) -> str:
    """`97.50% (96.72-98.10, 1950/2000)`: the accuracy `key` with its 95% interval and counts; the bare accuracy
    (`97.50%`, to `digits` decimals) where the stage kept no counts; "" where it has no such score."""
    counted = counted_accuracy(metrics, key)
    if counted is not None:
        return counted.text()
    return "" if metrics.get(key) is None else f"{metrics[key]:.{digits}%}"


def with_mirrors(metrics: Metrics, split: str) -> str:
    """` (x% with test-time augmentation)` where the stage scored `split` with its mirrored photos too."""
    text = accuracy_text(metrics, f"{split}_accuracy_tta")
    return f" ({text} with test-time augmentation)" if text else ""


def sentence(metrics: Metrics) -> str:
    """One sentence stating a stage's result: the notebook's closing line and the opening of its report."""
    reference = metrics.get("course_notes_val_accuracy")
    text = (f"Validation accuracy {accuracy_text(metrics, 'val_accuracy')} at epoch {metrics['best_epoch']} of "
            f"{metrics['epochs_run']}" + with_mirrors(metrics, "val") + f", loss {metrics['val_loss']:.4f}")
    if reference:
        text += f", against about {reference:.0%} in the course notes"
    if metrics.get("test_accuracy") is not None:
        text += (f"; {report_split.name_of(metrics)} accuracy {accuracy_text(metrics, 'test_accuracy')}"
                 + with_mirrors(metrics, "test"))
    if metrics.get("val_ece") is not None:
        text += f"; calibration error (ECE) {metrics['val_ece']:.3f}"
    text += "."
    if metrics.get("random_weights"):
        text += " RANDOM WEIGHTS: these numbers only show that the pipeline runs."
    return text
