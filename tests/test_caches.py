"""The cache under control: which entries each stage used, `make cache` listing them with the runs that use them,
`make clean-cache` removing what no run uses (ALL=1: everything) and never a run; `make tensorboard` serving a
run's logs."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lib.core import marks, paths, storage
from lib.run import cache_commands
from lib.study import cache

ROOT = Path(__file__).resolve().parent.parent
MAKE = ["make", f"VENV={ROOT / '.venv'}"]


def fill_cache() -> Path:
    """A cache with an entry of every kind, two runs that use some of them, and one entry no run uses."""
    root = paths.cache_root()
    for kind in paths.CACHE_KINDS:  # Made and marked as a stage makes them (`cache.note_used`).
        marks.make_folder(root / kind, paths.CACHE_KINDS[kind])
    for name in ("features/train-block4_pool-vgg16-a", "images/train-32px-b", "pool/train-block4_pool-v0-c"):
        storage.write_arrays(root / f"{name}.npz", features=np.zeros(1000, dtype=np.float32))
    (root / "images" / "train-150px-d.u8").write_bytes(b"\0" * 3000)  # A disk store: raw file and index.
    storage.write_arrays(root / "images" / "train-150px-d.index.npz", ok=np.ones(1, dtype=bool))
    (root / "synthetic_cats_and_dogs" / "train").mkdir(parents=True)
    marks.mark(root / "synthetic_cats_and_dogs", "synthetic photos")
    (root / "synthetic_cats_and_dogs" / "train" / "cat.0.jpg").write_bytes(b"jpg")
    for run, used in (("alpha", ["features/train-block4_pool-vgg16-a", "images/train-150px-d"]),
                      ("beta", ["features/train-block4_pool-vgg16-a", "synthetic_cats_and_dogs"])):
        storage.write_json(paths.stage_dir(run, "01_feature_extraction") / "metrics.json",
                           {"status": "complete", "cache_entries": used})
    return root


def make(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MAKE, *arguments], cwd=ROOT, capture_output=True, text=True, env=os.environ)


def test_a_stage_records_the_cache_entries_it_used(monkeypatch):
    monkeypatch.setattr(cache, "_used", set())
    root = fill_cache()
    cache.stored_arrays(root / "images" / "train-150px-d.index.npz")
    cache.note_used(root / "synthetic_cats_and_dogs")
    cache.note_used(paths.outputs_root() / "alpha")  # Not in the cache: not an entry.
    assert cache.used_entries() == ["images/train-150px-d", "synthetic_cats_and_dogs"]
    assert cache_commands.users()["images/train-150px-d"] == ["alpha/01_feature_extraction"]
    assert sorted(cache_commands.entries()["images/train-150px-d"]) == [root / "images" / "train-150px-d.index.npz",
                                                                  root / "images" / "train-150px-d.u8"]


def test_make_cache_lists_each_entry_with_its_kind_size_and_runs():
    fill_cache()
    listed = make("cache")
    assert listed.returncode == 0, listed.stderr
    entry = next(line for line in listed.stdout.splitlines() if "features/train-block4_pool-vgg16-a" in line)
    assert "conv features" in entry and "used by: alpha, beta" in entry
    disk_store = next(line for line in listed.stdout.splitlines() if "images/train-150px-d " in line)
    assert "decoded photos" in disk_store and "used by: alpha" in disk_store
    assert "(no run)" in next(line for line in listed.stdout.splitlines() if "pool/train-block4_pool-v0-c" in line)
    assert "5 entries" in listed.stdout


def test_make_clean_cache_removes_only_what_no_run_uses_and_never_a_run():
    root = fill_cache()
    cleaned = make("clean-cache")
    assert cleaned.returncode == 0 and "Removed 2 cache entries" in cleaned.stdout
    left = sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and path.name != marks.MARKER_FILE)
    assert left == ["features/train-block4_pool-vgg16-a.npz", "images/train-150px-d.index.npz",
                    "images/train-150px-d.u8", "synthetic_cats_and_dogs/train/cat.0.jpg"]
    assert make("clean-cache", "ALL=1").returncode == 0
    assert not [path for path in root.rglob("*") if path.is_file() and path.name != marks.MARKER_FILE]
    for run in ("alpha", "beta"):  # The runs are untouched.
        assert json.loads((paths.stage_dir(run, "01_feature_extraction") / "metrics.json").read_text())


@pytest.mark.slow
def test_make_tensorboard_serves_a_runs_logs_on_localhost():
    import tensorflow as tf

    with tf.summary.create_file_writer(str(paths.stage_dir("watched", "01_feature_extraction") / "logs" / "train")
                                       ).as_default():
        tf.summary.scalar("epoch_loss", 0.5, step=0)
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*MAKE, "tensorboard", "RUN=watched", f"PORT={port}"], cwd=ROOT, env=os.environ,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, runs = time.time() + 120, []
        while time.time() < deadline and not runs:
            assert server.poll() is None, server.stdout.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/data/runs", timeout=5) as answer:
                    runs = json.loads(answer.read())
            except OSError:
                time.sleep(1)
        assert "01_feature_extraction/logs/train" in runs
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
