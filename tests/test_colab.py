"""Google Colab without Colab: a kernel that opens a notebook as Colab does (working folder `/content`, whose
parent holds a `lib/` folder, `google.colab` imported at start, nothing of the project on disk), the placeholder
address refused, Colab's own TensorFlow and Keras checked against the supported range, Google Drive mounted only
when asked for."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import papermill
import pytest
from conftest import copy_project

from lib import SuiteError
from lib.core import versions
from lib.run import colab

ROOT = Path(__file__).resolve().parent.parent
SMOKE = dict(data_dir="synthetic", weights="none", image_size=32, epochs=2, batch_size=8, run_name="colab")


def colab_machine(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in `google.colab` (its `drive.mount` makes `MyDrive` and says so) imported by every new Python,
    and a stand-in `/content` whose parent holds a `lib/` folder, as Colab's `/` holds the system's `/lib`."""
    standin = tmp_path / "standin"
    (standin / "google" / "colab").mkdir(parents=True)
    (standin / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s own module."""\n')
    (standin / "google" / "colab" / "drive.py").write_text(
        "import os\n\n\ndef mount(path):\n    os.makedirs(os.path.join(path, 'MyDrive'), exist_ok=True)\n"
        "    print('Mounted at', path)\n")
    (standin / "sitecustomize.py").write_text("import google.colab  # Colab imports it before any cell runs.\n")
    (tmp_path / "root" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)  # What `../lib` is in Colab.
    content = tmp_path / "root" / "content"
    content.mkdir()
    for name, value in (("PYTHONPATH", str(standin)), ("COLAB_WORKDIR", str(content)),
                        ("OUTPUTS_DIR", str(tmp_path / "outputs"))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUITE_REPOSITORY", raising=False)
    monkeypatch.setenv("SUITE_CPU_FORECAST", "0")  # No GPU here: the notice, without its minute of measuring.
    return content


def open_in_colab(content: Path, tmp_path: Path, **parameters) -> papermill.execute_notebook:
    return papermill.execute_notebook(str(ROOT / "notebooks" / "01_feature_extraction.ipynb"),
                                      str(tmp_path / "executed.ipynb"), parameters=parameters, kernel_name="python3",
                                      cwd=str(content), progress_bar=False)


@pytest.mark.slow
def test_a_notebook_opened_as_colab_does_clones_the_project_and_runs_stage_1(tmp_path, monkeypatch):
    """The project cloned from a local repository (SUITE_REPOSITORY) into the stand-in /content, nothing to
    install, smoke parameters, the run folders on the stand-in Google Drive: stage 1 runs to its metrics.json."""
    content = colab_machine(tmp_path, monkeypatch)
    monkeypatch.setenv("SUITE_REPOSITORY", str(copy_project(tmp_path / "project")))
    executed = open_in_colab(content, tmp_path, **SMOKE, drive_folder="MyDrive/vgg16-runs")
    clone = content / "vgg16-cats-vs-dogs"
    assert (clone / "lib" / "core" / "stages.py").is_file() and not (content / "lib").exists()
    assert subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True).returncode == 0
    printed = "".join(output.get("text", "") for cell in executed.cells for output in cell.get("outputs", []))
    assert "Nothing to install" in printed and "Validation accuracy" in printed and "Mounted at" in printed
    on_drive = content / "drive" / "MyDrive" / "vgg16-runs" / "colab" / "01_feature_extraction"
    metrics = json.loads((on_drive / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["epochs_run"] == 2
    # The caches stay where they were (here OUTPUTS_DIR/cache, in Colab the clone's outputs/cache): local and fast.
    assert not (tmp_path / "outputs" / "colab").exists() and (tmp_path / "outputs" / "cache" / "features").is_dir()


def test_with_the_placeholder_address_the_colab_cell_stops_and_says_what_to_set(tmp_path, monkeypatch):
    content = colab_machine(tmp_path, monkeypatch)
    assert colab.cell_repository() == "" and colab.cell_repository("https://github.com/someone/suite") != ""
    with pytest.raises(papermill.PapermillExecutionError) as stopped:
        open_in_colab(content, tmp_path, **SMOKE)
    assert "Set SUITE_REPOSITORY to the project's git URL in a cell above and run this one again" in str(stopped.value)
    assert list(content.iterdir()) == []  # Nothing cloned.


def test_drive_is_mounted_only_when_asked_and_then_holds_the_run_folders(tmp_path, monkeypatch):
    mounted = []
    drive = types.SimpleNamespace(mount=lambda path: (mounted.append(path), Path(path, "MyDrive").mkdir(parents=True)))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=drive))
    monkeypatch.setitem(sys.modules, "google", types.SimpleNamespace(colab=sys.modules["google.colab"]))
    monkeypatch.setenv("COLAB_WORKDIR", str(tmp_path))
    monkeypatch.delenv("CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    cache = colab.paths.cache_root()
    colab.prepare("synthetic", "")
    assert mounted == [] and Path.cwd() == colab.paths.NOTEBOOKS_DIR
    colab.prepare("synthetic", "MyDrive/runs")
    assert mounted == [str(tmp_path / "drive")]
    assert colab.paths.outputs_root() == tmp_path / "drive" / "MyDrive" / "runs" and colab.paths.cache_root() == cache
    colab.prepare(str(tmp_path / "drive" / "MyDrive" / "photos"), "")  # Photos on Drive: mounted already.
    assert len(mounted) == 1


def test_the_supported_range_is_the_two_requirement_files_and_is_enforced():
    pins = {}
    for name in ("requirements-oldest.txt", "requirements.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split("==")
                pins.setdefault(package, []).append(version)
    for package, (oldest, newest) in versions.SUPPORTED.items():
        assert pins[package] == [oldest, newest]
    assert versions.check({"tensorflow": "2.19.0", "keras": "3.15.1"}) == []
    assert "keras 3.16.0 is newer than" in versions.check({"tensorflow": "2.20.0", "keras": "3.16.0"})[0]
    with pytest.raises(SuiteError, match=r"tensorflow 2\.18\.1 is older than .* `pip install 'tensorflow>=2\.19\.0'`"):
        versions.check({"tensorflow": "2.18.1", "keras": "3.10.0"})
    with pytest.raises(SuiteError, match="keras is not installed"):
        versions.check({"tensorflow": "2.19.0", "keras": None})


def test_a_cpu_runtime_is_told_what_the_full_schedule_costs_there_and_how_to_shorten_it(monkeypatch):
    asked = []

    def forecast(command):
        asked.append(command)
        return "about 640 min (measured here: ...)"

    monkeypatch.delenv("SUITE_CPU_FORECAST", raising=False)
    notice = colab.cpu_runtime_notice("/content/drive/MyDrive/photos", forecast)
    assert "no GPU" in notice and "about 640 min" in notice and "Runtime > Change runtime type" in notice
    assert "augmentation_pool=8" in notice and "make run-all" in notice
    command = asked[0]
    assert command[1:6] == ["-m", "lib.runner", "--forecast-only", "--profile", "full"] and command[-1] == "all"
    assert "require_gpu=false" in command and "data_dir=/content/drive/MyDrive/photos" in command
    monkeypatch.setenv("SUITE_CPU_FORECAST", "0")
    assert "not measured (SUITE_CPU_FORECAST=0)" in colab.cpu_runtime_notice("", forecast) and len(asked) == 1


def test_the_forecast_quoted_to_a_cpu_runtime_is_the_runners_total_line_or_why_there_is_none():
    printed = "    forecast 01_feature_extraction: about 8.0 min\n    forecast total: about 640 min (measured here: x)"
    assert colab._forecast_lines([sys.executable, "-c", f"print({printed!r})"]) == "about 640 min (measured here: x)"
    failed = colab._forecast_lines([sys.executable, "-c", "import sys; sys.exit('ERROR: no photos here')"])
    assert failed == "not measured (ERROR: no photos here)"
    assert not colab.gpu_visible() or Path("/dev/nvidiactl").exists()
