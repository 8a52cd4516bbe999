"""Interruptions, concurrent runs, a full disk, an unwritable output folder, a missing GPU."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lib import SuiteError, runner
from lib.core import storage

ROOT = Path(__file__).resolve().parent.parent


def environment(outputs: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    return env


def start(outputs: Path, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lib.runner", *arguments, "--no-forecast"], cwd=ROOT,
                            env=environment(outputs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, f"run ended before {path} appeared:\n{process.stdout.read()[-3000:]}"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def partial_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".partial" in path.name]


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_run_killed_mid_stage_is_redone_on_the_next_run(tmp_path, how):
    outputs = tmp_path / "outputs"
    process = start(outputs, "all", "--profile", "smoke", "--run", "killed")
    stage2 = outputs / "killed" / "02_data_augmentation"
    wait_for(stage2 / ".02_data_augmentation.running.ipynb", process)
    time.sleep(2.0)  # Mid-notebook: the kernel is importing TensorFlow or training.
    if how == signal.SIGKILL:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    assert process.returncode != 0
    time.sleep(2.0)  # An orphaned kernel notices its parent is gone and exits.
    assert not (stage2 / "stage.json").exists() and not (stage2 / "metrics.json").exists()
    assert (outputs / "killed" / "01_feature_extraction" / "stage.json").is_file()

    rerun = subprocess.run([sys.executable, "-m", "lib.runner", "all", "--profile", "smoke", "--run", "killed",
                            "--no-forecast"], cwd=ROOT, env=environment(outputs), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "01_feature_extraction: skipped" in rerun.stdout
    assert "02_data_augmentation: skipped" not in rerun.stdout
    for stage in ("02_data_augmentation", "03_fine_tuning"):
        assert json.loads((outputs / "killed" / stage / "metrics.json").read_text())["status"] == "complete"
    assert partial_files(outputs) == []
    assert json.loads((outputs / "killed" / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_two_runs_at_once_share_the_cache_without_harm(tmp_path):
    outputs = tmp_path / "outputs"
    processes = [start(outputs, "feature_extraction", "--profile", "smoke", "--run", name) for name in ("one", "two")]
    for process in processes:
        process.wait(timeout=600)
        assert process.returncode == 0, process.stdout.read()[-3000:]
    results = [json.loads((outputs / name / "01_feature_extraction" / "metrics.json").read_text())
               for name in ("one", "two")]
    assert results[0]["val_accuracy"] == results[1]["val_accuracy"]
    cached_files = list((outputs / "cache").rglob("*.npz"))
    assert len(cached_files) >= 4  # Decoded photos and features of each split, block 4 and block 5.
    for cached in cached_files:
        with np.load(cached) as content:
            assert content.files and all(content[name].size for name in content.files)
    assert partial_files(outputs) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 << 20))
    with pytest.raises(SuiteError, match="Not enough disk space.*CACHE_DIR"):
        storage.write_arrays(tmp_path / "features.npz", features=np.zeros((1000, 8192), dtype="float32"))
    monkeypatch.undo()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(SuiteError, match="disk filled up"):
        storage.write_arrays(tmp_path / "features.npz", features=np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder_is_reported_before_any_work(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OUTPUTS_DIR", str(blocker / "outputs"))
    assert runner.main(["feature_extraction", "--profile", "smoke", "--no-forecast"]) == 2
    assert "Cannot write to the output folder" in capsys.readouterr().err


def test_profile_that_needs_a_gpu_stops_on_a_cpu_machine(capsys):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert runner.main(["feature_extraction", "--profile", "full", "--no-forecast"]) == 2
    assert "asks for a GPU" in capsys.readouterr().err
