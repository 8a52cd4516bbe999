"""Side-by-side benchmark: the course notes' way against this suite's, in one process, alternating.

    .venv/bin/python tools/bench.py [--images 400] [--validation-images 200] [--repeats 3]   (make bench)

Measures, on the same photos (DATA_DIR, or a synthetic set of photo-sized images), each way in turn so
that machine noise hits both:
- feature extraction: `ImageDataGenerator(rescale=1/255).flow_from_directory` + `predict` per batch of 20,
  against decoding once into memory and one compiled forward function;
- one stage-2 epoch and one stage-3 epoch: `ImageDataGenerator` augmentation in Python and validation
  through the full model every epoch, against in-graph augmentation on in-memory photos and validation of
  only the trainable top on features cached at the last frozen layer (one-time costs reported apart);
- validation alone in stage 2 and 3: full model against cached features;
- efficiency: the conv base's achieved GFLOP/s (forward pass, counted from its layers: 13.2 GFLOP per
  150x150 image) against the best large float32 matrix product measured in the same run (TensorFlow's,
  and NumPy's BLAS in a child process).
Writes `outputs/bench/bench.json` (atomically) and prints a table. Ratios are suite speed / course speed.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # The project root.

import lib  # noqa: E402  (oneDNN on before TensorFlow)

lib.load_tensorflow()
from lib.core import devices, marks, paths, storage  # noqa: E402  (after TensorFlow's quiet start)
from lib.study import batches, listing, models, photos, synthetic, training  # noqa: E402
from lib.study.weights import resolve_weights  # noqa: E402

BATCH = 20


def conv_base_gflop(conv_base) -> float:
    """Forward GFLOP per image of a conv base, counting a multiply-add as two operations."""
    total = 0
    for layer in conv_base.layers:
        if type(layer).__name__ == "Conv2D":
            _, height, width, channels_out = layer.output.shape
            kernel_height, kernel_width, channels_in, _ = layer.kernel.shape
            total += 2 * height * width * channels_out * kernel_height * kernel_width * channels_in
    return total / 1e9


def matmul_gflops(size: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """Best 4096x4096 matrix-product rate (GFLOP/s) through TensorFlow in this process, in `dtype`."""
    tf = lib.load_tensorflow()

    left = tf.cast(tf.random.normal((size, size)), dtype)
    right = tf.cast(tf.random.normal((size, size)), dtype)
    product = tf.function(lambda a, b: tf.matmul(a, b))
    product(left, right).numpy()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        product(left, right).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best / 1e9


_NUMPY_MATMUL = """
import numpy as np, time
size = {size}
left = np.random.rand(size, size).astype(np.float32)
right = np.random.rand(size, size).astype(np.float32)
left @ right
best = min(__import__("timeit").repeat(lambda: left @ right, number=1, repeat={repeats}))
print(2 * size ** 3 / best / 1e9)
"""


def numpy_matmul_gflops(size: int = 4096, repeats: int = 5) -> float | None:
    """Best float32 matrix-product rate of NumPy's BLAS, in a child process with the BLAS's own choice of
    kernel (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines set to an older kernel, unset there)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}}
    try:
        result = subprocess.run([sys.executable, "-c", _NUMPY_MATMUL.format(size=size, repeats=repeats)],
                                env=environment, capture_output=True, text=True, timeout=300, check=True)
        return float(result.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def forward_rate(image_size: int, policy: str, batch_size: int = 32, batches: int = 3) -> float:
    """Images per second of the bare conv base forward pass in a Keras dtype policy (random weights)."""
    import keras
    import numpy as np

    tf = lib.load_tensorflow()
    with dtype_policy(policy):
        base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(image_size, image_size, 3))
    forward = tf.function(lambda images: base(images, training=False))
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)),
                         dtype=tf.float32)
    forward(images).numpy()
    best = math.inf
    for _ in range(batches):
        started = time.perf_counter()
        forward(images).numpy()
        best = min(best, time.perf_counter() - started)
    return batch_size / best


