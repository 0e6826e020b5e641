"""Aggregating per threat: the worst case over the attacks judged in its norm.

For each threat `LpBall(p, eps)` (the attacks' own threats and the
requested grid), an example is robust only if it is correct clean and no
attack judged in norm p (its threat's p, or the `norm_p` of a minimization
attack without threat) produced an adversarial example within eps of it:
every attack of that threat, attacks of another eps of the same norm whose
`x_adv` happens to lie within eps, and unbounded minimization attacks
through `norm <= eps`.
"""

import numpy as np

from tfrobust.evaluation import labels
from tfrobust.evaluation.result import ThreatResult
from tfrobust.evaluation.result import ThreatTable

__all__ = ["check_grid", "per_threat", "threat_keys"]


def check_grid(grid, norms_judged):
    """Refuses a grid threat of a norm no attack is judged in.

    Raises:
        ValueError: naming the threat and the attacks' norms.
    """
    for threat in grid:
        if threat.p not in norms_judged:
            raise ValueError(
                "Expected every threat in `threats` to have an attack judged in its norm. "
                f"Received: {labels.threat_label(threat)} with attack norms "
                f"{sorted(labels.p_label(q) for q in norms_judged)}"
            )


def threat_keys(results, grid):
    """The threats to report, sorted by norm then eps (`LpBall`s)."""
    keys = {a.threat for a in results.values() if a.threat is not None} | set(grid)
    return sorted(keys, key=lambda t: (t.p, t.eps))


def per_threat(results, clean, grid=()):
    """The worst case per threat.

    Args:
        results: dict name -> `AttackResult`.
        clean: bool `[N]` clean-correct.
        grid: extra `LpBall`s to report.

    Returns:
        A `ThreatTable` LpBall -> `ThreatResult`.
    """
    table = ThreatTable()
    for threat in threat_keys(results, grid):
        robust, per_attack = clean.copy(), {}
        for name, a in results.items():
            if a.p != threat.p:
                continue
            hit = a.broken_within(threat)
            robust &= ~hit
            per_attack[name] = float(np.mean(clean & ~hit))
        table[threat] = ThreatResult(threat, robust, per_attack)
    return table
