"""The figures of the reports: each function returns a matplotlib Figure with the axes and titles a reader expects,
on tiny data; `save` writes a whole PNG."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from lib.study import plots, scores

matplotlib.use("Agg")
LABELS = np.array([0, 0, 1, 1, 1, 0])
PROBABILITIES = np.array([0.1, 0.9, 0.8, 0.4, 0.99, 0.2])  # Two mistakes: indices 1 and 3.


def titles(figure: Figure) -> list[str]:
    return [axis.get_title() for axis in figure.axes]


def test_learning_curves_show_accuracy_and_loss_with_the_fine_tuning_boundary():
    rows = [{"epoch": epoch, "accuracy": 0.5 + epoch / 10, "val_accuracy": 0.6, "loss": 1 / epoch, "val_loss": 0.5}
            for epoch in range(1, 5)]
    figure = plots.learning_curves(rows, title="Stage 3", phase_boundaries=[2])
    assert isinstance(figure, Figure) and figure.get_suptitle() == "Stage 3"
    assert titles(figure) == ["Training and validation accuracy", "Training and validation loss"]
    accuracy_axis = figure.axes[0]
    assert [line.get_label() for line in accuracy_axis.get_lines()][:2] == ["Training accuracy", "Validation accuracy"]
    assert list(accuracy_axis.get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    assert any(text.get_text() == "fine tuning" for text in accuracy_axis.texts)


def test_confusion_matrix_counts_and_titles_the_accuracy():
    figure = plots.confusion_matrix(LABELS, PROBABILITIES, title="Validation")
    assert titles(figure) == ["Validation: accuracy 66.7% of 6"]
    assert scores.confusion_counts(LABELS, PROBABILITIES) == [[2, 1], [1, 2]]
    assert sorted(text.get_text().split("\n")[0] for text in figure.axes[0].texts) == ["1", "1", "2", "2"]


def test_most_confident_mistakes_shows_the_wrong_photos_surest_first():
    images = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    figure = plots.most_confident_mistakes(images, LABELS, PROBABILITIES, [f"photo{i}.jpg" for i in range(6)])
    assert figure.get_suptitle() == "Most confidently wrong: 2 of 2 mistakes"
    shown = [title for title in titles(figure) if title]
    assert shown[0].startswith("true cat, P(dog)=0.900") and shown[0].endswith("photo1.jpg")
    assert shown[1].startswith("true dog, P(dog)=0.400")
    right = plots.most_confident_mistakes(images, LABELS, (LABELS > 0.5).astype(float))
    assert right.get_suptitle() == "Most confidently wrong: 0 of 0 mistakes"


def test_augmented_examples_are_the_photo_then_its_variants():
    from lib.study import models

    figure = plots.augmented_examples(np.full((2, 16, 16, 3), 128, dtype=np.uint8), models.build_augmentation(seed=0),
                                      variants=3)
    assert len(figure.axes) == 2 * 4 and titles(figure)[:4] == ["original", "variant 1", "variant 2", "variant 3"]


def test_reliability_diagram_shows_calibrated_and_uncalibrated_curves_and_the_counts():
    calibrated = scores.calibration(LABELS, PROBABILITIES)
    uncalibrated = scores.calibration(LABELS, np.clip(PROBABILITIES * 1.5 - 0.25, 0, 1))
    figure = plots.reliability_diagram(calibrated, "Validation", uncalibrated, temperature=2.0)
    assert titles(figure) == ["Validation: reliability", ""] and figure.axes[1].get_ylabel() == "Photos"
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend[0] == "perfectly calibrated" and legend[1].startswith("model's own P(dog), ECE")
    assert legend[2].startswith("calibrated (T = 2.00), ECE")
    assert sum(bar.get_height() for bar in figure.axes[1].patches) == len(LABELS)


def test_heatmap_grid_has_a_row_per_group_and_says_when_one_is_empty():
    group = {"images": np.zeros((2, 8, 8, 3), dtype=np.uint8), "heatmaps": np.ones((2, 2, 2)),
             "probabilities": np.array([0.99, 0.01]), "labels": np.array([1, 0])}
    empty = {"images": np.zeros((0, 8, 8, 3), dtype=np.uint8), "heatmaps": np.zeros((0, 2, 2)),
             "probabilities": np.zeros(0), "labels": np.zeros(0)}
    figure = plots.heatmap_grid({"right": group, "wrong": empty}, title="What the model looks at")
    assert figure.get_suptitle() == "What the model looks at" and len(figure.axes) == 4
    assert titles(figure)[:2] == ["right: true dog\nP(dog)=0.990", "right: true cat\nP(dog)=0.010"]
    assert any(text.get_text() == "No confidently wrong photos." for text in figure.axes[2].texts)


def test_evaluation_figures_and_save_write_whole_pngs(tmp_path):
    from lib.study.photos import ImageSet

    image_set = ImageSet("validation", np.zeros((6, 8, 8, 3), dtype=np.uint8), LABELS, [f"{i}.jpg" for i in range(6)],
                         [], "fingerprint")
    calibration = scores.calibration(LABELS, PROBABILITIES)
    result = scores.Evaluation(loss=0.5, accuracy=0.5, logits=PROBABILITIES, temperature=1.0,
                               probabilities=PROBABILITIES, calibration=calibration,
                               probabilities_uncalibrated=PROBABILITIES,
                               calibration_uncalibrated=calibration)
    figures = plots.evaluation_figures(tmp_path, image_set, result)
    assert len(figures) == 3 and all(isinstance(figure, Figure) for figure in figures)
    for name in ("confusion_matrix.png", "reliability.png", "confident_mistakes.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # No temporary file left behind.


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
