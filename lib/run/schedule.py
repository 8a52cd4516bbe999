"""`PROFILE=auto`: the full reference schedule on a GPU; on a CPU, the `cpu` profile sized to a time budget.

On a CPU, auto walks a ladder of schedules (image size, test-time augmentation, pool, epochs) from the most
accurate down, measuring the conv base and training steps at each image size it reaches (as the forecast does),
and takes the first whose forecast fits in `SAFETY` of the budget (`BUDGET_MINUTES`, default 30).
The rungs hold round numbers, so a slightly different measurement rarely changes the choice, and a run that
already chose keeps its choice: the same command again skips every complete stage.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from lib import SuiteError
from lib.core import devices, params, paths, records, stages, storage
from lib.run import forecast, freshness, provenance

DEFAULT_BUDGET_MINUTES = 30.0
SAFETY = 0.8  # The forecast of the chosen schedule is at most this share of the budget.
AUTO_RUN = "auto"


@dataclasses.dataclass(frozen=True)
class Choice:
    """Why a command runs the profile it runs: the sentence said on the console and recorded in the manifest
    (empty for a profile named on the command line), and whether PROFILE=auto `kept` the schedule the run chose
    before (so it measured nothing now)."""

    message: str = ""
    kept: bool = False


@dataclasses.dataclass(frozen=True)
class Rung:
    """One schedule of the ladder: pool size, the epochs of stages 2 and 3 (stage 1 is always the reference 30:
    it trains on cached features in seconds), the image size and whether held-out photos are also scored with
    their mirror images (test-time augmentation)."""

    augmentation_pool: int
    augmentation_epochs: int
    fine_tuning_epochs: int
    image_size: int = 150
    test_time_augmentation: bool = False

    def sections(self) -> dict[str, dict[str, Any]]:
        return {"common": {"image_size": self.image_size, "test_time_augmentation": self.test_time_augmentation},
                "data_augmentation": {"augmentation_pool": self.augmentation_pool,
                                      "epochs": self.augmentation_epochs},
                "fine_tuning": {"augmentation_pool": self.augmentation_pool, "epochs": self.fine_tuning_epochs}}

    def describe(self) -> str:
        return (f"{self.image_size} px, augmentation_pool={self.augmentation_pool}, stage 2: "
                f"{self.augmentation_epochs} epochs, stage 3: {self.fine_tuning_epochs} epochs"
                + (", test-time augmentation" if self.test_time_augmentation else ""))

    def key(self) -> str:
        """The rung as `tools/holdout_table.py --rung` takes it: `POOL,EPOCHS2,EPOCHS3,SIZE[,tta]`."""
        return f"{self.augmentation_pool},{self.augmentation_epochs},{self.fine_tuning_epochs},{self.image_size}" + (
            ",tta" if self.test_time_augmentation else "")

    @classmethod
    def parse(cls, text: str) -> Rung:
        """A rung from its `key()` (the size and `tta` may be left out: 150 pixels, no test-time augmentation)."""
        parts = [part.strip() for part in text.split(",")]
        tta = parts[-1].lower() == "tta"
        try:
            numbers = [int(part) for part in parts[:-1 if tta else None]]
            if not 3 <= len(numbers) <= 4:
                raise ValueError(text)
        except ValueError:
            raise SuiteError(f"Rung {text!r}: give the pool size, the epochs of stages 2 and 3, and optionally the "
                             "image size and tta, e.g. 1,20,2 or 2,30,8,180,tta.") from None
        return cls(*numbers, test_time_augmentation=tta)


# Pools and epochs, least costly first. Stage-2 epochs on a pool cost seconds, so they stay high; the pool and the
# stage-3 epochs (block 5 trained) are where the time goes. At equal cost, more stage-3 epochs did better than more
# pool variants (stage 3 from one stage-2 model, three seeds: 1 variant and 6 epochs 97.4-97.8% validation, 2 and 4
# 97.0-97.2%), so the ladder adds epochs first. At one image size a larger rung did better (stage 3 on the held-out
# photos, three seeds in bfloat16: 96.9% at 1,30,6 against 97.8% at 8,50,25; docs/speed.md and the README).
_POOLS_AND_EPOCHS = ((1, 20, 2), (1, 30, 4), (1, 30, 6), (2, 30, 8), (2, 30, 10), (3, 30, 12), (4, 40, 15),
                     (6, 40, 20), (8, 50, 25), (10, 50, 30), (12, 50, 40), (16, 50, 50))
# What 180 pixels (with test-time augmentation, which at 180 pixels did no harm and at 150 nothing) is worth, in
# steps of the ladder above: at 1,30,6 it moved stage 3 by +0.7 points (docs/records/ladder-held-out.json), as much
# as about four steps at 150 pixels did, so a rung at 180 pixels ranks above the 150-pixel rungs up to 3 steps larger.
SIZE_STEPS = 3.5
LADDER = tuple(sorted((Rung(*rung, image_size=size, test_time_augmentation=size == 180)
                       for rung in _POOLS_AND_EPOCHS for size in (150, 180)),
                      key=lambda rung: _POOLS_AND_EPOCHS.index(
                          (rung.augmentation_pool, rung.augmentation_epochs, rung.fine_tuning_epochs))
                      + (SIZE_STEPS if rung.image_size == 180 else 0)))  # Least accurate first.


def ladder(overrides: dict[str, Any]) -> tuple[Rung, ...]:
    """`LADDER`, least accurate first, with the image size or test-time augmentation a command sets itself
    (`SET=image_size=224`) in place of the rungs' own (a rung that then repeats one above it is left out)."""
    fixed = {name: overrides[name] for name in ("image_size", "test_time_augmentation") if name in overrides}
    rungs = [dataclasses.replace(rung, **fixed) for rung in LADDER]
    return tuple(rung for index, rung in enumerate(rungs) if rung not in rungs[index + 1:])