@contextlib.contextmanager
def dtype_policy(policy: str):
    """Build layers under a Keras dtype policy, then restore the previous one."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_subset(source: Path, target: Path, counts: dict[str, int]) -> Path:
    """A folder of symbolic links to the first `counts[split]` photos (half cats, half dogs) of `source`."""
    marks.make_folder(target, marks.PHOTO_LINKS)
    for split, count in counts.items():
        split_listing = listing.list_split(source, split)
        for label, name in enumerate(listing.CLASS_NAMES):
            folder = target / split / name
            folder.mkdir(parents=True, exist_ok=True)
            chosen = [path for path, tag in zip(split_listing.files, split_listing.labels) if tag == label]
            chosen = chosen[: count // 2]
            for path in chosen:
                link = folder / path.name
                if not link.exists():
                    link.symlink_to(path.resolve())
    return target


def course_generator(folder: Path, image_size: int, augment: bool, shuffle: bool):
    """The course notes' `ImageDataGenerator(...).flow_from_directory(...)`, batch 20, binary labels."""
    tf = lib.load_tensorflow()

    settings = dict(rotation_range=40, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.2,
                    horizontal_flip=True, vertical_flip=True, fill_mode="nearest") if augment else {}
    generator = tf.keras.preprocessing.image.ImageDataGenerator(rescale=1.0 / 255, **settings)
    return generator.flow_from_directory(str(folder), target_size=(image_size, image_size), batch_size=BATCH,
                                         class_mode="binary", shuffle=shuffle, seed=0)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


@dataclasses.dataclass
class Setup:
    """What every measurement shares: the photos, the weights, the sizes and the suite's precision."""

    root: Path
    photos: str
    weights: Any
    image_size: int
    counts: dict[str, int]
    repeats: int
    suite_policy: str
    gflop: float = 0.0
    image_sets: dict = dataclasses.field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.counts["train"] // BATCH


