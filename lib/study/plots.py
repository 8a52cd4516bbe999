"""Figures for the notebooks and reports. Each function returns a matplotlib `Figure`; callers save it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lib.core import storage
from lib.study import scores

CLASS_NAMES = ("cat", "dog")


def learning_curves(rows: list[dict], title: str = "", phase_boundaries: list[int] | None = None) -> Figure:
    """Accuracy and loss per epoch, training vs validation, as the course notes plot them.

    `rows` are history rows (`lib.study.training.history_rows`); `phase_boundaries` are epochs after which a new
    phase starts (fine tuning), drawn as dashed lines.
    """
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [row["epoch"] for row in rows]
    for axis, metric, name in ((accuracy_axis, "accuracy", "Accuracy"), (loss_axis, "loss", "Loss")):
        axis.plot(epochs, [row.get(metric, np.nan) for row in rows], "o-", markersize=3,
                  label=f"Training {metric}")
        axis.plot(epochs, [row.get(f"val_{metric}", np.nan) for row in rows], "s-", markersize=3,
                  label=f"Validation {metric}")
        for boundary in phase_boundaries or []:
            axis.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=1)
            axis.text(boundary + 0.6, axis.get_ylim()[1], "fine tuning", va="top", fontsize=8, color="grey")
        axis.set_xlabel("Epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(name)
        axis.set_title(f"Training and validation {metric}")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, title: str = "Validation") -> Figure:
    """2x2 confusion matrix (rows: true class, columns: predicted class) with counts and shares."""
    matrix = np.array(scores.confusion_counts(labels, probabilities))
    figure, axis = plt.subplots(figsize=(4.2, 3.8))
    axis.imshow(matrix, cmap="Blues")
    for row in range(2):
        for column in range(2):
            share = matrix[row, column] / max(matrix[row].sum(), 1)
            axis.text(column, row, f"{matrix[row, column]}\n({share:.1%})", ha="center", va="center",
                      color="white" if matrix[row, column] > matrix.max() / 2 else "black")
    axis.set_xticks([0, 1], [f"predicted {name}" for name in CLASS_NAMES])
    axis.set_yticks([0, 1], [f"true {name}" for name in CLASS_NAMES])
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(f"{title}: accuracy {accuracy:.1%} of {matrix.sum()}")
    figure.tight_layout()
    return figure


def most_confident_mistakes(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                            files: list[str] | None = None, count: int = 12) -> Figure:
    """A grid of the misclassified images the model was surest about, with true class and P(dog)."""
    labels = np.asarray(labels).astype(int).reshape(-1)
    probabilities = np.asarray(probabilities).reshape(-1)
    wrong = np.flatnonzero((probabilities > 0.5).astype(int) != labels)
    confidence = np.abs(probabilities[wrong] - 0.5)
    chosen = wrong[np.argsort(-confidence)][:count]
    columns = 6
    rows = max(1, int(np.ceil(len(chosen) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.9 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, chosen):
        axis.imshow(images[index])
        name = files[index].rsplit("/", 1)[-1] if files else f"#{index}"
        axis.set_title(f"true {CLASS_NAMES[labels[index]]}, P(dog)={probabilities[index]:.3f}\n{name}",
                       fontsize=8)
    if not len(chosen):
        axes.flat[0].text(0.0, 0.5, "No misclassified images.", fontsize=12)
    figure.suptitle(f"Most confidently wrong: {len(chosen)} of {len(wrong)} mistakes")
    figure.tight_layout()
    return figure


def augmented_examples(images: np.ndarray, augmentation, variants: int = 5, seed: int = 0) -> Figure:
    """Each row: one training image, then `variants` random augmentations of it (training mode)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    figure, axes = plt.subplots(len(images), variants + 1, figsize=(2.0 * (variants + 1), 2.0 * len(images)),
                                squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(image)
        axes[row, 0].set_title("original", fontsize=8)
        batch = np.repeat(image[None].astype("float32"), variants, axis=0)
        augmented = np.asarray(augmentation(batch, training=True)).clip(0, 255).astype("uint8")
        for column in range(variants):
            axes[row, column + 1].imshow(augmented[column])
            axes[row, column + 1].set_title(f"variant {column + 1}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("Random augmentation of training images (validation images are never augmented)")
    figure.tight_layout()
    return figure


def reliability_diagram(calibration: scores.Calibration, title: str = "Validation",
                        uncalibrated: scores.Calibration | None = None,
                        temperature: float | None = None) -> Figure:
    """Predicted P(dog) against the observed share of dogs per bin (`lib.study.scores.calibration`), with the
    diagonal of perfect calibration, bars of photos per bin, and the ECE; the model's own probabilities beside the
    calibrated ones when `uncalibrated` is given."""
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5, 5.2), sharex=True, height_ratios=(3, 1))
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    curves = {"model's own P(dog)": uncalibrated} if uncalibrated and temperature != 1.0 else {}
    curves[f"calibrated (T = {temperature:.2f})" if curves else "this model"] = calibration
    for name, values in curves.items():
        rows = [row for row in values.bins if row["count"]]
        axis.plot([row["mean_probability"] for row in rows], [row["share_of_dogs"] for row in rows], "o-",
                  label=f"{name}, ECE {values.ece:.3f}")
    axis.set_ylabel("Share of dogs")
    axis.set_title(f"{title}: reliability")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    width = calibration.bins[0]["high"] - calibration.bins[0]["low"]
    counts.bar([row["low"] + width / 2 for row in calibration.bins], [row["count"] for row in calibration.bins],
               width=width * 0.9, color="tab:blue")
    counts.set_yscale("symlog")
    counts.set_xlabel("Predicted P(dog)")
    counts.set_ylabel("Photos")
    figure.tight_layout()
    return figure


