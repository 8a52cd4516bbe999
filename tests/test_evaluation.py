"""Calibration numbers, test-time augmentation, Grad-CAM heatmaps and the photos they are shown for."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import make_dataset

from lib.core import records, uncertainty
from lib.study import evaluation, features, heatmaps, models, photos, scores
from lib.study.weights import WeightsChoice


def test_expected_calibration_error_of_known_cases():
    labels = np.array([1] * 9 + [0])
    assert scores.calibration(labels, np.full(10, 0.9)).ece == pytest.approx(0.0)  # 90% sure, 90% dogs.
    overconfident = scores.calibration(np.array([1, 0] * 5), np.full(10, 1.0))
    assert overconfident.ece == pytest.approx(0.5)
    table = scores.calibration(np.array([0, 1, 1]), np.array([0.01, 0.5, 0.99])).bins
    assert len(table) == scores.ECE_BINS and sum(row["count"] for row in table) == 3
    assert table[0]["count"] == 1 and table[-1]["count"] == 1 and table[7]["mean_probability"] == 0.5


def test_temperature_scaling_calibrates_without_changing_a_decision():
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 2000)
    logits = (labels * 2 - 1) * 12.0 + generator.normal(0, 10, 2000)  # Right mostly, and far too sure.
    temperature = scores.fit_temperature(logits, labels)
    assert 3 < temperature < 30
    before = scores.calibration(labels, scores.sigmoid(logits))
    after = scores.calibration(labels, scores.sigmoid(logits / temperature))
    assert after.ece < before.ece / 2
    assert np.array_equal(scores.sigmoid(logits) > 0.5, scores.sigmoid(logits / temperature) > 0.5)
    assert scores.sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]  # No overflow.

    # Every photo right: there is no temperature to fit, and the model's own probabilities stay.
    assert scores.fit_temperature(np.array([-3.0, -0.5, 2.0, 9.0]), np.array([0, 0, 1, 1])) == 1.0


def test_confident_examples_are_the_surest_right_and_wrong():
    labels = np.array([0, 0, 1, 1, 0])
    probabilities = np.array([0.01, 0.4, 0.99, 0.3, 0.95])
    chosen = scores.confident_examples(labels, probabilities, count=2)
    assert list(chosen["right"]) == [0, 2] and list(chosen["wrong"]) == [4, 3]


def test_metrics_of_reports_tta_beside_the_plain_numbers():
    nothing = np.zeros(0)
    plain = scores.Evaluation(loss=0.3, accuracy=0.9, logits=nothing, temperature=3.0, probabilities=nothing,
                              calibration=scores.Calibration(0.02, []), probabilities_uncalibrated=nothing,
                              calibration_uncalibrated=scores.Calibration(0.05, []))
    with_tta = dataclasses.replace(plain, accuracy_tta=0.92, calibration_tta=scores.Calibration(0.04, []))
    found = evaluation.metrics_of({"validation": with_tta})
    assert found["val_accuracy"] == 0.9 and found["val_accuracy_tta"] == 0.92 and found["val_ece_tta"] == 0.04
    assert found["val_ece"] == 0.05 and found["val_ece_calibrated"] == 0.02 and found["temperature"] == 3.0
    assert found["test_accuracy"] is None and "test_accuracy_tta" not in found
    assert "val_accuracy_tta" not in evaluation.metrics_of({"validation": plain})


def test_metrics_of_counts_each_accuracy_with_its_wilson_interval():
    nothing = np.zeros(0)
    result = scores.Evaluation(loss=0.3, accuracy=0.75, logits=nothing, temperature=1.0, probabilities=nothing,
                               calibration=scores.Calibration(0.02, []), probabilities_uncalibrated=nothing,
                               calibration_uncalibrated=scores.Calibration(0.05, []),
                               right=np.array([True, True, True, False]), accuracy_tta=1.0,
                               calibration_tta=scores.Calibration(0.0, []), right_tta=np.ones(4, dtype=bool))
    found = evaluation.metrics_of({"validation": result})
    assert found["val_accuracy"] == 0.75 and found["val_correct"] == 3 and found["val_total"] == 4
    assert found["val_accuracy_interval_95"] == list(uncertainty.wilson_interval(3, 4))
    assert found["val_correct_tta"] == 4
    assert found["val_accuracy_tta_interval_95"] == [uncertainty.wilson_interval(4, 4)[0], 1.0]
    assert found["test_correct"] is None and found["test_accuracy_interval_95"] is None  # No test split.
    assert records.accuracy_text(found, "val_accuracy") == uncertainty.accuracy(3, 4).text()


def test_each_photo_is_named_inside_its_split_folder_as_predict_names_it(tmp_path):
    assert evaluation.photo_name(str(tmp_path / "validation" / "Cats" / "a" / "x.jpg"), "validation") == "Cats/a/x.jpg"
    assert evaluation.photo_name(str(tmp_path / "test" / "dogs" / "y.png"), "test") == "dogs/y.png"
    assert evaluation.photo_name("/elsewhere/z.jpg", "test") == "z.jpg"


def test_gradcam_gives_one_normalised_map_per_photo_with_the_models_probability():
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(WeightsChoice("none", None, None), 32)
    classifier = models.build_classifier(base.output_shape[1:])
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype("uint8")
    maps, probabilities = heatmaps.gradcam(base, classifier, "vgg16", images, batch_size=2)
    assert maps.shape == (5, 2, 2) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    whole = models.conv_segment(base, None, preprocessing="vgg16", classifier=classifier)
    np.testing.assert_allclose(probabilities, np.asarray(whole(images.astype("float32"))).reshape(-1), atol=1e-5)
    overlaid = heatmaps.overlay(images[0], maps[0])
    assert overlaid.shape == (32, 32, 3) and overlaid.dtype == np.uint8


def test_evaluate_gives_each_split_an_evaluation_with_named_fields(tmp_path):
    keras.utils.set_random_seed(0)
    chosen = WeightsChoice("none", None, None)
    image_sets = photos.load_image_sets(make_dataset(tmp_path / "photos", per_class=3), 32, 0, "memory",
                                         report_split="none")
    base = models.build_conv_base(chosen, 32)
    cut = models.cut_base(base, models.build_classifier(base.output_shape[1:]), "vgg16")
    arrays = features.at_cut(cut, image_sets, ["validation"], chosen).arrays
    found = evaluation.evaluate(cut, arrays, image_sets, ["validation"], chosen, test_time_augmentation=True)
    result = found["validation"]
    assert list(found) == ["validation"] and isinstance(result, scores.Evaluation)
    np.testing.assert_allclose(result.probabilities, scores.sigmoid(result.logits / result.temperature))
    assert result.accuracy == float(np.mean((result.probabilities > 0.5) == (image_sets["validation"].labels > 0.5)))
    assert result.calibration == scores.calibration(image_sets["validation"].labels, result.probabilities)
    assert result.logits_mirrored.shape == result.logits.shape and 0 <= result.accuracy_tta <= 1
    recorded = evaluation.metrics_of(found)
    assert recorded["val_ece_calibrated"] == result.calibration.ece
    assert recorded["val_accuracy_tta"] == result.accuracy_tta
    assert recorded["reliability_validation"] == result.calibration.bins  # metrics.json keeps its rows of dicts.
    assert recorded["val_correct"] == round(result.accuracy * 6) and recorded["val_total"] == 6
    assert recorded["val_correct_tta"] == round(result.accuracy_tta * 6)
    answers = evaluation.photo_results(image_sets, found)["validation"]
    assert [row["file"] for row in answers] == [f"{name}/{name[:-1]}.{index}.jpg" for name in ("cats", "dogs")
                                                for index in range(3)]
    assert [row["right"] for row in answers] == list(result.right) and sum(row["right"] for row in answers) == \
        recorded["val_correct"]
    assert [row["p_dog"] for row in answers] == [round(float(value), 6) for value in result.probabilities]
