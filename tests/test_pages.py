"""The pages read from run folders: the summary page, the comparison of runs, the prediction gallery's template,
and what reaches them from names and messages staying text."""
from __future__ import annotations

import pytest
from conftest import complete_stage

from lib import SuiteError
from lib.core import paths, records, stages, storage
from lib.pages import compare, html, summary

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_summary_page_warns_about_reduced_profiles_and_random_weights():
    for stage in stages.STEMS:
        complete_stage("page", stage, random_weights=(stage == "02_data_augmentation"))
    page = summary.render(summary.collect("page"))
    assert "RANDOM WEIGHTS" in page and "Reduced profile &#39;cpu&#39;" in page
    assert page.count("97.0%") == 3 and "data:image/png;base64" in page
    with pytest.raises(SuiteError, match="No run folder"):
        summary.collect("never-ran")


def test_summary_marks_missing_stages():
    complete_stage("partial", "01_feature_extraction")
    collected = summary.collect("partial")
    assert collected["stages"]["03_fine_tuning"]["status"] == "not run or incomplete"
    assert "not run or incomplete" in summary.render(collected)


def test_markup_in_messages_and_descriptions_stays_text_on_the_summary_page():
    complete_stage("hostile", "01_feature_extraction", started_from=HOSTILE)
    storage.write_json(paths.run_dir("hostile") / records.MANIFEST_FILE, {
        "run": "hostile", "status": "failed", "profile": {"name": "mine", "description": HOSTILE, "choice": HOSTILE},
        "stages": {"02_data_augmentation": {"status": "failed", "message": HOSTILE}}})
    path = summary.write("hostile")
    page = path.read_text()
    assert "<script>" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    assert (path.parent / "summary.json").is_file()


def test_compare_lists_what_differs_and_escapes_it(tmp_path):
    for run, dropout in (("run-a", 0.5), ("run-b", HOSTILE)):
        complete_stage(run, "01_feature_extraction", parameters={"dropout": dropout, "epochs": 30})
        storage.write_json(paths.run_dir(run) / records.MANIFEST_FILE, {"run": run, "status": "complete", "stages": {}})
    page = compare.write(["run-a", "run-b"]).read_text()
    collected = storage.read_json(paths.outputs_root() / "compare.json")
    assert list(collected["stages"]["01_feature_extraction"]["differing"]) == ["dropout"]
    assert "<script>" not in page and "&lt;script&gt;" in page
    with pytest.raises(SuiteError, match="at least two runs"):
        compare.collect(["run-a"])
    with pytest.raises(SuiteError, match="No run folder for missing.*Runs here: run-a, run-b"):
        compare.collect(["run-a", "missing"])


def test_the_prediction_gallery_escapes_file_names():
    summary_of_run = {"run": "r", "model": "m", "images": HOSTILE, "written": "now", "count": 1, "labelled": 0,
                      "accuracy": None, "dogs": 1, "cats": 0, "skipped": [{"path": HOSTILE, "reason": "unreadable"}]}
    picture = "data:image/png;base64,AA"
    item = {"name": HOSTILE, "path": HOSTILE, "photo": picture, "heatmap": picture, "label": "dog", "true_label": None,
            "p_dog": 0.9}
    page = html.render("predictions.html.j2", summary=summary_of_run, items=[item], shown=1)
    assert "<script>" not in page and "<img src=x" not in page and page.count("&lt;script&gt;") >= 4


def test_numbers_and_durations_read_as_people_write_them():
    assert html.percent(0.9731) == "97.3%" and html.percent(None) == ""
    assert html.duration(42) == "42 s" and html.duration(424) == "7 min 04 s" and html.duration(7300) == "2 h 01 min"
    assert html.duration(None) == ""
    assert html.png_data_uri(__import__("numpy").zeros((2, 2, 3), dtype="uint8")).startswith("data:image/png;base64,")


def test_validation_curves_draw_each_stage_with_its_reference():
    figure = summary.validation_curves({"1. Feature extraction": [0.9, 0.95], "2. Data augmentation": [0.96]},
                                       references={"1. Feature extraction": 0.90})
    axis = figure.axes[0]
    assert axis.get_title() == "Validation accuracy per epoch (dotted: course-notes reference)"
    labels = [line.get_label() for line in axis.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["1. Feature extraction", "2. Data augmentation"]
    assert len(axis.get_lines()) == 3  # Two curves and one dotted reference.
