"""Per-example results of an evaluation, and their summaries.

`evaluate` returns an `EvaluationResult`; its arrays are per example (in the
order of the data), so any other statistic can be derived from them.
Threats are keyed by `LpBall` values; `EvaluationResult.threats` also
accepts a report label ("Linf eps=0.1") as key, and every JSON/Markdown
output names threats by those labels.
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from tfrobust.evaluation.labels import NORM_KEYS
from tfrobust.evaluation.labels import inside
from tfrobust.evaluation.labels import norm_key
from tfrobust.evaluation.labels import p_label
from tfrobust.evaluation.labels import threat_label

__all__ = ["NORM_KEYS", "AttackResult", "EvaluationResult", "ThreatResult", "ThreatTable", "inside",
           "jsonable", "norm_key", "p_label", "threat_label"]


def _median(values):
    values = np.asarray(values, np.float64)
    return float(np.median(values)) if values.size else math.nan


@dataclasses.dataclass
class AttackResult:
    """One attack's per-example results.

    Attributes:
        name: the attack's name.
        config: the attack's `get_config()`.
        threat: its threat as an `LpBall`, or None.
        p: the norm it is judged in: its threat's p, else its `norm_p` for a
            minimization attack, else None.
        minimization: whether it searched the smallest perturbation.
        steps: its number of iterations, or None.
        black_box: whether it uses no gradients of the model.
        broken: bool `[N]`, the attack reached its goal on the model (a
            misclassification; the target when targeted). Never true where
            the model's logits at `x_adv` are non-finite.
        robust: bool `[N]`, clean-correct and not broken.
        pred: int `[N]`, the model's predictions on `x_adv` (-1 where its
            logits there are non-finite: no class was predicted).
        norms: dict "l1", "l2", "linf" -> float `[N]`, norms of `x_adv - x`.
        min_norm: float `[N]` for minimization attacks: the smallest
            successful perturbation found in `norm_p` (+inf where none),
            before any budget; None otherwise.
        seconds: wall time spent in the attack.
        nonfinite: bool `[N]`, the model's logits at `x_adv` had a NaN or
            Inf (a numerically fragile model; such points are not counted
            as misclassified).
        uses_eot: the attack's declared `uses_eot`.
        randomized: the attack's declared `randomized`.
        x_adv: the adversarial examples, when kept.
    """

    name: str
    config: dict
    threat: Optional[object]
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
    nonfinite: Optional[np.ndarray] = None
    uses_eot: bool = False
    randomized: bool = False
    x_adv: Optional[np.ndarray] = None

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))

    @property
    def nonfinite_count(self):
        return 0 if self.nonfinite is None else int(np.sum(self.nonfinite))

    def broken_within(self, threat):
        """bool `[N]`: broken by an `x_adv` with `||x_adv - x||_p <= eps` (`threat` an LpBall)."""
        return self.broken & inside(self.norms[norm_key(threat.p)], threat.eps)

    def adversarial_norm(self, p):
        """float `[N]`: the p-norm of each successful perturbation, +inf where none."""
        return np.where(self.broken, self.norms[norm_key(p)].astype(np.float64), np.inf)

    def median_norms(self, clean_correct):
        """Median L1/L2/L∞ norm of the successful perturbations of clean-correct examples."""
        hit = self.broken & clean_correct
        return {k: _median(v[hit]) for k, v in self.norms.items()}

    def threat_text(self):
        if self.threat is not None:
            return threat_label(self.threat)
        if self.p is not None:
            return f"min {p_label(self.p)} (unbounded)"
        return "box only"


@dataclasses.dataclass
class ThreatResult:
    """The worst case over the attacks of one threat.

    Attributes:
        threat: the `LpBall`.
        robust: bool `[N]`: clean-correct and no attack judged in norm p
            found an adversarial example within eps.
        per_attack: dict attack name -> its robust accuracy on this threat.
    """

    threat: object
    robust: np.ndarray
    per_attack: dict

    @property
    def p(self):
        return self.threat.p

    @property
    def eps(self):
        return self.threat.eps

    @property
    def label(self):
        return threat_label(self.threat)

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))


class ThreatTable(dict):
    """dict `LpBall` -> `ThreatResult` that also takes report labels as keys.

    `table[LpBall(np.inf, 0.1)]` and `table["Linf eps=0.1"]` are the same
    entry (labels are what reports and JSON files show).
    """

    def _find(self, key):
        if isinstance(key, str):
            for ball, t in self.items():
                if t.label == key:
                    return ball
            return None
        return key

    def __getitem__(self, key):
        found = self._find(key)
        if found is None or not super().__contains__(found):
            raise KeyError(key)
        return super().__getitem__(found)

    def __contains__(self, key):
        found = self._find(key)
        return found is not None and super().__contains__(found)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def labels(self):
        return [t.label for t in self.values()]


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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
        return jsonable(value.tolist())
    return repr(value)


def threat_json(threat):
    return None if threat is None else {"p": p_json(threat.p), "eps": threat.eps}


def attack_json(a, clean):
    """The JSON summary of one `AttackResult` (also written per attack while running)."""
    entry = {
        "class": type_name(a.config),
        "config": a.config,
        "threat": threat_json(a.threat),
        "norm": None if a.p is None else p_json(a.p),
        "minimization": a.minimization,
        "steps": a.steps,
        "black_box": a.black_box,
        "uses_eot": a.uses_eot,
        "randomized": a.randomized,
        "robust_accuracy": a.robust_accuracy,
        "success_rate": float(np.mean(a.broken & clean) / max(np.mean(clean), 1e-12)),
        "median_norms": a.median_norms(clean),
        "nonfinite_outputs": a.nonfinite_count,
        "seconds": a.seconds,
    }
    if a.min_norm is not None:
        entry["median_min_norm"] = _median(a.min_norm[clean])
    return jsonable(entry)


@dataclasses.dataclass
class EvaluationResult:
    """Everything `evaluate` measured.

    Attributes:
        y: int `[N]` true labels.
        y_target: int `[N]` target classes of a targeted evaluation, or None.
        clean_pred: int `[N]` predictions on the clean inputs (-1 where the
            clean logits are non-finite).
        attacks: dict name -> `AttackResult` (in evaluation order).
        threats: `ThreatTable` LpBall -> `ThreatResult` (sorted by norm,
            then eps; report labels work as keys too).
        sanity_flags: list of `SanityFlag` raised.
        sanity_checks_run: whether the sanity checks ran.
        num_classes: number of classes of the model.
        bounds: `(lo, hi)`.
        x: the clean inputs, when adversarial examples are kept.
        certificates: dict name -> `certificates.CertificateResult`:
            certified (lower) next to empirical (upper) robust accuracy on
            the same examples.
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
    certificates: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.threats, ThreatTable):
            self.threats = ThreatTable(self.threats)

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
        return {t.label: t.robust_accuracy for t in self.threats.values()}

    @property
    def attack_accuracy(self):
        """dict attack name -> robust accuracy under that attack alone."""
        return {name: a.robust_accuracy for name, a in self.attacks.items()}

    @property
    def nonfinite_outputs(self):
        """dict attack name -> number of adversarial points with non-finite logits."""
        return {name: a.nonfinite_count for name, a in self.attacks.items()}

    def adversarial_norm(self, p):
        """float `[N]`: per example, the smallest p-norm of a successful `x_adv`
        of any attack judged in norm p (+inf where none succeeded)."""
        best = np.full(self.n_examples, np.inf)
        for a in self.attacks.values():
            if a.p == p:
                best = np.minimum(best, a.adversarial_norm(p))
        return best

    def empirical_robust_accuracy(self, p, radii):
        """Empirical (upper-bound) robust accuracy at each radius of norm p.

        An example counts at r if it is clean-correct and no attack judged in
        norm p found an adversarial example within r (the worst case of the
        `threats` entries, at any r).
        """
        norm = self.adversarial_norm(p)
        clean = self.clean_correct
        return np.array([float(np.mean(clean & ~inside(norm, r))) for r in radii])

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
        return adversarial_examples(self.attacks[name], self.x, self.clean_pred, eps)

    def to_dict(self):
        """JSON-able summary (non-finite numbers become None or "inf")."""
        clean = self.clean_correct
        threats = {
            t.label: {"p": p_json(t.p), "eps": t.eps, "robust_accuracy": t.robust_accuracy,
                      "attacks": t.per_attack}
            for t in self.threats.values()
        }
        return jsonable({
            "n_examples": self.n_examples,
            "num_classes": self.num_classes,
            "bounds": list(self.bounds),
            "targeted": self.y_target is not None,
            "clean_accuracy": self.clean_accuracy,
            "clean_nonfinite_outputs": int(np.sum(self.clean_pred < 0)),
            "robust_accuracy": self.robust_accuracy,
            "nonfinite_outputs": self.nonfinite_outputs,
            "attacks": {name: attack_json(a, clean) for name, a in self.attacks.items()},
            "threats": threats,
            "certificates": {name: c.to_dict() for name, c in self.certificates.items()},
            "sanity_checks_run": self.sanity_checks_run,
            "sanity_flags": [f.to_dict() for f in self.sanity_flags],
        })

    def summary(self):
        """A small plain-text table: clean accuracy, attacks, worst cases, flags."""
        rows = [("attack", "threat", "robust acc", "med L2", "non-finite", "seconds")]
        clean = self.clean_correct
        for name, a in self.attacks.items():
            rows.append((name, a.threat_text(), f"{a.robust_accuracy:.4f}",
                         _fmt(a.median_norms(clean)["l2"]), str(a.nonfinite_count), f"{a.seconds:.1f}"))
        for t in self.threats.values():
            rows.append(("worst case", t.label, f"{t.robust_accuracy:.4f}", "", "", ""))
        for name, c in self.certificates.items():
            for r, acc in zip(c.radii, c.certified_accuracy):
                rows.append((f"certified {name}", f"{p_label(c.p)} r={r:g}", f"{acc:.4f}", "", "", ""))
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
        """Writes report.json, report.md, results.npz and the PNG plots.

        `robust_accuracy.png` is written when some norm has several eps,
        `certified_vs_empirical.png` when there are certificates.

        Returns:
            The dict of written paths.

        Raises:
            ValueError: if `out_dir` is an existing file or cannot be
                created (the message names the path).
        """
        from tfrobust.evaluation import report  # Kept apart: matplotlib is heavy.

        return report.save(self, out_dir)


def adversarial_examples(attack, x, clean_pred, eps=None):
    """`(x_adv, predictions)` of one `AttackResult`, cut to `eps` for an unbudgeted attack."""
    if attack.x_adv is None or x is None:
        raise ValueError(
            "Expected an evaluation run with keep_adversarials=True. "
            f"Received: no adversarial examples kept for {attack.name!r}"
        )
    if eps is None or attack.threat is not None:
        return attack.x_adv, attack.pred
    if attack.p is None:
        raise ValueError(f"Expected an attack judged in a norm for eps. Received: {attack.name!r}")
    within = inside(attack.norms[norm_key(attack.p)], eps)
    mask = within.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(mask, attack.x_adv, x), np.where(within, attack.pred, clean_pred)


def type_name(config):
    return config.get("name") if isinstance(config, dict) else None


def p_json(p):
    return "inf" if p == np.inf else int(p)


def _fmt(value):
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"
