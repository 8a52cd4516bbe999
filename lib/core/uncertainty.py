"""How sure a reported accuracy is: a 95% interval for an accuracy, and two models compared photo by photo.

An accuracy on 1000 photos moves by 0.1 point per photo, and its 95% interval is about a point wide either side,
so the difference between two stages means little without its own interval. Two stages scored on the same photos
are paired: what matters is the photos one got right and the other wrong (the discordant pairs), so they are
compared with an interval for the difference of paired proportions and an exact McNemar test, not as two
independent accuracies.

The methods, chosen for their coverage at the accuracies and counts this suite sees (near 100%, hundreds to
thousands of photos): the Wilson score interval for one accuracy (Wilson 1927; as `scipy.stats.binomtest(...)
.proportion_ci(method="wilson")`, against which the tests check it), Newcombe's square-and-add interval for the
difference of paired proportions (Newcombe 1998, "Improved confidence intervals for the difference between
binomial proportions based on paired data", method 10: the two Wilson intervals combined with the pairs'
correlation), and the exact (binomial) McNemar test on the discordant pairs. Plain Python: no SciPy at run time,
so the pages that show these numbers load quickly.
"""
from __future__ import annotations

import dataclasses
import math

Z_95 = 1.959963984540054  # The standard normal's 97.5% quantile: a two-sided 95% interval.


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """An accuracy with its counts and its 95% Wilson interval (fractions, 0 to 1)."""

    correct: int
    total: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def text(self) -> str:
        """`97.50% (96.72-98.10, 1950/2000)`: the accuracy, its 95% interval and its counts."""
        return f"{100 * self.value:.2f}% ({100 * self.low:.2f}-{100 * self.high:.2f}, {self.correct}/{self.total})"

    def record(self) -> dict[str, float | int]:
        """The fields a JSON record keeps: `accuracy`, `correct`, `total`, `interval_95` ([low, high])."""
        return {"accuracy": self.value, "correct": self.correct, "total": self.total,
                "interval_95": [self.low, self.high]}


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A model against the one before it on the same photos: the photos it fixed (the earlier model wrong, this
    one right) and broke (the reverse), the difference in accuracy with its 95% interval, and the exact McNemar
    p-value."""

    fixed: int
    broke: int
    total: int
    difference: float
    low: float
    high: float
    p_value: float

    @property
    def distinguishable(self) -> bool:
        """Whether the change is told apart from no change by both measures: the 95% interval of the difference
        excludes 0 and the exact McNemar test rejects no change at 5%. On few changed photos the two can disagree
        (5 fixed, none broken: an interval above 0, p = 0.0625); then the sentence says not distinguishable."""
        return (self.low > 0 or self.high < 0) and self.p_value < 0.05

    @property
    def verdict(self) -> str:
        """`better`, `worse` or `not distinguishable from no change`."""
        return ("not distinguishable from no change" if not self.distinguishable else
                "better" if self.difference > 0 else "worse")

    def sentence(self, what: str, pairs: str = "photos") -> str:
        """`fine tuning: +0.45 points (95% interval -0.10 to +1.00; fixed 14 photos, broke 5; exact McNemar
        p = 0.064): not distinguishable from no change on these 2000 photos.` (`pairs` names what was paired:
        `photo-seed pairs` for several seeds pooled)."""
        return (f"{what}: {100 * self.difference:+.2f} points (95% interval {100 * self.low:+.2f} to "
                f"{100 * self.high:+.2f}; fixed {self.fixed} {pairs}, broke {self.broke}; exact McNemar "
                f"p = {self.p_value:.3g}): {self.verdict} on these {self.total} {pairs}.")

    def record(self) -> dict[str, float | int | bool]:
        """The fields a JSON record keeps."""
        return {"fixed": self.fixed, "broke": self.broke, "total": self.total, "difference": self.difference,
                "interval_95": [self.low, self.high], "mcnemar_exact_p": self.p_value,
                "distinguishable": self.distinguishable}


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of `correct` out of `total` (fractions); (0, 1) when `total` is 0."""
    if total <= 0:
        return 0.0, 1.0
    proportion = correct / total
    centre = proportion + z * z / (2 * total)
    spread = z * math.sqrt(proportion * (1 - proportion) / total + z * z / (4 * total * total))
    scale = 1 + z * z / total
    low, high = (centre - spread) / scale, (centre + spread) / scale
    # Exact ends where the count is: rounding would otherwise leave 0 or 1 just outside its own interval.
    return (0.0 if correct == 0 else max(0.0, low)), (1.0 if correct == total else min(1.0, high))


def accuracy(correct: int, total: int) -> Accuracy:
    """An `Accuracy` of `correct` out of `total`, with its 95% Wilson interval."""
    if not 0 <= correct <= total:
        raise ValueError(f"{correct} correct out of {total} is not a count of photos.")
    return Accuracy(correct, total, *wilson_interval(correct, total))


def accuracy_of(right: list[bool] | tuple[bool, ...]) -> Accuracy:
    """An `Accuracy` from one right-or-wrong flag per photo."""
    return accuracy(sum(bool(flag) for flag in right), len(right))


def mcnemar_exact_p(fixed: int, broke: int) -> float:
    """The exact two-sided McNemar p-value: the binomial test of `fixed` against `broke` at one half."""
    discordant = fixed + broke
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, count) for count in range(min(fixed, broke) + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def compare(before: list[bool] | tuple[bool, ...], after: list[bool] | tuple[bool, ...]) -> PairedComparison:
    """`after` against `before`, photo by photo (one right-or-wrong flag per photo, the same photos in the same
    order): Newcombe's paired interval (method 10) for the difference of accuracies and the exact McNemar test."""
    if len(before) != len(after):
        raise ValueError(f"Paired comparison of {len(before)} photos with {len(after)}: not the same photos.")
    both = sum(1 for old, new in zip(before, after) if old and new)
    broke = sum(1 for old, new in zip(before, after) if old and not new)
    fixed = sum(1 for old, new in zip(before, after) if new and not old)
    neither = len(before) - both - broke - fixed
    return _newcombe_paired(both, fixed, broke, neither)


def _newcombe_paired(both: int, fixed: int, broke: int, neither: int) -> PairedComparison:
    total = both + fixed + broke + neither
    if total == 0:
        return PairedComparison(0, 0, 0, 0.0, -1.0, 1.0, 1.0)
    after, before = (both + fixed) / total, (both + broke) / total
    after_low, after_high = wilson_interval(both + fixed, total)
    before_low, before_high = wilson_interval(both + broke, total)
    margins = (both + fixed) * (broke + neither) * (both + broke) * (fixed + neither)
    # The correlation of the pairs (phi); 0 where a margin is empty, as Newcombe sets it.
    phi = (both * neither - fixed * broke) / math.sqrt(margins) if margins else 0.0
    below = math.sqrt(max(0.0, (after - after_low) ** 2 - 2 * phi * (after - after_low) * (before_high - before)
                          + (before_high - before) ** 2))
    above = math.sqrt(max(0.0, (after_high - after) ** 2 - 2 * phi * (after_high - after) * (before - before_low)
                          + (before - before_low) ** 2))
    difference = after - before
    return PairedComparison(fixed, broke, total, difference, max(-1.0, difference - below),
                            min(1.0, difference + above), mcnemar_exact_p(fixed, broke))
