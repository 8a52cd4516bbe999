"""The intervals and the paired test against SciPy's own output and against their coverage, edge cases included."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lib.core import uncertainty


@pytest.mark.parametrize("correct,total", [(0, 10), (10, 10), (1, 1), (0, 1), (7, 10), (950, 1000), (1950, 2000),
                                           (1000, 1000), (0, 2000), (483, 500)])
def test_the_wilson_interval_is_scipys(correct, total):
    expected = stats.binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = uncertainty.wilson_interval(correct, total)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)
    assert 0 <= low <= correct / total <= high <= 1


def test_an_accuracy_reads_with_its_interval_and_counts():
    accuracy = uncertainty.accuracy(1950, 2000)
    assert accuracy.text() == "97.50% (96.72-98.10, 1950/2000)"
    assert accuracy.record() == {"accuracy": 0.975, "correct": 1950, "total": 2000,
                                 "interval_95": [accuracy.low, accuracy.high]}
    assert uncertainty.accuracy(0, 0).text().startswith("nan%") and uncertainty.accuracy(0, 0).high == 1.0
    assert uncertainty.accuracy_of([True, False, True, True]).correct == 3
    with pytest.raises(ValueError, match="not a count"):
        uncertainty.accuracy(11, 10)


@pytest.mark.parametrize("fixed,broke", [(0, 0), (0, 5), (5, 0), (14, 5), (9, 9), (30, 12), (1, 0), (200, 150)])
def test_the_exact_mcnemar_p_value_is_scipys_binomial_test(fixed, broke):
    expected = 1.0 if fixed + broke == 0 else stats.binomtest(fixed, fixed + broke, 0.5).pvalue
    assert uncertainty.mcnemar_exact_p(fixed, broke) == pytest.approx(expected, rel=1e-12)


def test_a_paired_comparison_counts_fixed_and_broken_photos():
    before = [True] * 90 + [False] * 10
    after = [True] * 85 + [False] * 5 + [True] * 8 + [False] * 2
    comparison = uncertainty.compare(before, after)
    assert (comparison.fixed, comparison.broke, comparison.total) == (8, 5, 100)
    assert comparison.difference == pytest.approx(0.03)
    assert comparison.low < 0.03 < comparison.high and not comparison.distinguishable
    assert comparison.p_value == pytest.approx(stats.binomtest(5, 13).pvalue)
    assert comparison.sentence("fine tuning") == (
        "fine tuning: +3.00 points (95% interval " f"{100 * comparison.low:+.2f} to {100 * comparison.high:+.2f}; "
        f"fixed 8 photos, broke 5; exact McNemar p = {comparison.p_value:.3g}): not distinguishable from no change "
        "on these 100 photos.")
    with pytest.raises(ValueError, match="not the same photos"):
        uncertainty.compare([True], [True, False])


def test_edge_cases_of_the_paired_comparison():
    same = uncertainty.compare([True] * 50, [True] * 50)  # All correct twice: no change, an interval around it.
    assert same.difference == 0 and same.low < 0 < same.high and same.p_value == 1.0
    none = uncertainty.compare([False] * 50, [False] * 50)
    assert none.difference == 0 and none.low < 0 < none.high
    better = uncertainty.compare([False] * 50, [True] * 50)  # Every photo fixed.
    assert better.difference == 1.0 and better.distinguishable and better.low > 0.8 and better.high == 1.0
    assert "better on these 50 photos" in better.sentence("x")
    worse = uncertainty.compare([True] * 40 + [False] * 10, [False] * 40 + [False] * 10)
    assert worse.distinguishable and worse.high < 0 and "worse" in worse.sentence("x")
    empty = uncertainty.compare([], [])
    assert empty.total == 0 and not empty.distinguishable


def test_the_paired_interval_covers_the_true_difference_about_95_times_in_100():
    """Paired right-or-wrong flags of two correlated models on 1000 photos (about 96% and 97% accurate, as the
    stages are): the interval holds the true difference in about 95% of 2000 simulated test sets."""
    generator = np.random.default_rng(7)
    # Joint probabilities: both right, only after right, only before right, neither.
    probabilities = np.array([0.950, 0.020, 0.010, 0.020])
    true_difference = probabilities[1] - probabilities[2]
    covered = 0
    for _ in range(2000):
        cells = generator.multinomial(1000, probabilities)
        comparison = uncertainty._newcombe_paired(*map(int, cells))
        covered += comparison.low <= true_difference <= comparison.high
    assert 0.93 <= covered / 2000 <= 0.975


def test_a_change_is_distinguishable_only_when_the_interval_and_the_exact_test_agree():
    """Five photos fixed and none broken out of twelve: Newcombe's interval lies above 0, but the exact McNemar
    p-value is 2 / 2**5 = 0.0625, so the sentence does not call it better."""
    comparison = uncertainty.compare([False] * 5 + [True] * 7, [True] * 12)
    assert comparison.low > 0 and comparison.p_value == pytest.approx(0.0625)
    assert not comparison.distinguishable and "not distinguishable from no change" in comparison.sentence("x")
    six = uncertainty.compare([False] * 6 + [True] * 6, [True] * 12)  # p = 0.03125: both measures agree.
    assert six.distinguishable and "better on these 12 photos" in six.sentence("x")
