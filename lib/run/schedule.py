"""`PROFILE=auto`: the full reference schedule on a GPU; on a CPU, the `cpu` profile sized to a time budget.

On a CPU, auto measures the conv base (as the forecast does), then walks a ladder of schedules from the
largest down and takes the first whose forecast fits in `SAFETY` of the budget (`BUDGET_MINUTES`, default
30). The rungs hold round numbers, so a slightly different measurement rarely changes the choice, and a
run that already chose keeps its choice: the same command again skips every complete stage.
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
    """One schedule of the ladder: pool size, and the epochs of stages 2 and 3 (stage 1 is always the
    reference 30: it trains on cached features in seconds)."""

    augmentation_pool: int
    augmentation_epochs: int
    fine_tuning_epochs: int

    def sections(self) -> dict[str, dict[str, Any]]:
        return {"data_augmentation": {"augmentation_pool": self.augmentation_pool,
                                      "epochs": self.augmentation_epochs},
                "fine_tuning": {"augmentation_pool": self.augmentation_pool, "epochs": self.fine_tuning_epochs}}

    def describe(self) -> str:
        return (f"augmentation_pool={self.augmentation_pool}, stage 2: {self.augmentation_epochs} epochs, "
                f"stage 3: {self.fine_tuning_epochs} epochs")


# Cheapest first. Stage-2 epochs on a pool cost seconds, so they stay high; the pool and the stage-3 epochs
# (block 5 trained) are where the time goes. At equal cost, more stage-3 epochs did better than more pool
# variants (stage 3 from one stage-2 model, three seeds: 1 variant and 6 epochs 97.4-97.8% validation, 2 and 4
# 97.0-97.2%), so the ladder adds epochs first.
LADDER = (
    Rung(1, 20, 2), Rung(1, 30, 4), Rung(1, 30, 6), Rung(2, 30, 8), Rung(2, 30, 10), Rung(3, 30, 12),
    Rung(4, 40, 15), Rung(6, 40, 20), Rung(8, 50, 25), Rung(10, 50, 30), Rung(12, 50, 40), Rung(16, 50, 50),
)


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
    """The largest rung whose forecast fits in `SAFETY` x budget (else the smallest), its forecast per stage,
    the speed measured (the conv base and the training steps), and the precision."""
    gpus: list[str] = []
    resolved = {stem: params.resolve_for_stage(stem, base, overrides) for stem in stems}
    size, policy = resolved[stems[0]].get("image_size", 150), devices.compute_policy(
        resolved[stems[0]].get("mixed_precision", False), gpus)
    for values in resolved.values():
        provenance.inputs_of(values, fingerprints)
    rates = forecast.measure_all(stems, resolved, gpus)
    for rung in reversed(LADDER):
        profile = with_rung(base, rung, budget)
        candidate = {stem: params.resolve_for_stage(stem, profile, overrides) for stem in stems}
        if {(values.get("image_size", 150), devices.compute_policy(values.get("mixed_precision", False), gpus))
                for values in candidate.values()} != set(rates):
            raise SuiteError("PROFILE=auto sizes one image size and precision for every stage; set image_size "
                             "and mixed_precision under common: (or use PROFILE=cpu).")
        seconds = forecast.plan_seconds(stems, candidate, fingerprints, gpus, rates, run_has)
        if sum(seconds.values()) <= SAFETY * budget * 60 or rung == LADDER[0]:
            return rung, seconds, rates[(size, policy)], policy
    raise AssertionError("unreachable: the smallest rung is always taken")


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
