"""Names and keys shared by results, reports and checks (no TensorFlow, no cycles).

Threats are keyed by `tfrobust.threats.LpBall` values everywhere inside the
evaluation (an `LpBall` compares and hashes by its config); reports show
them as labels such as "Linf eps=0.3".
"""

import numpy as np

__all__ = ["NORM_KEYS", "ball", "inside", "norm_key", "p_label", "threat_label"]

NORM_KEYS = ("l1", "l2", "linf")


def p_label(p):
    """'Linf', 'L2' or 'L1'."""
    return "Linf" if p == np.inf else f"L{int(p)}"


def norm_key(p):
    """The key of `AttackResult.norms` holding the p-norm."""
    return "linf" if p == np.inf else f"l{int(p)}"


def threat_label(threat):
    """The name of a threat in reports, e.g. 'Linf eps=0.3' (an `LpBall`)."""
    return f"{p_label(threat.p)} eps={threat.eps:g}"


def ball(p, eps):
    """The canonical `LpBall(p, eps)` used as a key (default `l1_sparsity`).

    Two attacks of the same norm and radius share one threat even when they
    were built with other `l1_sparsity` settings (a step-direction knob, not
    part of the threat).
    """
    from tfrobust.threats import LpBall  # threats imports TensorFlow: loaded on use.

    return LpBall(p, float(eps))


def inside(norms, eps):
    """Whether per-example norms are within `eps`: `tfrobust.threats.within_eps`,
    the library's one budget tolerance (the slack of float32 rounding), on
    NumPy arrays."""
    from tfrobust.threats import within_eps  # threats imports TensorFlow: loaded on use.

    return np.asarray(within_eps(np.asarray(norms), float(eps)))
