"""A forecast of each stage's duration, from a short measurement of this machine.

Two kinds of work, each measured here in the precision the stages compute in (`Speed`): the conv base's
forward pass (how many images per second at the stage's size; extraction, the pool, validation are counted in
such passes, or in the share of one that a few layers do), and training steps (seconds per training photo of
the layers above a cut: the classifier alone, or block 5 and the classifier), measured on a few steps, since how
fast a machine trains does not follow from how fast it runs forward (on a 2-core AVX2 CPU training block 5 was
25% slower than the forward rate foretold). A fixed cost per stage (kernel start, TensorFlow, plots, report) is
added. Work that the caches already hold, or that an earlier stage of the same command computes, is not counted
twice: blocks 1-4 of the unaugmented photos once per run, the augmentation pool once for stages 2 and 3.

The factors below stand in where a training step was not measured (`Speed.step`); each run's summary page
shows the forecast beside the actual time of each stage.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np

import lib
from lib.core import devices, params, report_split, stages
from lib.study import cache, photos  # Neither loads TensorFlow (tests/test_house.py checks).

# VGG16's convolutions: output channels per layer, in order (3x3, same padding; a 2x2 pool after each block).
_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
AUGMENTATION = 0.05  # Random rotation, shift, zoom and flip of one image.
TRAINING = 3.95  # Forward, backward and update of trained conv layers, per forward pass of those layers.
CLASSIFIER_STEP = 0.0065  # One sample of a training step of the dense classifier on 4x4x512 features.
STAGE_SECONDS = 25.0  # Per stage: a kernel, TensorFlow's start, the model, plots, the HTML report.
DECODE_SECONDS = 0.004  # Decoding and resizing one photo (a 2-core CPU; once, then cached).
# A stage's training steps against the few that `training_step_seconds` times on fixed inputs: the epochs also feed
# the pool through tf.data, mirror maps, keep the best weights and back up. For the classifier alone (stages 1 and
# 2, steps of milliseconds) that costs a share of each step (EPYC capped to AVX2, 1.4 CPUs: epochs 30-35 ms per
# photo against 24.5 measured); stage 3's block-5 steps are longer and carry less of it: on a 2-core EPYC its
# epochs (validation taken as forecast) ran 1.07-1.12 times the timed step in float32 held to AVX2 and 1.09-1.12
# in bfloat16 (the default-run records of 2026-12-05, priced at 1.25 then; their reruns are in docs/speed.md).
STEP_OVERHEAD = 1.25
BLOCK5_STEP_OVERHEAD = 1.12
SUSTAIN_SECONDS = 1.5  # How long the training steps are timed for, at least (`training_step_seconds`).
MAX_STEPS = 400  # ... in at most this many steps.


def layer_flops(image_size: int) -> dict[str, float]:
    """Multiply-adds x 2 of each VGG16 conv layer (and 0 for each pool) at `image_size`."""
    flops, side, channels = {}, image_size, 3
    for block, widths in enumerate(_BLOCKS, start=1):
        for conv, width in enumerate(widths, start=1):
            flops[f"block{block}_conv{conv}"] = 2.0 * side * side * 9 * channels * width
            channels = width
        flops[f"block{block}_pool"] = 0.0
        side //= 2
    return flops


def fraction(image_size: int, end: str, start: str | None = None) -> float:
    """The share of a whole conv-base forward pass done by the layers after `start` up to `end`."""
    flops = layer_flops(image_size)
    names = list(flops)
    first = names.index(start) + 1 if start else 0
    return sum(flops[name] for name in names[first:names.index(end) + 1]) / sum(flops.values())


@dataclasses.dataclass(frozen=True)
class Speed:
    """This machine at one image size and precision: conv-base forward passes per second, and seconds per training
    photo of the layers above each measured cut (`block5_pool`: the classifier alone)."""

    forward: float
    step_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def step(self, image_size: int, layer: str) -> float:
        """Seconds per training photo above `layer`: measured, else from the factors."""
        if layer in self.step_seconds:
            return self.step_seconds[layer]
        trained = TRAINING * fraction(image_size, "block5_pool", layer) if layer != "block5_pool" else 0.0
        return (trained + CLASSIFIER_STEP) / self.forward

    def describe(self) -> str:
        steps = ", ".join(f"above {layer} {seconds * 1000:.1f} ms" for layer, seconds in self.step_seconds.items())
        return f"{self.forward:.1f} images/s forward" + (f"; training per photo: {steps}" if steps else "")


def speed_of(value: Speed | float) -> Speed:
    """A `Speed` from a measured one or a forward rate alone (the training steps then from the factors)."""
    return value if isinstance(value, Speed) else Speed(float(value))


def conv_base_rate(image_size: int, policy: str, batch_size: int = 32, batches: int = 3) -> float:
    """Images per second of a VGG16 conv base forward pass at `image_size` (random weights and images),
    in the Keras dtype `policy` the stages will compute in: from the median of `batches` timed batches, so that
    one slow batch (another process waking) does not size the whole run."""
    tf = lib.load_tensorflow()
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(image_size, image_size, 3))
    forward = tf.function(lambda images: base(images, training=False))
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)),
                         dtype=tf.float32)
    try:
        forward(images).numpy()  # Trace and warm up.
        return batch_size / median_seconds(lambda: forward(images).numpy(), batches)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@dataclasses.dataclass(frozen=True)
class Work:
    """One piece of work a forecast counts once: a split's photos decoded, its features up to `layer`, or one
    variant of the augmentation pool (its augmentation, as the pool's JSON, its seed and number)."""

    kind: str  # "decoded", "features" or "variant".
    split: str  # A mirror suffix (`cache.MIRROR_PHOTOS`, `cache.MIRROR_MAPS`) marks mirrored photos or maps.
    layer: str = ""
    augmentation: str = ""
    seed: int = 0
    variant: int = 0


@dataclasses.dataclass
class Known:
    """Work that needs no doing: in the caches on disk (`keys`: a split's cache key, where it can be known
    before the stage runs) or counted for an earlier stage of this forecast (`done`)."""

    keys: dict[str, cache.CacheKey]
    done: set[Work] = dataclasses.field(default_factory=set)

    def has(self, work: Work) -> bool:
        """Whether `work` is counted already or its result is in the caches."""
        if work in self.done:
            return True
        split, bar, variant = work.split.partition("|")
        key = self.keys.get(split)
        if key is None:
            return False
        if bar:  # Mirrored photos (MIRROR_PHOTOS) or maps (MIRROR_MAPS) are cached under the fingerprint + that.
            key = dataclasses.replace(key, fingerprint=key.fingerprint + bar + variant)
        if work.kind == "decoded":
            return photos.image_cache_file(key.split, key.fingerprint, key.image_size).is_file()
        if work.kind == "variant":
            from lib.study import pool  # Only here: it loads TensorFlow.

            return pool.variant_path(key, work.layer, json.loads(work.augmentation), work.seed,
                                     work.variant).is_file()
        return key.path(work.layer).is_file()

    def take(self, work: Work) -> bool:
        """Whether `work` still needs doing; it counts as done from now on."""
        needed = not self.has(work)
        self.done.add(work)
        return needed


def _features_work(known: Known, split: str, count: int, size: int, layer: str) -> float:
    """Conv work to get a split's unaugmented output at `layer` (through the shared cut when beyond it)."""
    if not known.take(Work("features", split, layer)):
        return 0.0
    names = list(layer_flops(size))
    if names.index(layer) > names.index(cache.SHARED_CUT):
        return _features_work(known, split, count, size, cache.SHARED_CUT) + count * fraction(
            size, layer, cache.SHARED_CUT)
    return count * fraction(size, layer)


def median_seconds(work, times: int) -> float:
    """The median of `times` timed calls of `work()`."""
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        durations.append(time.perf_counter() - started)
    return float(np.median(durations))


def training_step_seconds(image_size: int, policy: str, layer: str, batch_size: int = 20, steps: int = 8,
                          sustain: float = SUSTAIN_SECONDS) -> float:
    """Seconds per photo of a training step (RMSprop, batch of `batch_size`) of everything above `layer`: block 5
    and the classifier on block 4's output, or the classifier alone above `block5_pool`; random weights and
    inputs, in the Keras dtype `policy`. The median of at least `steps` timed steps, and of as many more as fill
    `sustain` seconds: single steps of block 5 vary by a fifth on a 2-core CPU, and the classifier's steps take
    milliseconds, so that eight of them were a noisy sample (one start forecast had stage 1's classifier 40% slow)."""
    lib.load_tensorflow()
    import keras

    from lib.study import models  # Only here: it builds models.
    from lib.study.weights import WeightsChoice

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        base = models.build_conv_base(WeightsChoice("none", None, None), image_size)
        base.trainable = True
        names = models.layer_names(base)
        for trained in base.layers:
            trained.trainable = names.index(trained.name) > names.index(layer)
        top = models.conv_segment(base, None, start=layer, classifier=models.build_classifier(base.output_shape[1:]))
        top.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-5), loss="binary_crossentropy",
                    metrics=["accuracy"])
        generator = np.random.default_rng(0)
        inputs = generator.uniform(0, 10, (batch_size, *top.input_shape[1:])).astype("float32")
        labels = (np.arange(batch_size) % 2).astype("float32")
        for _ in range(2):  # Trace and warm up.
            top.train_on_batch(inputs, labels)
        first = median_seconds(lambda: top.train_on_batch(inputs, labels), 1)
        return median_seconds(lambda: top.train_on_batch(inputs, labels),
                              max(steps, min(MAX_STEPS, int(sustain / max(first, 1e-6))))) / batch_size
    finally:
        keras.mixed_precision.set_global_policy(previous)


