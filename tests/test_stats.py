"""benchmarks/_stats.py: the one statistics helper of the benchmark summaries (mean ± std, standard error, paired
tests), on hand-computed cases."""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from _stats import MeanStd, mean_se, mean_std, paired_test  # noqa: E402


def test_mean_and_sample_std_of_the_finite_values():
    assert mean_std([1.0, 2.0, 3.0, 6.0]) == MeanStd(3.0, pytest.approx(math.sqrt(14 / 3)), 4)
    # None (not reported) and NaN / inf (undefined for that run) are left out and not counted.
    assert mean_std([2.0, None, float("nan"), 4.0, float("inf")]) == MeanStd(3.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_std([5.0]) == (5.0, 0.0, 1)
    mean, std, n = mean_std([None, float("nan")])
    assert math.isnan(mean) and math.isnan(std) and n == 0


def test_standard_error():
    mean, se = mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(14 / 3) / 2)
    mean, se = mean_se([7.0])
    assert mean == 7.0 and math.isnan(se)


def test_paired_tests_over_the_seeds_both_have():
    # Five seeds, the method higher on all five: two-sided Wilcoxon p = 2 / 2^5, sign test p = 2 / 2^5.
    test = paired_test({s: 10.0 for s in range(5)}, {s: 11.0 + s for s in range(5)})
    assert (test["n"], test["higher"], test["lower"], test["ties"]) == (5, 5, 0, 0)
    assert test["wilcoxon_p"] == pytest.approx(0.0625) and test["sign_p"] == pytest.approx(0.0625)
    assert paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["wilcoxon_p"] == 1.0  # no differences
    # Seed 2 only in the control, seed 1 undefined for the method: one pair is left.
    alone = paired_test({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: float("nan")})
    assert (alone["n"], alone["lower"], alone["sign_p"]) == (1, 1, 1.0)
    assert math.isnan(paired_test({0: 1.0}, {1: 1.0})["wilcoxon_p"])
