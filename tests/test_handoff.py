"""Hand-off between stages and a stage's start, without running notebooks."""
from __future__ import annotations

import pytest
from conftest import complete_stage

from lib import SuiteError
from lib.core import paths, records, stages
from lib.study import handoff, stage_run
from lib.study.weights import WeightsChoice

WEIGHTS = WeightsChoice("file", None, "a" * 64)


def stage_of(run: str, stem: str, precision: str = "float32") -> stage_run.StageRun:
    """The `StageRun` a notebook would have opened for `stem` of `run` at 150 px with VGG16 preprocessing."""
    return stage_run.StageRun(stages.get(stem), {"image_size": 150, "preprocessing": "vgg16"},
                              paths.stage_dir(run, stem), "2026-01-01T00:00:00+00:00", precision, run, "test")


def test_start_from_auto_uses_a_matching_previous_stage():
    stage = stage_of("handoff", "02_data_augmentation")
    start = handoff.find_start(stage, "auto", WEIGHTS)
    assert not start.from_hand_off and "has not completed" in start.description
    complete_stage("handoff", "01_feature_extraction")
    start = handoff.find_start(stage, "auto", WEIGHTS)
    assert start.from_hand_off and start.path.name == "classifier.keras"
    assert not handoff.find_start(stage, "scratch", WEIGHTS).from_hand_off


def test_start_from_previous_refuses_a_mismatch():
    complete_stage("mismatch", "01_feature_extraction", preprocessing="rescale")
    stage = stage_of("mismatch", "02_data_augmentation")
    start = handoff.find_start(stage, "auto", WEIGHTS)
    assert not start.from_hand_off and "preprocessing='rescale'" in start.description
    with pytest.raises(SuiteError, match="start_from=previous, but 01_feature_extraction used preprocessing"):
        handoff.find_start(stage, "previous", WEIGHTS)


def test_start_from_auto_skips_a_previous_stage_of_another_precision():
    complete_stage("precision", "01_feature_extraction", precision="mixed_bfloat16")
    start = handoff.find_start(stage_of("precision", "02_data_augmentation", "float32"), "auto", WEIGHTS)
    assert not start.from_hand_off and "precision='mixed_bfloat16'" in start.description
    assert handoff.find_start(stage_of("precision", "02_data_augmentation", "mixed_bfloat16"), "auto",
                              WEIGHTS).from_hand_off


def test_previous_history_is_labelled_as_the_earlier_stages_classifier_phase():
    complete_stage("history", "02_data_augmentation")
    rows = handoff.previous_history(stage_of("history", "03_fine_tuning"))
    assert [row["epoch"] for row in rows] == [1.0, 2.0] and rows[0]["phase"] == "classifier (stage 2)"


def test_parameter_values_reads_what_the_notebook_declares():
    namespace = {"epochs": 3, "dropout": 0.2, "unrelated": 1, "run_name": "x"}
    assert stage_run.parameter_values("01_feature_extraction", namespace) == {"epochs": 3, "dropout": 0.2}


def test_the_closing_sentence_puts_each_mirrored_score_beside_its_split():
    metrics = {"val_accuracy": 0.975, "val_loss": 0.2, "best_epoch": 3, "epochs_run": 6, "test_accuracy": 0.97,
               "val_accuracy_tta": 0.98, "test_accuracy_tta": 0.976, "val_ece": 0.02}
    text = records.sentence(metrics)
    assert "at epoch 3 of 6 (98.00% with test-time augmentation)" in text
    assert "test accuracy 97.00% (97.60% with test-time augmentation)" in text
    plain = records.sentence({key: value for key, value in metrics.items() if not key.endswith("_tta")})
    assert "test-time" not in plain and plain.endswith("calibration error (ECE) 0.020.")


def test_the_stage_table_gives_each_validation_accuracy_its_interval_where_counted():
    complete_stage("table", "01_feature_extraction", val_accuracy=0.97, val_correct=970, val_total=1000)
    complete_stage("table", "02_data_augmentation", val_accuracy=0.96)  # An older record: no counts.
    rows = stage_run.stage_comparison(stage_of("table", "03_fine_tuning"), 0.75, [True, True, True, False])
    counted = [row["95% interval (counts)"] for row in rows]
    assert counted[0] == "97.00% (95.75-97.89, 970/1000)" and counted[1] == ""
    assert counted[2].startswith("75.00% (") and counted[2].endswith(", 3/4)") and rows[2]["this run"] == 0.75
    assert stage_run.stage_comparison(stage_of("table", "03_fine_tuning"), 0.75)[2]["95% interval (counts)"] == ""
