"""Running the notebooks in Google Colab: the project's repository URL, the badges, and Colab's set-up.

`REPOSITORY_URL` is the one place the project's public git URL is kept. `make notebooks` copies it into
every notebook's Colab cell and "Open in Colab" badge, and into the README's and docs/'s badges and links
(Colab's, and the CI badge and Actions pages of .github/workflows/), so setting it here once fixes them all
(`make lint` fails while one differs).
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

# PLACEHOLDER: the project has no public URL yet. Set the GitHub URL of the project here, then `make notebooks`.
REPOSITORY_URL = "https://github.com/YOUR-GITHUB-ACCOUNT/vgg16-cats-vs-dogs"
BRANCH = "main"
# Import name -> pip requirement, for what the notebooks need beyond Colab's own TensorFlow and Keras.
PACKAGES = {"yaml": "pyyaml", "PIL": "pillow", "h5py": "h5py", "matplotlib": "matplotlib", "jinja2": "jinja2"}
DRIVE = "/content/drive"

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
    return _CELL_REPOSITORY.sub(f'REPOSITORY = "{REPOSITORY_URL}"', text)


def missing_packages() -> list[str]:
    """The pip requirements among `PACKAGES` that this Python cannot import."""
    return [requirement for module, requirement in PACKAGES.items() if importlib.util.find_spec(module) is None]


def prepare(data_dir: str = "") -> None:
    """Colab's set-up after the project is cloned: install only what is missing, and mount Google Drive
    when `data_dir` points into it."""
    missing = missing_packages()
    if missing:
        print(f"Installing what this Python lacks: {', '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    else:
        print("Nothing to install: every package the notebooks need is here.", flush=True)
    if str(data_dir).startswith(DRIVE) and not Path(DRIVE, "MyDrive").is_dir():
        from google.colab import drive

        drive.mount(DRIVE)