def measured_steps(image_size: int, policy: str, layers: set[str]) -> dict[str, float]:
    """Seconds per training photo above each of `layers`, measured here, times its overhead (`step_overhead`)."""
    return {layer: step_overhead(layer) * training_step_seconds(image_size, policy, layer) for layer in sorted(layers)}


def step_overhead(layer: str) -> float:
    """What a stage's epochs cost against the timed training steps above `layer`: `STEP_OVERHEAD` for the classifier
    alone (above `block5_pool`), `BLOCK5_STEP_OVERHEAD` where block 5 trains too."""
    return STEP_OVERHEAD if layer == "block5_pool" else BLOCK5_STEP_OVERHEAD


def measure(image_size: int, policy: str, layers: set[str]) -> Speed:
    """This machine's `Speed` at `image_size` in `policy`, with training steps measured above each of `layers`."""
    return Speed(conv_base_rate(image_size, policy), measured_steps(image_size, policy, layers))


def setting_of(stem: str, resolved: dict[str, dict], gpus: list[str]) -> tuple[tuple[int, str], dict[str, Any]]:
    """The image size and precision a stage computes in, and its parameters with the notebook's defaults."""
    values = params.with_defaults(stem, resolved[stem])
    return (values["image_size"], devices.compute_policy(values["mixed_precision"], gpus)), values


