"""Scoring a trained stage on its held-out photos: accuracy and loss, calibration, and test-time augmentation.

Calibration (`lib.study.scores`) asks whether P(dog) means what it says. A classifier on raw VGG16 features is
overconfident: the features are large and sparse (at block5_pool 84% are 0, the rest up to several hundred),
the training loss goes to almost 0, and the logits grow with it, so even its mistakes get P(dog) of 0.000
or 1.000. With `calibrate` (the default), one temperature T is fitted on the validation photos (the logit
divided by T, minimising their log loss) and the calibrated P(dog) = sigmoid(logit / T) is reported and used
for predictions; a positive T never changes a decision, so accuracy is exactly the same. The uncalibrated ECE
is kept beside it, and the test split's calibrated ECE is the held-out check.

Test-time augmentation (TTA) scores each photo and its mirror image and averages the two probabilities; it
is reported beside the plain numbers, never instead.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from lib.core import uncertainty
from lib.study import cache, features, listing, models, scores, training
from lib.study.photos import ImageSet
from lib.study.weights import WeightsChoice


def logits(top, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The classifier's score before its sigmoid, for inputs to `top` (a model ending in the classifier):
    unlike P(dog), it does not saturate at 0 or 1 in float32."""
    return training.forward_batches(top, inputs, None, batch_size)[0]


def mirrored(image_set: ImageSet) -> ImageSet:
    """The split's photos mirrored left to right (its own cache key)."""
    return dataclasses.replace(image_set, images=image_set.images[:, :, ::-1],
                               fingerprint=image_set.fingerprint + cache.MIRROR_PHOTOS)


def evaluate(cut: models.CutBase, arrays: dict[str, np.ndarray], image_sets: dict[str, ImageSet],
             splits: list[str], weights: WeightsChoice, test_time_augmentation: bool = False,
             calibrate: bool = True) -> dict[str, scores.Evaluation]:
    """Loss, accuracy, P(dog) and calibration of the trained top on each split's cached features, one
    `scores.Evaluation` per split; with `calibrate`, P(dog) after a temperature fitted on the validation split
    (`probabilities` are then the calibrated ones, `probabilities_uncalibrated` the model's own); with
    `test_time_augmentation`, also on the mirrored photos (their features cached like the others)."""
    measured, mirrored_logits = {}, {}
    for split in splits:
        measured[split] = training.loss_and_accuracy(cut.top, arrays[split], image_sets[split].labels)
        if test_time_augmentation:
            flipped, _, _ = features.features_at_cut(cut, mirrored(image_sets[split]), weights)
            mirrored_logits[split] = logits(cut.top, flipped)
    validation = image_sets["validation"].labels
    temperature = scores.fit_temperature(measured["validation"].logits, validation) if calibrate else 1.0
    return {split: _scored(result, image_sets[split].labels, temperature, mirrored_logits.get(split))
            for split, result in measured.items()}


def _scored(measured: training.Scored, labels: np.ndarray, temperature: float,
            logits_mirrored: np.ndarray | None) -> scores.Evaluation:
    """One split's `scores.Evaluation` from `training.loss_and_accuracy`'s numbers and the fitted temperature."""
    probabilities = scores.sigmoid(measured.logits / temperature)
    result = scores.Evaluation(
        loss=measured.loss, accuracy=measured.accuracy, logits=measured.logits, temperature=temperature,
        probabilities=probabilities, calibration=scores.calibration(labels, probabilities),
        probabilities_uncalibrated=measured.probabilities,
        calibration_uncalibrated=scores.calibration(labels, measured.probabilities),
        right=(measured.probabilities > 0.5) == (labels > 0.5))  # What `accuracy` counts, photo by photo.
    if logits_mirrored is not None:
        averaged = (probabilities + scores.sigmoid(logits_mirrored / temperature)) / 2
        right_tta = (averaged > 0.5) == (labels > 0.5)
        result = dataclasses.replace(
            result, logits_mirrored=logits_mirrored, probabilities_tta=averaged, accuracy_tta=float(np.mean(right_tta)),
            calibration_tta=scores.calibration(labels, averaged), right_tta=right_tta)
    return result


def counts_of(prefix: str, right: np.ndarray | None, mirrors: str = "") -> dict[str, Any]:
    """The counts and 95% interval of an accuracy for `metrics.json` (`lib.core.records.Metrics`):
    `<prefix>_correct<mirrors>`, `<prefix>_total` and `<prefix>_accuracy<mirrors>_interval_95` from the per-photo
    answers `right`; {} where the evaluation kept none."""
    if right is None:
        return {}
    counted = uncertainty.accuracy_of(np.asarray(right, dtype=bool).reshape(-1).tolist())
    return {f"{prefix}_correct{mirrors}": counted.correct, f"{prefix}_total": counted.total,
            f"{prefix}_accuracy{mirrors}_interval_95": [counted.low, counted.high]}


def metrics_of(evaluations: dict[str, scores.Evaluation]) -> dict[str, Any]:
    """The evaluation numbers that go into `metrics.json`: `val_*` and `test_*` (None where no test split), each
    accuracy with its counts and 95% interval (`counts_of`)."""
    found: dict[str, Any] = {}
    for split, prefix in (("validation", "val"), ("test", "test")):
        result = evaluations.get(split)
        found[f"{prefix}_accuracy"] = result.accuracy if result else None
        found.update(counts_of(prefix, result.right) if result else
                     {f"{prefix}_correct": None, f"{prefix}_total": None, f"{prefix}_accuracy_interval_95": None})
        found[f"{prefix}_loss"] = result.loss if result else None
        found[f"{prefix}_ece"] = result.calibration_uncalibrated.ece if result else None
        found[f"{prefix}_ece_calibrated"] = result.calibration.ece if result else None
        if result and result.calibration_tta is not None:
            found[f"{prefix}_accuracy_tta"] = result.accuracy_tta
            found[f"{prefix}_ece_tta"] = result.calibration_tta.ece
            found.update(counts_of(prefix, result.right_tta, "_tta"))
    if "validation" in evaluations:
        found["temperature"] = evaluations["validation"].temperature
        found["reliability_validation"] = evaluations["validation"].calibration.bins
        found["reliability_validation_uncalibrated"] = evaluations["validation"].calibration_uncalibrated.bins
    return found


def photo_name(path: str, split: str) -> str:
    """A photo's name inside its split's folder (`cats/cat.1000.jpg`), as `make predict` names the photos of the
    folder it is given: the path below the split folder's class folder, keeping that class folder."""
    path_object = Path(path)
    for folder in path_object.parents:
        if folder.parent.name == split and folder.name.lower() in listing.CLASS_NAMES:
            return path_object.relative_to(folder.parent).as_posix()
    return path_object.name


def photo_results(image_sets: dict[str, ImageSet], evaluations: dict[str, scores.Evaluation]
                  ) -> dict[str, list[dict[str, Any]]]:
    """Per scored split, one row per photo: its `photo_name`, label (0 cat, 1 dog), calibrated P(dog) and whether
    the stage got it right (`lib.core.photo_results` writes and compares them)."""
    # The held-out half of the validation photos lies in validation/: named inside that folder.
    return {split: [{"file": photo_name(path, image_sets[split].folder or split), "label": int(label),
                     "p_dog": round(float(probability), 6), "right": bool(right)}
                    for path, label, probability, right in zip(image_sets[split].files, image_sets[split].labels,
                                                               result.probabilities, result.right)]
            for split, result in evaluations.items() if result.right is not None}
