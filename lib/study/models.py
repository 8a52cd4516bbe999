"""The models: VGG16 conv base, the classifier head, augmentation, and the ways they are put together.

The conv base is a plain chain of layers (`block1_conv1` ... `block5_pool`). Where the frozen part ends,
its output never changes for an unaugmented image, so `cut_base` cuts the base there: validation and
test images go through the frozen part once, and each epoch only the trainable top (nothing in stage 2,
block5 in stage 3) and the classifier run on the cached result.
"""
from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable

import lib
from lib import SuiteError
from lib.core import storage
from lib.study.weights import WeightsChoice

lib.load_tensorflow()  # Keras starts TensorFlow: this way without TensorFlow's native start-up log lines.
import keras  # noqa: E402  (after the quiet start above)
from keras import layers, ops  # noqa: E402

# ImageNet channel means in BGR order, as `keras.applications.vgg16.preprocess_input` ("caffe" mode).
_VGG16_BGR_MEANS = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="vgg16_suite")
class Preprocess(layers.Layer):
    """Pixels 0..255 (RGB) to what the conv base expects, inside the model so saved models carry it.

    `vgg16`: RGB to BGR and ImageNet mean subtraction, exactly `keras.applications.vgg16.preprocess_input`,
    which the ImageNet weights were trained with. `rescale`: pixels / 255, as the original course notes.
    """

    def __init__(self, mode: str = "vgg16", **kwargs):
        super().__init__(**kwargs)
        if mode not in {"vgg16", "rescale"}:
            raise SuiteError(f"preprocessing must be 'vgg16' or 'rescale', not {mode!r}.")
        self.mode = mode

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        if self.mode == "rescale":
            return inputs / 255.0
        return inputs[..., ::-1] - ops.convert_to_tensor(_VGG16_BGR_MEANS, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def build_conv_base(weights: WeightsChoice, image_size: int) -> keras.Model:
    """VGG16 without its top, for `image_size` square RGB input, with `weights` loaded; frozen.

    A weights file that does not fit VGG16 (another architecture, or the with-top file) raises a
    `SuiteError` naming the file, instead of Keras's layer-count error.
    """
    try:
        base = keras.applications.VGG16(
            weights=None, include_top=False, input_shape=(image_size, image_size, 3)
        )
    except ValueError as error:
        raise SuiteError(f"VGG16 cannot take {image_size}x{image_size} images: {error}") from None
    if weights.path is not None:
        try:
            base.load_weights(str(weights.path))
        except Exception as error:
            raise SuiteError(
                f"{weights.path} does not hold VGG16 notop conv weights, or is damaged (a partial copy?) "
                f"({type(error).__name__}: {error}). "
                "Use vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (include_top=False)."
            ) from None
    base.trainable = False
    return base


def build_classifier(feature_shape: tuple[int, ...], dropout: float = 0.5, name: str = "classifier"
                     ) -> keras.Sequential:
    """The densely connected classifier: Flatten, Dense(256, relu), Dropout, Dense(1, sigmoid)."""
    return keras.Sequential(
        [
            keras.Input(shape=tuple(feature_shape)),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(1, activation="sigmoid", dtype="float32"),
        ],
        name=name,
    )


def flip_mode(horizontal_flip: bool, vertical_flip: bool) -> str | None:
    """The `mode` of `keras.layers.RandomFlip` for the two flip settings: `"horizontal_and_vertical"`,
    `"horizontal"` or `"vertical"`; None when both are off (no flip layer at all)."""
    return {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
            (False, True): "vertical"}.get((bool(horizontal_flip), bool(vertical_flip)))


def build_augmentation(rotation_degrees: float = 40.0, width_shift: float = 0.1, height_shift: float = 0.1,
                       zoom: float = 0.2, horizontal_flip: bool = True, vertical_flip: bool = True,
                       seed: int | None = None) -> keras.Sequential:
    """Random augmentation layers equivalent to the course notes' `ImageDataGenerator` settings.

    `ImageDataGenerator(rotation_range=40, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.2,
    horizontal_flip=True, vertical_flip=True, fill_mode="nearest")`: rotation by up to +-40 degrees,
    shifts by up to 10% of each side, independent zoom of each axis by 0.8 to 1.2, random flips, nearest
    fill. The layers run inside the TensorFlow graph and only when called with `training=True`. With every
    setting off, the one layer is an identity (no augmentation).
    """
    steps: list[layers.Layer] = []
    mode = flip_mode(horizontal_flip, vertical_flip)
    if mode:
        steps.append(layers.RandomFlip(mode, seed=seed, name="random_flip"))
    if rotation_degrees:
        steps.append(layers.RandomRotation(rotation_degrees / 360.0, fill_mode="nearest", seed=seed,
                                           name="random_rotation"))
    if width_shift or height_shift:
        steps.append(layers.RandomTranslation(height_shift, width_shift, fill_mode="nearest", seed=seed,
                                              name="random_translation"))
    if zoom:
        steps.append(layers.RandomZoom((-zoom, zoom), (-zoom, zoom), fill_mode="nearest", seed=seed,
                                       name="random_zoom"))
    return keras.Sequential(steps or [layers.Identity(name="no_augmentation")], name="augmentation")


def build_end_to_end(conv_base: keras.Model, classifier: keras.Model, preprocessing: str,
                     augmentation: keras.Sequential | None = None) -> keras.Model:
    """One model from raw pixels to P(dog): [augmentation] -> preprocessing -> conv base -> classifier.

    The conv base is called in inference mode (`training=False`), so it stays in inference behaviour
    whatever is unfrozen later, as Keras recommends for fine-tuning.
    """
    inputs = keras.Input(shape=conv_base.input_shape[1:], name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = Preprocess(preprocessing, name="preprocess")(x)
    x = conv_base(x, training=False)
    outputs = classifier(x)
    return keras.Model(inputs, outputs, name="vgg16_cats_vs_dogs")


def check_layer_names(conv_base: keras.Model, layer_names: list[str]) -> None:
    """A `SuiteError` listing the conv base's layers with weights when `layer_names` (the layers to unfreeze)
    names one it does not have: setting `trainable` by name would otherwise silently train nothing."""
    names = [layer.name for layer in conv_base.layers]
    unknown = [name for name in layer_names if name not in names]
    if unknown:
        weighted = [layer.name for layer in conv_base.layers if layer.weights]
        raise SuiteError(f"Cannot unfreeze {unknown}: VGG16 has no such layer. Layers with weights: "
                         f"{', '.join(weighted)}.")


def trainable_table(model: keras.Model) -> list[dict]:
    """One row per layer with weights, looking inside the nested conv base and classifier.

    `trainable` is the effective flag: a layer inside a frozen model does not train whatever its own flag.
    """
    rows = []
    for layer in model.layers:
        nested = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in nested:
            if not sub.weights:
                continue
            rows.append({
                "layer": sub.name if sub is layer else f"{layer.name}/{sub.name}",
                "trainable": bool(layer.trainable and sub.trainable),
                "parameters": int(sum(_product(weight.shape) for weight in sub.weights)),
            })
    return rows


def _product(shape) -> int:
    result = 1
    for dimension in shape:
        result *= int(dimension)
    return result


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    """How many of a model's parameters train, and how many are frozen."""

    trainable: int
    frozen: int


def count_parameters(model: keras.Model) -> ParameterCounts:
    """Trainable and frozen parameter counts of a model."""
    return ParameterCounts(trainable=int(sum(_product(w.shape) for w in model.trainable_weights)),
                           frozen=int(sum(_product(w.shape) for w in model.non_trainable_weights)))


@dataclasses.dataclass
class CutBase:
    """A conv base cut where its frozen part ends.

    `frozen`: raw pixels -> preprocessing -> frozen layers (its output is cacheable); `top`: the
    trainable layers after the cut (may be empty) followed by the classifier, sharing weights with the
    training model; `cut_layer`: the name of the last frozen layer.
    """

    frozen: keras.Model
    top: keras.Model
    cut_layer: str
    conv_base: keras.Model
    preprocessing: str


def layer_names(conv_base: keras.Model) -> list[str]:
    """The conv base's layer names in order, the input layer first."""
    return [layer.name for layer in conv_base.layers]


def last_frozen_layer(conv_base: keras.Model) -> str:
    """The name of the layer before the conv base's first trainable layer (`block5_pool` when all frozen)."""
    chain = conv_base.layers[1:]  # layers[0] is the InputLayer.
    first_trainable = next(
        (i for i, layer in enumerate(chain) if conv_base.trainable and layer.trainable and layer.weights),
        len(chain),
    )
    if first_trainable == 0:
        raise SuiteError("Nothing of the conv base is frozen, so there is nothing to cache.")
    return chain[first_trainable - 1].name


# Segments without a classifier per conv base, dropped with it: each split and each pass reuses the same model,
# so its traced forward function (`traced`) is traced once, not once per split.
_SEGMENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def conv_segment(conv_base: keras.Model, end: str | None, start: str | None = None, preprocessing: str = "vgg16",
                 classifier: keras.Model | None = None) -> keras.Model:
    """The conv base's layers after `start` up to and including `end`, as a model sharing their weights.

    Without `start` the segment takes raw pixels and begins with `preprocessing`; with it, the segment
    takes `start`'s output. `end` may be None (to the last layer); a `classifier` is appended when given (a new
    model each time: it may be compiled and trained); a segment without one is built once per conv base.
    """
    key = (end, start, preprocessing)
    if classifier is None and key in _SEGMENTS.get(conv_base, {}):
        return _SEGMENTS[conv_base][key]
    names = layer_names(conv_base)
    first = names.index(start) + 1 if start else 1
    last = names.index(end) + 1 if end else len(names)
    if start:
        inputs = keras.Input(shape=tuple(conv_base.get_layer(start).output.shape[1:]), name=f"{start}_features")
        x = inputs
    else:
        inputs = keras.Input(shape=conv_base.input_shape[1:], name="image")
        x = Preprocess(preprocessing, name="preprocess")(inputs)
    for layer in conv_base.layers[first:last]:
        x = layer(x)
    if classifier is not None:
        return keras.Model(inputs, classifier(x), name=f"{'top_after_' + start if start else 'frozen_to_' + str(end)}")
    segment = keras.Model(inputs, x, name=f"{'top_after_' + start if start else 'frozen_to_' + str(end)}")
    _SEGMENTS.setdefault(conv_base, {})[key] = segment
    return segment


def cut_base(conv_base: keras.Model, classifier: keras.Model, preprocessing: str) -> CutBase:
    """Cut `conv_base` before its first trainable layer (see `CutBase`)."""
    cut = last_frozen_layer(conv_base)
    frozen = conv_segment(conv_base, cut, preprocessing=preprocessing)
    top = conv_segment(conv_base, None, start=cut, classifier=classifier)
    return CutBase(frozen, top, cut, conv_base, preprocessing)


# Traced functions per model and purpose, dropped with the model: repeated calls do not retrace.
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def traced(model: keras.Model, purpose: str, make: Callable[[], Callable]) -> Callable:
    """The `tf.function` of `make()` for `model` and `purpose`, traced once and kept while the model lives."""
    import tensorflow as tf

    functions = _TRACED.setdefault(model, {})
    if purpose not in functions:
        functions[purpose] = tf.function(make(), reduce_retracing=True)
    return functions[purpose]


def save_model(model: keras.Model, path) -> None:
    """Save a model in the `.keras` format atomically (a killed run never leaves half a model file)."""
    with storage.atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def load_model(path) -> keras.Model:
    """Load a model saved by `save_model` (knows the suite's `Preprocess` layer)."""
    return keras.models.load_model(path, custom_objects={"Preprocess": Preprocess})
