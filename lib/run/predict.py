"""Classify new photos with a run's trained model.

    python -m lib.run.predict --run <run> --images <file or folder> [--stage fine_tuning]
    (make predict RUN=<run> IMAGES=<file or folder> [STAGE=...])

Uses the run's latest completed stage (3, else 2, else 1) unless told which. Stages 2 and 3 saved the whole
model; stage 1 saved only its classifier, so its conv base is rebuilt from the weights, preprocessing, image
size and precision the stage recorded (`VGG16_WEIGHTS` overrides the weights path; a file other than the one
the classifier was trained on is refused). P(dog) is calibrated with the temperature the stage fitted on its
validation photos (`lib.study.evaluation`), which never changes a label. Photos stream in batches, so thousands need
little memory; labels come from `cats/` and `dogs/` folders directly inside the images folder; a file that
cannot be read (or is too large: `lib.study.decode.MAX_PIXELS`) is listed in `skipped` with why and never stops the
run. Photos are named by their path inside the images folder given. Writes `outputs/<run>/predictions/`,
replacing an earlier one only once the new one is whole: `predictions.csv` (one row per photo read),
`predictions.json` (counts, skipped files, accuracy with its counts and 95% interval when labelled), and
`index.html`, a gallery sorted by confidence with heatmaps of where the model looked.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import lib
from lib import SuiteError
from lib.core import locks, params, paths, records, stages, storage, uncertainty
from lib.pages import html
from lib.study import decode, listing

BATCH_SIZE = 64
PREDICT_LOCK_FILE = ".predict.lock"  # In the run folder: held by the make predict writing its predictions.
GALLERY_SIZE = 60  # Photos shown with heatmaps: all of them up to this, else the surest and the least sure.


@dataclasses.dataclass
class Predictor:
    """A trained model: conv base and classifier (kept apart for Grad-CAM), preprocessing, input size, the
    whole from pixels to P(dog), and where it came from."""

    conv_base: Any
    classifier: Any
    preprocessing: str
    image_size: int
    description: str
    temperature: float = 1.0
    model: Any = None

    def __post_init__(self):
        from lib.study import models

        self.model = models.conv_segment(self.conv_base, None, preprocessing=self.preprocessing,
                                         classifier=self.classifier)


def latest_stage(run: str, name: str = "") -> stages.Stage:
    """The stage named, or the run's latest that completed (its stage.json, metrics and model are there)."""
    candidates = [stages.get(name)] if name else list(reversed(stages.STAGES))
    for stage in candidates:
        folder = paths.stage_dir(run, stage.stem)
        if all((folder / file).is_file() for file in (records.STAGE_FILE, records.METRICS_FILE, stage.hand_off_model)):
            return stage
    if not paths.run_dir(run).is_dir():
        raise SuiteError(f"No run folder {paths.run_dir(run)}: give RUN=<a folder in {paths.outputs_root()}>.")
    raise SuiteError(f"Run {run} has no completed {'stage ' + name if name else 'stage'} with a saved model: run it "
                     "first (make run-all RUN=...).")


def load(run: str, stage: stages.Stage) -> Predictor:
    """The stage's trained model (stage 1: its classifier on a conv base rebuilt as the stage recorded)."""
    import keras

    from lib.study import models
    from lib.study import weights as vgg16_weights

    folder = paths.stage_dir(run, stage.stem)
    metrics = records.read_metrics(folder)
    if stage.hand_off_model == "model.keras":
        model = models.load_model(folder / stage.hand_off_model)
        return Predictor(model.get_layer("vgg16"), model.get_layer("classifier"), model.get_layer("preprocess").mode,
                         model.input_shape[1], f"{run}/{stage.stem}/{stage.hand_off_model}",
                         metrics.get("temperature", 1.0))
    recorded = metrics["parameters"]
    weights = vgg16_weights.resolve_weights(recorded.get("weights", "imagenet"))  # VGG16_WEIGHTS still wins.
    if weights.sha256 != metrics.get("weights_sha256"):
        raise SuiteError(f"The conv-base weights ({weights.describe()}) differ from those {stage.stem} of run {run} "
                         "was trained on: point VGG16_WEIGHTS at the same file.")
    keras.mixed_precision.set_global_policy(metrics.get("precision", "float32"))
    keras.utils.set_random_seed(recorded.get("seed", 42))  # Random weights (smoke runs) come back the same.
    conv_base = models.build_conv_base(weights, metrics["image_size"])
    return Predictor(conv_base, models.load_model(folder / stage.hand_off_model), metrics["preprocessing"],
                     metrics["image_size"], f"{run}/{stage.stem}/{stage.hand_off_model} on {weights.describe()}",
                     metrics.get("temperature", 1.0))


