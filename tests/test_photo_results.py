"""An interval on every accuracy the suite reports, and each stage against the one before it photo by photo: the
records, the closing sentence, the pages and `make predict`'s summary (no TensorFlow)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import complete_stage

from lib.core import paths, photo_results, records, stages, uncertainty
from lib.pages import compare, report, summary
from lib.run import predict


def rows(flags: list[bool], prefix: str = "cats/cat") -> list[dict]:
    return [{"file": f"{prefix}.{index}.jpg", "label": 0, "p_dog": 0.1, "right": flag}
            for index, flag in enumerate(flags)]


def counted(correct: int, total: int, split: str = "val") -> dict:
    """The keys `lib.study.evaluation.metrics_of` writes for one accuracy."""
    found = uncertainty.accuracy(correct, total)
    return {f"{split}_accuracy": found.value, f"{split}_correct": correct, f"{split}_total": total,
            f"{split}_accuracy_interval_95": [found.low, found.high]}


def test_accuracy_text_carries_the_interval_and_counts_and_older_records_read_bare():
    metrics = {**counted(1950, 2000), "val_loss": 0.1, "best_epoch": 3, "epochs_run": 6,
               **counted(1940, 2000, "test"), "val_accuracy_tta": 0.976, "val_correct_tta": 1952}
    assert records.accuracy_text(metrics, "val_accuracy") == "97.50% (96.72-98.10, 1950/2000)"
    assert records.accuracy_text(metrics, "val_accuracy_tta") == uncertainty.accuracy(1952, 2000).text()
    text = records.sentence(metrics)
    assert "Validation accuracy 97.50% (96.72-98.10, 1950/2000) at epoch 3 of 6 (97.60% (" in text
    assert f"test accuracy {uncertainty.accuracy(1940, 2000).text()}" in text
    older = {"val_accuracy": 0.975, "val_loss": 0.1, "best_epoch": 3, "epochs_run": 6, "test_accuracy": None}
    assert records.accuracy_text(older, "val_accuracy") == "97.50%"
    assert records.accuracy_text(older, "test_accuracy") == ""
    assert records.counted_accuracy(older, "val_accuracy") is None
    assert records.sentence(older).startswith("Validation accuracy 97.50% at epoch 3 of 6, loss 0.1000")


def test_photo_results_are_written_one_photo_a_line_and_read_back(tmp_path):
    results = {"validation": rows([True, False]), "test": []}
    path = photo_results.write(tmp_path, results)
    assert path.name == "photo_results.json" and json.loads(path.read_text()) == results
    assert sum('"file"' in line for line in path.read_text().splitlines()) == 2  # One photo a line.
    assert photo_results.read(tmp_path) == results
    assert photo_results.read(tmp_path / "elsewhere") is None
    (tmp_path / "photo_results.json").write_text("{cut short")
    assert photo_results.read(tmp_path) is None


def test_a_stage_is_compared_with_the_one_before_on_the_photos_both_scored():
    before = rows([True] * 6 + [False] * 4)
    after = rows([True] * 5 + [False] + [True] * 3 + [False]) + rows([True], "dogs/dog")  # One photo more.
    record = photo_results.compare_split(before, after, "fine tuning", "validation")
    expected = uncertainty.compare([True] * 6 + [False] * 4, [True] * 5 + [False] + [True] * 3 + [False])
    assert {key: record[key] for key in expected.record()} == expected.record()
    assert record["fixed"] == 3 and record["broke"] == 1 and record["total"] == 10
    assert record["photos"] == "validation photos (these chose the best epoch)"
    assert record["sentence"] == expected.sentence("fine tuning")
    assert "different validation photos (10 before, 11 now): compared on the 10 both scored" in record["note"]
    same = photo_results.compare_split(before, before, "fine tuning", "test")
    assert "note" not in same and same["photos"] == "test photos (no choice made on them)" and same["difference"] == 0


def test_compare_stages_reads_the_stage_before_in_the_run_folder(tmp_path):
    first, second, third = stages.STAGES
    photo_results.write(tmp_path / first.stem, {"validation": rows([False] * 5), "test": rows([True] * 3)})
    answers = {"validation": rows([True] * 5), "test": rows([True] * 3)}
    assert photo_results.compare_stages(second, tmp_path, answers) == {}  # Stage 1 did not complete: an old attempt's.
    (tmp_path / first.stem / records.METRICS_FILE).write_text("{}")
    found = photo_results.compare_stages(second, tmp_path, {"validation": rows([True] * 5), "test": rows([True] * 3)})
    assert set(found) == {"validation", "test"} and found["validation"]["fixed"] == 5
    assert found["validation"]["sentence"].startswith("data augmentation (stage 2 against stage 1): +100.00 points")
    assert photo_results.compare_stages(first, tmp_path, {"validation": rows([True])}) == {}
    assert photo_results.compare_stages(third, tmp_path, {"validation": rows([True])}) == {}  # Stage 2 left none.


def fine_tuning_metrics(before: list[bool], after: list[bool]) -> dict:
    compared = photo_results.compare_split(rows(before), rows(after), "fine tuning", "test")
    return {"stage": "03_fine_tuning", **counted(sum(after), len(after)), "val_loss": 0.1, "best_epoch": 2,
            "epochs_run": 4, **counted(sum(after), len(after), "test"), "compared_with_previous": {"test": compared}}


def test_stage_three_closing_sentence_follows_what_the_run_measured():
    clear = fine_tuning_metrics([True] * 900 + [False] * 100, [True] * 960 + [False] * 40)
    unclear = fine_tuning_metrics([True] * 970 + [False] * 30, [True] * 969 + [False] + [True] * 3 + [False] * 27)
    clear_text, unclear_text = photo_results.conclusion(clear), photo_results.conclusion(unclear)
    assert clear_text != unclear_text
    assert ("On the test photos (no choice made on them), fine tuning (stage 3 against stage 2): +6.00 points"
            in clear_text)
    assert clear_text.endswith(": better on these 1000 photos.") and "fixed 60 photos, broke 0" in clear_text
    assert "not distinguishable from no change on these 1000 photos." in unclear_text
    assert "fine tuning (stage 3 against stage 2): +0.20 points" in unclear_text
    assert "fixed 3 photos, broke 1" in unclear_text
    # The stage's own result with its intervals comes first.
    assert f"found: validation accuracy {uncertainty.accuracy(960, 1000).text()} on the validation photos" in clear_text
    assert "test accuracy 97.20% (" in unclear_text and "RANDOM" not in unclear_text
    alone = {key: value for key, value in clear.items() if key != "compared_with_previous"}
    assert "No photo-by-photo comparison with stage 2" in photo_results.conclusion(alone)
    first = {**alone, "stage": "01_feature_extraction"}
    assert photo_results.conclusion(first).count("\n") == 0
    assert photo_results.conclusion({**first, "random_weights": True}).endswith("only show that the pipeline runs.")


def test_pages_show_each_accuracy_with_its_interval_and_the_stage_to_stage_comparisons():
    compared = {"validation": photo_results.compare_split(rows([False] * 4 + [True] * 6), rows([True] * 10),
                                                          "fine tuning (stage 3 against stage 2)", "validation")}
    complete_stage("intervals", "01_feature_extraction", **counted(970, 1000))
    complete_stage("intervals", "02_data_augmentation")  # An older record: no counts.
    complete_stage("intervals", "03_fine_tuning", **counted(975, 1000), **counted(1950, 2000, "test"),
                   compared_with_previous=compared, course_notes_val_accuracy=0.91, precision="float32")
    collected = summary.collect("intervals")
    third = collected["stages"]["03_fine_tuning"]
    assert third["test_correct"] == 1950 and third["test_total"] == 2000
    assert third["test_accuracy_interval_95"] == counted(1950, 2000, "test")["test_accuracy_interval_95"]
    assert third["compared_with_previous"] == compared
    assert collected["stages"]["02_data_augmentation"]["val_accuracy_interval_95"] is None
    page = summary.render(collected)
    assert "97.50% (96.72-98.10, 1950/2000)" in page and uncertainty.accuracy(970, 1000).text() in page
    assert ">97.0%<" in page  # The older record's bare accuracy, as before.
    assert "validation photos (these chose the best epoch)" in page and compared["validation"]["sentence"] in page
    header = report.header(paths.stage_dir("intervals", "03_fine_tuning"), stages.get("03_fine_tuning"))
    assert "97.50% (96.72-98.10, 1950/2000)" in header and compared["validation"]["sentence"] in header
    for run in ("intervals", "older"):
        paths.run_dir(run).mkdir(parents=True, exist_ok=True)
        (paths.run_dir(run) / records.MANIFEST_FILE).write_text(json.dumps({"run": run, "stages": {}}))
    complete_stage("older", "03_fine_tuning", test_accuracy=0.95)
    compare_page = Path(compare.write(["intervals", "older"])).read_text()
    assert "97.50% (96.72-98.10, 1950/2000)" in compare_page and ">95.0%<" in compare_page


def predictor() -> predict.Predictor:
    found = predict.Predictor.__new__(predict.Predictor)  # No model: only its description is read.
    found.description = "model"
    return found


def test_predictions_carry_the_counts_and_interval_of_their_accuracy():
    labelled = [{"path": f"{index}.jpg", "label": "dog", "true_label": "dog" if index < 9 else "cat"}
                for index in range(10)]
    unlabelled = [{"path": "x.jpg", "label": "cat", "true_label": None}]
    found = predict.summary_of(labelled + unlabelled, [], "r", stages.get("03_fine_tuning"),
                               predictor(), "photos")
    assert found["accuracy"] == 0.9 and found["correct"] == 9 and found["labelled"] == 10
    assert found["accuracy_interval_95"] == list(uncertainty.wilson_interval(9, 10))
    none = predict.summary_of(unlabelled, [], "r", stages.get("03_fine_tuning"),
                              predictor(), "photos")
    assert none["accuracy"] is None and none["accuracy_interval_95"] is None
