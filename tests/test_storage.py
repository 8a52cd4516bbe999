"""Atomic writes: a failure while writing leaves the previous file untouched and no temporary behind."""
from __future__ import annotations

import numpy as np
import pytest

from lib.core import storage


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


def test_a_cache_entry_is_computed_once_and_a_damaged_one_again(tmp_path):
    from lib.study import cache

    calls = []

    def compute():
        calls.append(1)
        return {"features": np.arange(6.0).reshape(2, 3)}

    path = tmp_path / "cache" / "entry.npz"
    first, from_file = cache.cached_arrays(path, compute)
    again, from_file_again = cache.cached_arrays(path, compute)
    assert (from_file, from_file_again, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first["features"], again["features"])
    path.write_bytes(b"PK\x03\x04 truncated")  # A damaged entry is removed and computed again.
    _, from_file = cache.cached_arrays(path, compute)
    assert not from_file and len(calls) == 2
    unusable, _ = cache.cached_arrays(path, compute, usable=lambda arrays: arrays["features"].shape == (5,))
    assert len(calls) == 3 and unusable["features"].shape == (2, 3)  # Another format: computed again.
    assert cache.stored_arrays(tmp_path / "cache" / "missing.npz") is None


def test_a_cache_key_names_every_input_of_a_conv_output():
    from lib.study import cache

    key = cache.CacheKey("train", "f" * 64, "w" * 64, 150, "vgg16", "float32")
    path = key.path("block4_pool")
    assert path.name.startswith("train-block4_pool-vgg16-") and path.parent.name == "features"
    for changed in ({"fingerprint": "g" * 64}, {"weights_sha256": None}, {"image_size": 180},
                    {"preprocessing": "rescale"}, {"policy": "mixed_bfloat16"}):
        assert __import__("dataclasses").replace(key, **changed).path("block4_pool") != path
    assert key.path("block5_pool") != path and key.path("block4_pool", "pool", "v0") != path
