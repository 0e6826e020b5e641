"""Certified (lower bound) next to empirical (upper bound) L2 robust accuracy, in one call.

Example:

```python
from tfrobust.evaluation import certified_vs_empirical
from tfrobust.smoothing import Smooth, SmoothedClassifier

smooth = Smooth(base, num_classes=10, sigma=0.25, seed=0)
attacked = SmoothedClassifier(base, sigma=0.25, n=100, vote="prediction", seed=0)
result = certified_vs_empirical(
    attacked, (x, y), smooth.certifier(n0=100, n=10_000, alpha=0.001, batch_size=1000),
    radii=[0.25, 0.5, 0.75], out_dir="reports/smoothing")
print(result.certificates["certificate"].certified_accuracy,     # lower bounds
      result.certificates["certificate"].empirical_accuracy)     # upper bounds
```

Both sides are measured on the same examples at the same L2 radii: the
certificate (a `certificates.Certificate`, or a callable `(x, y) ->
Certificate` run batch by batch) gives the certified accuracy, and L2
attacks run through `evaluate` give the empirical robust accuracy, the
worst case over the attacks at each radius. `evaluate` already compares the
two (`certificates.compare`) and its sanity check
`check_certified_vs_empirical` flags any radius where the lower bound
exceeds the upper one; `EvaluationResult.save` writes one report
(report.md / report.json) and one plot (certified_vs_empirical.png).

The model attacked must be the classifier certified. For randomized
smoothing that is the smoothed classifier g; `SmoothedClassifier(vote=
"prediction")` is its Monte-Carlo estimate, whose gradient is that of the
soft smoothed score (an attack in the manner of Salman et al. 2019).
"""

import numpy as np

from tfrobust import _validate

__all__ = ["certified_vs_empirical", "default_l2_attacks"]


def default_l2_attacks(radii, *, steps=20, restarts=1, seed=0, bounds=(0.0, 1.0)):
    """One L2 PGD per radius (step `2.5 r / steps`, random start), named "pgd-l2-<r>".

    Args:
        radii: the radii (> 0 are attacked; 0 needs no attack).
        steps: PGD steps (>= 1).
        restarts: random restarts per attack (>= 1).
        seed: seed of the random starts.
        bounds: the input box.

    Returns:
        dict name -> `PGD`.
    """
    from tfrobust.attacks.pgd import PGD
    from tfrobust.threats import LpBall

    steps = _validate.check_int(steps, name="steps", minimum=1)
    restarts = _validate.check_int(restarts, name="restarts", minimum=1)
    return {f"pgd-l2-{r:g}": PGD(LpBall(2, float(r)), steps=steps, restarts=restarts, seed=seed, bounds=bounds)
            for r in radii if r > 0}


def certified_vs_empirical(model, data, certificate, *, radii, attacks=None, name="certificate",
                           batch_size=100, bounds=(0.0, 1.0), seed=0, attack_steps=20, out_dir=None,
                           verbose=1, **evaluate_kwargs):
    """Certified and empirical L2 robust accuracy of `model` on the same examples.

    Args:
        model: the certified classifier as a callable returning logits
            (e.g. a `SmoothedClassifier`).
        data: `(x, y)` arrays or a batched dataset, as `evaluate` takes.
        certificate: a `certificates.Certificate` of the examples (L2), or
            a callable `(x, y) -> Certificate` run per batch (e.g.
            `Smooth.certifier(...)`).
        radii: the L2 radii of the comparison (>= 0, at least one > 0).
        attacks: L2 attacks (dict or list, as `evaluate`); default
            `default_l2_attacks(radii, steps=attack_steps, seed=seed)`.
        name: the certificate's name in the report.
        batch_size, bounds, seed, verbose: as in `evaluate`.
        attack_steps: steps of the default attacks.
        out_dir: when given, the report and the plot are written there.
        **evaluate_kwargs: passed to `evaluate` (e.g. `sanity_checks`).

    Returns:
        The `EvaluationResult`; `result.certificates[name]` holds both
        curves (`certified_accuracy`, `empirical_accuracy` at `radii`).

    Raises:
        ValueError: on bad radii, a certificate of another norm than L2,
            or anything `evaluate` rejects.
    """
    from tfrobust.evaluation import certificates as cert_lib
    from tfrobust.evaluation.engine import evaluate

    values = np.asarray(list(radii), np.float64)
    if values.ndim != 1 or values.size == 0 or np.any(~np.isfinite(values)) or np.any(values < 0) \
            or not np.any(values > 0):
        raise _validate.error("radii", "a list of finite L2 radii >= 0, one of them > 0", radii)
    if isinstance(certificate, cert_lib.Certificate):
        if certificate.p != 2:
            raise _validate.error("certificate", "an L2 certificate", certificate)
    elif not callable(certificate):
        raise _validate.error("certificate", "a Certificate or a callable (x, y) -> Certificate", certificate)
    if attacks is None:
        attacks = default_l2_attacks(values, steps=attack_steps, seed=seed, bounds=bounds)
    result = evaluate(model, data, attacks, threats=[(2, float(r)) for r in values if r > 0],
                      batch_size=batch_size, bounds=bounds, seed=seed, certificates={name: certificate},
                      certificate_radii=list(values), verbose=verbose, **evaluate_kwargs)
    if result.certificates[name].p != 2:
        raise _validate.error("certificate", "an L2 certificate", result.certificates[name].certificate)
    if out_dir is not None:
        result.save(out_dir)
    return result
