"""Numbers from labels and probabilities, with nothing but NumPy: the confusion matrix, calibration (the expected
calibration error and the temperature that calibrates), and the photos a model was surest about.

Calibration asks whether P(dog) means what it says: of the photos given P(dog) near 0.8, are about 80% dogs?
The expected calibration error (ECE) is the photo-weighted mean gap between the predicted probability and the
observed share of dogs over 15 equal-width bins of P(dog).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

ECE_BINS = 15


@dataclasses.dataclass
class Calibration:
    """How well P(dog) means what it says on some photos: the expected calibration error (`ece`) and the
    reliability table it comes from (`bins`: per equal-width bin of P(dog), its bounds `low` and `high`, its photos
    `count`, their `mean_probability` and `share_of_dogs`; rows as `metrics.json` records them)."""

    ece: float
    bins: list[dict[str, Any]]


@dataclasses.dataclass
class Evaluation:
    """A trained stage scored on one held-out split (`lib.study.evaluation.evaluate`).

    `logits` are the classifier's scores before its sigmoid, `temperature` the one fitted on the validation split
    (1 without calibration); `probabilities` are P(dog) = sigmoid(logits / temperature), `calibration` theirs;
    `probabilities_uncalibrated` and `calibration_uncalibrated` are the model's own. The `*_tta` fields hold the
    test-time augmentation's numbers (the photo and its mirror image averaged), None when it was not asked for.
    `right` (and `right_tta`) say photo by photo whether the stage's answer was right: what `accuracy` counts.
    """

    loss: float
    accuracy: float
    logits: np.ndarray
    temperature: float
    probabilities: np.ndarray
    calibration: Calibration
    probabilities_uncalibrated: np.ndarray
    calibration_uncalibrated: Calibration
    logits_mirrored: np.ndarray | None = None
    probabilities_tta: np.ndarray | None = None
    accuracy_tta: float | None = None
    calibration_tta: Calibration | None = None
    right: np.ndarray | None = None
    right_tta: np.ndarray | None = None


def confusion_counts(labels: np.ndarray, probabilities: np.ndarray) -> list[list[int]]:
    """The 2x2 confusion matrix as nested lists (rows: true class, columns: predicted class)."""
    labels = np.asarray(labels).astype(int).reshape(-1)
    predicted = (np.asarray(probabilities).reshape(-1) > 0.5).astype(int)
    return [[int(np.sum((labels == t) & (predicted == p))) for p in (0, 1)] for t in (0, 1)]


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> Calibration:
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
    return Calibration(ece=gap / max(len(labels), 1), bins=table)


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


def confident_examples(labels: np.ndarray, probabilities: np.ndarray, count: int = 6) -> dict[str, np.ndarray]:
    """Indices of the photos the model was surest about and right, and surest about and wrong."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    probabilities = np.asarray(probabilities).reshape(-1)
    correct = (probabilities > 0.5).astype(int) == labels
    confidence = np.abs(probabilities - 0.5)
    order = np.argsort(-confidence, kind="stable")
    return {"right": order[correct[order]][:count], "wrong": order[~correct[order]][:count]}
