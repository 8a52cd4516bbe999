"""Atomic writes: a failure while writing leaves the previous file untouched and no temporary behind."""
from __future__ import annotations

import numpy as np
import pytest

from lib import storage


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    storage.write_json(target, {"val_accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with storage.atomic_path(target) as temporary:
            temporary.write_text('{"val_accur')
            raise RuntimeError("killed mid-write")
    assert storage.read_json(target) == {"val_accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_and_arrays_round_trip(tmp_path):
    storage.write_json(tmp_path / "a.json", {"x": np.float32(0.5), "n": np.int64(3)})
    assert storage.read_json(tmp_path / "a.json") == {"x": 0.5, "n": 3}
    storage.write_arrays(tmp_path / "f.npz", features=np.ones((2, 3)))
    with np.load(tmp_path / "f.npz") as loaded:
        assert loaded["features"].shape == (2, 3)
