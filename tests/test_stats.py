"""Bootstrap intervals: hand-computable cases, clustering, paired differences, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from magplus_lib.evaluation import stats


def test_constant_sample_has_a_point_interval():
    est = stats.bootstrap([0.7] * 12)
    assert (est.n, est.clusters) == (12, 12)
    assert (
        est.value == pytest.approx(0.7) and est.low == pytest.approx(0.7) and est.high == pytest.approx(0.7)
    )


def test_two_values_match_the_hand_computed_distribution():
    # Resampled means of (0, 1) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    # and the 50% interval [0.5, 0.5] (the 25th and 75th percentiles both fall on 0.5).
    assert (stats.bootstrap([0.0, 1.0], n_boot=4000).low, stats.bootstrap([0.0, 1.0], n_boot=4000).high) == (
        0,
        1,
    )
    half = stats.bootstrap([0.0, 1.0], n_boot=4000, level=0.5)
    assert half.low == half.high == 0.5


def test_interval_of_a_large_normal_sample_matches_the_normal_theory_one():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    est = stats.bootstrap(x, n_boot=4000)
    half_width = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert est.value == pytest.approx(x.mean())
    assert (est.high - est.low) / 2 == pytest.approx(half_width, rel=0.1)


def test_clusters_widen_the_interval_of_correlated_samples():
    values = np.repeat([0.0, 0.2, 0.8, 1.0], 10)  # four subjects, ten identical clips each
    subjects = np.repeat(["a", "b", "c", "d"], 10)
    flat, clustered = stats.bootstrap(values), stats.bootstrap(values, clusters=subjects)
    assert clustered.clusters == 4 and flat.clusters == 40
    assert clustered.high - clustered.low > 2 * (flat.high - flat.low)


def test_paired_difference_and_its_claim():
    a = np.array([3.0, 4.0, 5.0, 6.0])
    diff = stats.paired_difference(a + 1.0, a)
    assert (diff.value, diff.low, diff.high) == (1.0, 1.0, 1.0) and diff.excludes(0.0)
    noisy = stats.paired_difference([1.0, -1.0, 1.0, -1.0], [0.0] * 4)
    assert not noisy.excludes(0.0)
    assert stats.bootstrap(np.arange(10.0), seed=3) == stats.bootstrap(
        np.arange(10.0), seed=3
    )  # deterministic


@pytest.mark.parametrize(
    "values,kwargs,message",
    [([], {}, "non-empty"), ([1.0, np.nan], {}, "NaN"), ([1.0, 2.0], {"clusters": ["a"]}, "cluster labels")],
)
def test_bad_samples_are_refused(values, kwargs, message):
    with pytest.raises(ValueError, match=message):
        stats.bootstrap(values, **kwargs)
    with pytest.raises(ValueError, match="pairs must match"):
        stats.paired_difference([1.0, 2.0], [1.0])
