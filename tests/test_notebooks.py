"""Notebook execution checks: the real notebooks through papermill with the smoke profile."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core import stages, versions
from lib.pages.html import duration

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # Every test here runs notebooks through papermill.
SHARED_KEYS = {"val_accuracy", "val_loss", "test_accuracy", "best_epoch", "epochs_run", "weights", "preprocessing",
               "extraction_seconds", "training_seconds", "random_weights", "status", "skipped_files", "val_ece",
               "test_ece", "reliability_validation"}


def run_suite(outputs: Path, *arguments: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1", **environment)
    return subprocess.run([sys.executable, "-m", "lib.runner", *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("smoke") / "outputs"
    result = run_suite(outputs, "all", "--profile", "smoke", "--run", "smoke-test")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (outputs.parent / "console.txt").write_text(result.stdout + result.stderr)
    return outputs


def test_the_console_says_a_line_for_each_thing_worth_a_line(smoke_run):
    console = (smoke_run.parent / "console.txt").read_text()
    assert len(console.splitlines()) <= 150  # Each stage now also prints its conclusion: intervals and comparisons.
    for noise in ("Executing Cell", "Ending Cell", "<Figure size", "<IPython.core", "WARNING:tensorflow", "Model: "):
        assert noise not in console
    assert not [line for line in console.splitlines() if line.startswith(("E0000", "W0000"))]
    for stage in stages.STEMS:
        assert f"=== {stage} done in " in console and f"{stage}.html" in console
    assert "epoch 2/2 - " in console and console.count("Validation accuracy ") == 3


def test_verbose_shows_every_cell_and_what_the_kernel_prints(smoke_run):
    result = run_suite(smoke_run, "feature_extraction", "--profile", "smoke", "--run", "verbose", "--set", "epochs=1",
                       "--verbose")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Executing Cell 1" in result.stdout and "Model: " in result.stdout and "<Figure size" in result.stdout


@pytest.mark.parametrize("stage", stages.STEMS)
def test_each_report_opens_on_its_result_and_stands_alone(smoke_run, stage):
    import re
    from html.parser import HTMLParser

    page = (smoke_run / "smoke-test" / stage / f"{stage}.html").read_text()
    assert f"<title>Stage {stages.get(stage).number}: {stages.get(stage).title} (smoke-test)</title>" in page
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", page) and not re.findall(r"url\((?:https?:)?//", page)
    assert not re.findall(r"^[EWI]0000 ", page, flags=re.MULTILINE)

    class Text(HTMLParser):
        parts, hidden = [], 0

        def handle_starttag(self, tag, attributes):
            self.hidden += tag in ("style", "script")

        def handle_endtag(self, tag):
            self.hidden -= tag in ("style", "script")

        def handle_data(self, data):
            if not self.hidden:
                self.parts.append(data)

    reader = Text()
    reader.feed(page)
    text = " ".join(" ".join(reader.parts).split())
    assert 0 <= text.index("Validation accuracy") < len(text) / 5
    assert "<details class=\"suite-code\">" in page  # The code is there, folded.


@pytest.mark.parametrize("stage", stages.STEMS)
def test_smoke_run_writes_every_artifact(smoke_run, stage):
    folder = smoke_run / "smoke-test" / stage
    for name in (f"{stage}.ipynb", f"{stage}.html", "metrics.json", "stage.json", "history.csv",
                 "learning_curves.png", "confusion_matrix.png", "confident_mistakes.png", "reliability.png",
                 "heatmaps.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert (folder / ("classifier.keras" if stage.startswith("01") else "model.keras")).is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert SHARED_KEYS <= set(metrics)
    assert metrics["status"] == "complete" and metrics["random_weights"] is True
    assert "RANDOM WEIGHTS" in metrics["weights"]
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0
    assert metrics["test_accuracy"] is not None  # The synthetic set has a test split.
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    with open(folder / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["epochs_run"] and {"accuracy", "val_accuracy", "loss", "val_loss"} <= set(rows[0])
    html = (folder / f"{stage}.html").read_text()
    assert "RANDOM WEIGHTS" in html and "data:image/png;base64" in html
    executed = json.loads((folder / f"{stage}.ipynb").read_text())
    assert any("injected-parameters" in cell["metadata"].get("tags", []) for cell in executed["cells"])
    assert not list(folder.glob(".*partial*")) and not list(folder.glob(".*running*"))
    logs = {path.parent.relative_to(folder / "logs").as_posix() for path in (folder / "logs").rglob("events.out.*")}
    assert {"train", "validation"} <= {name.split("/")[-1] for name in logs}  # TensorBoard, both curves.
    assert not (folder / "backup").exists()  # Complete: nothing left to resume from.
    assert set(metrics["cache_entries"]) >= {"synthetic_cats_and_dogs"}


def test_stages_hand_off_within_a_run(smoke_run):
    stage2 = json.loads((smoke_run / "smoke-test" / "02_data_augmentation" / "metrics.json").read_text())
    stage3 = json.loads((smoke_run / "smoke-test" / "03_fine_tuning" / "metrics.json").read_text())
    assert "01_feature_extraction" in stage2["started_from"]
    assert "02_data_augmentation" in stage3["started_from"]
    assert stage3["cached_at"] == "block4_pool" and stage3["unfrozen_layers"][0] == "block5_conv1"
    # Stage 2 validated on the features stage 1 cached.
    assert all(stage2["features_from_cache"].values())


def test_rerun_with_other_head_settings_reuses_the_features(smoke_run):
    result = run_suite(smoke_run.parent / "outputs", "feature_extraction", "--profile", "smoke", "--run", "other-head",
                       "--set", "epochs=1", "--set", "dropout=0.2")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((smoke_run / "other-head" / "01_feature_extraction" / "metrics.json").read_text())
    assert all(metrics["features_from_cache"].values()) and metrics["extraction_seconds"] == 0
    assert metrics["epochs_run"] == 1 and metrics["parameters"]["dropout"] == 0.2


def test_fine_tuning_alone_trains_the_classifier_first(smoke_run):
    result = run_suite(smoke_run, "fine_tuning", "--profile", "smoke", "--run", "alone", "--set", "start_from=auto")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((smoke_run / "alone" / "03_fine_tuning" / "metrics.json").read_text())
    assert metrics["started_from"].startswith("from scratch")
    assert metrics["classifier_phase_epochs"] == 1 and metrics["fine_tuning_epochs"] == 2
    assert metrics["epochs_run"] == 3


def test_same_seed_gives_identical_metrics(smoke_run):
    numbers = []
    for run in ("same-seed-a", "same-seed-b"):
        result = run_suite(smoke_run, "feature_extraction", "--profile", "smoke", "--run", run)
        assert result.returncode == 0, result.stderr[-2000:]
        metrics = json.loads((smoke_run / run / "01_feature_extraction" / "metrics.json").read_text())
        numbers.append({key: metrics[key]
                        for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_epoch")})
    assert numbers[0] == numbers[1]


def test_failing_notebook_exits_non_zero_and_keeps_the_executed_notebook(tmp_path):
    outputs = tmp_path / "outputs"
    photos = tmp_path / "photos"
    for split in ("train", "validation"):
        for name in ("cats", "dogs"):
            (photos / split / name).mkdir(parents=True)
            (photos / split / name / "broken.jpg").write_text("not a jpeg")  # Passes the layout check.
    result = run_suite(outputs, "feature_extraction", "--profile", "smoke", "--run", "broken", DATA_DIR=str(photos))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "01_feature_extraction failed in cell" in last_line and "SuiteError" in last_line
    assert "could be decoded" in last_line
    folder = outputs / "broken" / "01_feature_extraction"
    assert (folder / "01_feature_extraction.ipynb").is_file() and (folder / "01_feature_extraction.html").is_file()
    assert not (folder / "metrics.json").exists() and not (folder / "stage.json").exists()
    manifest = json.loads((outputs / "broken" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stages"]["01_feature_extraction"]["status"] == "failed"


def test_missing_dataset_fails_before_any_kernel_starts(tmp_path):
    result = run_suite(tmp_path / "outputs", "all", "--profile", "smoke", "--run", "nodata",
                       DATA_DIR=str(tmp_path / "no-such-folder"))
    assert result.returncode == 2
    assert "Dataset folder" in result.stderr and "does not exist" in result.stderr and "DATA_DIR" in result.stderr
    assert not (tmp_path / "outputs" / "nodata" / "01_feature_extraction").exists()


def test_identical_rerun_skips_every_stage(smoke_run):
    result = run_suite(smoke_run, "all", "--profile", "smoke", "--run", "smoke-test")
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in stages.STEMS:
        assert f"{stage}: skipped, complete with the same parameters, photos, weights, notebook, lib/ code" \
            in result.stdout
    assert "forecast" not in result.stdout  # Nothing to run, nothing measured.


def test_changed_stage_is_rerun_with_the_stages_after_it(smoke_run, tmp_path):
    profile = tmp_path / "changed.yaml"
    profile.write_text((ROOT / "params" / "smoke.yaml").read_text().replace("data_augmentation:\n  epochs: 2",
                                                                              "data_augmentation:\n  epochs: 1"))

    def finished_times():
        return {stage: json.loads((smoke_run / "smoke-test" / stage / "stage.json").read_text())["finished"]
                for stage in stages.STEMS}

    before = finished_times()
    result = run_suite(smoke_run, "all", "--profile", str(profile), "--run", "smoke-test")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "01_feature_extraction: skipped" in result.stdout
    # Measured before stage 2, and stage 3's training step again just before it ran.
    assert "forecast 03_fine_tuning, its training step measured again" in result.stdout
    entries = json.loads((smoke_run / "smoke-test" / "manifest.json").read_text())["stages"]
    assert entries["03_fine_tuning"]["forecast_at_start_seconds"] > 0 and entries["03_fine_tuning"]["forecast_seconds"]
    assert "forecast_at_start_seconds" not in entries["02_data_augmentation"]
    page = (smoke_run / "smoke-test" / "index.html").read_text()  # Both forecasts, where they differ.
    shown = [duration(entries["03_fine_tuning"][key]) for key in ("forecast_at_start_seconds", "forecast_seconds")]
    assert (f"({shown[0]} at the start)" in page) == (shown[0] != shown[1]) and shown[1] in page
    again = run_suite(smoke_run, "all", "--profile", str(profile), "--run", "smoke-test")
    assert again.returncode == 0 and "03_fine_tuning: skipped" in again.stdout
    kept = json.loads((smoke_run / "smoke-test" / "manifest.json").read_text())["stages"]
    assert all(kept[stem][key] == entries[stem][key] for stem in stages.STEMS[1:]  # Skipping keeps the forecasts.
               for key in ("forecast_seconds", "forecast_at_start_seconds") if key in entries[stem])
    after = finished_times()
    assert after["01_feature_extraction"] == before["01_feature_extraction"]
    assert after["02_data_augmentation"] > before["02_data_augmentation"]
    assert after["03_fine_tuning"] > before["03_fine_tuning"]  # Starts from stage 2's new model, so redone.
    forced = run_suite(smoke_run, "feature_extraction", "--profile", str(profile), "--run", "smoke-test", "--force",
                       "--no-forecast")
    assert forced.returncode == 0 and "skipped" not in forced.stdout


def test_summary_page_and_manifest(smoke_run):
    folder = smoke_run / "smoke-test"
    page = (folder / "index.html").read_text()
    summary = json.loads((folder / "summary.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    for stage in stages.STEMS:
        assert f'href="{stage}/{stage}.html"' in page
        metrics = json.loads((folder / stage / "metrics.json").read_text())
        assert summary["stages"][stage]["val_accuracy"] == metrics["val_accuracy"]
        assert manifest["stages"][stage]["parameters"]["seed"] == 42
    assert "RANDOM WEIGHTS" in page and "Reduced profile" in page and "data:image/png;base64" in page
    assert "90.0%" in page and "88.0%" in page and "91.0%" in page  # Course notes' numbers beside the run's.
    assert manifest["status"] == "complete" and manifest["seed"] == 42
    assert manifest["versions"]["tensorflow"].startswith("2.") and manifest["versions"]["python"]
    assert manifest["versions"]["suite"] == versions.SUITE_VERSION  # The suite's own, as CHANGELOG.md says.
    assert len(manifest["git"]["commit"]) == 40 and manifest["git"]["dirty"] in (True, False)
    dataset = manifest["inputs"][0]["dataset"]
    assert len(dataset["sha256"]) == 64 and len(dataset["splits"]["train"]["files"]) == 24
    assert manifest["inputs"][0]["weights"]["kind"] == "none"
    assert manifest["hardware"]["cpu"]


def test_every_accuracy_has_its_interval_and_each_stage_is_compared_with_the_one_before(smoke_run):
    folder = smoke_run / "smoke-test"
    summary = json.loads((folder / "summary.json").read_text())
    page = (folder / "index.html").read_text()
    for stage in stages.STEMS:
        metrics = json.loads((folder / stage / "metrics.json").read_text())
        for prefix, split in (("val", "validation"), ("test", "test")):
            accuracy, (low, high) = metrics[f"{prefix}_accuracy"], metrics[f"{prefix}_accuracy_interval_95"]
            assert metrics[f"{prefix}_total"] == metrics["images"][split] and low <= accuracy <= high
            assert metrics[f"{prefix}_correct"] == round(accuracy * metrics[f"{prefix}_total"])
            assert summary["stages"][stage][f"{prefix}_accuracy_interval_95"] == [low, high]
            assert summary["stages"][stage][f"{prefix}_accuracy_text"] in page
        answers = json.loads((folder / stage / "photo_results.json").read_text())
        assert sum(row["right"] for row in answers["test"]) == metrics["test_correct"]
        compared = metrics.get("compared_with_previous")
        report = (folder / stage / f"{stage}.html").read_text()
        assert "What this run found: validation accuracy" in report  # The closing cell, from the run's numbers.
        if stage == stages.STEMS[0]:
            assert compared is None
            continue
        assert set(compared) == {"validation", "test"}
        assert summary["stages"][stage]["compared_with_previous"] == compared
        for split, record in compared.items():
            assert record["total"] == metrics["images"][split] and record["fixed"] + record["broke"] <= record["total"]
            assert record["interval_95"][0] <= record["difference"] <= record["interval_95"][1]
            assert 0 <= record["mcnemar_exact_p"] <= 1 and record["sentence"] in page and record["sentence"] in report
    assert "test photos (no choice made on them)" in page and "validation photos (these chose the best epoch)" in page


def test_photos_without_a_test_folder_get_a_held_out_score_for_every_stage(tmp_path):
    """No test/: half of the validation photos is held back from every choice and scored at the end of each stage;
    the summary shows it beside validation, with the stage-to-stage comparisons on both."""
    from lib.study import synthetic

    data = synthetic.make_synthetic_dataset(tmp_path / "photos", {"train": 24, "validation": 12})
    outputs = tmp_path / "outputs"
    result = run_suite(outputs, "all", "--profile", "smoke", "--run", "held-out", "--set", f"data_dir={data}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = outputs / "held-out"
    summary = json.loads((folder / "summary.json").read_text())
    page = (folder / "index.html").read_text()
    for stage in stages.STEMS:
        metrics = json.loads((folder / stage / "metrics.json").read_text())
        row = summary["stages"][stage]
        assert metrics["report_split"] == row["report_split"] == "held_out"
        assert metrics["images"]["validation"] == metrics["images"]["test"] == 6
        assert row["test_accuracy_interval_95"] == metrics["test_accuracy_interval_95"] and row["test_total"] == 6
        assert row["split_photos"]["test"].startswith("6 held-out photos") and row["split_photos"]["test"] in page
        assert row["test_accuracy_text"] in page and row["val_accuracy_text"] in page
        answers = json.loads((folder / stage / "photo_results.json").read_text())
        held, chose = {r["file"] for r in answers["test"]}, {r["file"] for r in answers["validation"]}
        assert not held & chose and len(held | chose) == 12 and all(name.count("/") == 1 for name in held)
        if stage != stages.STEMS[0]:
            assert set(row["compared_with_previous"]) == {"validation", "test"}
            assert row["compared_with_previous"]["test"]["photos"] == row["split_photos"]["test"]
            assert row["compared_with_previous"]["test"]["sentence"] in page
    report = (folder / stages.STEMS[-1] / f"{stages.STEMS[-1]}.html").read_text()
    assert "held-out accuracy" in report and "6 held-out photos (half of the validation folder" in report


def test_rerun_from_a_manifest_repeats_the_parameters(smoke_run):
    manifest = smoke_run / "smoke-test" / "manifest.json"
    result = run_suite(smoke_run, "feature_extraction", "--from", str(manifest), "--run", "repeated", "--no-forecast")
    assert result.returncode == 0, result.stderr[-2000:]
    original = json.loads(manifest.read_text())["stages"]["01_feature_extraction"]["parameters"]
    repeated = json.loads((smoke_run / "repeated" / "manifest.json").read_text())["stages"]
    repeated = repeated["01_feature_extraction"]["parameters"]
    assert repeated == original


def test_notebook_runs_top_to_bottom_with_its_own_defaults(tmp_path, random_weights_file):
    """"Run All" in Jupyter: no injected parameters; DATA_DIR and VGG16_WEIGHTS point at local copies."""
    import nbformat
    from conftest import make_dataset
    from nbclient import NotebookClient

    photos = make_dataset(tmp_path / "photos", per_class=3)
    outputs = tmp_path / "outputs"
    os.environ.update(DATA_DIR=str(photos), VGG16_WEIGHTS=str(random_weights_file), OUTPUTS_DIR=str(outputs))
    try:
        notebook = nbformat.read(ROOT / "notebooks" / "01_feature_extraction.ipynb", as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for name in ("DATA_DIR", "VGG16_WEIGHTS"):
            os.environ.pop(name, None)
    metrics = json.loads((outputs / "interactive" / "01_feature_extraction" / "metrics.json").read_text())
    assert metrics["profile"] == "notebook defaults" and metrics["epochs_run"] == 30
    assert metrics["image_size"] == 150 and metrics["preprocessing"] == "vgg16" and metrics["weights_kind"] == "file"


def test_test_time_augmentation_is_reported_beside_the_plain_accuracy(smoke_run):
    plain = json.loads((smoke_run / "smoke-test" / "01_feature_extraction" / "metrics.json").read_text())
    assert "val_accuracy_tta" not in plain  # Off unless asked for.
    result = run_suite(smoke_run, "feature_extraction", "--profile", "smoke", "--run", "tta", "--no-forecast",
                       "--set", "test_time_augmentation=true")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((smoke_run / "tta" / "01_feature_extraction" / "metrics.json").read_text())
    assert metrics["val_accuracy"] == plain["val_accuracy"]  # Never replaced,
    assert 0 <= metrics["val_accuracy_tta"] <= 1 and 0 <= metrics["test_accuracy_tta"] <= 1  # but reported beside.
    assert 0 <= metrics["val_ece_tta"] <= 1


def predict(outputs: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "lib.run.predict", *arguments], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("stage", ["", "feature_extraction"])
def test_predict_classifies_every_readable_photo(smoke_run, tmp_path, stage):
    photos = tmp_path / "photos"
    validation = smoke_run / "cache" / "synthetic_cats_and_dogs" / "validation"
    shutil.copytree(validation, photos)
    (photos / "dogs" / "broken.jpg").write_text("not a photo")
    (photos / "unlabelled.jpg").write_bytes((photos / "cats" / "cat.0.jpg").read_bytes())
    result = predict(smoke_run, "--run", "smoke-test", "--images", str(photos), *(["--stage", stage] if stage else []))
    assert result.returncode == 0, result.stderr[-2000:]
    folder = smoke_run / "smoke-test" / "predictions"
    with open(folder / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13 and set(rows[0]) == {"path", "p_dog", "label", "true_label"}
    assert all(row["label"] in {"cat", "dog"} for row in rows)
    assert sorted(row["path"] for row in rows)[:2] == ["cats/cat.0.jpg", "cats/cat.1.jpg"]  # Inside IMAGES.
    assert sum(row["true_label"] == "" for row in rows) == 1  # Outside cats/ and dogs/: no label.
    summary = json.loads((folder / "predictions.json").read_text())
    assert summary["count"] == 13 and summary["labelled"] == 12
    assert summary["skipped"] == [{"path": "dogs/broken.jpg", "reason": summary["skipped"][0]["reason"]}]
    stem = "01_feature_extraction" if stage else "03_fine_tuning"
    stage_metrics = json.loads((smoke_run / "smoke-test" / stem / "metrics.json").read_text())
    assert summary["stage"] == stem and summary["accuracy"] == pytest.approx(stage_metrics["val_accuracy"])
    page = (folder / "index.html").read_text()
    assert page.count("data:image/png;base64") == 2 * 13 and "broken.jpg" in page
    assert f"{photos}/" not in page and str(photos) not in (folder / "predictions.csv").read_text()  # Photos by
    assert summary["images"] == str(photos)  # their path inside the folder given, which is named as given.
    # On the stage's own test photos, predict gives the stage's answer photo for photo (float32).
    test_photos = smoke_run / "cache" / "synthetic_cats_and_dogs" / "test"
    chosen = ["--stage", stage] if stage else []
    result = predict(smoke_run, "--run", "smoke-test", "--images", str(test_photos), *chosen)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(folder / "predictions.csv") as handle:
        predicted = {row["path"]: row for row in csv.DictReader(handle)}
    stage_answers = json.loads((smoke_run / "smoke-test" / stem / "photo_results.json").read_text())["test"]
    assert {path: row["label"] == row["true_label"] for path, row in predicted.items()} == \
        {row["file"]: row["right"] for row in stage_answers}
    assert max(abs(float(predicted[row["file"]]["p_dog"]) - row["p_dog"]) for row in stage_answers) < 1e-4
    summary = json.loads((folder / "predictions.json").read_text())
    assert summary["correct"] == stage_metrics["test_correct"] and summary["labelled"] == stage_metrics["test_total"]
    assert summary["accuracy_interval_95"] == stage_metrics["test_accuracy_interval_95"]


def test_predict_skips_photos_too_large_to_decode_in_bounded_memory(smoke_run, tmp_path):
    """Three flat 13,300 x 13,300 PNGs (0.5 MB each on disk, 0.5 GB each decoded) among the photos: skipped with
    their size and the limit, and the whole of `make predict` stays under 3 GB (measured as the peak resident memory
    of the process, TensorFlow included)."""
    from conftest import write_flat_png

    photos = tmp_path / "photos"
    shutil.copytree(smoke_run / "cache" / "synthetic_cats_and_dogs" / "validation", photos)
    for name in ("huge-1.png", "huge-2.png", "huge-3.png"):
        write_flat_png(photos / "dogs" / name, 13_300)
    measure = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print('peak MB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(code)")
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "lib.run.predict", "--run",
                             "smoke-test", "--images", str(photos)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env={**env, "OUTPUTS_DIR": str(smoke_run)})
    assert result.returncode == 0, result.stderr[-2000:]
    peak = float(result.stdout.rsplit("peak MB", 1)[1])
    print(f"make predict with three 13,300 x 13,300 PNGs: peak {peak:.0f} MB")
    assert peak < 3000
    summary = json.loads((smoke_run / "smoke-test" / "predictions" / "predictions.json").read_text())
    assert summary["count"] == 12 and sorted(item["path"] for item in summary["skipped"]) == [
        "dogs/huge-1.png", "dogs/huge-2.png", "dogs/huge-3.png"]
    assert all(item["reason"].startswith("too large: 13300x13300 pixels") and "limit of 50 million" in item["reason"]
               for item in summary["skipped"])


def test_predict_errors_name_the_fix(smoke_run, tmp_path):
    assert "no such file or folder" in predict(smoke_run, "--run", "smoke-test", "--images", str(tmp_path / "x")).stderr
    assert "No run folder" in predict(smoke_run, "--run", "never-ran", "--images", str(tmp_path)).stderr


def test_compare_page_lists_every_run(smoke_run):
    result = subprocess.run([sys.executable, "-m", "lib.pages.compare", "smoke-test", "other-head", "tta"], cwd=ROOT,
                            env={**os.environ, "OUTPUTS_DIR": str(smoke_run)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = (smoke_run / "compare.html").read_text()
    compared = json.loads((smoke_run / "compare.json").read_text())
    for run in ("smoke-test", "other-head", "tta"):
        assert f"<code>{run}</code>" in page
    differing = compared["stages"]["01_feature_extraction"]["differing"]
    assert differing["dropout"]["other-head"] == 0.2 and differing["test_time_augmentation"]["tta"] is True
    assert "data:image/png;base64" in page


def test_stages_two_and_three_on_an_augmentation_pool_are_reproducible(smoke_run):
    numbers = []
    for run in ("pool-a", "pool-b"):
        result = run_suite(smoke_run, "all", "--profile", "smoke", "--run", run, "--no-forecast",
                           "--set", "augmentation_pool=2")
        assert result.returncode == 0, result.stderr[-2000:]
        stage3 = json.loads((smoke_run / run / "03_fine_tuning" / "metrics.json").read_text())
        stage2 = json.loads((smoke_run / run / "02_data_augmentation" / "metrics.json").read_text())
        assert "a pool of 2 augmented variants" in stage2["trained_on"] and "block5_pool" in stage2["trained_on"]
        assert "block4_pool" in stage3["trained_on"] and stage3["pool_bytes"] > 0
        numbers.append([stage[key] for stage in (stage2, stage3) for key in ("val_accuracy", "val_loss", "test_loss")])
    assert numbers[0] == numbers[1]
    assert "Extracted pool variant" not in result.stdout  # The second run took the pool from the cache.