def budget_minutes(given: float | None) -> float:
    """The budget: `--budget-minutes` (BUDGET_MINUTES on the make line), else the environment, else 30."""
    if given is not None:
        value = given
    else:
        try:
            value = float(os.environ.get("BUDGET_MINUTES") or DEFAULT_BUDGET_MINUTES)
        except ValueError:
            raise SuiteError(f"BUDGET_MINUTES={os.environ['BUDGET_MINUTES']!r} is not a number of minutes: "
                             "give one, e.g. BUDGET_MINUTES=45.") from None
    if value <= 0:
        raise SuiteError(f"BUDGET_MINUTES={value:g}: give the minutes the run may take, more than 0.")
    return value


def with_rung(base: dict[str, Any], rung: Rung, budget: float) -> dict[str, Any]:
    """The `cpu` profile with a rung's values, named `auto`."""
    profile = {**base, "name": AUTO_RUN,
               "description": f"The cpu profile sized to this CPU for a {budget:g}-minute budget: {rung.describe()}."}
    for section, values in rung.sections().items():
        profile[section] = {**(base.get(section) or {}), **values}
    return profile


def choose(base: dict[str, Any], budget: float, stems: list[str], overrides: dict[str, Any],
           fingerprints: dict[Any, Any], run_has: set[str]) -> tuple[Rung, dict[str, float], forecast.Speed, str]:
    """The most accurate rung whose forecast fits in `SAFETY` x budget (else the least costly), its forecast per
    stage, the speed measured at its image size (the conv base and the training steps), and the precision. Each
    image size the walk reaches is measured once."""
    gpus: list[str] = []
    rates: dict[tuple[int, str], forecast.Speed] = {}
    fallback = None
    for rung in reversed(ladder(overrides)):
        candidate = {stem: params.resolve_for_stage(stem, with_rung(base, rung, budget), overrides) for stem in stems}
        settings = {(values.get("image_size", 150), devices.compute_policy(values.get("mixed_precision", False), gpus))
                    for values in candidate.values()}
        if len(settings) != 1:
            raise SuiteError("PROFILE=auto sizes one image size and precision for every stage; set image_size "
                             "and mixed_precision under common: (or use PROFILE=cpu).")
        setting = settings.pop()
        if setting not in rates:
            for values in candidate.values():
                provenance.inputs_of(values, fingerprints)
            rates.update(forecast.measure_all(stems, candidate, gpus))
        seconds = forecast.plan_seconds(stems, candidate, fingerprints, gpus, rates, run_has)
        if sum(seconds.values()) <= SAFETY * budget * 60:
            return rung, seconds, rates[setting], setting[1]
        if fallback is None or sum(seconds.values()) < sum(fallback[1].values()):
            fallback = (rung, seconds, rates[setting], setting[1])
    assert fallback is not None, "the ladder is never empty"
    return fallback


def auto_profile(run: str, budget: float | None, overrides: dict[str, Any],
                 fingerprints: dict[Any, Any]) -> tuple[dict[str, Any], Choice, dict[str, Any] | None]:
    """The profile PROFILE=auto runs, the `Choice` saying why, and the schedule it sized (None on a GPU)."""
    gpus = devices.gpu_descriptions()
    if gpus:
        return (params.load_profile("full"),
                Choice(f"PROFILE=auto chose 'full': TensorFlow sees {len(gpus)} GPU(s) ({', '.join(gpus)})."), None)
    budget = budget_minutes(budget)
    base = params.load_profile("cpu")
    base_sha256 = storage.file_sha256(base["path"])
    recorded = records.read_manifest(run or AUTO_RUN).get("schedule") or {}
    if recorded.get("budget_minutes") == budget and recorded.get("base_profile_sha256") == base_sha256:
        rung = Rung(**recorded["rung"])
        return (with_rung(base, rung, budget), Choice(f"PROFILE=auto keeps the schedule this run chose before for a "
                f"{budget:g}-minute budget: {rung.describe()}.", kept=True), recorded)
    # The budget is the whole study's: a command for one stage still sizes the schedule for all three (the
    # rung chosen now is kept by the commands for the later stages).
    every_stem = list(stages.STEMS)
    run_has = freshness.completed(paths.check_run_name(run or AUTO_RUN), every_stem)
    rung, seconds, speed, policy = choose(base, budget, every_stem, overrides, fingerprints, run_has)
    total = sum(seconds.values()) / 60
    fits = total <= SAFETY * budget
    choice = (f"PROFILE=auto on a CPU ({devices.describe_cpu()}; {speed.describe()} in {policy}): "
              f"{rung.describe()}; forecast {total:.1f} min, {total / budget:.0%} of the {budget:g}-minute budget"
              + ("." if fits else f". Even the smallest schedule does not fit in {SAFETY:.0%} of the budget: "
                 "expect it to take longer, or give a larger BUDGET_MINUTES."))
    schedule = {"budget_minutes": budget, "rung": dataclasses.asdict(rung),
                "rate_images_per_second": round(speed.forward, 2),
                "training_step_seconds": {layer: round(value, 5) for layer, value in speed.step_seconds.items()},
                "precision": policy, "forecast_seconds": {stem: round(value, 1) for stem, value in seconds.items()},
                "forecast_minutes_total": round(total, 1), "safety": SAFETY, "base_profile_sha256": base_sha256,
                "cpu": devices.describe_cpu()}
    return with_rung(base, rung, budget), Choice(choice), schedule