def trained_cuts(values: dict[str, Any], stage: str) -> set[str]:
    """The cuts above which a stage trains: the classifier's (`block5_pool`) and the stage's own."""
    return {"block5_pool"} | ({cut_layer(values)} if stages.get(stage).trains_on == "photos" else set())


def cut_layer(values: dict[str, Any]) -> str:
    """The last frozen layer of a stage: before the first layer it unfreezes (`block5_pool` if none)."""
    names = list(layer_flops(values.get("image_size", 150)))
    unfrozen = [names.index(name) for name in values.get("unfreeze_layers", []) if name in names]
    return names[min(unfrozen) - 1] if unfrozen else names[-1]


def _training_seconds(known: Known, values: dict[str, Any], counts: dict[str, int], layer: str, epochs: int,
                      speed: Speed) -> float:
    """Seconds of `epochs` epochs of a stage that trains on augmented photos above `layer`."""
    size, train = values["image_size"], counts["train"]
    samples = epochs * (values["steps_per_epoch"] * values["batch_size"] if values["steps_per_epoch"] else train)
    per_epoch_validation = counts.get("validation", 0) * fraction(size, "block5_pool", layer)
    steps = samples * speed.step(size, layer)
    return steps + _augmented_work(known, values, train, samples, layer) / speed.forward + (
        epochs * per_epoch_validation / speed.forward)


def _augmented_work(known: Known, values: dict[str, Any], train: int, samples: int, layer: str) -> float:
    """Conv work of the augmented photos up to `layer`: every sample online, or the pool's variants once."""
    size, variants, work = values["image_size"], values.get("augmentation_pool", 0), 0.0
    if not variants:
        return samples * (fraction(size, layer) + AUGMENTATION)
    pool_layer = cache.SHARED_CUT if layer == "block5_pool" else layer
    work += _features_work(known, "train", train, size, pool_layer)
    augmentation = json.dumps({key: values[key] for key in ("rotation_degrees", "width_shift", "height_shift", "zoom",
                                                             "horizontal_flip", "vertical_flip")}, sort_keys=True)
    for variant in range(variants):
        if known.take(Work("variant", "train", pool_layer, augmentation, values["seed"], variant)):
            work += train * (fraction(size, pool_layer) + AUGMENTATION)
    if pool_layer != layer:  # Stage 2: the frozen block 5 over the whole pool, once.
        work += (variants + 1) * train * fraction(size, layer, pool_layer)
    return work


