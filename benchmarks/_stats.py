"""The statistics of the benchmark summaries, in one place: mean and sample standard deviation over seeds, the
standard error, and paired tests of a method against a control over the seeds both ran.

Standard library only (scipy is imported by `paired_test` alone), so the summaries run wherever the results are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = ["MeanStd", "mean_se", "mean_std", "paired_test"]


class MeanStd(NamedTuple):
    """Mean, sample standard deviation (ddof = 1) and count of the finite values of a sample."""

    mean: float
    std: float
    n: int


def _finite(values: Iterable[float | None]) -> list[float]:
    # None (a metric a run did not report) and NaN / inf (undefined for that run) are left out and not counted.
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_std(values: Iterable[float | None]) -> MeanStd:
    """Mean and sample standard deviation (ddof = 1) of the finite values.

    Args:
        values (`Iterable[float | None]`): one number per run; None, NaN and inf are left out.

    Returns:
        `MeanStd`: `(mean, std, n)`; `std` is 0.0 for a single value and both are NaN when no value is finite.
    """
    finite = _finite(values)
    if not finite:
        return MeanStd(math.nan, math.nan, 0)
    mean = math.fsum(finite) / len(finite)
    if len(finite) == 1:
        return MeanStd(mean, 0.0, 1)
    return MeanStd(mean, math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)), len(finite))


def mean_se(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)) of the finite values; the error is NaN below two values."""
    mean, std, n = mean_std(values)
    return mean, std / math.sqrt(n) if n > 1 else math.nan


def paired_test(control: Mapping[int, float], method: Mapping[int, float]) -> dict[str, float | int]:
    """A method against the control over the seeds both have (finite values only): Wilcoxon signed-rank (two-sided,
    zero differences split) and a sign test on the per-seed differences `method - control`.

    Returns:
        `dict` with `n` (paired seeds), `higher` / `lower` / `ties` (seeds where the method is above, below, equal),
        `wilcoxon_p` and `sign_p` (1.0 when every difference is 0 or one seed is paired; NaN without a pair).
    """
    from scipy.stats import binomtest, wilcoxon

    seeds = sorted(s for s in control if s in method and len(_finite((control[s], method[s]))) == 2)
    diffs = [method[s] - control[s] for s in seeds]
    higher, lower = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    out: dict[str, float | int] = {
        "n": len(seeds),
        "higher": higher,
        "lower": lower,
        "ties": len(seeds) - higher - lower,
    }
    if len(seeds) < 2 or higher + lower == 0:
        out.update(wilcoxon_p=1.0 if seeds else math.nan, sign_p=1.0 if seeds else math.nan)
        return out
    out["wilcoxon_p"] = float(wilcoxon(diffs, zero_method="zsplit", alternative="two-sided").pvalue)
    out["sign_p"] = float(binomtest(higher, higher + lower, 0.5).pvalue)
    return out
