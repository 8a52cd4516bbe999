"""The one place that decides where things live: project root, run folders, caches, generated data."""
from __future__ import annotations

import os
import re
from pathlib import Path

from lib import SuiteError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def outputs_root() -> Path:
    """Folder that holds one sub-folder per run; `OUTPUTS_DIR` moves it (default: `outputs/`)."""
    return Path(os.environ.get("OUTPUTS_DIR") or PROJECT_ROOT / "outputs").resolve()


def cache_root() -> Path:
    """Folder for caches shared by runs (decoded images, conv features); `CACHE_DIR` moves it."""
    return Path(os.environ.get("CACHE_DIR") or outputs_root() / "cache").resolve()


def check_run_name(run: str) -> str:
    """Return `run` if it is usable as a folder name, else raise a `SuiteError` saying what is allowed."""
    if not isinstance(run, str) or not _RUN_NAME.fullmatch(run) or run in {"cache", "bench"}:
        raise SuiteError(
            f"Run name {run!r} is not usable as a folder name: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit), and not the reserved names 'cache' or 'bench'."
        )
    return run


def cache_entry_name(path: str | os.PathLike) -> str:
    """The name of the cache entry a file or folder under `cache_root()` belongs to: its first-level folder for a
    folder of photos (`synthetic_cats_and_dogs`), else its path there up to the first dot
    (`images/train-150px-<key>` for both files of a disk store, `.u8` and `.index.npz`)."""
    path = Path(path)
    relative = (path.parent.resolve() / path.name).relative_to(cache_root())  # A link is named, not followed.
    if relative.parts[0] not in CACHE_KINDS:
        return relative.parts[0]
    return str(relative.parent / relative.name.split(".")[0])


# Folders of the cache whose files are entries, and what they hold; any other folder is one entry (photos).
CACHE_KINDS = {"features": "conv features", "images": "decoded photos", "pool": "augmentation pool"}


def run_dir(run: str) -> Path:
    """Folder of one run: `outputs/<run>/`."""
    return outputs_root() / check_run_name(run)


def seed_run(run: str, seed: int) -> str:
    """The run name of one seed of `make seeds` (`lib.run.seeds`): `<run>-seed<seed>`, beside the other seeds' runs."""
    return check_run_name(f"{run}-seed{seed}")


def seeds_dir(run: str) -> Path:
    """Folder of `make seeds`' page and `seeds.json` for the runs `<run>-seed<N>`: `outputs/<run>-seeds/`."""
    return run_dir(f"{run}-seeds")


def stage_dir(run: str, stage: str) -> Path:
    """Folder of one stage of a run: `outputs/<run>/<notebook stem>/`."""
    return run_dir(run) / stage


def backup_dir(stage_folder: str | os.PathLike) -> Path:
    """Where an interrupted stage's training backup lives until the stage completes: `<stage folder>/backup/`."""
    return Path(stage_folder) / "backup"


def rerun_dir(run: str, stage: str) -> Path:
    """Where a stage that has a complete result runs again, beside it, until the new attempt is complete and takes
    its place (`lib.run.rerun`): `outputs/<run>/<notebook stem>.rerun/`."""
    return run_dir(run) / f"{stage}.rerun"


def default_data_dir() -> Path:
    """Where the dataset is downloaded to when none is given: `data/cats_and_dogs_filtered` in the project."""
    return PROJECT_ROOT / "data" / "cats_and_dogs_filtered"


def synthetic_data_dir() -> Path:
    """Where the tiny synthetic image set of the smoke profile is generated."""
    return cache_root() / "synthetic_cats_and_dogs"