def heatmap_grid(groups: dict[str, dict], title: str = "") -> Figure:
    """Rows of photos with their Grad-CAM heatmaps overlaid: one row per group (`right`, `wrong`), each
    titled with the true class and P(dog)."""
    columns = max([len(group["images"]) for group in groups.values()] + [1])
    figure, axes = plt.subplots(len(groups), columns, figsize=(2.3 * columns, 2.8 * len(groups)), squeeze=False)
    for row, (name, group) in enumerate(groups.items()):
        for axis in axes[row]:
            axis.axis("off")
        if not len(group["images"]):
            axes[row, 0].text(0.0, 0.5, f"No confidently {name} photos.", fontsize=11)
        for column, image in enumerate(group["images"]):
            axis = axes[row, column]
            axis.imshow(image)
            axis.imshow(group["heatmaps"][column], cmap="jet", alpha=0.45, interpolation="bilinear",
                        extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
            truth = CLASS_NAMES[int(group["labels"][column])]
            axis.set_title(f"{name}: true {truth}\nP(dog)={group['probabilities'][column]:.3f}", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def evaluation_figures(folder, image_set, evaluation: scores.Evaluation) -> list[Figure]:
    """Confusion matrix, reliability diagram and most confidently wrong photos of a split (an
    `lib.study.evaluation.evaluate` result), saved into `folder` as PNG."""
    from pathlib import Path

    probabilities = evaluation.probabilities
    figures = {
        "confusion_matrix.png": confusion_matrix(image_set.labels, probabilities, title=image_set.name.capitalize()),
        "reliability.png": reliability_diagram(evaluation.calibration, image_set.name.capitalize(),
                                               evaluation.calibration_uncalibrated, evaluation.temperature),
        "confident_mistakes.png": most_confident_mistakes(image_set.images, image_set.labels, probabilities,
                                                          image_set.files),
    }
    for name, figure in figures.items():
        save(figure, Path(folder) / name)
    return list(figures.values())


def save(figure: Figure, path) -> None:
    """Save a figure as PNG atomically (and keep it open for display in the notebook)."""
    with storage.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
