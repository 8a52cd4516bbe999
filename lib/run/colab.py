"""Running the notebooks in Google Colab: the project's repository URL, the badges, and Colab's set-up.

`REPOSITORY_URL` is the one place the project's public git URL is kept. `make notebooks` copies it into
every notebook's Colab cell and "Open in Colab" badge, and into the README's and docs/'s badges and links
(Colab's, and the CI badge and Actions pages of .github/workflows/), so setting it here once fixes them all
(`make lint` fails while one differs). While it is the placeholder, the Colab cell gets an empty address and
stops with a message saying what to set, instead of cloning whatever answers at the placeholder.

The Colab cell knows it is inside the project by `MARKER`, a file that only the project's `notebooks/` folder
holds (not by a `../lib` folder: Colab's working directory is `/content`, whose parent holds the system's
`/lib`). Outside it, it clones the project and calls `prepare`: the notebooks run on Colab's own TensorFlow and
Keras (`lib.core.versions` says which are supported), only missing packages are installed, and Google Drive
is mounted only when asked for, to keep the run folders beyond the runtime's life (`drive_folder`).
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lib.core import paths, versions

# PLACEHOLDER: the project has no public URL yet. Set the GitHub URL of the project here, then `make notebooks`.
REPOSITORY_URL = "https://github.com/YOUR-GITHUB-ACCOUNT/vgg16-cats-vs-dogs"
PLACEHOLDER_ACCOUNT = "YOUR-GITHUB-ACCOUNT"
BRANCH = "main"
MARKER = "vgg16-suite.marker"  # In notebooks/, beside the notebooks: the Colab cell's "am I inside the project?".
# Import name -> pip requirement, for what the notebooks need beyond Colab's own TensorFlow and Keras.
PACKAGES = {"yaml": "pyyaml", "PIL": "pillow", "h5py": "h5py", "matplotlib": "matplotlib", "jinja2": "jinja2",
            "tensorboard": "tensorboard"}

_BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/")
# The project's GitHub Actions pages and the CI badge: github.com/<owner>/<name>/actions...
_ACTIONS_LINK = re.compile(r"https://github\.com/[^/\s)]+/[^/\s)]+/actions(?![\w-])")
_CELL_REPOSITORY = re.compile(r'^REPOSITORY = "[^"]*"', re.MULTILINE)


def github_path(url: str = REPOSITORY_URL) -> str:
    """`owner/name` of a GitHub URL (Colab opens notebooks from GitHub only)."""
    match = re.match(r"https://github\.com/([^/]+/[^/.]+?)(\.git)?/?$", url)
    if not match:
        raise ValueError(f"REPOSITORY_URL {url!r} in lib/run/colab.py is not a https://github.com/owner/name URL.")
    return match.group(1)


def badge_link(stem: str) -> str:
    """The "Open in Colab" address of a notebook."""
    return f"https://colab.research.google.com/github/{github_path()}/blob/{BRANCH}/notebooks/{stem}.ipynb"


def actions_link(workflow: str = "") -> str:
    """The project's GitHub Actions page, or one workflow's (`ci.yml`) whose `/badge.svg` is its status badge."""
    return f"https://github.com/{github_path()}/actions" + (f"/workflows/{workflow}" if workflow else "")


def with_current_links(text: str) -> str:
    """`text` (a notebook source, the README or a page of docs/) with its Colab and Actions addresses and the
    Colab cell's REPOSITORY set from `REPOSITORY_URL`."""
    text = _BADGE_LINK.sub(f"https://colab.research.google.com/github/{github_path()}/blob/{BRANCH}/notebooks/", text)
    text = _ACTIONS_LINK.sub(actions_link(), text)
    return _CELL_REPOSITORY.sub(f'REPOSITORY = "{cell_repository()}"', text)


def cell_repository(url: str = REPOSITORY_URL) -> str:
    """What the Colab cell clones: `url`, or "" while it is the placeholder (the cell then stops and says why)."""
    return "" if PLACEHOLDER_ACCOUNT in url else url


def missing_packages() -> list[str]:
    """The pip requirements among `PACKAGES` that this Python cannot import."""
    return [requirement for module, requirement in PACKAGES.items() if importlib.util.find_spec(module) is None]


