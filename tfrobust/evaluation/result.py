"""Per-example results of an evaluation, and their summaries.

`evaluate` returns an `EvaluationResult`; its arrays are per example (in the
order of the data), so any other statistic can be derived from them.
"""

import dataclasses
import math
from typing import Optional

import numpy as np

__all__ = ["AttackResult", "EvaluationResult", "ThreatResult", "inside", "norm_key", "p_label",
           "threat_label"]

# Relative and absolute slack of "||delta||_p <= eps": the projections are
# exact up to float32 rounding.
_RTOL = 1e-5
_ATOL = 1e-6
NORM_KEYS = ("l1", "l2", "linf")


def p_label(p):
    """'Linf', 'L2' or 'L1'."""
    return "Linf" if p == np.inf else f"L{int(p)}"


def norm_key(p):
    """The key of `AttackResult.norms` holding the p-norm."""
    return "linf" if p == np.inf else f"l{int(p)}"


def threat_label(p, eps):
    """The name of the threat `(p, eps)` in reports, e.g. 'Linf eps=0.3'."""
    return f"{p_label(p)} eps={eps:g}"


def inside(norms, eps):
    """Whether per-example norms are within `eps` (up to float32 rounding)."""
    return np.asarray(norms) <= eps * (1.0 + _RTOL) + _ATOL


def _median(values):
    values = np.asarray(values, np.float64)
    return float(np.median(values)) if values.size else math.nan


@dataclasses.dataclass
class AttackResult:
    """One attack's per-example results.

    Attributes:
        name: the attack's name.
        config: the attack's `get_config()`.
        threat: `(p, eps)` of its threat, or None.
        p: the norm it is judged in: its threat's p, else its `norm_p` for a
            minimization attack, else None.
        minimization: whether it searched the smallest perturbation.
        steps: its number of iterations, or None.
        black_box: whether it uses no gradients of the model.
        broken: bool `[N]`, the attack reached its goal on the model (a
            misclassification; the target when targeted).
        robust: bool `[N]`, clean-correct and not broken.
        pred: int `[N]`, the model's predictions on `x_adv`.
        norms: dict "l1", "l2", "linf" -> float `[N]`, norms of `x_adv - x`.
        min_norm: float `[N]` for minimization attacks: the smallest
            successful perturbation found in `norm_p` (+inf where none),
            before any budget; None otherwise.
        seconds: wall time spent in the attack.
        x_adv: the adversarial examples, when kept.
    """

    name: str
    config: dict
    threat: Optional[tuple]
    p: Optional[float]
    minimization: bool
    steps: Optional[int]
    black_box: bool
    broken: np.ndarray
    robust: np.ndarray
    pred: np.ndarray
    norms: dict
    min_norm: Optional[np.ndarray]
    seconds: float
    x_adv: Optional[np.ndarray] = None

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))

    def broken_within(self, p, eps):
        """bool `[N]`: broken by an `x_adv` with `||x_adv - x||_p <= eps`."""
        return self.broken & inside(self.norms[norm_key(p)], eps)

    def median_norms(self, clean_correct):
        """Median L1/L2/L∞ norm of the successful perturbations of clean-correct examples."""
        hit = self.broken & clean_correct
        return {k: _median(v[hit]) for k, v in self.norms.items()}

    def threat_text(self):
        if self.threat is not None:
            return threat_label(*self.threat)
        if self.p is not None:
            return f"min {p_label(self.p)} (unbounded)"
        return "box only"


@dataclasses.dataclass
class ThreatResult:
    """The worst case over the attacks of one threat `(p, eps)`.

    Attributes:
        p: 1, 2 or np.inf.
        eps: the radius.
        robust: bool `[N]`: clean-correct and no attack judged in norm p
            found an adversarial example within eps.
        per_attack: dict attack name -> its robust accuracy on this threat.
    """

    p: float
    eps: float
    robust: np.ndarray
    per_attack: dict

    @property
    def label(self):
        return threat_label(self.p, self.eps)

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return repr(value)