def stage_seconds(stage: str, values: dict[str, Any], counts: dict[str, int], speed: Speed | float,
                  known: Known | None = None, previous_available: bool = True) -> float:
    """Forecast seconds of one stage from its parameters (notebook defaults filled in), the photo counts per
    split, this machine's `Speed` (or its conv-base rate alone), and what is `known` to be cached or done before
    it."""
    speed, values = speed_of(speed), params.with_defaults(stage, values)
    known = known or Known({})
    size = values["image_size"]
    seconds = STAGE_SECONDS + sum(DECODE_SECONDS * count for split, count in counts.items()
                                  if known.take(Work("decoded", split)))
    layer = "block5_pool" if stages.get(stage).trains_on == "features" else cut_layer(values)
    held_out = {split: count for split, count in counts.items() if split != "train"}
    if values.get("test_time_augmentation"):  # The mirrored photos too, once per run.
        held_out.update({split + cache.MIRROR_PHOTOS: count for split, count in list(held_out.items())})
    work = sum(_features_work(known, split, count, size, layer) for split, count in held_out.items())
    if layer != "block5_pool":  # Scored after training: the held-out photos once through the layers it trained.
        work += sum(held_out.values()) * fraction(size, "block5_pool", layer)
    if stages.get(stage).trains_on == "features":
        train = counts.get("train", 0)
        work += _features_work(known, "train", train, size, layer)
        if values.get("feature_flips"):  # Block 5 over the mirrored block-4 maps once; twice the training inputs.
            if known.take(Work("features", "train" + cache.MIRROR_MAPS, layer)):
                work += train * fraction(size, layer, cache.SHARED_CUT)
            train *= 2
        return seconds + work / speed.forward + values["epochs"] * train * speed.step(size, layer)
    if "classifier_epochs" in values and (values["start_from"] == "scratch" or not previous_available):
        classifier = {**values, "unfreeze_layers": []}
        work += _features_work(known, "validation", counts.get("validation", 0), size, "block5_pool")
        seconds += _training_seconds(known, classifier, counts, "block5_pool", values["classifier_epochs"], speed)
    return seconds + work / speed.forward + _training_seconds(known, values, counts, layer, values["epochs"], speed)


def image_counts(values: dict[str, Any], photo_set: dict[str, Any]) -> dict[str, int]:
    """Photos per split that a stage will use, from the photo set's fingerprint and `max_images_per_class`."""
    counts = {split: len(info["files"]) for split, info in photo_set["splits"].items()}
    if values.get("max_images_per_class"):
        counts = {split: min(count, 2 * values["max_images_per_class"]) for split, count in counts.items()}
    return report_split.counts(counts, values.get("report_split", "auto"))


def cache_keys(values: dict[str, Any], photo_set: dict[str, Any], weights: dict[str, Any], policy: str
               ) -> dict[str, cache.CacheKey]:
    """The cache keys of each split as the stage will compute them (none when a subset of photos is used)."""
    if values.get("max_images_per_class"):
        return {}
    fingerprints = {split: info["sha256"] for split, info in photo_set["splits"].items()}
    if report_split.resolve(values.get("report_split", "auto"), "test" in fingerprints) == "held_out":
        whole = fingerprints["validation"]
        fingerprints = {**fingerprints, **{split: report_split.part_fingerprint(whole, split)
                                           for split in ("validation", "test")}}
    return {split: cache.CacheKey(split, fingerprint, weights["sha256"], values.get("image_size", 150),
                                     values.get("preprocessing", "vgg16"), policy)
            for split, fingerprint in fingerprints.items()}


def plan_seconds(stems: list[str], resolved: dict[str, dict], fingerprints: dict[Any, Any], gpus: list[str],
                 rates: dict[tuple[int, str], Speed | float], run_has: set[str] = frozenset()) -> dict[str, float]:
    """Forecast seconds of each stage of a command, in order, with the work they share counted once."""
    seconds, known = {}, None
    for stem in stems:
        values = resolved[stem]
        photo_set, weights = fingerprints[(values.get("data_dir", ""), values.get("weights", "imagenet"))]
        policy = devices.compute_policy(values.get("mixed_precision", False), gpus)
        keys = cache_keys(values, photo_set, weights, policy)
        known = Known(keys, known.done if known and known.keys == keys else set())
        previous = stages.get(stem).previous
        seconds[stem] = stage_seconds(stem, values, image_counts(values, photo_set),
                                      rates[(values.get("image_size", 150), policy)], known,
                                      previous in stems or previous in run_has)
    return seconds


