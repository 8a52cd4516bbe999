"""What a run was made from: library versions, code commit, hardware, data and weights fingerprints.

Written to `outputs/<run>/manifest.json`, enough to rerun the study with the same parameters
(`make run-all FROM=outputs/<run>/manifest.json`) and to tell whether its inputs have changed since.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from typing import Any

from lib.core import paths
from lib.study import listing, photos
from lib.study.weights import resolve_weights

PACKAGES = ("tensorflow", "keras", "numpy", "h5py", "pillow", "matplotlib", "papermill", "nbconvert",
            "nbclient", "ipykernel", "pyyaml", "jupytext", "jinja2")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python and the installed versions of `packages` (default: those the suite uses)."""
    found = {"python": sys.version.split()[0]}
    for package in packages:
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


def dataset_fingerprint(data_dir: str) -> dict[str, Any]:
    """File lists and content hashes of every split of the dataset a stage will read."""
    root = photos.resolve_data_dir(data_dir)
    splits = {}
    for split in listing.available_splits(root):
        split_listing = listing.list_split(root, split)
        splits[split] = {
            "files": [str(path.relative_to(root)) for path in split_listing.files],
            "sha256": listing.fingerprint_files(split_listing.files, root),
        }
    combined = hashlib.sha256("|".join(f"{s}:{v['sha256']}" for s, v in splits.items()).encode()).hexdigest()
    return {"root": str(root), "sha256": combined, "splits": splits}


def weights_fingerprint(weights: str) -> dict[str, Any]:
    """Which weights a stage will load, with the file's sha256."""
    choice = resolve_weights(weights)
    return {"kind": choice.kind, "path": str(choice.path) if choice.path else None, "sha256": choice.sha256,
            "description": choice.describe()}


def inputs_of(values: dict[str, Any], memo: dict[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(dataset_fingerprint, weights_fingerprint)` of a stage's `data_dir` and `weights`, hashed once per
    command (`memo` keeps them by those two values)."""
    key = (values.get("data_dir", ""), values.get("weights", "imagenet"))
    if key not in memo:
        memo[key] = (dataset_fingerprint(key[0]), weights_fingerprint(key[1]))
    return memo[key]
