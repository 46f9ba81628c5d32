"""Intervals for reported numbers: percentile bootstrap, optionally clustered (whole subjects resampled).

Every score the study reports carries its n and a 95% interval; a difference between two settings on
the same samples is reported as the paired difference with its own interval, and claimed only when
that interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile-bootstrap interval over `n` samples (`clusters` groups)."""

    value: float
    low: float
    high: float
    n: int
    clusters: int

    def excludes(self, x: float = 0.0) -> bool:
        """Whether the interval lies wholly on one side of `x`."""
        return self.low > x or self.high < x

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] (n={self.n})"


def bootstrap(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    clusters: Sequence | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """`statistic(values)` with a percentile bootstrap interval.

    With `clusters` (e.g. the subject of each sample) whole clusters are resampled with replacement,
    so that samples of one subject, which are not independent, do not narrow the interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap: need a non-empty 1-D sample, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap: the sample holds NaN or infinite values")
    groups = (
        np.arange(x.size) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1]
    )
    if len(groups) != x.size:
        raise ValueError(f"bootstrap: {x.size} values but {len(groups)} cluster labels")
    members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, len(members), len(members))
        stats[b] = statistic(x[np.concatenate([members[k] for k in picked])])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return Estimate(float(statistic(x)), float(low), float(high), int(x.size), len(members))


def paired_difference(
    a: Sequence[float], b: Sequence[float], clusters: Sequence | None = None, **kwargs
) -> Estimate:
    """mean(a - b) over paired samples with its bootstrap interval (a and b measured on the same items)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.shape} vs {b.shape} samples; pairs must match")
    return bootstrap(a - b, np.mean, clusters, **kwargs)
