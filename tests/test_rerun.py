"""Nothing a run made is lost to a rerun or a bad file: a rerun keeps the last complete result until a complete new
one replaces it, `FROM=` without `RUN=` writes into a run of its own, and every damaged record or profile is one
line."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import SuiteError, runner
from lib.core import params, paths, records, storage
from lib.pages import summary
from lib.run import execution, freshness, manifest, rerun

ROOT = Path(__file__).resolve().parent.parent
STAGE1 = "01_feature_extraction"
RESULT_FILES = ("stage.json", "metrics.json", f"{STAGE1}.ipynb", f"{STAGE1}.html", "classifier.keras",
                "history.csv", "curves.png")


def metrics(accuracy: float) -> dict:
    return {"stage": STAGE1, "status": "complete", "val_accuracy": accuracy, "val_loss": 0.5, "test_accuracy": None,
            "best_epoch": 1, "epochs_run": 2, "extraction_seconds": 1.0, "training_seconds": 2.0,
            "random_weights": True, "weights": "none", "profile": "smoke"}


def write_result(folder: Path, accuracy: float, stage_record: bool = True) -> None:
    """The files a complete stage leaves (what the notebook and the runner write), with `accuracy`."""
    folder.mkdir(parents=True, exist_ok=True)
    storage.write_json(folder / "metrics.json", metrics(accuracy))
    for name in RESULT_FILES[2:]:
        (folder / name).write_text(f"{name} of the attempt scoring {accuracy}\n")
    if stage_record:
        storage.write_json(folder / "stage.json", {"stage": STAGE1, "status": "complete", "seconds": 3.0})


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def plan(epochs: int = 5) -> runner.Plan:
    return runner.Plan("mine", {"name": "smoke", "path": "params/smoke.yaml"}, "", {STAGE1: {"epochs": epochs}})


def test_a_rerun_that_fails_keeps_the_last_complete_result_and_a_complete_one_replaces_it(monkeypatch, capsys):
    folder = paths.stage_dir("mine", STAGE1)
    write_result(folder, 0.75)
    before = snapshot(folder)
    seen = {}

    def failing(stem, attempt, parameters, *arguments):
        seen["output_dir"] = parameters["output_dir"]
        (attempt / "backup").mkdir()
        (attempt / "backup" / "training.npz").write_text("epochs 1-3")
        (attempt / f"{stem}.html").write_text("the report of the interrupted rerun")
        (attempt / "classifier.keras").write_text("half trained")
        raise execution.StageFailed(f"{stem} was interrupted (Ctrl-C) in cell [7]", "interrupted")

    monkeypatch.setattr(execution, "execute", failing)
    with pytest.raises(execution.StageFailed) as failure:
        runner.run_stage(plan(), STAGE1, {"hash": "x"}, 60)
    assert failure.value.status == "interrupted" and f"last complete result is kept in {folder}" in str(failure.value)
    assert snapshot(folder) == before  # Byte for byte: metrics, record, notebook, report, model, figures.
    assert seen["output_dir"] == str(paths.rerun_dir("mine", STAGE1))
    # The same command again resumes the rerun's backup (nothing changed since), beside the kept result.
    values, inputs = {"epochs": 5}, {"code": {}, "environment": {}, "earlier_stages": {}}
    storage.write_json(paths.rerun_dir("mine", STAGE1) / "backup" / "inputs.json",
                       {"parameters": values, "inputs": inputs})
    assert freshness.backed_up_epochs(paths.rerun_dir("mine", STAGE1) / "backup") == {}  # Not an .npz of ours,
    assert freshness.settle_backup(STAGE1, "mine", values, inputs, False) == ""  # but looked for in the rerun's.

    def completing(stem, attempt, parameters, *arguments):
        write_result(attempt, 0.9, stage_record=False)
        return 12.0

    monkeypatch.setattr(execution, "execute", completing)
    record = runner.run_stage(plan(), STAGE1, {"hash": "x"}, 60)
    assert records.read_metrics(folder)["val_accuracy"] == 0.9 and storage.read_json(folder / "stage.json") == record
    assert not paths.rerun_dir("mine", STAGE1).exists() and sorted(os.listdir(folder.parent)) == [STAGE1]


@pytest.mark.parametrize("exchange", [True, False], ids=["one exchange", "two renames"])
def test_a_complete_rerun_takes_the_stage_folders_place(monkeypatch, exchange):
    write_result(paths.stage_dir("mine", STAGE1), 0.75)
    write_result(paths.rerun_dir("mine", STAGE1), 0.9)
    new = snapshot(paths.rerun_dir("mine", STAGE1))
    if not exchange:  # A system without renameat2, or a file system without its exchange.
        monkeypatch.setattr(rerun, "_exchange", lambda first, second: False)
    rerun.swap_in("mine", STAGE1, paths.rerun_dir("mine", STAGE1))
    assert snapshot(paths.stage_dir("mine", STAGE1)) == new and os.listdir(paths.run_dir("mine")) == [STAGE1]


def test_the_summary_shows_the_last_complete_result_with_the_failed_rerun_beside_it():
    write_result(paths.stage_dir("mine", STAGE1), 0.75)
    rerun = paths.rerun_dir("mine", STAGE1)
    rerun.mkdir()
    (rerun / f"{STAGE1}.html").write_text("the rerun's report")
    storage.write_json(paths.run_dir("mine") / "manifest.json", {
        "run": "mine", "status": "interrupted", "profile": {"name": "smoke"},
        "stages": {STAGE1: {"status": "interrupted", "message": "stopped in cell [7]", "parameters": {}}}})
    row = summary.collect("mine")["stages"][STAGE1]
    assert row["status"] == "complete" and row["val_accuracy"] == 0.75 and row["seconds"] == 3.0
    assert row["last_attempt"] == "was interrupted: stopped in cell [7]"
    page = summary.write("mine").read_text()
    assert "75.0%" in page and "last complete" in page and f'href="{STAGE1}.rerun/{STAGE1}.html"' in page


def test_from_a_manifest_without_a_run_name_writes_into_a_new_run_and_says_so(capsys):
    outputs = paths.outputs_root()
    for run in ("smoke", "orig", "orig-from-" + time.strftime("%Y%m%d")):
        (outputs / run).mkdir(parents=True)
        (outputs / run / "notes.txt").write_text(f"{run}'s own notes")
    recorded = outputs / "orig" / "manifest.json"
    storage.write_json(recorded, {"run": "orig", "profile": {"name": "smoke"}, "stages": {STAGE1: {"parameters": {
        "data_dir": "synthetic", "weights": "none", "image_size": 32, "seed": 42, "epochs": 2, "batch_size": 8}}}})
    before = snapshot(outputs)
    made = runner.prepare(runner.parse_arguments(["feature_extraction", "--from", str(recorded)]))
    first_line = capsys.readouterr().out.splitlines()[0]
    assert made.run == f"orig-from-{time.strftime('%Y%m%d')}-2" and f"into the new run {made.run}" in first_line
    assert {name: data for name, data in snapshot(outputs).items() if not name.startswith(made.run)} == before


def test_a_damaged_manifest_or_stage_record_is_set_aside_in_one_line(capsys):
    folder = paths.stage_dir("mine", STAGE1)
    write_result(folder, 0.75)
    (folder / "stage.json").write_text('{"stage": "01_feat')  # Cut short.
    (paths.run_dir("mine") / "manifest.json").write_bytes(b"\xff\xfe not json")
    assert records.read_manifest("mine") == {}
    assert not freshness.verdict(STAGE1, "mine", {}, {"hash": "x"}).complete
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 2 and all("is damaged" in line and "set aside as" in line for line in said), said
    assert "manifest starts afresh" in said[0] and "stage counts as not complete" in said[1]
    set_aside = sorted(path.name.split(".corrupt-")[0] for path in paths.run_dir("mine").rglob("*.corrupt-*"))
    assert set_aside == ["manifest.json", "stage.json"]  # Kept for a person to look at, not deleted.
    assert not (paths.run_dir("mine") / "manifest.json").exists() and not (folder / "stage.json").exists()
    (folder / "metrics.json").write_text("[1, 2]")  # JSON, but not a record.
    assert records.read_metrics(folder) is None and "not an object" in capsys.readouterr().out


def test_a_manifest_that_cannot_be_written_at_the_end_is_one_line(monkeypatch, capsys):
    def full(path, payload):
        raise SuiteError(f"The disk filled up while writing {path} (nothing was left half-written).")

    monkeypatch.setattr(storage, "write_json", full)
    manifest.finish("mine", {"status": "failed", "stages": {STAGE1: {"status": "running"}}, "hardware": {}})
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "manifest was not closed" in said[0] and "disk filled up" in said[0]

    def unwritable(path, payload):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(storage, "write_json", unwritable)
    with pytest.raises(SuiteError, match=r"Could not write the run's manifest .* \(Read-only file system\)"):
        manifest.write("mine", {"stages": {}, "hardware": {}}, {})


def profile_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return str(path)


def test_an_alias_bomb_profile_is_refused_in_one_line_before_it_grows(tmp_path):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)]
    path = profile_file(tmp_path, "\n".join(["description: &d fine", *lines, "common: {seed: 1}"]) + "\n")
    started = time.perf_counter()
    with pytest.raises(SuiteError) as refused:
        params.load_profile(path)
    assert time.perf_counter() - started < 1
    message = str(refused.value)
    assert "\n" not in message and "line 3: an alias (*a)" in message and "write the value out" in message
    with pytest.raises(SuiteError, match="alias"):
        params.parse_assignment("unfreeze_layers=[&x block5_conv1, *x]")


@pytest.mark.parametrize("description, phrase", [("[one, two]", "not a list"), ("{a: 1}", "not a mapping"),
                                                 ("12", "type int"), ("x" * 5000, "5,000 bytes; keep it under")])
def test_a_description_that_is_not_a_short_plain_text_is_refused_in_one_line(tmp_path, description, phrase):
    with pytest.raises(SuiteError) as refused:
        params.load_profile(profile_file(tmp_path, f"description: {description}\ncommon: {{seed: 1}}\n"))
    assert phrase in str(refused.value) and "\n" not in str(refused.value)


def test_numbers_with_leading_zeros_are_read_as_written(tmp_path):
    assert params.parse_assignment("seed=010") == ("seed", 10)
    assert params.parse_assignment("seed=09") == ("seed", 9)
    assert params.parse_assignment("seed=0x10") == ("seed", 16)  # Unambiguous, as YAML has it.
    profile = params.load_profile(profile_file(tmp_path, "description: mine\ncommon:\n  seed: 010\n  epochs: 08\n"))
    assert profile["common"] == {"seed": 10, "epochs": 8}


@pytest.mark.slow
def test_a_rerun_interrupted_with_ctrl_c_leaves_the_last_complete_result_and_the_summary_showing_it(tmp_path):
    """Stage 1 on the smoke profile, complete; then again with more epochs, stopped with SIGINT after a few: the
    first result stays byte for byte, and the summary page shows it with the interruption beside it."""
    environment = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS"}}
    environment.update(OUTPUTS_DIR=str(tmp_path / "outputs"), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "lib.runner", "feature_extraction", "--profile", "smoke", "--run", "kept",
               "--no-forecast"]
    first = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    folder = tmp_path / "outputs" / "kept" / STAGE1
    before = snapshot(folder)
    process = subprocess.Popen([*command, "--set", "epochs=150"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:
        epoch = re.match(r"\s*epoch (\d+)/150", line)
        if epoch and int(epoch.group(1)) >= 3:
            process.send_signal(signal.SIGINT)
            break
    printed = process.stdout.read()
    assert process.wait(timeout=300) == 130, printed[-2000:]
    assert f"its last complete result is kept in {folder}" in printed
    assert snapshot(folder) == before  # metrics.json among them, byte for byte.
    accuracy = records.accuracy_text(json.loads((folder / "metrics.json").read_text()), "val_accuracy")
    page = (tmp_path / "outputs" / "kept" / "index.html").read_text()
    assert accuracy and accuracy in page and "last complete" in page and "was interrupted" in page
    assert (tmp_path / "outputs" / "kept" / f"{STAGE1}.rerun" / "backup" / "training.npz").is_file()
