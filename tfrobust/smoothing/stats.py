"""The statistics of randomized-smoothing certification, from SciPy.

Example:

```python
from tfrobust.smoothing import stats

p_lower = stats.lower_confidence_bound(990, 1000, alpha=0.001)   # ~0.976
radius = stats.certified_radius(p_lower, sigma=0.25)             # ~0.49
stats.binomial_test_p_value(60, 100)                             # ~0.057
```

Three functions, each vectorised over NumPy arrays and computed in float64:

- `lower_confidence_bound(k, n, alpha)`: the one-sided Clopper-Pearson
  lower bound of a binomial proportion, `Beta(alpha; k, n - k + 1)`
  quantile (0 when k = 0): for `k ~ Binomial(n, p)`,
  `P(lower_confidence_bound(k, n, alpha) <= p) >= 1 - alpha` for every p.
  It equals the lower end of the two-sided interval at level `2 * alpha`
  that Cohen et al.'s code computes with statsmodels.
- `binomial_test_p_value(k, n)`: the exact two-sided test of
  `k ~ Binomial(n, 1/2)` (`scipy.stats.binomtest`), PREDICT's abstention test.
- `certified_radius(p_lower, sigma)`: `sigma * Phi^-1(p_lower)` (Theorem 1
  of Cohen et al. with the runner-up bounded by `1 - p_lower`).

References:
    Clopper & Pearson, "The Use of Confidence or Fiducial Limits
    Illustrated in the Case of the Binomial", Biometrika 1934. Cohen,
    Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized
    Smoothing", ICML 2019.
"""

import numpy as np
from scipy import stats as scipy_stats

from tfrobust import _validate

__all__ = ["binomial_test_p_value", "certified_radius", "lower_confidence_bound"]


def _counts(k, n):
    k = np.asarray(k)
    n = np.asarray(n)
    for name, a in (("k", k), ("n", n)):
        if not (np.issubdtype(a.dtype, np.integer) or (np.issubdtype(a.dtype, np.floating)
                                                         and np.all(a == np.round(a)))):
            raise _validate.error(name, "integer counts", a, received=f"{name}.dtype={a.dtype}")
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise _validate.error("k", "counts with 0 <= k <= n and n >= 1", k,
                              received=f"k in [{k.min()}, {k.max()}], n in [{n.min()}, {n.max()}]")
    return k.astype(np.float64), n.astype(np.float64)


def lower_confidence_bound(k, n, alpha):
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    Args:
        k: successes, int array (or scalar) with `0 <= k <= n`.
        n: trials (>= 1), broadcastable with `k`.
        alpha: the bound fails with probability at most alpha, in (0, 1).

    Returns:
        float64 array of the shape of `k` (a float for scalars): `p_lower`
        with `P(p_lower <= p) >= 1 - alpha` whatever the true p.

    Raises:
        ValueError: on counts outside `[0, n]` or a bad alpha.
    """
    alpha = _validate.check_float(alpha, name="alpha", minimum=0.0, maximum=1.0,
                                  exclusive_minimum=True, exclusive_maximum=True)
    k, n = _counts(k, n)
    # beta.ppf(alpha, 0, n + 1) is NaN; the exact bound at k = 0 is 0.
    with np.errstate(invalid="ignore"):
        bound = np.where(k > 0, scipy_stats.beta.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)
    return float(bound) if bound.ndim == 0 else bound


def binomial_test_p_value(k, n):
    """Two-sided p-value of `k ~ Binomial(n, 1/2)` (exact, `scipy.stats.binomtest`).

    Args:
        k: int array (or scalar) of successes, `0 <= k <= n`.
        n: trials (>= 1), broadcastable with `k`.

    Returns:
        float64 array of the broadcast shape (a float for scalars).

    Raises:
        ValueError: on counts outside `[0, n]`.
    """
    k, n = _counts(k, n)
    k, n = np.broadcast_arrays(k, n)
    flat = [scipy_stats.binomtest(int(a), int(b), 0.5).pvalue for a, b in zip(k.ravel(), n.ravel())]
    out = np.asarray(flat, np.float64).reshape(k.shape)
    return float(out) if out.ndim == 0 else out


def certified_radius(p_lower, sigma):
    """`sigma * Phi^-1(p_lower)`: the L2 radius certified by a lower bound on p_A.

    Args:
        p_lower: float array (or scalar) in [0, 1].
        sigma: noise level (> 0).

    Returns:
        float64 array (a float for scalars); negative where p_lower < 1/2
        (the caller abstains there), +inf at p_lower = 1.

    Raises:
        ValueError: on p_lower outside [0, 1] or NaN, or a bad sigma.
    """
    sigma = _validate.check_float(sigma, name="sigma", minimum=0.0, exclusive_minimum=True)
    p = np.asarray(p_lower, np.float64)
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise _validate.error("p_lower", "probabilities in [0, 1]", p_lower)
    out = sigma * scipy_stats.norm.ppf(p)
    return float(out) if out.ndim == 0 else out
