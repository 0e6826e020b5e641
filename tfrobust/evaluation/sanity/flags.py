"""The warning class, the flag record and the record checks 3 and 4 compare."""

import warnings
from typing import NamedTuple

from tfrobust.evaluation import labels

__all__ = ["AttackRecord", "RobustnessWarning", "SanityFlag", "emit", "threat_key", "threat_text"]


class RobustnessWarning(UserWarning):
    """An evaluation shows a sign of obfuscated gradients or a weak attack."""


class SanityFlag(NamedTuple):
    """A failed sanity check.

    Attributes:
        check: short identifier: "randomness", "gradients",
            "one_step_vs_iterative", "black_box_vs_white_box", "large_eps",
            "dynamic", "nonfinite" or "certified_vs_empirical". A check
            that raised is reported under its own name with a message
            starting "check could not run:".
        message: what was observed.
        remedy: what to do about it.
        details: JSON-able dict of the measured quantities.
    """

    check: str
    message: str
    remedy: str
    details: dict

    def to_dict(self):
        return {"check": self.check, "message": self.message, "remedy": self.remedy,
                "details": self.details}


class AttackRecord(NamedTuple):
    """One attack's robust accuracy on one threat, as checks 3 and 4 see it.

    Attributes:
        name: the attack's name in the evaluation.
        threat: an `LpBall`, or `(p, eps)` with p in {1, 2, np.inf}.
        robust_accuracy: fraction of examples classified correctly both
            clean and under this attack, for this threat.
        steps: the attack's number of iterations (`None` if it has none);
            1 marks a one-step (FGSM-type) attack.
        black_box: whether the attack uses no gradients of the model
            (gradient-free or transfer attacks).
    """

    name: str
    threat: tuple
    robust_accuracy: float
    steps: object = None
    black_box: bool = False


def emit(flag, warn):
    if warn:
        warnings.warn(f"{flag.message} Remedy: {flag.remedy}", RobustnessWarning, stacklevel=3)
    return flag


def threat_key(threat):
    """The canonical `LpBall` of an `LpBall` or a `(p, eps)` pair."""
    if isinstance(threat, (tuple, list)):
        return labels.ball(*threat)
    return labels.ball(threat.p, threat.eps)


def threat_text(threat):
    return labels.threat_label(threat_key(threat))