def print_forecast(stems: list[str], resolved: dict[str, dict], fingerprints: dict[Any, Any],
             run_has: set[str] = frozenset(), speeds: dict[tuple[int, str], Speed] | None = None) -> dict[str, float]:
    """Print roughly how long each stage will take here, from a short measurement (or `speeds` measured a moment
    ago); return the seconds per stage (recorded in the manifest and shown beside the actual times on the summary
    page). `run_has` names the stages already complete in the run folder."""
    gpus = devices.gpu_names()
    speeds = speeds or measure_all(stems, resolved, gpus)
    seconds = plan_seconds(stems, resolved, fingerprints, gpus, speeds, run_has)
    for stem, value in seconds.items():
        print(f"    forecast {stem}: about {value / 60:.1f} min", flush=True)
    measured = ", ".join(f"at {size}px in {policy} {speed.describe()}" for (size, policy), speed in speeds.items())
    print(f"    forecast total: about {sum(seconds.values()) / 60:.0f} min (measured here: {measured}; "
          f"{devices.describe_cpu()})", flush=True)
    return seconds


def measure_all(stems: list[str], resolved: dict[str, dict], gpus: list[str]) -> dict[tuple[int, str], Speed]:
    """This machine's `Speed` at each image size and precision the stages use, with the training steps they take."""
    cuts: dict[tuple[int, str], set[str]] = {}
    for stem in stems:
        setting, values = setting_of(stem, resolved, gpus)
        cuts.setdefault(setting, set()).update(trained_cuts(values, stem))
    speeds = {}
    for (size, policy), layers in cuts.items():
        print(f"    measuring this machine at {size} px in {policy}: the conv base and the training steps ...",
              flush=True)
        speeds[(size, policy)] = measure(size, policy, layers)
    return speeds


def forecast_again(stem: str, stems: list[str], resolved: dict[str, dict], fingerprints: dict[Any, Any],
                   run_has: set[str], speeds: dict[tuple[int, str], Speed], earlier: float | None) -> float:
    """The forecast of `stem` just before it runs, with its training steps measured again now (the conv base's rate
    kept from `speeds`): a machine's pace drifts over a run, and a stage that trains block 5 is mostly such steps.
    Priced as one of the command's `stems` (as at the start), so that work an earlier one did is not counted."""
    gpus = devices.gpu_names()
    setting, values = setting_of(stem, resolved, gpus)
    fresh = measure_all([other for other in stems if setting_of(other, resolved, gpus)[0] not in speeds], resolved,
                        gpus)  # Sizes or precisions the start did not measure, whole.
    speeds.update(fresh)
    if setting not in fresh:
        steps = measured_steps(*setting, trained_cuts(values, stem))
        speeds[setting] = Speed(speeds[setting].forward, {**speeds[setting].step_seconds, **steps})
    seconds = plan_seconds(stems, resolved, fingerprints, gpus, speeds, run_has)[stem]
    start = f"{earlier / 60:.1f} min at the start; " if earlier else ""
    print(f"    forecast {stem}, its training step measured again: about {seconds / 60:.1f} min ({start}"
          f"{speeds[setting].describe()})", flush=True)
    return seconds


@dataclasses.dataclass
class Forecasts:
    """The forecast of each stage a command runs: measured once before the first of them (or `seconds` from
    `speeds` that PROFILE=auto measured a moment ago), and again for each later one, its training steps measured
    just before it runs (`forecast_again`). `at_start` keeps the first forecast of a stage measured again."""

    enabled: bool
    speeds: dict[tuple[int, str], Speed] | None = None
    seconds: dict[str, float] | None = None
    at_start: dict[str, float] = dataclasses.field(default_factory=dict)
    stems: list[str] = dataclasses.field(default_factory=list)  # Those left when the first one ran; empty before.
    run_has: set[str] = dataclasses.field(default_factory=set)  # Complete in the run folder then.

    def before(self, stems: list[str], resolved: dict[str, dict], fingerprints: dict[Any, Any],
               run_has: set[str]) -> float | None:
        """The forecast of `stems[0]`, about to run, of the `stems` left (printed); None when disabled."""
        if not self.enabled:
            return None
        stem, started = stems[0], bool(self.stems)  # Each stage after the command's first is measured again.
        if not started:
            self.stems, self.run_has = list(stems), set(run_has)
        if self.seconds is None:
            self.speeds = measure_all(stems, resolved, devices.gpu_names())
            self.seconds = print_forecast(stems, resolved, fingerprints, run_has, self.speeds)
        elif started and self.speeds is not None:
            earlier = self.seconds.get(stem)
            try:
                again = forecast_again(stem, self.stems, resolved, fingerprints, self.run_has, self.speeds, earlier)
            except Exception as error:  # A forecast informs: it never stops a run.
                print(f"    forecast {stem}: not measured again ({type(error).__name__}: {error}); the start's stands",
                      flush=True)
            else:
                self.at_start[stem], self.seconds[stem] = earlier, again
        return self.seconds.get(stem)
