"""What stage 3's recipe is worth on photos no choice was made on: its fine tuning replayed from the stage-2 models
of a `tools/holdout_table.py` run, with each way of ending it scored on the report half.

    DATA_DIR=... VGG16_WEIGHTS=... .venv/bin/python tools/fine_tuning_levers.py [--profile cpu] [--rung 1,20,2]
        [--seeds 42 7 123] [--set key=value ...] [--epochs 6] [--learning-rate 1e-5] [--pool 4]

Run `holdout_table.py` with the same `--profile`, `--rung`, `--set` values and seeds first: this tool reads that
run's stage-2 models, split photos and cache (the augmentation pool and the block-4 maps), so no photo goes
through the conv base again (unless `--pool` asks for variants the cache lacks). For each seed it trains block 5
and the classifier from stage 2's model as stage 3 does (the profile's pool, `feature_flips`, batch size, steps
and learning rate; `--epochs`, `--learning-rate` and `--pool`, the variants per training photo, override them),
keeps the weights after every epoch and scores each way of ending the fine tuning:

- `stage 2`: no fine tuning at all (the model stage 3 starts from);
- `best epoch`: the epoch with the highest selection-half accuracy, ties to the lower loss (stage 3's rule);
- `last epoch`: no choice at all;
- `SWA from k`: the mean of the weights after epochs k to the last (stochastic weight averaging);
- `WiSE 0.5`: halfway between stage 2's weights and the last epoch's (weight-space ensembling, WiSE-FT).

It prints, per way, the report half's accuracy for each seed, their mean and spread (largest minus smallest),
and the selection half's mean. A replay is not stage 3's run itself (its random draws differ), so compare the
rows with each other, not with the holdout table. `--rung 1,20,2 --set mixed_precision=false --epochs 6` (float32 at
150x150, three seeds) took 14 minutes on a 2-core AMD EPYC with AVX-512.
"""
from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import params, paths, stages  # noqa: E402
from tools import holdout_table  # noqa: E402

STAGE = "03_fine_tuning"
PREVIOUS = stages.get(stages.get(STAGE).previous)  # Stage 2: its model is where the replay starts.
AUGMENTATION = ("rotation_degrees", "width_shift", "height_shift", "zoom", "horizontal_flip", "vertical_flip")
WISE_SHARE = 0.5  # WiSE: the share of the fine-tuned weights, the rest stage 2's.


def averaged(snapshots: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several snapshots of a model's weights."""
    return [np.mean([snapshot[index] for snapshot in snapshots], axis=0) for index in range(len(snapshots[0]))]


def interpolated(start: list[np.ndarray], end: list[np.ndarray], share: float) -> list[np.ndarray]:
    """`share` of the way from the weights `start` to `end`."""
    return [(1 - share) * first + share * last for first, last in zip(start, end)]


def best_epoch(scores: list[dict]) -> int:
    """The epoch (1 or later: `scores[0]` is stage 2's) with the highest selection-half accuracy, ties to the lower
    selection-half loss, as `lib.study.training.BestEpoch` chooses."""
    return max(range(1, len(scores)), key=lambda epoch: (scores[epoch]["validation"]["accuracy"],
                                                          -scores[epoch]["validation"]["loss"]))


def endings(snapshots: list[list[np.ndarray]], scores: list[dict]) -> dict[str, list[np.ndarray] | int]:
    """Each way of ending the fine tuning: an epoch whose scores are known (an int), or weights to score."""
    last = len(snapshots) - 1
    ways: dict[str, list[np.ndarray] | int] = {"stage 2": 0, "best epoch": best_epoch(scores), "last epoch": last}
    for first in range(1, last):
        ways[f"SWA from {first}"] = averaged(snapshots[first:])
    ways[f"WiSE {WISE_SHARE:g}"] = interpolated(snapshots[0], snapshots[-1], WISE_SHARE)
    return ways


def replay(values: dict, model_path: Path, epochs: int, learning_rate: float) -> dict[str, dict]:
    """Stage 3's fine tuning from the stage-2 model at `model_path`; each way of ending it (`endings`) scored on
    the selection half (`validation`) and the report half (`test`)."""
    import keras

    from lib.study import features, handoff, models, photos, pool, training
    from lib.study import weights as vgg16_weights

    training.seed_everything(values["seed"])
    training.configure_precision(values["mixed_precision"], [])
    image_sets = photos.load_image_sets(photos.resolve_data_dir(values["data_dir"]), values["image_size"], 0,
                                     values["image_store"])
    chosen = vgg16_weights.resolve_weights(values["weights"])
    conv_base, classifier = handoff.conv_base_and_classifier(handoff.Start(model_path, "stage 2"), chosen,
                                                             values["image_size"], values["dropout"])
    conv_base.trainable = True
    for layer in conv_base.layers:
        layer.trainable = layer.name in values["unfreeze_layers"]
    cut = models.cut_base(conv_base, classifier, values["preprocessing"])
    halves = features.at_cut(cut, image_sets, ["validation", "test"], chosen).arrays
    trained = pool.training_data(cut, image_sets["train"], augmentation_pool=values["augmentation_pool"],
                                 augmentation={key: values[key] for key in AUGMENTATION},
                                 batch_size=values["batch_size"], steps_per_epoch=values["steps_per_epoch"],
                                 seed=values["seed"], weights=chosen, feature_flips=values["feature_flips"])

    def score() -> dict[str, dict]:
        scored = {split: training.loss_and_accuracy(cut.top, halves[split], image_sets[split].labels)
                  for split in halves}
        return {split: {"loss": result.loss, "accuracy": result.accuracy} for split, result in scored.items()}

    snapshots, scores = [cut.top.get_weights()], [score()]

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(cut.top.get_weights())
            scores.append(score())
            print(f"  epoch {epoch + 1}: selection half {scores[-1]['validation']['accuracy']:.3f}, "
                  f"report half {scores[-1]['test']['accuracy']:.3f}", flush=True)

    cut.top.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate), loss="binary_crossentropy")
    training.fit(cut.top, trained.stream, epochs=epochs, steps_per_epoch=trained.steps_per_epoch,
                 callbacks=[Snapshot()], verbose=0)
    results = {}
    for way, ending in endings(snapshots, scores).items():
        if not isinstance(ending, int):
            cut.top.set_weights(ending)
        results[way] = scores[ending] if isinstance(ending, int) else score()
    return results


