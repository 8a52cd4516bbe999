"""Shared fixtures: every test writes into its own temporary outputs and cache folders, offline."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lib  # noqa: E402,F401  (TensorFlow environment before TensorFlow)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Outputs and caches in a temporary folder; no DATA_DIR/VGG16_WEIGHTS from the caller's shell."""
    monkeypatch.setenv("OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.delenv("CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.delenv("VGG16_WEIGHTS", raising=False)
    yield
    from lib.study import cache

    cache.release_in_use()  # The entries a test used, held in use as a stage holds them, are let go.


def write_image(path: Path, colour=(200, 120, 60), size=(48, 40), mode="RGB", fmt=None) -> Path:
    """Write a small image of one colour plus noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.array(colour) + np.random.default_rng(len(str(path))).normal(0, 20, (*size[::-1], 3)),
                     0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    image.save(path, format=fmt)
    return path


def write_flat_png(path: Path, side: int) -> Path:
    """A flat grey RGB PNG of `side` x `side` pixels, written a row at a time: a 13,300 x 13,300 one is about 0.5 MB
    on disk and 0.5 GB decoded (what a decompression bomb looks like)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (3 * side)  # Filter type 0, then the row's pixels.
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def serve_files(files: dict[str, bytes], cut_at: dict[str, int] | None = None):
    """A web server on 127.0.0.1 in a thread, serving `files` by path (`/name`); a path in `cut_at` announces its
    whole length but sends only that many bytes (a download cut short). Returns `(base address, server)`; call
    `server.shutdown()` when done."""
    import http.server
    import threading

    cut_at = cut_at or {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # The name http.server calls.
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:cut_at.get(self.path.lstrip("/"), len(body))])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def make_dataset(root: Path, per_class: int = 4, splits=("train", "validation")) -> Path:
    """A tiny dataset in the expected layout: warm 'cats', cool 'dogs'."""
    for split in splits:
        for name, colour in (("cats", (200, 120, 60)), ("dogs", (60, 120, 200))):
            for index in range(per_class):
                write_image(root / split / name / f"{name[:-1]}.{index}.jpg", colour)
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    """A VGG16 notop weights file in Keras's legacy HDF5 layout, random values (conv weights are size-free)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path_factory.mktemp("weights") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, base)
    return path


def copy_project(target: Path) -> Path:
    """A git repository at `target` holding the project's files as they are now (tracked, and untracked but
    not ignored), committed: for tests that edit notebooks or lib/ without touching the real tree."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=test", "-c", "user.email=test@example.com",
                                                    "commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *command], cwd=target, check=True, capture_output=True)
    return target


def run_runner(project: Path, outputs: Path, *arguments: str, timeout: float = 900, **environment: str):
    """`python -m lib.runner ...` in `project`, writing to `outputs`, without the caller's DATA_DIR & co."""
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1", **environment)
    return subprocess.run([sys.executable, "-m", "lib.runner", *arguments], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def unfreeze(conv_base, names: list[str]) -> None:
    """What stage 3's notebook does in view: the names checked, the conv base trainable, every other layer frozen."""
    from lib.study import models

    models.check_layer_names(conv_base, names)
    conv_base.trainable = True
    for layer in conv_base.layers:
        layer.trainable = layer.name in names


def compile_like_the_stages(model, learning_rate: float):
    """What every stage's notebook does in view: RMSprop, binary cross-entropy, accuracy; returns `model`."""
    import keras

    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def complete_stage(run: str, stage: str, **metrics) -> None:
    """A stage folder as a completed stage leaves it: its model file, `metrics.json` and `history.csv`."""
    from lib.core import paths, stages, storage

    folder = paths.stage_dir(run, stage)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / stages.get(stage).hand_off_model).write_bytes(b"model")
    base = {"weights_sha256": "a" * 64, "image_size": 150, "preprocessing": "vgg16", "val_accuracy": 0.97,
            "val_loss": 0.1, "test_accuracy": None, "best_epoch": 3, "epochs_run": 5, "random_weights": False,
            "weights": "ImageNet", "profile": "cpu", "extraction_seconds": 10.0, "training_seconds": 20.0}
    storage.write_json(folder / "metrics.json", {**base, **metrics})
    storage.write_text(folder / "history.csv", "epoch,val_accuracy\n1,0.95\n2,0.97\n")