@dataclasses.dataclass
class EvaluationResult:
    """Everything `evaluate` measured.

    Attributes:
        y: int `[N]` true labels.
        y_target: int `[N]` target classes of a targeted evaluation, or None.
        clean_pred: int `[N]` predictions on the clean inputs.
        attacks: dict name -> `AttackResult` (in evaluation order).
        threats: dict label -> `ThreatResult` (sorted by norm, then eps).
        sanity_flags: list of `SanityFlag` raised.
        sanity_checks_run: whether the sanity checks ran.
        num_classes: number of classes of the model.
        bounds: `(lo, hi)`.
        x: the clean inputs, when adversarial examples are kept.
    """

    y: np.ndarray
    y_target: Optional[np.ndarray]
    clean_pred: np.ndarray
    attacks: dict
    threats: dict
    sanity_flags: list
    sanity_checks_run: bool
    num_classes: int
    bounds: tuple
    x: Optional[np.ndarray] = None

    @property
    def n_examples(self):
        return int(self.y.shape[0])

    @property
    def clean_correct(self):
        return self.clean_pred == self.y

    @property
    def clean_accuracy(self):
        return float(np.mean(self.clean_correct))

    @property
    def robust_accuracy(self):
        """dict threat label -> worst-case robust accuracy."""
        return {label: t.robust_accuracy for label, t in self.threats.items()}

    @property
    def attack_accuracy(self):
        """dict attack name -> robust accuracy under that attack alone."""
        return {name: a.robust_accuracy for name, a in self.attacks.items()}

    def adversarial_examples(self, name, eps=None):
        """The kept adversarial examples of one attack, optionally under a budget.

        Args:
            name: attack name.
            eps: for an attack without threat, the budget in its norm:
                examples whose perturbation exceeds it are returned clean.

        Returns:
            `(x_adv, predictions)` NumPy arrays.

        Raises:
            ValueError: if the examples were not kept or the name is unknown.
        """
        if name not in self.attacks:
            raise ValueError(f"Expected one of {list(self.attacks)}. Received: name={name!r}")
        attack = self.attacks[name]
        if attack.x_adv is None or self.x is None:
            raise ValueError(
                "Expected an evaluation run with keep_adversarials=True. "
                f"Received: no adversarial examples kept for {name!r}"
            )
        if eps is None or attack.threat is not None:
            return attack.x_adv, attack.pred
        if attack.p is None:
            raise ValueError(f"Expected an attack judged in a norm for eps. Received: {name!r}")
        within = inside(attack.norms[norm_key(attack.p)], eps)
        mask = within.reshape((-1,) + (1,) * (self.x.ndim - 1))
        return np.where(mask, attack.x_adv, self.x), np.where(within, attack.pred, self.clean_pred)

    def to_dict(self):
        """JSON-able summary (non-finite numbers become None or "inf")."""
        clean = self.clean_correct
        attacks = {}
        for name, a in self.attacks.items():
            entry = {
                "class": type_name(a.config),
                "config": a.config,
                "threat": None if a.threat is None else {"p": _p_json(a.threat[0]), "eps": a.threat[1]},
                "norm": None if a.p is None else _p_json(a.p),
                "minimization": a.minimization,
                "steps": a.steps,
                "black_box": a.black_box,
                "robust_accuracy": a.robust_accuracy,
                "success_rate": float(np.mean(a.broken & clean) / max(np.mean(clean), 1e-12)),
                "median_norms": a.median_norms(clean),
                "seconds": a.seconds,
            }
            if a.min_norm is not None:
                entry["median_min_norm"] = _median(a.min_norm[clean])
            attacks[name] = entry
        threats = {
            label: {"p": _p_json(t.p), "eps": t.eps, "robust_accuracy": t.robust_accuracy,
                    "attacks": t.per_attack}
            for label, t in self.threats.items()
        }
        return _jsonable({
            "n_examples": self.n_examples,
            "num_classes": self.num_classes,
            "bounds": list(self.bounds),
            "targeted": self.y_target is not None,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attacks": attacks,
            "threats": threats,
            "sanity_checks_run": self.sanity_checks_run,
            "sanity_flags": [f.to_dict() for f in self.sanity_flags],
        })

    def summary(self):
        """A small plain-text table: clean accuracy, attacks, worst cases, flags."""
        rows = [("attack", "threat", "robust acc", "med L2", "seconds")]
        clean = self.clean_correct
        for name, a in self.attacks.items():
            rows.append((name, a.threat_text(), f"{a.robust_accuracy:.4f}",
                         _fmt(a.median_norms(clean)["l2"]), f"{a.seconds:.1f}"))
        for label, t in self.threats.items():
            rows.append(("worst case", label, f"{t.robust_accuracy:.4f}", "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"clean accuracy {self.clean_accuracy:.4f} on {self.n_examples} examples"]
        for i, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        if not self.sanity_checks_run:
            lines.append("sanity checks: not run")
        elif not self.sanity_flags:
            lines.append("sanity checks: all passed")
        for flag in self.sanity_flags:
            lines.append(f"WARNING [{flag.check}] {flag.message} Remedy: {flag.remedy}")
        return "\n".join(lines)

    def save(self, out_dir):
        """Writes report.json, report.md, results.npz and robust_accuracy.png.

        The PNG is written only when some norm has several eps. Returns the
        dict of written paths.
        """
        from tfrobust.evaluation import report  # Kept apart: matplotlib is heavy.

        return report.save(self, out_dir)


def type_name(config):
    return config.get("name") if isinstance(config, dict) else None


def _p_json(p):
    return "inf" if p == np.inf else int(p)


def _fmt(value):
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"
