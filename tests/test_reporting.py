"""Hand-off between stages, forecasts, metrics helpers and the summary page, without running notebooks."""
from __future__ import annotations

import pytest

from lib import SuiteError, estimate, handoff, paths, reporting, stages, storage, summary
from lib.weights import WeightsChoice

WEIGHTS = WeightsChoice("file", None, "a" * 64)


def _complete_stage(run: str, stage: str, **metrics) -> None:
    folder = paths.stage_dir(run, stage)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / stages.get(stage).artifact).write_bytes(b"model")
    base = {"weights_sha256": "a" * 64, "image_size": 150, "preprocessing": "vgg16", "val_accuracy": 0.97,
            "val_loss": 0.1, "test_accuracy": None, "best_epoch": 3, "epochs_run": 5, "random_weights": False,
            "weights": "ImageNet", "profile": "cpu", "extraction_seconds": 10.0, "training_seconds": 20.0}
    storage.write_json(folder / "metrics.json", {**base, **metrics})
    storage.write_text(folder / "history.csv", "epoch,val_accuracy\n1,0.95\n2,0.97\n")


def test_start_from_auto_uses_a_matching_previous_stage():
    folder = paths.stage_dir("handoff", "02_data_augmentation")
    start = handoff.find_start("02_data_augmentation", folder, "auto", WEIGHTS, 150, "vgg16")
    assert not start.from_previous and "has not completed" in start.description
    _complete_stage("handoff", "01_feature_extraction")
    start = handoff.find_start("02_data_augmentation", folder, "auto", WEIGHTS, 150, "vgg16")
    assert start.from_previous and start.path.name == "classifier.keras"
    assert not handoff.find_start("02_data_augmentation", folder, "scratch", WEIGHTS, 150, "vgg16").from_previous


def test_start_from_previous_refuses_a_mismatch():
    _complete_stage("mismatch", "01_feature_extraction", preprocessing="rescale")
    folder = paths.stage_dir("mismatch", "02_data_augmentation")
    start = handoff.find_start("02_data_augmentation", folder, "auto", WEIGHTS, 150, "vgg16")
    assert not start.from_previous and "preprocessing='rescale'" in start.description
    with pytest.raises(SuiteError, match="start_from=previous, but 01_feature_extraction used preprocessing"):
        handoff.find_start("02_data_augmentation", folder, "previous", WEIGHTS, 150, "vgg16")


def test_forecast_grows_with_the_work():
    counts = {"train": 2000, "validation": 1000}
    schedule = {"steps_per_epoch": 100, "batch_size": 20}
    short = estimate.stage_seconds("02_data_augmentation", {"epochs": 5, **schedule}, counts, 40)
    long = estimate.stage_seconds("02_data_augmentation", {"epochs": 50, **schedule}, counts, 40)
    assert 0 < short < long
    # Stage 1: a kernel and a report, decoding, the conv base once per photo, 30 classifier epochs.
    expected = (estimate.STAGE_SECONDS + 3000 * estimate.DECODE_SECONDS + 3000 / 30
                + 30 * 2000 * estimate.CLASSIFIER_STEP / 30)
    assert estimate.stage_seconds("01_feature_extraction", {"epochs": 30}, counts, 30) == pytest.approx(expected)


def test_parameter_values_reads_what_the_notebook_declares():
    namespace = {"epochs": 3, "dropout": 0.2, "unrelated": 1, "run_name": "x"}
    assert reporting.parameter_values("01_feature_extraction", namespace) == {"epochs": 3, "dropout": 0.2}


def test_summary_page_warns_about_reduced_profiles_and_random_weights():
    for stage in stages.STEMS:
        _complete_stage("page", stage, random_weights=(stage == "02_data_augmentation"))
    page = summary.render(summary.collect("page"))
    assert "RANDOM WEIGHTS" in page and "Reduced profile &#39;cpu&#39;" in page
    assert page.count("97.0%") == 3 and "data:image/png;base64" in page
    with pytest.raises(SuiteError, match="No run folder"):
        summary.collect("never-ran")


def test_summary_marks_missing_stages():
    _complete_stage("partial", "01_feature_extraction")
    collected = summary.collect("partial")
    assert collected["stages"]["03_fine_tuning"]["status"] == "not run or incomplete"
    assert "not run or incomplete" in summary.render(collected)


def test_start_from_auto_skips_a_previous_stage_of_another_precision():
    _complete_stage("precision", "01_feature_extraction", precision="mixed_bfloat16")
    folder = paths.stage_dir("precision", "02_data_augmentation")
    start = handoff.find_start("02_data_augmentation", folder, "auto", WEIGHTS, 150, "vgg16", "float32")
    assert not start.from_previous and "precision='mixed_bfloat16'" in start.description
    assert handoff.find_start("02_data_augmentation", folder, "auto", WEIGHTS, 150, "vgg16",
                              "mixed_bfloat16").from_previous
