"""Statistical asserts: an observed rate within a binomial tolerance.

Example (inside a pytest test):

```python
import numpy as np
from tfrobust.testing import assert_rate_within

rng = np.random.default_rng(0)
hits = int((rng.uniform(size=10_000) < 0.3).sum())
assert_rate_within(hits, 10_000, 0.3)            # passes but once in 1e6 seeds
```

A test of a random procedure (noise layers, smoothing's Monte Carlo counts,
a certification's false-certification rate) must neither pass by luck nor
fail by chance. Its tolerance is therefore derived from the sample size:
`assert_rate_within` runs the exact two-sided binomial test
(`scipy.stats.binomtest`) of "successes ~ Binomial(trials, p)" and fails
only when the p-value is at most `alpha` (1e-6 by default: a correct
implementation fails about once in a million fixed seeds).
`binomial_tolerance` says how far the observed rate may stray from `p` at a
given sample size, to size a test before writing it.
"""

from scipy import stats as scipy_stats

from tfrobust import _validate

__all__ = ["acceptance_interval", "assert_rate_within", "binomial_tolerance"]


def _check(trials, p, alpha):
    trials = _validate.check_int(trials, name="trials", minimum=1)
    p = _validate.check_float(p, name="p", minimum=0.0, maximum=1.0)
    alpha = _validate.check_float(alpha, name="alpha", minimum=0.0, maximum=1.0,
                                  exclusive_minimum=True, exclusive_maximum=True)
    return trials, p, alpha


def _p_value(successes, trials, p):
    return scipy_stats.binomtest(successes, trials, p, alternative="two-sided").pvalue


def _accepted(k, trials, p, alpha):
    return _p_value(k, trials, p) > alpha


def acceptance_interval(trials, p, alpha=1e-6):
    """The counts `[lo, hi]` that `assert_rate_within(k, trials, p, alpha=alpha)` accepts.

    The two-sided test's p-value sums the probabilities of the outcomes no
    more likely than `k`; the binomial's probabilities rise to its mode and
    fall after it, so the accepted counts form one interval around the mode,
    found here by bisection on each side.

    Args:
        trials: number of trials (>= 1).
        p: success probability in [0, 1].
        alpha: significance level in (0, 1).

    Returns:
        `(lo, hi)`, integers with `0 <= lo <= hi <= trials`.
    """
    trials, p, alpha = _check(trials, p, alpha)
    mode = min(trials, int((trials + 1) * p))
    if not _accepted(mode, trials, p, alpha):  # floor((n+1)p) can miss the mode by one
        mode = max(0, mode - 1)

    # p-values rise with the probability of k: non-decreasing up to the mode,
    # non-increasing after it.
    lo, hi = 0, mode
    while lo < hi:  # smallest accepted count <= mode
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _accepted(mid, trials, p, alpha) else (mid + 1, hi)
    first = lo
    lo, hi = mode, trials
    while lo < hi:  # largest accepted count >= mode
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _accepted(mid, trials, p, alpha) else (lo, mid - 1)
    return first, lo


def binomial_tolerance(trials, p, alpha=1e-6):
    """The largest `|rate - p|` that `assert_rate_within` accepts.

    Args:
        trials: number of trials (>= 1).
        p: success probability in [0, 1].
        alpha: significance level in (0, 1).

    Returns:
        A float: observed rates `k / trials` within `p ± tolerance` of the
        accepted interval pass (the interval is not symmetric for p far from
        1/2; this is its wider side).

    Raises:
        ValueError: on a bad argument.
    """
    lo, hi = acceptance_interval(trials, p, alpha)
    return max(p - lo / trials, hi / trials - p)


def assert_rate_within(successes, trials, p, *, alpha=1e-6):
    """Asserts that `successes` out of `trials` is consistent with rate `p`.

    The exact two-sided binomial test (`scipy.stats.binomtest`) of
    `successes ~ Binomial(trials, p)`; it fails when the p-value is at most
    `alpha`, so a correct procedure fails with probability at most `alpha`.

    Args:
        successes: observed number of successes, an integer in `[0, trials]`.
        trials: number of independent trials (>= 1).
        p: expected success probability in [0, 1].
        alpha: significance level in (0, 1).

    Raises:
        AssertionError: with the observed and expected rates, the accepted
            interval and the p-value, when the test rejects.
        ValueError: on a bad argument.
    """
    trials, p, alpha = _check(trials, p, alpha)
    successes = _validate.check_int(successes, name="successes", minimum=0, maximum=trials)
    p_value = _p_value(successes, trials, p)
    if p_value > alpha:
        return
    lo, hi = acceptance_interval(trials, p, alpha)
    raise AssertionError(
        f"Expected the observed rate {successes / trials:.6g} ({successes}/{trials}) to be "
        f"within the binomial tolerance of the expected rate p={p:.6g}: at alpha={alpha:g} "
        f"the accepted counts are [{lo}, {hi}] (rates {lo / trials:.6g} to {hi / trials:.6g}, "
        f"tolerance {binomial_tolerance(trials, p, alpha):.3g}); two-sided binomial test "
        f"p-value {p_value:.3g} <= alpha."
    )
