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
from typing import Any

import numpy as np

from lib.study import cache, features, models, scores, training
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
        calibration_uncalibrated=scores.calibration(labels, measured.probabilities))
    if logits_mirrored is not None:
        averaged = (probabilities + scores.sigmoid(logits_mirrored / temperature)) / 2
        result = dataclasses.replace(
            result, logits_mirrored=logits_mirrored, probabilities_tta=averaged,
            accuracy_tta=float(np.mean((averaged > 0.5) == (labels > 0.5))),
            calibration_tta=scores.calibration(labels, averaged))
    return result


def metrics_of(evaluations: dict[str, scores.Evaluation]) -> dict[str, Any]:
    """The evaluation numbers that go into `metrics.json`: `val_*` and `test_*` (None where no test split)."""
    found: dict[str, Any] = {}
    for split, prefix in (("validation", "val"), ("test", "test")):
        result = evaluations.get(split)
        found[f"{prefix}_accuracy"] = result.accuracy if result else None
        found[f"{prefix}_loss"] = result.loss if result else None
        found[f"{prefix}_ece"] = result.calibration_uncalibrated.ece if result else None
        found[f"{prefix}_ece_calibrated"] = result.calibration.ece if result else None
        if result and result.calibration_tta is not None:
            found[f"{prefix}_accuracy_tta"] = result.accuracy_tta
            found[f"{prefix}_ece_tta"] = result.calibration_tta.ece
    if "validation" in evaluations:
        found["temperature"] = evaluations["validation"].temperature
        found["reliability_validation"] = evaluations["validation"].calibration.bins
        found["reliability_validation_uncalibrated"] = evaluations["validation"].calibration_uncalibrated.bins
    return found
