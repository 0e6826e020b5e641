"""Tests of tfrobust.testing.stats (binomial tolerances and the rate assert)."""

import numpy as np
import pytest
from scipy import stats

from tfrobust.testing import acceptance_interval
from tfrobust.testing import assert_rate_within
from tfrobust.testing import binomial_tolerance


@pytest.mark.parametrize("trials, p", [(1, 0.5), (20, 0.0), (20, 1.0), (50, 0.3), (400, 0.02), (97, 0.9)])
def test_acceptance_interval_matches_binomtest_everywhere(trials, p):
    alpha = 1e-3
    accepted = [k for k in range(trials + 1) if stats.binomtest(k, trials, p).pvalue > alpha]
    assert acceptance_interval(trials, p, alpha) == (accepted[0], accepted[-1])
    # The accepted counts are one contiguous interval.
    assert accepted == list(range(accepted[0], accepted[-1] + 1))


def test_tolerance_shrinks_as_one_over_sqrt_n():
    p, alpha = 0.3, 1e-6
    tols = [binomial_tolerance(n, p, alpha) for n in (100, 10_000, 1_000_000)]
    assert tols[0] > tols[1] > tols[2] > 0
    # Normal approximation: z_{alpha/2} * sqrt(p (1 - p) / n), within 10%.
    z = stats.norm.isf(alpha / 2)
    for n, tol in zip((10_000, 1_000_000), tols[1:]):
        np.testing.assert_allclose(tol, z * np.sqrt(p * (1 - p) / n), rtol=0.1)


def test_passes_at_the_true_rate_over_many_seeds():
    # 200 fixed seeds at the true rate: at alpha = 1e-6 none may fail (the
    # chance that one does is below 2e-4).
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = 2_000
        hits = int((rng.uniform(size=n) < 0.25).sum())
        assert_rate_within(hits, n, 0.25)


def test_fails_on_a_clearly_wrong_rate():
    rng = np.random.default_rng(0)
    n = 2_000
    hits = int((rng.uniform(size=n) < 0.25).sum())
    with pytest.raises(AssertionError) as info:
        assert_rate_within(hits, n, 0.35)
    message = str(info.value)
    # Observed vs expected, the tolerance and the test's p-value.
    assert f"({hits}/{n})" in message and "p=0.35" in message
    assert "tolerance" in message and "p-value" in message and "alpha=1e-06" in message


def test_edges_of_the_interval():
    lo, hi = acceptance_interval(1_000, 0.5, 1e-6)
    assert_rate_within(lo, 1_000, 0.5)
    assert_rate_within(hi, 1_000, 0.5)
    for k in (lo - 1, hi + 1):
        with pytest.raises(AssertionError):
            assert_rate_within(k, 1_000, 0.5)
    # p = 0: only zero successes are consistent.
    assert_rate_within(0, 10, 0.0)
    with pytest.raises(AssertionError):
        assert_rate_within(1, 10, 0.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: assert_rate_within(11, 10, 0.5), "successes"),
        (lambda: assert_rate_within(-1, 10, 0.5), "successes"),
        (lambda: assert_rate_within(2.5, 10, 0.5), "successes"),
        (lambda: assert_rate_within(1, 0, 0.5), "trials"),
        (lambda: assert_rate_within(1, 10, 1.5), "`p`"),
        (lambda: assert_rate_within(1, 10, 0.5, alpha=0.0), "alpha"),
        (lambda: binomial_tolerance(10, 0.5, alpha=1.0), "alpha"),
        (lambda: binomial_tolerance(True, 0.5), "trials"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