def drive_root() -> Path:
    """Where Colab mounts Google Drive: `drive/` in Colab's working folder (`/content`; `COLAB_WORKDIR` moves it)."""
    return Path(os.environ.get("COLAB_WORKDIR", "/content")) / "drive"


def outputs_on_drive(drive_folder: str) -> Path:
    """The run folders' place on Google Drive: `drive_folder` as a path inside the mounted Drive
    (`MyDrive/vgg16-runs`), or an absolute path under it."""
    folder = Path(drive_folder)
    return folder if folder.is_absolute() else drive_root() / folder


def mount_drive() -> None:
    """Mount Google Drive at `drive_root()` unless it is mounted already (Colab asks the user to allow it)."""
    if not (drive_root() / "MyDrive").is_dir():
        from google.colab import drive

        drive.mount(str(drive_root()))


def prepare(data_dir: str = "", drive_folder: str = "") -> None:
    """Colab's set-up after the project is cloned: work from its `notebooks/`, install only what is missing, say
    whether Colab's TensorFlow and Keras are supported, and mount Google Drive when asked: for photos under it
    (`data_dir`), or to write the run folders there (`drive_folder`; the caches stay on the runtime's disk)."""
    os.chdir(paths.NOTEBOOKS_DIR)
    missing = missing_packages()
    if missing:
        print(f"Installing what this Python lacks: {', '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    else:
        print("Nothing to install: every package the notebooks need is here.", flush=True)
    for warning in versions.check():
        print(f"Warning: {warning}", flush=True)
    if drive_folder or str(data_dir).startswith(str(drive_root())):
        mount_drive()
    if not gpu_visible():
        print(cpu_runtime_notice(data_dir), flush=True)
    if drive_folder:
        outputs = outputs_on_drive(drive_folder)
        outputs.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("CACHE_DIR", str(paths.cache_root()))  # Before OUTPUTS_DIR moves: local and fast.
        os.environ["OUTPUTS_DIR"] = str(outputs)
        print(f"Run folders go to Google Drive: {outputs} (caches stay in {os.environ['CACHE_DIR']}).", flush=True)


def gpu_visible() -> bool:
    """Whether this runtime has an NVIDIA GPU, from its device files (without starting TensorFlow)."""
    return os.path.exists("/dev/nvidiactl") or any(Path("/dev").glob("nvidia[0-9]*"))


def cpu_runtime_notice(data_dir: str = "", forecast: Callable[[list[str]], str] | None = None) -> str:
    """What a notebook opened on a CPU runtime says before it runs: its defaults are the full reference schedule,
    what that costs on this runtime (the runner's own forecast, measured now: a minute or so; `SUITE_CPU_FORECAST=0`
    skips it), and how to pick a GPU or a smaller schedule."""
    command = [sys.executable, "-m", "lib.runner", "--forecast-only", "--profile", "full", "--run", "colab-forecast",
               "--set", "require_gpu=false", *(["--set", f"data_dir={data_dir}"] if data_dir else []), "all"]
    if os.environ.get("SUITE_CPU_FORECAST", "1") == "0":
        cost = "not measured (SUITE_CPU_FORECAST=0)"
    else:
        cost = (forecast or _forecast_lines)(command)
    return ("This runtime has no GPU. Each notebook's defaults are the full reference schedule, meant for a GPU; "
            f"on this runtime's CPU it would take: {cost}.\nFor a GPU: Runtime > Change runtime type > a GPU (T4), "
            "then run all cells again. To stay on the CPU, shorten the schedule in the parameters cell: fewer "
            "epochs, and augmentation_pool=8 in stages 2 and 3 (variants computed once instead of every epoch); "
            "or, in a terminal of a clone, `make run-all` sizes the whole study to a 30-minute budget.")


def _forecast_lines(command: list[str]) -> str:
    """The total line of `lib.runner --forecast-only`, or why there is none."""
    try:
        finished = subprocess.run(command, cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "not measured (the forecast took over 10 minutes)"
    totals = [line.strip() for line in finished.stdout.splitlines() if line.strip().startswith("forecast total")]
    if finished.returncode or not totals:
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        return f"not measured ({last})"
    return totals[-1].removeprefix("forecast total: ")
