"""Scoring a trained stage on its held-out photos: accuracy and loss, calibration, and test-time augmentation.

Calibration asks whether P(dog) means what it says: of the photos given P(dog) near 0.8, are about 80% dogs?
The expected calibration error (ECE) is the photo-weighted mean gap between the predicted probability and the
observed share of dogs over 15 equal-width bins of P(dog). A classifier on raw VGG16 features is
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

from lib import features, models, training
from lib.data import ImageSet
from lib.weights import WeightsChoice

ECE_BINS = 15


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE and the reliability table: per equal-width bin of P(dog), its photos, mean P(dog), share of dogs."""
    labels = np.asarray(labels, dtype=float).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=float).reshape(-1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1], right=True), 0, bins - 1)
    table, gap = [], 0.0
    for number in range(bins):
        members = index == number
        count = int(members.sum())
        row = {"low": float(edges[number]), "high": float(edges[number + 1]), "count": count,
               "mean_probability": float(probabilities[members].mean()) if count else None,
               "share_of_dogs": float(labels[members].mean()) if count else None}
        if count:
            gap += count * abs(row["mean_probability"] - row["share_of_dogs"])
        table.append(row)
    return {"ece": gap / max(len(labels), 1), "bins": table}


def logits(top, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The classifier's score before its sigmoid, for inputs to `top` (a model ending in the classifier):
    unlike P(dog), it does not saturate at 0 or 1 in float32."""
    import tensorflow as tf

    classifier = top.layers[-1]
    *hidden, output = classifier.layers
    kernel, bias = output.weights

    def make():
        def forward(batch):
            x = batch
            for layer in [*top.layers[1:-1], *hidden]:
                x = layer(x, training=False)
            return tf.reshape(tf.matmul(tf.cast(x, tf.float32), kernel) + bias, [-1])
        return forward

    function = models.compiled(top, "logits", make)
    parts = [function(tf.constant(inputs[start:start + batch_size])).numpy()
             for start in range(0, len(inputs), batch_size)]
    return np.concatenate(parts).astype(float) if parts else np.zeros((0,))


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large scores."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(values, dtype=float)))


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 that minimises the log loss of sigmoid(scores / T) on these labels; 1 (the
    model's own probabilities) when there is none to fit: every photo right (the loss then falls without end
    as T shrinks, and a tiny T would only sharpen the probabilities) or the optimum at the search's edge."""
    labels = np.asarray(labels, dtype=float).reshape(-1)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if np.all((scores > 0) == (labels > 0.5)):
        return 1.0

    def log_loss(temperature: float) -> float:
        scaled = scores / temperature
        return float(np.mean(np.logaddexp(0.0, -scaled) * labels + np.logaddexp(0.0, scaled) * (1 - labels)))

    grid = np.exp(np.linspace(np.log(0.05), np.log(50.0), 200))
    index = int(np.argmin([log_loss(value) for value in grid]))
    if index in (0, len(grid) - 1):
        return 1.0
    best = float(grid[index])
    low, high = best / 1.04, best * 1.04  # Golden-section refinement within the grid's step.
    for _ in range(40):
        one, two = high - (high - low) * 0.618, low + (high - low) * 0.618
        low, high = (low, two) if log_loss(one) < log_loss(two) else (one, high)
    return (low + high) / 2


def mirrored(image_set: ImageSet) -> ImageSet:
    """The split's photos mirrored left to right (its own cache key)."""
    return dataclasses.replace(image_set, images=image_set.images[:, :, ::-1],
                               fingerprint=image_set.fingerprint + "|mirror")


def evaluate(cut: models.CutBase, arrays: dict[str, np.ndarray], image_sets: dict[str, ImageSet],
             splits: list[str], weights: WeightsChoice, test_time_augmentation: bool = False,
             calibrate: bool = True) -> dict[str, dict]:
    """Loss, accuracy, P(dog) and calibration of the trained top on each split's cached features; with
    `calibrate`, P(dog) after a temperature fitted on the validation split (`probabilities` are then the
    calibrated ones, `probabilities_uncalibrated` the model's own); with `test_time_augmentation`, also on
    the mirrored photos (their features cached like the others)."""
    results = {}
    for split in splits:
        labels = image_sets[split].labels
        result = training.evaluate(cut.top, arrays[split], labels)
        result.update(scores=logits(cut.top, arrays[split]), probabilities_uncalibrated=result["probabilities"],
                      calibration_uncalibrated=calibration(labels, result["probabilities"]))
        if test_time_augmentation:
            flipped, _, _ = features.frozen_features(cut, mirrored(image_sets[split]), weights)
            result["scores_mirrored"] = logits(cut.top, flipped)
        results[split] = result
    validation = image_sets["validation"].labels
    temperature = fit_temperature(results["validation"]["scores"], validation) if calibrate else 1.0
    for split, result in results.items():
        labels = image_sets[split].labels
        result.update(temperature=temperature, probabilities=sigmoid(result["scores"] / temperature))
        result["calibration"] = calibration(labels, result["probabilities"])
        if "scores_mirrored" in result:
            averaged = (result["probabilities"] + sigmoid(result["scores_mirrored"] / temperature)) / 2
            result.update(probabilities_tta=averaged, accuracy_tta=float(np.mean((averaged > 0.5) == (labels > 0.5))),
                          calibration_tta=calibration(labels, averaged))
    return results


def metrics_of(evaluations: dict[str, dict]) -> dict[str, Any]:
    """The evaluation numbers that go into `metrics.json`: `val_*` and `test_*` (None where no test split)."""
    found: dict[str, Any] = {}
    for split, prefix in (("validation", "val"), ("test", "test")):
        result = evaluations.get(split)
        found[f"{prefix}_accuracy"] = result["accuracy"] if result else None
        found[f"{prefix}_loss"] = result["loss"] if result else None
        found[f"{prefix}_ece"] = result["calibration_uncalibrated"]["ece"] if result else None
        found[f"{prefix}_ece_calibrated"] = result["calibration"]["ece"] if result else None
        if result and "accuracy_tta" in result:
            found[f"{prefix}_accuracy_tta"] = result["accuracy_tta"]
            found[f"{prefix}_ece_tta"] = result["calibration_tta"]["ece"]
    if "validation" in evaluations:
        found["temperature"] = evaluations["validation"]["temperature"]
        found["reliability_validation"] = evaluations["validation"]["calibration"]["bins"]
        found["reliability_validation_uncalibrated"] = evaluations["validation"]["calibration_uncalibrated"]["bins"]
    return found


def confident_examples(labels: np.ndarray, probabilities: np.ndarray, count: int = 6) -> dict[str, np.ndarray]:
    """Indices of the photos the model was surest about and right, and surest about and wrong."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    probabilities = np.asarray(probabilities).reshape(-1)
    correct = (probabilities > 0.5).astype(int) == labels
    confidence = np.abs(probabilities - 0.5)
    order = np.argsort(-confidence, kind="stable")
    return {"right": order[correct[order]][:count], "wrong": order[~correct[order]][:count]}
