"""Keeping a run within its time budget (`BUDGET_MINUTES`: PROFILE=auto's on a CPU, or one given with any profile).

Before each stage the runner weighs the time the command has spent so far and the forecast of the stages left
(their training steps measured again just before, `lib.run.forecast.Forecasts`) against the budget. Where they
would end past it, the epochs of the stages left that train on photos (the expensive kind) are cut, all by one
factor, to the most that ends within `MARGIN` of the budget. The cut is said on the console, recorded in the
manifest (`budget`: the minutes, each stage's epochs before and after, and the sentence) and shown on the summary
page; the same command again applies the recorded cuts before it weighs anything, so that the stages they
shaped are complete and skipped.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from lib.core import records, stages

MARGIN = 0.95  # A cut schedule's forecast ends at most at this share of the budget.
FACTORS = tuple(step / 20 for step in range(19, 0, -1))  # The cuts tried, mildest first: 95% of the epochs ... 5%.
now = time.monotonic  # The clock the budget is kept by (a test can move it).


@dataclasses.dataclass(frozen=True)
class Cut:
    """One stage's epochs cut to keep the budget."""

    stem: str
    before: int
    after: int

    def record(self) -> dict[str, Any]:
        return {"stem": self.stem, "epochs_before": self.before, "epochs_after": self.after}

    def describe(self) -> str:
        return f"{stages.get(self.stem).heading} to {self.after} epochs (from {self.before})"


def cuttable(stem: str, values: dict[str, Any]) -> bool:
    """Whether a stage's epochs are worth cutting: it trains on photos, and has more than one epoch."""
    return stages.get(stem).trains_on == "photos" and int(values.get("epochs", 0)) > 1


def scaled(resolved: dict[str, dict], stems_left: list[str], factor: float) -> dict[str, dict]:
    """`resolved` with the epochs of each cuttable stage left scaled by `factor` (at least 1)."""
    return {stem: ({**values, "epochs": max(1, int(values["epochs"] * factor))}
                   if stem in stems_left and cuttable(stem, values) else values)
            for stem, values in resolved.items()}


@dataclasses.dataclass(frozen=True)
class Resize:
    """The stages left resized to keep the budget: their parameters after the cut, the time spent when it was
    weighed, the forecast of the stages left as they were (`full`) and after the cut (`seconds`)."""

    resolved: dict[str, dict]
    spent: float
    full: float
    seconds: float
    budget_seconds: float

    def cuts(self, before: dict[str, dict]) -> list[Cut]:
        return [Cut(stem, int(before[stem]["epochs"]), int(self.resolved[stem]["epochs"])) for stem in before
                if before[stem].get("epochs") != self.resolved[stem].get("epochs")]

    def sentence(self, cuts: list[Cut]) -> str:
        """What was cut and why, in one sentence (the console's and the summary page's)."""
        what = ", ".join(cut.describe() for cut in cuts)
        end = (self.spent + self.seconds) / 60
        ends = (f"now forecast to end at {end:.1f} min" if end * 60 <= self.budget_seconds else
                f"still forecast to end at {end:.1f} min: no cut of epochs fits, give a larger BUDGET_MINUTES")
        return (f"Budget kept: {self.spent / 60:.1f} min spent and the stages left forecast at {self.full / 60:.1f} "
                f"min would end past the {self.budget_seconds / 60:g}-minute budget, so {what}; {ends}.")


def fit(spent: float, budget_seconds: float, stems_left: list[str], resolved: dict[str, dict],
        price: Callable[[dict[str, dict]], float]) -> Resize | None:
    """None when `spent` plus the forecast of the stages left (`price` of the parameters) ends within the budget;
    else the mildest cut whose forecast ends within `MARGIN` of it (the deepest, one epoch each, when none does)."""
    full = price(resolved)
    if spent + full <= budget_seconds or not any(cuttable(stem, resolved[stem]) for stem in stems_left):
        return None
    candidate, seconds = resolved, full
    for factor in (*FACTORS, 0.0):
        candidate = scaled(resolved, stems_left, factor)
        seconds = price(candidate)
        if spent + seconds <= MARGIN * budget_seconds:
            break
    return Resize(candidate, spent, full, seconds, budget_seconds)


def recorded(run: str, budget_minutes: float | None) -> tuple[list[Cut], list[str]]:
    """The cuts and sentences the run's manifest records for this budget (none for another budget, or none)."""
    kept = records.read_manifest(run).get("budget") or {}
    if budget_minutes is None or kept.get("minutes") != budget_minutes:
        return [], []
    return [Cut(row["stem"], row["epochs_before"], row["epochs_after"]) for row in kept.get("cuts", [])], \
        list(kept.get("notes", []))


def reapply(resolved: dict[str, dict], cuts: list[Cut]) -> list[Cut]:
    """Apply recorded cuts to `resolved` in place where the stage still asks for the epochs cut from (the same
    command again); the cuts applied."""
    applied = [cut for cut in cuts if cut.stem in resolved and resolved[cut.stem].get("epochs") == cut.before]
    for cut in applied:
        resolved[cut.stem] = {**resolved[cut.stem], "epochs": cut.after}
    return applied


def record(minutes: float, cuts: list[Cut], notes: list[str]) -> dict[str, Any]:
    """The manifest's `budget`: the minutes, one cut per stage (from the epochs first asked for to the last cut's),
    and the sentences."""
    rows: dict[str, Cut] = {}
    for cut in cuts:
        rows[cut.stem] = Cut(cut.stem, rows[cut.stem].before if cut.stem in rows else cut.before, cut.after)
    return {"minutes": minutes, "cuts": [cut.record() for cut in rows.values()], "notes": notes}
