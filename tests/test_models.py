"""Models: shapes, frozen flags, augmentation settings, preprocessing, unfreezing, weights errors."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import compile_like_the_stages, unfreeze

from lib import SuiteError
from lib.study import models, training
from lib.study.weights import WeightsChoice, resolve_weights

RANDOM = WeightsChoice("none", None, None)
STAGE_TWO = Path(__file__).resolve().parent.parent / "notebooks" / "02_data_augmentation.py"


@pytest.fixture(scope="module")
def small_base():
    keras.utils.set_random_seed(0)
    return models.build_conv_base(RANDOM, 32)


def test_conv_base_at_150_gives_4x4x512_and_is_frozen():
    base = models.build_conv_base(RANDOM, 150)
    assert base.output_shape == (None, 4, 4, 512)
    assert not base.trainable and base.trainable_weights == []
    assert [layer.name for layer in base.layers][-4:] == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]


def test_image_size_vgg16_cannot_take_is_a_clear_error():
    with pytest.raises(SuiteError, match="VGG16 cannot take 20x20"):
        models.build_conv_base(RANDOM, 20)


def test_classifier_layers():
    classifier = models.build_classifier((4, 4, 512), dropout=0.6)
    kinds = [type(layer).__name__ for layer in classifier.layers]
    assert kinds == ["Flatten", "Dense", "Dropout", "Dense"]
    assert classifier.layers[1].units == 256 and classifier.layers[1].activation.__name__ == "relu"
    assert classifier.layers[2].rate == 0.6
    assert classifier.layers[3].units == 1 and classifier.layers[3].activation.__name__ == "sigmoid"
    assert classifier.output_shape == (None, 1)


def test_augmentation_matches_the_course_notes_settings():
    augmentation = models.build_augmentation()
    config = {layer.name: layer.get_config() for layer in augmentation.layers}
    assert config["random_flip"]["mode"] == "horizontal_and_vertical"
    assert config["random_rotation"]["factor"] == pytest.approx((-40 / 360, 40 / 360))
    assert config["random_translation"]["height_factor"] == 0.1 and config["random_translation"]["width_factor"] == 0.1
    assert tuple(config["random_zoom"]["height_factor"]) == (-0.2, 0.2)
    assert tuple(config["random_zoom"]["width_factor"]) == (-0.2, 0.2)
    assert {c["fill_mode"] for name, c in config.items() if name != "random_flip"} == {"nearest"}


def test_augmentation_changes_training_images_only():
    augmentation = models.build_augmentation(seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    assert not np.allclose(np.asarray(augmentation(images, training=True)), images)
    nothing = models.build_augmentation(0, 0, 0, 0, False, False)
    assert [layer.name for layer in nothing.layers] == ["no_augmentation"]  # Every setting off: identity.
    np.testing.assert_array_equal(np.asarray(nothing(images, training=True)), images)


def notebook_code_cells(path: Path) -> list[str]:
    """The code cells of a percent-format notebook source, the parameters cell left out."""
    cells: list[list[str]] = []
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            current = [] if line == "# %%" else None
            if current is not None:
                cells.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(cell).strip() for cell in cells]


@pytest.mark.parametrize("settings", [
    dict(rotation_degrees=40.0, width_shift=0.1, height_shift=0.1, zoom=0.2, horizontal_flip=True, vertical_flip=True),
    dict(rotation_degrees=10.0, width_shift=0.0, height_shift=0.2, zoom=0.0, horizontal_flip=True, vertical_flip=False),
    dict(rotation_degrees=0.0, width_shift=0.0, height_shift=0.0, zoom=0.0, horizontal_flip=False, vertical_flip=False),
])
def test_stage_two_writes_out_the_model_the_pool_and_stage_three_build(settings):
    """Stage 2's notebook freezes the conv base and builds its augmentation and end-to-end model in view; the
    augmentation pool and stage 3 build them with `models.build_augmentation` and `models.build_end_to_end`. Both
    ways give the same layers and, seeded alike, the same augmented photos (a setting of 0 is an exact identity)."""
    source = STAGE_TWO.read_text()
    assert "conv_base.trainable = False" in source and "trained_model.compile(" in source
    cells = notebook_code_cells(STAGE_TWO)
    keras.utils.set_random_seed(0)
    base = models.build_conv_base(RANDOM, 32)
    classifier = models.build_classifier(base.output_shape[1:])
    namespace = {"keras": keras, "models": models, "seed": 3, "image_size": 32, "preprocessing": "vgg16",
                 "conv_base": base, "classifier": classifier, **settings}
    exec(next(cell for cell in cells if "augmentation = keras.Sequential(" in cell), namespace)
    exec(next(cell for cell in cells if cell.startswith("inputs = keras.Input(")), namespace)
    expected = models.build_augmentation(**settings, seed=3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(namespace["augmentation"](images, training=True)),
                                  np.asarray(expected(images, training=True)))
    model, built = namespace["model"], models.build_end_to_end(base, classifier, "vgg16", expected)
    assert [layer.name for layer in model.layers] == [layer.name for layer in built.layers]
    assert model.name == built.name
    assert {id(weight) for weight in model.trainable_weights} == {id(weight) for weight in classifier.trainable_weights}
    np.testing.assert_allclose(np.asarray(model(images)), np.asarray(built(images)), rtol=1e-6)


def test_preprocessing_equals_keras_vgg16_preprocess_input():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(models.Preprocess("vgg16")(images)), expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.asarray(models.Preprocess("rescale")(images)), images / 255.0, rtol=1e-6)


def test_unfreeze_trains_exactly_the_named_layers(small_base):
    names = ["block5_conv1", "block5_conv2", "block5_conv3"]
    unfreeze(small_base, names)
    trainable = [layer.name for layer in small_base.layers if layer.trainable and layer.weights]
    assert trainable == names
    assert len(small_base.trainable_weights) == 6
    small_base.trainable = False


def test_unknown_layer_to_unfreeze_lists_the_real_ones(small_base):
    with pytest.raises(SuiteError, match=r"Cannot unfreeze \['block6_conv1'\].*block5_conv3"):
        models.check_layer_names(small_base, ["block6_conv1"])


def _train_one_step(model, images, labels):
    model.fit(images, labels, epochs=1, batch_size=len(images), verbose=0, shuffle=False)


def test_fine_tuning_trains_block5_only_after_recompiling():
    keras.utils.set_random_seed(1)
    base = models.build_conv_base(RANDOM, 32)
    classifier = models.build_classifier(base.output_shape[1:])
    model = compile_like_the_stages(models.build_end_to_end(base, classifier, "vgg16"), 1e-3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1, 0, 1], dtype="float32")
    _train_one_step(model, images, labels)
    before = {name: base.get_layer(name).get_weights()[0].copy() for name in ("block4_conv3", "block5_conv3")}
    unfreeze(base, ["block5_conv1", "block5_conv2", "block5_conv3"])
    _train_one_step(model, images, labels)  # Not recompiled: the old trainable set is still trained.
    assert np.array_equal(base.get_layer("block5_conv3").get_weights()[0], before["block5_conv3"])
    compile_like_the_stages(model, 1e-3)
    _train_one_step(model, images, labels)
    assert not np.array_equal(base.get_layer("block5_conv3").get_weights()[0], before["block5_conv3"])
    assert np.array_equal(base.get_layer("block4_conv3").get_weights()[0], before["block4_conv3"])


def test_trainable_table_shows_effective_flags():
    base = models.build_conv_base(RANDOM, 32)
    model = models.build_end_to_end(base, models.build_classifier(base.output_shape[1:]), "vgg16")
    unfreeze(base, ["block5_conv3"])
    rows = {row["layer"]: row for row in models.trainable_table(model)}
    assert rows["vgg16/block5_conv3"]["trainable"] and not rows["vgg16/block4_conv3"]["trainable"]
    assert rows["vgg16/block5_conv3"]["parameters"] == 3 * 3 * 512 * 512 + 512
    assert all(row["trainable"] for name, row in rows.items() if name.startswith("classifier/"))
    assert sum(name.startswith("classifier/") for name in rows) == 2


@pytest.mark.parametrize("unfrozen, cut", [([], "block5_pool"),
                                            (["block5_conv1", "block5_conv2", "block5_conv3"], "block4_pool")])
def test_cached_evaluation_equals_full_model_evaluation(unfrozen, cut):
    keras.utils.set_random_seed(2)
    base = models.build_conv_base(RANDOM, 32)
    classifier = models.build_classifier(base.output_shape[1:])
    model = compile_like_the_stages(models.build_end_to_end(base, classifier, "vgg16", models.build_augmentation()),
                                    1e-3)
    if unfrozen:
        unfreeze(base, unfrozen)
    split = models.cut_base(base, classifier, "vgg16")
    assert split.cut_layer == cut
    images = np.random.default_rng(3).uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1] * 5, dtype="float32")
    features = np.asarray(split.frozen(images))
    cached = training.loss_and_accuracy(split.top, features, labels, batch_size=4)
    full_loss, full_accuracy = model.evaluate(images, labels, batch_size=4, verbose=0)
    assert cached.loss == pytest.approx(full_loss, rel=1e-4, abs=1e-5)
    assert cached.accuracy == pytest.approx(full_accuracy)
    np.testing.assert_allclose(cached.probabilities, np.asarray(model.predict(images, verbose=0)).reshape(-1),
                               rtol=1e-4, atol=1e-6)


def test_save_and_load_keeps_preprocessing_and_weights(tmp_path):
    base = models.build_conv_base(RANDOM, 32)
    model = models.build_end_to_end(base, models.build_classifier(base.output_shape[1:]), "rescale",
                                    models.build_augmentation())
    models.save_model(model, tmp_path / "model.keras")
    loaded = models.load_model(tmp_path / "model.keras")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for saved, restored in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(saved, restored)
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), atol=1e-4)
    assert loaded.get_layer("preprocess").mode == "rescale"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_weights_file_problems_are_clear(tmp_path, random_weights_file):
    with pytest.raises(SuiteError, match="does not exist.*VGG16_WEIGHTS"):
        resolve_weights(str(tmp_path / "missing.h5"))
    not_hdf5 = tmp_path / "vgg16.h5"
    not_hdf5.write_text("<html>404</html>")
    with pytest.raises(SuiteError, match="not an HDF5 file"):
        resolve_weights(str(not_hdf5))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(SuiteError, match="does not hold VGG16 notop conv weights"):
        models.build_conv_base(resolve_weights(str(tmp_path / "other.weights.h5")), 32)
    choice = resolve_weights(str(random_weights_file))
    assert choice.kind == "file" and len(choice.sha256) == 64
    base = models.build_conv_base(choice, 32)
    assert not base.trainable


def test_weights_environment_variable_and_none(monkeypatch, random_weights_file):
    assert resolve_weights("none").is_random and "RANDOM WEIGHTS" in resolve_weights("none").describe()
    monkeypatch.setenv("VGG16_WEIGHTS", str(random_weights_file))
    assert resolve_weights("none").path == random_weights_file


@pytest.mark.parametrize("server", ["refuses", "stalls"])
def test_imagenet_offline_fails_fast_naming_the_fix(tmp_path, monkeypatch, server):
    """The real download path against a local address that refuses connections, or accepts and never answers
    (a captive network): a clear error within the download timeout, not a hang."""
    import socket
    import time

    from lib.study import weights

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "refuses":
        listener.close()
    else:
        listener.listen(1)  # Accepts the connection into its backlog and never says a word.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(weights, "DOWNLOAD_URL", f"http://127.0.0.1:{port}/{weights.FILE_NAME}")
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_SECONDS", 2)
    started = time.perf_counter()
    try:
        with pytest.raises(SuiteError) as raised:
            resolve_weights("imagenet")
    finally:
        listener.close()
    assert time.perf_counter() - started < 15
    assert "VGG16_WEIGHTS" in str(raised.value) and weights.FILE_NAME in str(raised.value)
    assert not (tmp_path / "keras" / "models" / weights.FILE_NAME).exists()
