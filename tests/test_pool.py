"""The shared block-4 cache and the augmentation pool: the same numbers as computing directly, reproducible,
only whole files left by an interrupted computation, and a memory limit that names the fix."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_dataset, unfreeze

from lib import SuiteError
from lib.core import marks, paths
from lib.study import features, models, photos, pool
from lib.study.weights import WeightsChoice

RANDOM = WeightsChoice("none", None, None)
SETTINGS = dict(rotation_degrees=40.0, width_shift=0.1, height_shift=0.1, zoom=0.2, horizontal_flip=True,
                vertical_flip=False)


@pytest.fixture
def image_set(tmp_path):
    return photos.load_split(make_dataset(tmp_path / "photos", per_class=5), "train", 32)


def cut_at(block: str):
    """A random-weights 32px conv base cut at block4_pool (block5 unfrozen) or block5_pool (all frozen)."""
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(RANDOM, 32)
    if block == "block4_pool":
        unfreeze(base, ["block5_conv1", "block5_conv2", "block5_conv3"])
    return models.cut_base(base, models.build_classifier(base.output_shape[1:]), "vgg16")


def test_features_through_the_shared_cut_equal_direct_extraction(image_set):
    cut = cut_at("block5_pool")
    through_cache, _, from_cache = features.features_at_cut(cut, image_set, RANDOM)
    direct = features.extract(models.conv_segment(cut.conv_base, "block5_pool", preprocessing="vgg16"),
                              image_set.images)
    assert not from_cache and through_cache.shape == (10, 1, 1, 512)
    np.testing.assert_allclose(through_cache, direct, rtol=1e-5, atol=1e-6)
    cached = sorted(path.name.split("-")[1] for path in (paths.cache_root() / "features").glob("*.npz"))
    assert cached == ["block4_pool", "block5_pool"]  # The shared cut is cached for the other stages.
    again, seconds, from_cache = features.features_at_cut(cut, image_set, RANDOM)
    assert from_cache and seconds == 0.0
    np.testing.assert_array_equal(again, through_cache)


def test_pool_holds_the_photo_and_its_variants_and_is_reproducible(image_set, tmp_path, monkeypatch):
    cut = cut_at("block4_pool")
    first, seconds = pool.build(cut, image_set, RANDOM, SETTINGS, seed=3, augmentation_pool=2)
    assert first.shape == (10, 3, 2, 2, 512) and first.dtype == np.float16 and seconds > 0
    unaugmented, _, _ = features.features_at_cut(cut, image_set, RANDOM)
    np.testing.assert_array_equal(first[:, 0], unaugmented.astype(np.float16))
    assert not np.array_equal(first[:, 1], first[:, 0]) and not np.array_equal(first[:, 1], first[:, 2])
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "another-cache"))
    second, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=3, augmentation_pool=2)
    np.testing.assert_array_equal(first, second)
    other_seed, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=4, augmentation_pool=2)
    assert not np.array_equal(first[:, 1:], other_seed[:, 1:])


def test_stage_two_pool_runs_block5_over_the_shared_pool(image_set):
    cut = cut_at("block5_pool")
    pooled, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=1, augmentation_pool=2)
    assert pooled.shape == (10, 3, 1, 1, 512)
    assert sorted(path.name.split("-")[1] for path in (paths.cache_root() / "pool").glob("*.npz")) == \
        ["block4_pool", "block4_pool"]  # Computed at the cut stage 3 shares.
    direct = features.features_at_cut(cut, image_set, RANDOM)[0]
    np.testing.assert_allclose(pooled[:, 0].astype("float32"), direct, rtol=2e-3, atol=2e-3)  # float16 pool


def test_a_larger_pool_reuses_the_smaller_one(image_set):
    cut = cut_at("block4_pool")
    small, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=5, augmentation_pool=2)
    stamps = {path: path.stat().st_mtime_ns for path in (paths.cache_root() / "pool").glob("*.npz")}
    large, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=5, augmentation_pool=3)
    np.testing.assert_array_equal(large[:, :3], small)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    assert len(list((paths.cache_root() / "pool").glob("*.npz"))) == 3


def test_interrupted_pool_computation_leaves_only_whole_variants(image_set, tmp_path, monkeypatch):
    cut = cut_at("block4_pool")
    original = pool.compute_variant

    def interrupted_at_the_second(*arguments):
        if arguments[-1] == 1:
            raise KeyboardInterrupt  # As a Ctrl-C or a kill would, midway.
        return original(*arguments)

    monkeypatch.setattr(pool, "compute_variant", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        pool.build(cut, image_set, RANDOM, SETTINGS, seed=7, augmentation_pool=3)
    files = [path for path in (paths.cache_root() / "pool").iterdir() if path.name != marks.MARKER_FILE]
    assert [path.name.split("-")[2] for path in files] == ["v0"]  # Whole, and nothing else.
    with np.load(files[0]) as stored:
        assert stored["features"].shape == (10, 2, 2, 512)
    monkeypatch.setattr(pool, "compute_variant", original)
    resumed, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=7, augmentation_pool=3)
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "fresh-cache"))
    fresh, _ = pool.build(cut, image_set, RANDOM, SETTINGS, seed=7, augmentation_pool=3)
    np.testing.assert_array_equal(resumed, fresh)


def test_a_pool_over_the_memory_limit_names_the_fix(image_set, monkeypatch):
    monkeypatch.setattr(pool, "MEMORY_LIMIT_BYTES", 100_000)
    with pytest.raises(SuiteError, match=r"augmentation_pool=4 would need .* Use augmentation_pool=1 or less"):
        pool.build(cut_at("block4_pool"), image_set, RANDOM, SETTINGS, seed=0, augmentation_pool=4)
    assert not (paths.cache_root() / "pool").exists()


def test_pooled_batches_visit_every_photo_once_per_pass_with_a_fresh_draw():
    photos, variants = 12, 4
    entries = np.arange(photos * variants, dtype=np.float16).reshape(photos, variants, 1)
    labels = np.arange(photos) % 2

    def passes(seed, count=3):
        iterator = pool.pooled_stream(entries, labels, photos, seed).batches()
        return [next(iterator)[0].reshape(-1).astype(int) for _ in range(count)]

    drawn = passes(seed=0)
    for batch in drawn:
        assert sorted(batch // variants) == list(range(photos))  # Every photo once per pass.
    assert len({tuple(batch % variants) for batch in drawn}) > 1  # Another variant drawn each pass.
    assert all(np.array_equal(a, b) for a, b in zip(drawn, passes(seed=0)))  # Seeded.


def test_feature_flips_mirror_about_half_the_entries_left_to_right_reproducibly():
    photos, variants = 200, 2
    entries = np.random.default_rng(0).normal(size=(photos, variants, 2, 3, 4)).astype(np.float16)
    labels = np.arange(photos) % 2

    def first_pass(flips):
        return next(iter(pool.pooled_stream(entries, labels, photos, seed=5, feature_flips=flips)))[0].numpy()

    plain, flipped = first_pass(False), first_pass(True)
    mirrored = [not np.array_equal(a, b) for a, b in zip(plain, flipped)]
    assert all(np.array_equal(a[:, ::-1], b) for a, b, m in zip(plain, flipped, mirrored) if m)  # Width axis.
    assert 60 < sum(mirrored) < 140  # About half, at random.
    np.testing.assert_array_equal(flipped, first_pass(True))  # Seeded.


def test_training_data_online_or_pooled(image_set):
    cut = cut_at("block4_pool")
    online = pool.training_data(cut, image_set, augmentation_pool=0, augmentation=SETTINGS, batch_size=4,
                                steps_per_epoch=0, seed=0, weights=RANDOM)
    assert online.steps_per_epoch == 0 and online.seconds == 0 and "augmented afresh" in online.description
    pooled = pool.training_data(cut, image_set, augmentation_pool=2, augmentation=SETTINGS, batch_size=4,
                                steps_per_epoch=0, seed=0, weights=RANDOM)
    assert pooled.steps_per_epoch == 3 and pooled.pool_bytes == 10 * 3 * 2048 * 2
    assert "2 augmented variants" in pooled.description


def test_stage_one_feature_flips_add_block5_over_the_mirrored_block4_maps(tmp_path):
    image_set = photos.load_split(make_dataset(tmp_path / "photos", per_class=3), "train", 64)
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(RANDOM, 64)
    cut = models.cut_base(base, models.build_classifier(base.output_shape[1:]), "vgg16")
    arrays = {"train": features.features_at_cut(cut, image_set, RANDOM)[0]}
    plain, labels, seconds = features.training_features(cut, image_set, arrays, RANDOM)
    assert plain is arrays["train"] and labels is image_set.labels and seconds == 0.0
    inputs, labels, seconds = features.training_features(cut, image_set, arrays, RANDOM, feature_flips=True)
    assert inputs.shape == (12, 2, 2, 512) and seconds > 0
    np.testing.assert_array_equal(labels, np.concatenate([image_set.labels, image_set.labels]))
    np.testing.assert_array_equal(inputs[:6], arrays["train"])
    maps = features.features_at_cut(cut, image_set, RANDOM, "block4_pool")[0][:, :, ::-1]
    direct = features.extract(models.conv_segment(base, "block5_pool", start="block4_pool"), maps)
    np.testing.assert_allclose(inputs[6:], direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(inputs[6:], inputs[:6])  # Mirrored maps give other features.
    again, _, seconds = features.training_features(cut, image_set, arrays, RANDOM, feature_flips=True)
    assert seconds == 0.0  # Cached beside the plain features, under their own key.
    np.testing.assert_array_equal(again, inputs)


def test_mirrored_maps_need_a_cut_beyond_block4(image_set):
    with pytest.raises(SuiteError, match="beyond block4_pool"):
        features.features_at_cut(cut_at("block4_pool"), image_set, RANDOM, mirror_maps=True)
