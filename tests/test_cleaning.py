"""Cleaning deletes only what the suite can prove it made: `make clean-cache`, `make clean` and the runner's sweep
of leftovers refuse a user's folders (one line), never follow a link out of the folder, keep the cache entries a
running stage holds in use, and still remove the marked entries no one uses."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_image

from lib import runner
from lib.core import locks, marks, paths, storage
from lib.run import cache_commands, housekeeping
from lib.study import cache, synthetic


@pytest.fixture(autouse=True)
def own_temporary_folder(tmp_path, monkeypatch):
    """`make clean` also sweeps the temporary folder for what killed kernels left there: these tests count what it
    removes, so they give it a temporary folder of their own, not the machine's (which other runs share)."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


def users_folder(folder: Path) -> Path:
    """A folder of a person's own files: photos, notes, and folders named as the suite names its own."""
    write_image(folder / "holiday.jpg")
    write_image(folder / "images" / "cat.1.jpg")
    (folder / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes")
    for name in ("features/vectors.npz", "pool/list.txt", "cache/keep.txt", "bench/result.json",
                 "project/manifest.json", "project/01_feature_extraction/draft.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"mine: {name}")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def refusals(text: str) -> list[str]:
    return [line for line in text.splitlines() if "not made by this suite" in line]


def test_clean_cache_on_a_folder_of_a_users_files_removes_nothing_and_says_so_in_one_line(tmp_path, monkeypatch,
                                                                                          capsys):
    home = users_folder(tmp_path / "home")
    before = snapshot(home)
    monkeypatch.setenv("CACHE_DIR", str(home))
    for everything in ([], ["--all"]):
        assert cache_commands.main(["--clean", *everything]) == 0
        printed = capsys.readouterr().out
        assert snapshot(home) == before
        assert "Removed 0 cache entries" in printed
        (line,) = refusals(printed)
        assert str(home / "images") in line and "by hand" in line


def test_make_clean_with_outputs_and_cache_in_a_users_folders_removes_nothing(tmp_path, monkeypatch, capsys):
    home, other = users_folder(tmp_path / "home"), users_folder(tmp_path / "other")
    before = snapshot(tmp_path)
    old = age(home / "images" / ".cat.abcd1234.partial.jpg")  # Named like a leftover, in a folder that is not ours.
    monkeypatch.setenv("OUTPUTS_DIR", str(home))
    monkeypatch.setenv("CACHE_DIR", str(other))
    assert housekeeping.clean() == 0
    assert housekeeping.remove_leftovers() == [] and old.exists()
    assert {name: data for name, data in snapshot(tmp_path).items() if name != str(old.relative_to(tmp_path))} \
        == before
    assert len(refusals(capsys.readouterr().out)) == 1


def age(path: Path, seconds: float = 3600) -> Path:
    path.write_text("x")
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return path


def test_a_link_in_the_cache_is_never_followed(tmp_path, monkeypatch):
    outside = users_folder(tmp_path / "outside")
    before = snapshot(outside)
    root = tmp_path / "cache"
    monkeypatch.setenv("CACHE_DIR", str(root))
    synthetic = marks.make_folder(root / "synthetic_cats_and_dogs", "synthetic photos")
    (synthetic / "train").symlink_to(outside, target_is_directory=True)
    marks.make_folder(root / "features", "conv features")
    (root / "features" / "train-a.npz").symlink_to(outside / "features" / "vectors.npz")
    (root / "photos").symlink_to(outside, target_is_directory=True)  # A link of the user's own, at the top.
    cleaning = cache_commands.clean(everything=True)
    assert snapshot(outside) == before
    assert not synthetic.exists() and not (root / "features" / "train-a.npz").is_symlink()  # Links removed as links,
    assert (root / "photos").is_symlink() and cleaning.refused == [root / "photos"]  # and one not ours refused.
    assert cleaning.removed == 2


def test_an_entry_a_running_stage_uses_is_kept_and_the_others_removed(tmp_path, capsys):
    root = paths.cache_root()
    busy, idle = root / "features" / "train-block4_pool-busy.npz", root / "features" / "train-block4_pool-idle.npz"
    cache.cached_arrays(busy, lambda: {"features": np.zeros(8)})  # As a stage writes it: marked folder, held.
    storage.write_arrays(idle, features=np.zeros(8))  # Written by a stage that has ended.
    raw = root / "images" / "train-150px-store.u8"  # A disk store read batch by batch: index and raw file.
    cache.note_used(raw.with_suffix(".index.npz"))
    storage.write_arrays(raw.with_suffix(".index.npz"), ok=np.ones(1, dtype=bool))
    raw.write_bytes(b"\0" * 300)
    cache.note_used(raw)
    synthetic_set = synthetic.make_synthetic_dataset(paths.synthetic_data_dir(), {"train": 2}, size=24)
    cache.note_used(synthetic_set)
    building = root / ".synthetic-abc123"  # A synthetic set being drawn, held by its writer.
    building.mkdir()
    with locks.holding(building):
        cleaning = cache_commands.clean(everything=True)
        assert housekeeping.clean() == 0
    printed = capsys.readouterr().out
    assert cleaning.removed == 1 and not idle.exists()
    assert busy.is_file() and raw.is_file() and raw.with_suffix(".index.npz").is_file() and building.is_dir()
    assert (synthetic_set / "done").is_file()
    assert sorted(cleaning.in_use) == ["features/train-block4_pool-busy", "images/train-150px-store",
                                       "synthetic_cats_and_dogs"]
    assert "Kept cache entry features/train-block4_pool-busy: a running stage is using it." in printed
    cache.release_in_use()  # The stage ends: the next clean-up removes them.
    assert cache_commands.clean(everything=True).removed == 3 and not synthetic_set.exists() and not raw.exists()


def test_the_suite_marks_what_it_makes(tmp_path):
    cache.cached_arrays(paths.cache_root() / "pool" / "train-v0-a.npz", lambda: {"features": np.zeros(2)})
    assert marks.kind_of(paths.cache_root() / "pool") == "augmentation pool"
    synthetic_set = synthetic.make_synthetic_dataset(tmp_path / "synthetic", {"train": 2}, size=24)
    assert marks.kind_of(synthetic_set) == "synthetic photos"
    runner.check_writable("marked")
    assert marks.kind_of(paths.run_dir("marked")) == "run"
    existing = tmp_path / "mine"
    existing.mkdir()
    assert not marks.is_marked(marks.make_folder(existing, "run"))  # A folder that was there is not claimed.


def test_cleaning_a_cache_that_is_the_outputs_folder_never_removes_a_run(monkeypatch):
    outputs = paths.outputs_root()
    monkeypatch.setenv("CACHE_DIR", str(outputs))
    runner.check_writable("kept")
    storage.write_json(paths.stage_dir("kept", "01_feature_extraction") / "metrics.json", {"cache_entries": []})
    entry = outputs / "features" / "train-a.npz"
    cache.cached_arrays(entry, lambda: {"features": np.zeros(2)})
    assert cache_commands.clean(everything=True).in_use == ["features/train-a"]
    hold = locks.hold_run(paths.run_dir("kept"))
    try:
        assert housekeeping.clean() == 0
    finally:
        locks.release(hold)
    assert (paths.stage_dir("kept", "01_feature_extraction") / "metrics.json").is_file() and entry.is_file()


def test_make_clean_cache_on_a_users_folder_removes_nothing(tmp_path):
    home = users_folder(tmp_path / "home")
    before = snapshot(home)
    result = subprocess.run(["make", "-o", str(Path(sys.prefix) / ".installed"), f"VENV={sys.prefix}", "clean-cache",
                             "ALL=1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CACHE_DIR": str(home)})
    assert result.returncode == 0, result.stderr
    assert snapshot(home) == before and len(refusals(result.stdout)) == 1


def test_make_clean_holds_a_runs_lock_while_it_removes_it(monkeypatch):
    """A runner that starts on a run while `make clean` removes it stops at once, naming the cleaner, instead of
    losing its folder mid-run."""
    runner.check_writable("old")
    storage.write_text(paths.run_dir("old") / "notes.txt", "x")
    locks.release(locks.hold_run(paths.run_dir("old")))  # An earlier runner's lock file, let go.
    starting, real_remove = [], marks.remove

    def remove_while_a_runner_starts(path):
        if path == paths.run_dir("old"):
            try:
                locks.hold_run(path)
            except locks.RunInUse as refused:
                starting.append(str(refused))
        real_remove(path)

    monkeypatch.setattr(marks, "remove", remove_while_a_runner_starts)
    assert housekeeping.clean() >= 1 and not paths.run_dir("old").exists()
    assert len(starting) == 1
