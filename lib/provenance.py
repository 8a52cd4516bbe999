"""What a run was made from: library versions, code commit, hardware, data and weights fingerprints.

Written to `outputs/<run>/manifest.json`, enough to rerun the study with the same parameters
(`make run-all FROM=outputs/<run>/manifest.json`) and to tell whether its inputs have changed since.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import lib
from lib import data, paths
from lib.weights import resolve_weights

PACKAGES = ("tensorflow", "keras", "numpy", "h5py", "pillow", "matplotlib", "papermill", "nbconvert",
            "nbclient", "ipykernel", "pyyaml")


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages the suite uses."""
    found = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def git_state() -> dict[str, Any]:
    """The project's git commit and whether the working tree differs from it."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=paths.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=20).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


def cpu_description() -> str:
    """CPU model and the number of CPUs this process may use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {usable} CPUs"


def gpu_descriptions() -> list[str]:
    """GPUs TensorFlow sees (imports TensorFlow)."""
    tf = lib.load_tensorflow()

    descriptions = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        descriptions.append(details.get("device_name", device.name))
    return descriptions


def dataset_fingerprint(data_dir: str) -> dict[str, Any]:
    """File lists and content hashes of every split of the dataset a stage will read."""
    root = data.resolve_data_dir(data_dir)
    splits = {}
    for split in data.available_splits(root):
        listing = data.list_split(root, split)
        splits[split] = {
            "files": [str(path.relative_to(root)) for path in listing.files],
            "sha256": data.fingerprint_files(listing.files, root),
        }
    combined = hashlib.sha256("|".join(f"{s}:{v['sha256']}" for s, v in splits.items()).encode()).hexdigest()
    return {"root": str(root), "sha256": combined, "splits": splits}


def weights_fingerprint(weights: str) -> dict[str, Any]:
    """Which weights a stage will load, with the file's sha256."""
    choice = resolve_weights(weights)
    return {"kind": choice.kind, "path": str(choice.path) if choice.path else None, "sha256": choice.sha256,
            "description": choice.describe()}


def file_sha256(path: Path) -> str:
    """SHA-256 of a (small) file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