def table(results: dict[int, dict[str, dict]], seeds: list[int]) -> list[str]:
    """One row per way of ending: the report half's accuracy per seed, mean and spread; the selection half's mean."""
    lines = [f"| way of ending stage 3 | report half, seeds {' / '.join(map(str, seeds))} | report half mean | "
             "selection half mean |", "| --- | --- | --- | --- |"]
    for way in results[seeds[0]]:
        report = [results[seed][way]["test"]["accuracy"] for seed in seeds]
        selection = [results[seed][way]["validation"]["accuracy"] for seed in seeds]
        lines.append(f"| {way} | {holdout_table.per_seed(report)} | "
                     f"{holdout_table.spread(report)} | {statistics.fmean(selection):.4f} |")
    return lines


def main() -> None:
    parser = holdout_table.parser_of(__doc__)
    parser.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs (0: the profile's)")
    parser.add_argument("--learning-rate", type=float, default=0.0, help="RMSprop's (0: the profile's)")
    parser.add_argument("--pool", type=int, default=0, help="augmentation pool variants per photo (0: the profile's)")
    args = parser.parse_args()
    work, data, profile = holdout_table.prepare(parser, args)
    os.environ.update(DATA_DIR=str(data), CACHE_DIR=str(work / "cache"))  # As holdout_table's runs had them.
    results = {}
    for seed in args.seeds:
        name = holdout_table.run_name(profile, seed, args.settings)
        model_path = paths.outputs_root() / name / PREVIOUS.stem / PREVIOUS.hand_off_model
        if not model_path.is_file():
            raise SystemExit(f"{model_path} is missing: run tools/holdout_table.py with the same --profile, --rung, "
                             "--set and --seeds first.")
        overrides = dict(params.parse_assignment(item) for item in [*args.settings, f"seed={seed}"])
        values = params.with_defaults(STAGE, params.resolve_for_stage(STAGE, params.load_profile(profile), overrides))
        values["augmentation_pool"] = args.pool or values["augmentation_pool"]  # Not in --set: that names the run.
        if not values["augmentation_pool"]:
            raise SystemExit("The replay trains on the augmentation pool: give a profile or rung with one.")
        print(f"{name}: replaying stage 3 from its stage-2 model", flush=True)
        results[seed] = replay(values, model_path, args.epochs or values["epochs"],
                               args.learning_rate or values["fine_tune_learning_rate"])
    print("\n".join(table(results, args.seeds)))


if __name__ == "__main__":
    main()
