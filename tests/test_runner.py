"""Trusting the runner: reruns notice code and library changes; every way a stage can end is handled cleanly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, complete_stage, copy_project, make_dataset, run_runner

from lib import runner
from lib.core import devices, params, paths, records, storage
from lib.pages import summary
from lib.run import freshness, manifest

STAGE1 = "01_feature_extraction"
SMOKE = ("feature_extraction", "--profile", "smoke", "--run", "trust", "--no-forecast")


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


def inject_cell(project: Path, code: str, stem: str = STAGE1) -> None:
    """Add a code cell to a stage right after its imports, in the .py, and sync the pair as a user would."""
    source = project / "notebooks" / f"{stem}.py"
    text = source.read_text()
    marker = "# %% [markdown]\n# ## Start the stage"
    source.write_text(text.replace(marker, f"# %%\n{code}\n\n{marker}", 1))
    subprocess.run([sys.executable, "-m", "lib.run.pairing", "sync"], cwd=project, check=True, capture_output=True)


def stage_folder(outputs: Path) -> Path:
    return outputs / "trust" / STAGE1


def assert_ended_cleanly(result, outputs: Path, phrase: str, status: str = "failed") -> None:
    """One last line naming the stage and what happened; the partial report; an honest manifest."""
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ERROR: ") and STAGE1 in last_line and phrase in last_line, last_line
    folder = stage_folder(outputs)
    assert (folder / f"{STAGE1}.html").is_file() and phrase.split()[0] in (folder / f"{STAGE1}.html").read_text()
    assert not (folder / "metrics.json").exists() and not (folder / "stage.json").exists()
    recorded = json.loads((outputs / "trust" / "manifest.json").read_text())
    assert recorded["status"] == status and recorded["stages"][STAGE1]["status"] == status
    assert not list(folder.glob(".*running*"))


@pytest.mark.slow
def test_code_and_library_changes_redo_a_stage_and_say_what_changed(project, tmp_path):
    outputs = tmp_path / "outputs"
    first = run_runner(project, outputs, *SMOKE)
    assert first.returncode == 0
    assert "over TCP" not in first.stderr + first.stdout  # Kernels talk over IPC sockets.
    page = project / "lib" / "pages" / "compare.py"  # A page no notebook runs.
    page.write_text(page.read_text() + "\n# A page edit.\n")
    unchanged = run_runner(project, outputs, *SMOKE)
    assert "skipped, complete with the same parameters, photos, weights, notebook, lib/ code" in unchanged.stdout
    training = project / "lib" / "study" / "training.py"
    training.write_text(training.read_text() + "\n# A fix.\n")
    redone = run_runner(project, outputs, *SMOKE)
    assert redone.returncode == 0 and "redone: lib/ changed (study/training.py)" in redone.stdout
    record_file = stage_folder(outputs) / records.STAGE_FILE
    record = storage.read_json(record_file)  # As if the stage had run under an older TensorFlow.
    record["inputs"]["environment"]["tensorflow"] = "2.20.0"
    del record["inputs"]["hash"]
    record["inputs"]["hash"] = record["inputs_hash"] = freshness.short_hash(record["inputs"])
    storage.write_json(record_file, record)
    upgraded = run_runner(project, outputs, *SMOKE)
    assert upgraded.returncode == 0 and "tensorflow 2.20.0 -> 2." in upgraded.stdout


@pytest.mark.slow
def test_a_dead_kernel_ends_the_stage_cleanly(project, tmp_path):
    inject_cell(project, "import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)  # As the OOM killer would.")
    outputs = tmp_path / "outputs"
    result = run_runner(project, outputs, *SMOKE)
    assert_ended_cleanly(result, outputs, "the kernel died in cell")


@pytest.mark.slow
def test_a_cell_over_the_timeout_is_stopped(project, tmp_path):
    inject_cell(project, "import time\n\ntime.sleep(600)")
    outputs = tmp_path / "outputs"
    started = time.time()
    result = run_runner(project, outputs, *SMOKE, "--cell-timeout", "20")
    assert time.time() - started < 240
    assert_ended_cleanly(result, outputs, "ran longer than the cell timeout (20 s)")
    assert "CELL_TIMEOUT" in result.stderr


@pytest.mark.slow
def test_a_kernel_that_cannot_start_is_reported(project, tmp_path):
    broken = tmp_path / "broken-kernel"
    broken.mkdir()
    (broken / "sitecustomize.py").write_text(  # Only the kernel's Python fails, as a broken ipykernel would.
        "import sys\nif b'ipykernel_launcher' in open('/proc/self/cmdline', 'rb').read():\n    raise SystemExit(3)\n")
    outputs = tmp_path / "outputs"
    result = run_runner(project, outputs, *SMOKE, PYTHONPATH=str(broken))
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert "kernel did not start" in last_line and "make setup" in last_line
    recorded = json.loads((outputs / "trust" / "manifest.json").read_text())
    assert recorded["status"] == "failed" and not (stage_folder(outputs) / "metrics.json").exists()


def kernel_children(pid: int) -> list[int]:
    """The ipykernel processes started by process `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{pid}\n" in status and b"ipykernel" in command:
            found.append(int(entry.name))
    return found


def start_slow_stage(project: Path, outputs: Path) -> tuple[subprocess.Popen, int]:
    """A runner whose stage 1 sleeps in a cell; returns it and its kernel's process id once it sleeps."""
    inject_cell(project, "import time\n\nprint('sleeping', flush=True)\ntime.sleep(600)")
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "lib.runner", *SMOKE], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    partial = stage_folder(outputs) / f".{STAGE1}.running.ipynb"
    while time.time() < deadline:
        kernels = kernel_children(process.pid)
        if kernels and partial.is_file() and "sleeping" in partial.read_text():
            return process, kernels[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    raise AssertionError("the stage never reached its sleeping cell")


def gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not Path(f"/proc/{pid}").exists() or "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("how, phrase", [(signal.SIGTERM, "stopped by SIGTERM"),
                                         (signal.SIGINT, "interrupted (Ctrl-C)")])
def test_sigterm_and_ctrl_c_end_the_stage_and_its_kernel(project, tmp_path, how, phrase):
    outputs = tmp_path / "outputs"
    process, kernel = start_slow_stage(project, outputs)
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert result.returncode == 130
    assert_ended_cleanly(result, outputs, phrase, status="interrupted")
    assert gone(kernel)


@pytest.mark.slow
def test_a_killed_runner_leaves_no_kernel_computing_and_no_running_manifest(project, tmp_path):
    outputs = tmp_path / "outputs"
    process, kernel = start_slow_stage(project, outputs)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert gone(kernel), "the kernel outlived its runner"
    os.environ["OUTPUTS_DIR"] = str(outputs)  # The isolated_environment fixture restores it.
    assert json.loads((outputs / "trust" / "manifest.json").read_text())["status"] == "running"  # As it was left,
    assert records.read_manifest("trust")["status"] == "interrupted"  # but read as what it is now,
    assert summary.collect("trust")["status"] == "interrupted"  # and shown so on the summary page.


def test_a_mistake_before_any_stage_prints_one_clear_error(capsys):
    assert runner.main(["feature_extraction", "--profile", "smoke", "--set", "strategy=x"]) == 2
    error = capsys.readouterr().err
    assert "no stage among 01_feature_extraction has a parameter 'strategy'" in error
    assert "Could not write the summary page" not in error


def main_in_a_new_interpreter(*arguments: str) -> tuple[subprocess.CompletedProcess, bool]:
    """`runner.main(arguments)` in a Python of its own: what it printed, and whether TensorFlow was imported by then."""
    script = ("import sys; from lib import runner; status = runner.main(sys.argv[1:]); "
              "print('tensorflow' in sys.modules); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", script, *arguments], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    return result, result.stdout.strip().endswith("True")


def test_a_parameter_mistake_under_profile_auto_is_told_before_tensorflow_starts():
    """PROFILE=auto starts TensorFlow to look for GPUs and time the CPU: a mistyped or out-of-range SET stops first."""
    for value, phrase in (("-1", "'epochs' = -1 is out of range"), ("many", "--set: parameter 'epochs' must be int")):
        result, tensorflow = main_in_a_new_interpreter("--profile", "auto", "--set", f"epochs={value}", "all")
        assert result.returncode == 2 and phrase in result.stderr and not tensorflow, result


def test_the_freshness_verdict_is_in_fields_a_decision_reads():
    inputs = {"hash": "h", "environment": {"precision": "float32"}, "code": {}, "earlier_stages": {}}
    never = freshness.verdict(STAGE1, "fields", {}, inputs)
    assert (never.complete, never.up_to_date) == (False, False)
    folder = paths.stage_dir("fields", STAGE1)
    storage.write_json(folder / records.STAGE_FILE, {"status": "complete", "inputs_hash": "h",
                                                     "parameters_hash": freshness.short_hash({}), "inputs": inputs})
    damaged = freshness.verdict(STAGE1, "fields", {}, inputs)
    assert (damaged.complete, damaged.up_to_date) == (True, False) and "metrics.json" in damaged.reason
    for name in (records.METRICS_FILE, f"{STAGE1}.ipynb", f"{STAGE1}.html"):
        storage.write_text(folder / name, "{}")
    assert freshness.verdict(STAGE1, "fields", {}, inputs).up_to_date
    changed = freshness.verdict(STAGE1, "fields", {"epochs": 2}, inputs)
    assert changed.complete and not changed.up_to_date and "parameters changed: epochs" in changed.reason


def test_a_rerun_that_skips_every_stage_starts_no_tensorflow():
    values = params.resolve_for_stage(STAGE1, params.load_profile("smoke"), {})
    inputs = freshness.stage_inputs(STAGE1, values, "skips", {})
    complete_stage("skips", STAGE1)
    folder = paths.stage_dir("skips", STAGE1)
    storage.write_json(folder / records.STAGE_FILE, {"status": "complete", "inputs_hash": inputs["hash"],
                                                     "parameters_hash": freshness.short_hash(values)})
    for name in (f"{STAGE1}.ipynb", f"{STAGE1}.html"):
        storage.write_text(folder / name, "{}")
    result, tensorflow = main_in_a_new_interpreter("feature_extraction", "--profile", "smoke", "--run", "skips")
    assert result.returncode == 0 and f"{STAGE1}: skipped, complete with the same parameters" in result.stdout, result
    assert not tensorflow


def test_files_get_the_permissions_a_normal_write_would(tmp_path):
    script = ("import os, sys; os.umask(int(sys.argv[1], 8)); sys.path.insert(0, '.');"
              "from pathlib import Path; from lib.core import storage; from lib.study import synthetic;"
              "storage.write_json(Path(sys.argv[2]) / 'metrics.json', {});"
              "synthetic.make_synthetic_dataset(Path(sys.argv[2]) / 'photos', {'train': 2})")
    for umask, file_mode, folder_mode in (("022", 0o644, 0o755), ("027", 0o640, 0o750)):
        folder = tmp_path / umask
        folder.mkdir()
        subprocess.run([sys.executable, "-c", script, umask, str(folder)], cwd=Path(__file__).parent.parent,
                       check=True)
        assert (folder / "metrics.json").stat().st_mode & 0o777 == file_mode
        assert (folder / "photos").stat().st_mode & 0o777 == folder_mode


@pytest.mark.slow
def test_the_forecast_names_the_precision_the_stages_will_use(tmp_path, monkeypatch):
    """bfloat16 only where this CPU runs it natively; float32 under an AVX2 cap (the slower machines)."""
    forecast = ("all", "--profile", "smoke", "--forecast-only", "--set", "mixed_precision=true")
    capped = run_runner(ROOT, tmp_path, *forecast, ONEDNN_MAX_CPU_ISA="AVX2")
    assert capped.returncode == 0 and "at 32px in float32" in capped.stdout, capped.stdout + capped.stderr
    native = run_runner(ROOT, tmp_path, *forecast, ONEDNN_MAX_CPU_ISA="")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    expected = "mixed_bfloat16" if devices.cpu_has_bfloat16() else "float32"
    assert native.returncode == 0 and f"at 32px in {expected}" in native.stdout, native.stdout + native.stderr


def test_a_forecast_without_its_weights_is_one_line(tmp_path):
    """`make forecast` offline or with a wrong weights path: one line naming the fix and status 2, no traceback."""
    result = run_runner(ROOT, tmp_path, "all", "--profile", "smoke", "--forecast-only", "--set",
                        f"weights={tmp_path / 'missing.h5'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "ERROR: VGG16 weights file" in result.stderr and "VGG16_WEIGHTS" in result.stderr


def test_no_stage_is_shown_running_once_its_runner_is_gone():
    """Even when the runner's last act was cut short (a second Ctrl-C during a stage's clean-up)."""
    storage.write_json(paths.run_dir("cut") / "manifest.json",
                       {"status": "interrupted", "stages": {STAGE1: {"status": "running"}}})
    assert records.read_manifest("cut")["stages"][STAGE1]["status"] == "interrupted"
    manifest.finish("closed", {"status": "failed", "hardware": {"gpus_checked": True},
                               "stages": {STAGE1: {"status": "running"}}})
    stage = storage.read_json(paths.run_dir("closed") / "manifest.json")["stages"][STAGE1]
    assert stage["status"] == "failed" and "runner stopped" in stage["message"]


def test_a_report_is_rendered_from_the_executed_notebook_with_its_banner(tmp_path):
    import nbformat

    from lib.core import stages
    from lib.pages import report

    folder = tmp_path / "run" / STAGE1
    folder.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Stage 1 notes"),
                                               nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(notebook, folder / "stage.ipynb")
    page = report.render(folder / "stage.ipynb", folder / "stage.html", stages.get(STAGE1),
                         banner="stage failed in cell [2]").read_text()
    assert page.index("stage failed in cell [2]") < page.index("Stage 1 notes") and ">print<" in page
    assert sorted(path.name for path in folder.iterdir()) == ["stage.html", "stage.ipynb"]


def test_provenance_fingerprints_the_photos_and_names_the_versions(tiny_dataset):
    from lib.run import provenance

    first = provenance.dataset_fingerprint(str(tiny_dataset))
    assert set(first["splits"]) == {"train", "validation"} and len(first["splits"]["train"]["files"]) == 8
    (tiny_dataset / "train" / "cats" / "cat.0.jpg").write_bytes(b"changed")
    assert provenance.dataset_fingerprint(str(tiny_dataset))["sha256"] != first["sha256"]
    versions = provenance.versions(("numpy", "no-such-package"))
    assert versions["numpy"][0].isdigit() and versions["no-such-package"] == "not installed" and "python" in versions
    assert provenance.weights_fingerprint("none")["kind"] == "none"


def test_the_console_shows_the_lines_worth_a_line():
    import io

    from lib.run import console

    out = io.StringIO()
    lines = console.KernelLines(out)
    lines.write("Devices: CPU only; distribution: none (one device); precision float32.\n\n")
    lines.write("E0000 00:00:1764553044.301513   12 mkl_util.h:123] oneDNN supports DT_HALF only on platforms with "
                "AVX-512.\nWARNING:tensorflow:5 out of the last 5 calls to <function> triggered tf.function "
                "retracing.\n")
    lines.write('\x1b[1mModel: "classifier"\x1b[0m\n┏━━━━━┳━━━┓\n│ dense (Dense) │ 257 │\n')
    lines.write("\x1b[1m Total params: \x1b[0m1\n")
    lines.write("/x/saving_lib.py:911: UserWarning: Skipping nested container\n  _load_container_state(\n")
    lines.write("Epoch 3/30\n100/100 - 2s - 18ms/step - accuracy: 0.98 - loss: 0.05 - val_accuracy: 0.97\nExtr")
    lines.write("acted train: 2000 images in 11.6 s.\n")
    assert out.getvalue().splitlines() == [
        "    Devices: CPU only; distribution: none (one device); precision float32.",
        "    epoch 3/30 - 2s - 18ms/step - accuracy: 0.98 - loss: 0.05 - val_accuracy: 0.97",
        "    Extracted train: 2000 images in 11.6 s."]


def test_markup_in_a_failure_or_a_weights_file_name_stays_text_in_the_report(tmp_path):
    import nbformat

    from lib.core import stages
    from lib.pages import report
    from lib.study import stage_run
    from lib.study.weights import WeightsChoice

    hostile = "<img src=x onerror=alert(1)>.h5"
    notice = stage_run.weights_notice(WeightsChoice("file", tmp_path / hostile, "a" * 64)).data
    assert "<img src=x" not in notice and "&lt;img src=x onerror=alert(1)&gt;.h5" in notice
    folder = tmp_path / "run" / STAGE1
    folder.mkdir(parents=True)
    log_line = nbformat.v4.new_output("stream", name="stderr", text="E0000 00:00:1764553044.3 1 a.cc:1] x\n")
    shown = nbformat.v4.new_output("display_data", data={"text/html": notice})
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Stage 1"),
                                               nbformat.v4.new_code_cell("x = 1", outputs=[log_line, shown])])
    nbformat.write(notebook, folder / f"{STAGE1}.ipynb")
    banner = f"{STAGE1} failed in cell [7]: TypeError: expected <class 'int'>, got {hostile}"
    page = report.render(folder / f"{STAGE1}.ipynb", folder / f"{STAGE1}.html", stages.get(STAGE1), banner).read_text()
    assert "<img src=x" not in page and "<class 'int'>" not in page
    assert "expected &lt;class 'int'&gt;, got &lt;img src=x onerror=alert(1)&gt;.h5" in page
    assert "E0000" not in page and "<title>Stage 1: Feature extraction (run)</title>" in page


@pytest.mark.slow
def test_the_summary_page_follows_a_run_as_it_goes(project, tmp_path):
    """index.html is there once stage 1 ends, with stage 1's result, stage 2 running and stage 3 waiting."""
    inject_cell(project, "import time\n\ntime.sleep(600)", stem="02_data_augmentation")
    outputs = tmp_path / "outputs"
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "lib.runner", "all", "--profile", "smoke", "--run", "watch",
                                "--no-forecast"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    page, deadline = "", time.time() + 300
    try:
        while time.time() < deadline and not ("running: in progress" in page and "01_feature_extraction.html" in page):
            assert process.poll() is None, process.communicate()
            time.sleep(0.5)
            index = outputs / "watch" / "index.html"
            page = index.read_text() if index.is_file() else ""
        assert "running: in progress" in page and "waiting: runs after the stages above" in page
        assert "01_feature_extraction/01_feature_extraction.html" in page and 'http-equiv="refresh"' in page
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=120)
    page = (outputs / "watch" / "index.html").read_text()
    assert "interrupted" in page and "not run: the command stopped before this stage" in page
    assert 'http-equiv="refresh"' not in page


def test_every_way_a_stage_ends_early_gets_one_line_naming_the_fix(tmp_path):
    import errno
    import logging

    from lib.run import execution

    partial = tmp_path / "missing.ipynb"  # No notebook yet: the cell is unknown.
    cases = {execution.Terminated(): ("stopped by SIGTERM in cell [?]", "interrupted"),
             KeyboardInterrupt(): ("interrupted (Ctrl-C) in cell [?]", "interrupted"),
             OSError(errno.ENOSPC, "No space left on device"): ("the disk is full", "failed"),
             RuntimeError("kernel died before replying"): ("kernel did not start", "failed"),
             ValueError("odd"): ("unexpected error (ValueError: odd)", "failed")}
    for error, (phrase, status) in cases.items():
        failure = execution._failure(error, STAGE1, partial, 60)
        assert phrase in str(failure) and failure.status == status and str(failure).startswith(STAGE1)
    execution.configure_logging(verbose=False)
    assert logging.getLogger("papermill").level == logging.WARNING
    execution.configure_logging(verbose=True)
    assert logging.getLogger("papermill").level == logging.INFO


@pytest.mark.slow
def test_relative_data_dir_weights_and_folders_work_as_the_offline_example_gives_them(tmp_path, random_weights_file):
    """`DATA_DIR=../some/relative/path make run-all`, as the offline example writes it: relative to the folder make
    runs in (the project), while the kernels run in notebooks/."""
    dataset = make_dataset(tmp_path / "photos", per_class=4)
    relative = {"DATA_DIR": dataset, "VGG16_WEIGHTS": random_weights_file, "OUTPUTS_DIR": tmp_path / "outputs",
                "CACHE_DIR": tmp_path / "cache"}
    environment = {variable: os.path.relpath(path, ROOT) for variable, path in relative.items()}
    assert all(value.startswith("..") for value in environment.values())
    before = sorted(path.name for path in (ROOT / "notebooks").iterdir())
    venv = Path(sys.prefix)
    result = subprocess.run(["make", "-o", str(venv / ".installed"), f"VENV={venv}", "run-feature-extraction",
                             "PROFILE=smoke", "RUN=relative", "SET=epochs=1"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, env={**os.environ, **environment})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "outputs" / "relative" / STAGE1 / "metrics.json").read_text())
    assert metrics["weights_kind"] == "file" and metrics["images"] == {"train": 8, "validation": 4, "test": 4}
    assert metrics["parameters"]["data_dir"] == str(dataset)
    assert list((tmp_path / "cache").iterdir())  # CACHE_DIR too reached the kernel whole,
    assert sorted(path.name for path in (ROOT / "notebooks").iterdir()) == before  # and nothing went into notebooks/.


@pytest.mark.slow
def test_a_second_runner_on_the_same_run_stops_at_once_and_the_first_completes(tmp_path):
    outputs = tmp_path / "outputs"
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    first = subprocess.Popen([sys.executable, "-m", "lib.runner", *SMOKE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (stage_folder(outputs) / f".{STAGE1}.running.ipynb").exists():
        assert first.poll() is None and time.time() < deadline, first.stdout.read()[-3000:]
        time.sleep(0.2)
    started = time.time()
    second = run_runner(ROOT, outputs, *SMOKE)
    seconds = time.time() - started
    print(f"the second runner was refused in {seconds:.1f} s")
    assert second.returncode == 2 and seconds < 30
    assert f"Run trust is being run by another runner: process {first.pid} on " in second.stderr
    assert first.wait(timeout=600) == 0, first.stdout.read()[-3000:]
    assert json.loads((stage_folder(outputs) / "metrics.json").read_text())["status"] == "complete"
    assert storage.read_json(outputs / "trust" / "manifest.json")["runner"]["pid"] == first.pid


def descendants(pid: int) -> set[int]:
    """Every process started by `pid`, and by those, and so on (whatever session they moved to)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(next(line for line in (entry / "status").read_text().splitlines()
                              if line.startswith("PPid:")).split()[1])
        except (OSError, ValueError, StopIteration):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGHUP, signal.SIGKILL])
def test_a_hangup_or_a_killed_runner_leaves_no_process_of_the_run(project, tmp_path, how):
    """A runner with a local cluster of two workers (WORKERS=2), each kernel asleep in a cell: after SIGHUP (a closed
    terminal) or SIGKILL of the runner, no process it started is left, and no stage is shown running."""
    asleep = tmp_path / "asleep"
    asleep.mkdir()
    inject_cell(project, "import os\nimport pathlib\nimport time\n\n"
                         f"pathlib.Path('{asleep}', str(os.getpid())).touch()\ntime.sleep(600)")
    outputs = tmp_path / "outputs"
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "lib.runner", *SMOKE, "--workers", "2"], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while len(list(asleep.iterdir())) < 2:  # The chief's kernel and the worker's, each asleep in the cell.
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise AssertionError(process.communicate()[1][-3000:])
        time.sleep(0.5)
    started = descendants(process.pid)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:150] for pid in started}
    assert len(started) >= 3, commands  # The chief's kernel, the worker, the worker's kernel.
    process.send_signal(how)
    stdout, stderr = process.communicate(timeout=120)
    assert all(gone(pid, 30) for pid in started), [pid for pid in started if Path(f"/proc/{pid}").exists()]
    os.environ["OUTPUTS_DIR"] = str(outputs)  # The isolated_environment fixture restores it.
    recorded = records.read_manifest("trust")
    assert recorded["status"] == "interrupted" and recorded["stages"][STAGE1]["status"] == "interrupted"
    if how == signal.SIGHUP:
        assert process.returncode == 130 and "stopped by SIGHUP" in stderr.strip().splitlines()[-1]
        assert storage.read_json(outputs / "trust" / "manifest.json")["status"] == "interrupted"  # As written.