def alternate(ways: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Time each way once to warm up, then `repeats` times in turn, so machine noise hits every way alike."""
    for way in ways.values():
        way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            times[name].append(timed(way))
    return times


def measure_extraction(setup: Setup, course_base, suite_extractor) -> dict:
    """Feature extraction: ImageDataGenerator + predict per batch of 20 against decode-once + one compiled function."""
    from lib.study import features

    def course_way():
        generator = course_generator(setup.root / "train", setup.image_size, augment=False, shuffle=False)
        for index in range(len(generator)):
            batch, _ = generator[index]
            course_base.predict(batch, verbose=0)

    forward_seconds = []

    def suite_way():
        image_set = photos.load_split(setup.root, "train", setup.image_size, use_cache=False)
        started = time.perf_counter()
        features.extract(suite_extractor, image_set.images, label="bench")
        forward_seconds.append(time.perf_counter() - started)

    times = alternate({"course": course_way, "suite": suite_way}, setup.repeats)
    n = setup.counts["train"]
    return {"unit": "images/s", "course": summary([n / t for t in times["course"]]),
            "suite": summary([n / t for t in times["suite"]]),
            "suite_forward": summary([n / t for t in forward_seconds[1:]])}  # [0] was the warm-up.


def build_epoch_model(setup: Setup, unfreeze: bool, course: bool):
    """The stage-2 (or, with `unfreeze`, stage-3) model the course notes' way or the suite's way."""
    import keras

    keras.utils.set_random_seed(0)
    with dtype_policy("float32" if course else setup.suite_policy):
        base = models.build_conv_base(setup.weights, setup.image_size)
        classifier = models.build_classifier(base.output_shape[1:], 0.5)
        if course:  # The course notes: rescaled pixels straight into the base; augmentation in Python.
            model = keras.Sequential([keras.Input((setup.image_size, setup.image_size, 3)), base, classifier])
        else:
            model = models.build_end_to_end(base, classifier, "vgg16", models.build_augmentation(seed=0))
        if unfreeze:  # Block 5, as stage 3 does.
            base.trainable = True
            for layer in base.layers:
                layer.trainable = layer.name.startswith("block5_conv")
        compile_rmsprop(model, 1e-5 if unfreeze else 2e-5)
    return model, base, classifier


def compile_rmsprop(model, learning_rate: float) -> None:
    """Compile as every stage does: RMSprop, binary cross-entropy, accuracy."""
    import keras

    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])


BENCH_POOL = 4  # Variants per photo in the pooled epochs measured.


def pooled_way(setup: Setup, cut, stage: str, validation_features):
    """One epoch of the suite on an augmentation pool (the top above the cut trains), and the one-time
    seconds of computing one pool variant."""
    from lib.study import pool

    settings = dict(rotation_degrees=40.0, width_shift=0.1, height_shift=0.1, zoom=0.2, horizontal_flip=True,
                    vertical_flip=False)
    with dtype_policy(setup.suite_policy):
        started = time.perf_counter()
        pool.compute_variant(cut, "block4_pool", setup.image_sets["train"], settings, 0, 0)
        variant_seconds = time.perf_counter() - started
        array, _ = pool.build(cut, setup.image_sets["train"], setup.weights, settings, 0, BENCH_POOL)
        compile_rmsprop(cut.top, 1e-5 if stage == "stage3" else 2e-5)
    dataset = pool.pooled_stream(array, setup.image_sets["train"].labels, BATCH, 0).dataset()
    validation = setup.image_sets["validation"]
    callback = training.CachedValidation(cut.top, validation_features, validation.labels)
    return functools.partial(cut.top.fit, dataset, steps_per_epoch=setup.steps, epochs=1, verbose=0,
                             callbacks=[callback]), variant_seconds


def measure_epochs(setup: Setup, stage: str, unfreeze: bool) -> dict[str, dict]:
    """One training epoch of a stage: the course notes' way, the suite's online epoch (cached validation),
    the suite's epoch on an augmentation pool, and the online epoch validated through the full model;
    validation alone both ways."""
    from lib.study import features

    images, validation = setup.image_sets["train"], setup.image_sets["validation"]
    course_model, _, _ = build_epoch_model(setup, unfreeze, course=True)
    suite_model, suite_base, suite_classifier = build_epoch_model(setup, unfreeze, course=False)
    one_time = time.perf_counter()
    with dtype_policy(setup.suite_policy):
        cut = models.cut_base(suite_base, suite_classifier, "vgg16")
    validation_features = features.extract(cut.frozen, validation.images, label=f"{stage} validation")
    one_time = time.perf_counter() - one_time
    pooled_epoch, variant_seconds = pooled_way(setup, cut, stage, validation_features)
    train_generator = course_generator(setup.root / "train", setup.image_size, augment=True, shuffle=True)
    validation_generator = course_generator(setup.root / "validation", setup.image_size, augment=False, shuffle=False)
    train_dataset = batches.make_batch_stream(images.images, images.labels, BATCH, shuffle=True, seed=0).dataset()
    validation_batches = batches.make_batch_stream(validation.images, validation.labels, BATCH)
    validation_dataset = validation_batches.dataset().take(validation_batches.batches_per_pass)
    callback = training.CachedValidation(cut.top, validation_features, validation.labels)
    plain_epoch = functools.partial(suite_model.fit, train_dataset, steps_per_epoch=setup.steps, epochs=1,
                                    verbose=0, shuffle=False)
    full_validation = functools.partial(suite_model.evaluate, validation_dataset, verbose=0)
    times = alternate({
        "course": functools.partial(course_model.fit, train_generator, steps_per_epoch=setup.steps, epochs=1,
                                    verbose=0, validation_data=validation_generator,
                                    validation_steps=len(validation_generator)),
        "suite": functools.partial(plain_epoch, callbacks=[callback]),
        "pooled": pooled_epoch,
        "suite_full_validation": lambda: (plain_epoch(), full_validation()),
        "full_validation": full_validation,
        "cached_validation": functools.partial(training.loss_and_accuracy, cut.top, validation_features,
                                               validation.labels),
    }, setup.repeats)
    print(f"{stage}: course {statistics.median(times['course']):.1f} s/epoch, suite online "
          f"{statistics.median(times['suite']):.1f} s/epoch, suite pooled {statistics.median(times['pooled']):.2f} "
          f"s/epoch", flush=True)
    return {
        f"{stage}_epoch": {"unit": "s/epoch", "course": summary(times["course"]), "suite": summary(times["suite"]),
                           "suite_one_time_seconds": one_time},
        f"{stage}_pooled_epoch": {"unit": "s/epoch", "course": summary(times["course"]),
                                  "suite": summary(times["pooled"]), "pool_variant_seconds": variant_seconds},
        f"{stage}_pooled_vs_online_epoch": {"unit": "s/epoch", "course": summary(times["suite"]),
                                            "suite": summary(times["pooled"])},
        f"{stage}_validation": {"unit": "s/epoch", "course": summary(times["full_validation"]),
                                "suite": summary(times["cached_validation"])},
        # Same training, validation through the full model ("course" column) or on cached features.
        f"{stage}_cached_validation_epoch": {"unit": "s/epoch", "course": summary(times["suite_full_validation"]),
                                             "suite": summary(times["suite"])},
    }


def measure_efficiency(setup: Setup, suite_forward_rates: list[float]) -> dict:
    """The conv base's GFLOP/s against the best matrix product in the same precision (TensorFlow, NumPy)."""
    tensorflow_peak = matmul_gflops()
    numpy_peak = numpy_matmul_gflops()
    peaks = {"float32": max(tensorflow_peak, numpy_peak or 0.0)}
    if setup.suite_policy in {"mixed_bfloat16", "mixed_float16"}:
        peaks[setup.suite_policy] = matmul_gflops(dtype=setup.suite_policy.removeprefix("mixed_"))
    float32_conv = forward_rate(setup.image_size, "float32") * setup.gflop
    rates = [rate * setup.gflop for rate in suite_forward_rates]
    return {"conv_base_gflop_per_image": setup.gflop, "matmul_gflops": peaks[setup.suite_policy],
            "matmul_gflops_tensorflow": tensorflow_peak, "matmul_gflops_numpy": numpy_peak,
            "matmul_gflops_by_precision": peaks, "conv_base_gflops_float32": float32_conv,
            "conv_base_efficiency_float32": float32_conv / peaks["float32"], "conv_base_gflops": summary(rates),
            "conv_base_efficiency": statistics.median(rates) / peaks[setup.suite_policy]}


def prepare(arguments: argparse.Namespace) -> Setup:
    """The photos (DATA_DIR's first N, else synthetic), the weights (VGG16_WEIGHTS, else random), the precision."""

    counts = {"train": arguments.images, "validation": arguments.validation_images}
    source = os.environ.get("DATA_DIR")
    if source:
        root = make_subset(Path(source), paths.cache_root() / f"bench-subset-{counts['train']}-{counts['validation']}",
                           counts)
        described = f"{source} (first {counts['train']} train / {counts['validation']} validation photos)"
    else:
        root = synthetic.make_synthetic_dataset(paths.cache_root() / f"bench-synthetic-{counts['train']}", counts,
                                                size=360)
        described = "synthetic 360x360 JPEGs (set DATA_DIR for real photos)"
    policy = devices.compute_policy(arguments.precision == "profile", devices.gpu_names())
    return Setup(root, described, resolve_weights(os.environ.get("VGG16_WEIGHTS", "none")), arguments.image_size,
                 counts, arguments.repeats, policy)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="training photos per epoch and for extraction")
    parser.add_argument("--validation-images", type=int, default=200, help="validation photos per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of each way")
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--precision", choices=("profile", "float32"), default="profile",
                        help="the suite's compute precision: as the cpu profile (16-bit where native here) "
                             "or float32; the course-notes way always runs in float32")
    parser.add_argument("--output", default=str(paths.outputs_root() / "bench" / "bench.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:

    arguments = parse_arguments(argv)
    tf = lib.load_tensorflow()
    setup = prepare(arguments)
    print(f"Benchmark on {setup.photos}; {setup.repeats} alternating repeats; TF {tf.__version__}, "
          f"oneDNN={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}; {devices.describe_cpu()}.", flush=True)
    print(f"Suite precision: {setup.suite_policy}; course-notes way: float32.", flush=True)
    course_base = models.build_conv_base(setup.weights, setup.image_size)  # The course notes' base, float32.
    setup.gflop = conv_base_gflop(course_base)
    with dtype_policy(setup.suite_policy):
        suite_base = models.build_conv_base(setup.weights, setup.image_size)
        suite_extractor = models.cut_base(suite_base, models.build_classifier(suite_base.output_shape[1:]),
                                          "vgg16").frozen
    results = {"extraction": measure_extraction(setup, course_base, suite_extractor)}
    setup.image_sets = {split: photos.load_split(setup.root, split, setup.image_size) for split in setup.counts}
    for stage, unfreeze in (("stage2", False), ("stage3", True)):
        results.update(measure_epochs(setup, stage, unfreeze))
    report = {"machine": f"{devices.describe_cpu()}, {platform.platform()}", "photos": setup.photos,
              "images": setup.counts, "repeats": setup.repeats, "image_size": setup.image_size,
              "tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
              "suite_precision": setup.suite_policy, "results": results,
              **measure_efficiency(setup, results["extraction"]["suite_forward"]["all"]), **ratios(results)}
    marks.make_folder(Path(arguments.output).parent, "benchmark results")  # Only when it makes the folder.
    storage.write_json(arguments.output, report)
    print(format_table(report))
    print(f"Written to {arguments.output}")
    return 0


def ratios(results: dict[str, dict]) -> dict[str, Any]:
    """Suite speed / course speed per measurement, median and the range pairing each way's extremes."""
    found: dict[str, Any] = {}
    for key, result in results.items():
        course, suite = result["course"], result["suite"]
        if result["unit"] == "images/s":  # Higher is faster.
            found[f"{key}_ratio"] = suite["median"] / course["median"]
            found[f"{key}_ratio_range"] = [suite["min"] / course["max"], suite["max"] / course["min"]]
        else:  # Seconds: lower is faster.
            found[f"{key}_ratio"] = course["median"] / suite["median"]
            found[f"{key}_ratio_range"] = [course["min"] / suite["max"], course["max"] / suite["min"]]
    return found


def format_table(report: dict) -> str:
    """The benchmark as a Markdown table (median, with min..max over the repeats)."""
    lines = ["| measurement | course notes way | this suite | ratio (suite speed / course speed) |",
             "| --- | --- | --- | --- |"]
    names = {"extraction": "feature extraction", "stage2_epoch": "stage-2 epoch", "stage3_epoch": "stage-3 epoch",
             "stage2_pooled_epoch": "stage-2 epoch, suite on a pool",
             "stage3_pooled_epoch": "stage-3 epoch, suite on a pool",
             "stage2_pooled_vs_online_epoch": "stage-2 epoch, suite: online vs pool",
             "stage3_pooled_vs_online_epoch": "stage-3 epoch, suite: online vs pool",
             "stage2_validation": "stage-2 validation only", "stage3_validation": "stage-3 validation only",
             "stage2_cached_validation_epoch": "stage-2 epoch, suite: full-model vs cached validation",
             "stage3_cached_validation_epoch": "stage-3 epoch, suite: full-model vs cached validation"}
    for key, name in names.items():
        result = report["results"][key]

        def cell(values, unit=result["unit"]):
            return f"{values['median']:.2f} {unit} ({values['min']:.2f}..{values['max']:.2f})"

        low, high = report[f"{key}_ratio_range"]
        lines.append(f"| {name} | {cell(result['course'])} | {cell(result['suite'])} | "
                     f"{report[f'{key}_ratio']:.2f}x ({low:.2f}..{high:.2f}) |")
    rates = report["conv_base_gflops"]
    lines.append(f"| conv base efficiency ({report['suite_precision']}) | | {rates['median']:.0f} GFLOP/s "
                 f"({rates['min']:.0f}..{rates['max']:.0f}) of {report['matmul_gflops']:.0f} GFLOP/s matmul | "
                 f"{report['conv_base_efficiency']:.0%} |")
    lines.append(f"| conv base efficiency (float32) | | {report['conv_base_gflops_float32']:.0f} GFLOP/s of "
                 f"{report['matmul_gflops_by_precision']['float32']:.0f} GFLOP/s matmul | "
                 f"{report['conv_base_efficiency_float32']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