def list_photos(images: str) -> tuple[list[tuple[Path, str | None]], list[dict[str, str]]]:
    """The photos to classify with their true label (None when unknown), and the files left out with why."""
    root = Path(images).expanduser().resolve()
    if root.is_file():
        return [(root, None)], []
    if not root.is_dir():
        raise SuiteError(f"IMAGES={images}: no such file or folder. Give a photo or a folder of photos.")
    labelled = {child.name.lower(): child for child in root.iterdir() if child.is_dir()
                and child.name.lower() in listing.CLASS_NAMES}
    photos, skipped = [], []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        if kind := listing.special_file(path):
            skipped.append({"path": str(path), "reason": kind})
            continue
        if path.suffix.lower() not in listing.IMAGE_EXTENSIONS or path.name.startswith("._"):
            skipped.append({"path": str(path), "reason": "not an image (extension or system file)"})
            continue
        label = next((name[:-1] for name, folder in labelled.items() if folder in path.parents), None)
        photos.append((path, label))
    return photos, skipped


def probabilities_of(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """P(dog) of a batch of uint8 photos, calibrated with the temperature the stage fitted."""
    from lib.study import evaluation, scores

    return scores.sigmoid(evaluation.logits(predictor.model, images.astype("float32")) / predictor.temperature)


def classify(predictor: Predictor, photos: list[tuple[Path, str | None]]) -> tuple[list[dict], list[dict]]:
    """Rows `{path, p_dog, label, true_label}` for every photo that decodes, in batches; and those that do not."""
    rows, skipped = [], []
    for start in range(0, len(photos), BATCH_SIZE):
        batch = photos[start:start + BATCH_SIZE]
        errors: dict[str, str] = {}
        images, ok = decode.decode_files([path for path, _ in batch], predictor.image_size, errors, label="new")
        skipped += [{"path": str(path), "reason": errors.get(str(path), "could not be decoded")}
                    for (path, _), good in zip(batch, ok) if not good]
        if ok.any():
            for (path, truth), probability in zip([item for item, good in zip(batch, ok) if good],
                                                  probabilities_of(predictor, images[ok])):
                rows.append({"path": str(path), "p_dog": round(float(probability), 6),
                             "label": "dog" if probability > 0.5 else "cat", "true_label": truth})
        print(f"  classified {min(start + BATCH_SIZE, len(photos))}/{len(photos)} photos", flush=True)
    return rows, skipped


def shown_path(path: str, images: str) -> str:
    """How a photo is named in the predictions: its path inside the folder given (its name when a file was given),
    so that the pages and the CSV can be shared without the folders above it."""
    root = Path(images).expanduser().resolve()
    return str(Path(path).relative_to(root)) if root.is_dir() else Path(path).name


def gallery_rows(rows: list[dict]) -> list[dict]:
    """The rows shown in the gallery, surest first: all, or the surest and the least sure halves."""
    ordered = sorted(rows, key=lambda row: -abs(row["p_dog"] - 0.5))
    if len(ordered) <= GALLERY_SIZE:
        return ordered
    return ordered[: GALLERY_SIZE // 2] + ordered[-(GALLERY_SIZE // 2):]


def gallery_images(predictor: Predictor, shown: list[dict]) -> list[dict]:
    """Each shown row with its photo and its heatmap overlay as embeddable PNGs."""
    from lib.study import heatmaps

    errors: dict[str, str] = {}
    images, _ = decode.decode_files([Path(row["file"]) for row in shown], predictor.image_size, errors, label="gallery")
    maps, _ = heatmaps.gradcam(predictor.conv_base, predictor.classifier, predictor.preprocessing, images)
    return [{**row, "photo": html.png_data_uri(image), "heatmap": html.png_data_uri(heatmaps.overlay(image, heatmap)),
             "name": Path(row["path"]).name, "confidence": max(row["p_dog"], 1 - row["p_dog"])}
            for row, image, heatmap in zip(shown, images, maps)]


def summary_of(rows: list[dict], skipped: list[dict], run: str, stage: stages.Stage, predictor: Predictor,
               images: str) -> dict[str, Any]:
    """`predictions.json`: counts, skipped files with why, and where the photos carry labels the accuracy with its
    counts (`correct` of `labelled`) and 95% interval (`accuracy_interval_95`, [low, high]; Wilson)."""
    labelled = [row for row in rows if row["true_label"]]
    counted = uncertainty.accuracy_of([row["label"] == row["true_label"] for row in labelled]) if labelled else None
    return {"run": run, "stage": stage.stem, "model": predictor.description, "images": images,  # As given.
            "count": len(rows), "labelled": len(labelled),
            "accuracy": counted.value if counted else None, "correct": counted.correct if counted else None,
            "accuracy_interval_95": [counted.low, counted.high] if counted else None,
            "dogs": sum(row["label"] == "dog" for row in rows), "cats": sum(row["label"] == "cat" for row in rows),
            "skipped": skipped, "written": records.now()}


def write(run: str, rows: list[dict], summary: dict[str, Any], gallery: list[dict]) -> Path:
    """Write the predictions folder beside its final place, then swap it in: an interrupted or failed
    prediction never leaves a half folder that looks complete."""
    target = paths.run_dir(run) / "predictions"
    building = Path(tempfile.mkdtemp(prefix=".predictions-", dir=target.parent))
    try:
        with locks.holding(building):
            table = [{**row, "true_label": row["true_label"] or ""} for row in rows]
            # Photo names are anyone's text: made spreadsheet-safe (a name beginning "=" is no formula).
            storage.write_text(building / "predictions.csv",
                               records.csv_text(table, ["path", "p_dog", "label", "true_label"]))
            storage.write_json(building / "predictions.json", summary)
            storage.write_text(building / "index.html", html.render("predictions.html.j2", summary=summary,
                                                                     items=gallery, shown=len(gallery)))
            storage.apply_umask(building, folder=True)
            retired = target.with_name(f".predictions-old-{os.getpid()}")
            if target.exists():
                os.replace(target, retired)
            os.replace(building, target)
            storage.sync_folder(target.parent)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def predict(run: str, images: str, stage_name: str = "") -> Path:
    """Classify `images` with run `run`'s model and write its predictions folder; returns the folder."""
    paths.check_run_name(run)
    stage = latest_stage(run, stage_name)
    hold = hold_predictions(run)
    try:
        return _predict(run, images, stage)
    finally:
        locks.release(hold)


def hold_predictions(run: str) -> int:
    """Take the lock of run `run`'s predictions for this command, without waiting: a second `make predict` on the
    same run is refused at once, naming the first, rather than both replacing the same folder."""
    try:
        return locks.hold_file(paths.run_dir(run) / PREDICT_LOCK_FILE)
    except locks.RunInUse as holder:
        raise SuiteError(f"Run {run}'s predictions are being written by another make predict: {holder}. Wait for it "
                         "to end, then run this one again.") from None


def _predict(run: str, images: str, stage: stages.Stage) -> Path:
    """`predict` once the run's predictions are held by this command."""
    photos, skipped = list_photos(images)
    if not photos:
        raise SuiteError(f"IMAGES={images} holds no photos ({', '.join(sorted(listing.IMAGE_EXTENSIONS))}).")
    lib.load_tensorflow()
    predictor = load(run, stage)
    print(f"Classifying {len(photos)} photos with {predictor.description.rstrip('.')}.", flush=True)
    rows, unreadable = classify(predictor, photos)
    for item in rows + skipped + unreadable:
        item["file"], item["path"] = item["path"], shown_path(item["path"], images)
        if "reason" in item:  # PIL names the file it could not read.
            item["reason"] = item["reason"].replace(item["file"], item["path"])
    summary = summary_of(rows, [{key: item[key] for key in ("path", "reason")} for item in skipped + unreadable],
                         run, stage, predictor, images)
    folder = write(run, rows, summary, gallery_images(predictor, gallery_rows(rows)))
    accuracy = (f", accuracy {uncertainty.accuracy(summary['correct'], summary['labelled']).text()} on the labelled"
                if summary["labelled"] else "")
    print(f"{summary['count']} photos classified ({summary['dogs']} dogs, {summary['cats']} cats){accuracy}; "
          f"{len(summary['skipped'])} skipped. {folder / 'index.html'}", flush=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.run.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the run whose model classifies (a folder in outputs/)")
    parser.add_argument("--images", required=True, help="a photo, or a folder of photos (cats/ and dogs/ label them)")
    parser.add_argument("--stage", default="", help="feature_extraction, data_augmentation or fine_tuning "
                                                    "(default: the latest completed)")
    arguments = parser.parse_args(argv)
    params.absolute_environment()
    try:
        predict(arguments.run, arguments.images, arguments.stage)
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
