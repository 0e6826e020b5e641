"""Certificates: per-example certified predictions and radii, next to attacks.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks.pgd import PGD
from tfrobust.evaluation import certificates, evaluate

cert = certificates.mlp1layer_certificate(model, x, p=2)       # Cross-Lipschitz bound
print(certificates.certified_accuracy(cert, y, [0.1, 0.5]))
result = evaluate(model, (x, y), [PGD(threats.LpBall(2, 0.5), seed=0)],
                  threats=[(2, 0.1)], certificates={"cross_lipschitz": cert})
result.save("reports/run")    # ... + certified_vs_empirical.png
```

A `Certificate(pred, radius, p)` holds, per example, the class a certified
classifier predicts and a radius: no perturbation δ with ‖δ‖_p ≤ radius
changes that prediction (a closed ball). `radius == 0` certifies the
prediction at the point itself only; `radius == -inf` (with `pred ==
ABSTAIN`) means the certifier abstained. An example is certified at radius
r when `pred == y` and `radius >= r` (non-strict, matching the closed
ball); a source whose guarantee holds for ‖δ‖ < R only (randomized
smoothing) passes `np.nextafter(R, 0)`.

Certified accuracy is a lower bound on the true robust accuracy; an
attack's robust accuracy is an upper bound. `compare` puts both on the same
examples: at every radius, certified ≤ empirical must hold, and no example
may be both certified at r and broken by an attack within r
(`sanity.check_certified_vs_empirical` flags either). Certificates come
from `tfrobust.bounds` (`mlp1layer_certificate`), from randomized smoothing
(`tfrobust.smoothing.Smooth.certify_batch(...).to_certificate()`, or
`Smooth.certifier(...)` for `evaluate`; `certified_vs_empirical` joins it
with L2 attacks in one call) and from any code producing `(pred, radius)`
arrays.
"""

import dataclasses
from typing import Optional

import numpy as np

from tfrobust import _validate
from tfrobust.evaluation import labels

__all__ = ["ABSTAIN", "Certificate", "CertificateResult", "certified_accuracy", "compare",
           "empirical_accuracy", "mlp1layer_certificate", "plot_curves"]

#: The prediction of an abstaining certifier.
ABSTAIN = -1
# Slack of "the certificate's radius reaches beyond a found adversarial
# example": the attack's norm is measured in float32.
_CONTRADICTION_RTOL = 1e-5
_CONTRADICTION_ATOL = 1e-6


class Certificate:
    """Per-example certified predictions and radii in one norm.

    Args:
        pred: int array `[N]`, the certified classifier's predictions
            (`ABSTAIN` = -1 where it abstains).
        radius: float array `[N]`, each >= 0, or -inf where it abstains
            (either `pred == ABSTAIN` or `radius == -inf` marks an
            abstention; both are then set).
        p: the norm, 1, 2 or inf (also "l2", "linf", ...).

    Raises:
        ValueError: on arrays of other shapes or dtypes, NaN or negative
            finite radii, or a bad `p`.
    """

    def __init__(self, pred, radius, p):
        pred, radius = np.asarray(pred), np.asarray(radius)
        if not np.issubdtype(pred.dtype, np.integer) or pred.ndim != 1:
            raise _validate.error("pred", "an int array [N]", pred,
                                  received=f"pred.dtype={pred.dtype}, pred.shape={pred.shape}")
        if not np.issubdtype(radius.dtype, np.floating) or radius.shape != pred.shape:
            raise _validate.error("radius", f"a float array of shape {pred.shape}", radius,
                                  received=f"radius.dtype={radius.dtype}, radius.shape={radius.shape}")
        radius = radius.astype(np.float64)
        if np.any(np.isnan(radius)) or np.any((radius < 0) & np.isfinite(radius)) or np.any(radius == np.inf):
            raise _validate.error("radius", "radii >= 0 (finite), or -inf to abstain", radius,
                                  received=f"radius in [{np.nanmin(radius)}, {np.nanmax(radius)}], "
                                           f"{int(np.isnan(radius).sum())} NaN")
        if np.any(pred < ABSTAIN):
            raise _validate.error("pred", f"classes >= 0 or ABSTAIN={ABSTAIN}", pred,
                                  received=f"pred.min()={pred.min()}")
        abstain = (pred == ABSTAIN) | (radius == -np.inf)
        self.pred = np.where(abstain, ABSTAIN, pred).astype(np.int64)
        self.radius = np.where(abstain, -np.inf, radius)
        self.p = _validate.check_p(p)

    def __len__(self):
        return int(self.pred.shape[0])

    def __repr__(self):
        return f"Certificate(n={len(self)}, p={labels.p_label(self.p)})"

    @property
    def abstained(self):
        """bool `[N]`: the certifier abstained."""
        return self.pred == ABSTAIN

    def certified(self, y, r):
        """bool `[N]`: certified at radius r (`pred == y` and `radius >= r`)."""
        return (self.pred == np.asarray(y)) & (self.radius >= r)

    @classmethod
    def concatenate(cls, certificates):
        """One certificate of several (of the same norm), in order."""
        certificates = list(certificates)
        if not certificates or len({c.p for c in certificates}) != 1:
            raise ValueError("Expected a non-empty list of certificates of one norm. "
                             f"Received: {certificates!r}")
        return cls(np.concatenate([c.pred for c in certificates]),
                   np.concatenate([c.radius for c in certificates]), certificates[0].p)


def _radii(radii):
    values = np.asarray(list(radii), np.float64)
    if values.ndim != 1 or np.any(~np.isfinite(values)) or np.any(values < 0):
        raise _validate.error("radii", "a list of finite radii >= 0", radii)
    return values


def _labels(y, n):
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise _validate.error("y", f"int labels of shape [{n}]", y,
                              received=f"y.dtype={y.dtype}, y.shape={y.shape}")
    return y


def certified_accuracy(cert, y, radii):
    """Fraction of all examples certified at each radius (abstentions count as wrong).

    Args:
        cert: a `Certificate` of N examples.
        y: int labels `[N]`.
        radii: radii r >= 0.

    Returns:
        float array `[R]`.
    """
    y = _labels(y, len(cert))
    return np.array([float(np.mean(cert.certified(y, r))) for r in _radii(radii)])


def empirical_accuracy(adversarial_norm, clean_correct, radii):
    """Empirical robust accuracy at each radius: clean-correct and no attack
    found an adversarial example within r (`adversarial_norm` is +inf where
    none was found)."""
    norm, clean = np.asarray(adversarial_norm, np.float64), np.asarray(clean_correct, bool)
    return np.array([float(np.mean(clean & ~labels.inside(norm, r))) for r in _radii(radii)])


@dataclasses.dataclass
class CertificateResult:
    """A certificate next to the attacks, on the same examples.

    Attributes:
        name: the certificate's name.
        certificate: the `Certificate`.
        y: int labels `[N]`.
        radii: float `[R]` radii of the comparison.
        certified_accuracy: float `[R]` (lower bounds).
        empirical_accuracy: float `[R]` worst case of the attacks judged in
            the certificate's norm (upper bounds), or None without attacks.
        contradictions: examples certified beyond the norm of an
            adversarial example an attack found for them (must be 0).
        adversarial_norm: float `[N]`, smallest successful perturbation of
            any attack in the norm (+inf where none), or None.
        clean_correct: bool `[N]` of the attacked model, or None.
    """

    name: str
    certificate: Certificate
    y: np.ndarray
    radii: np.ndarray
    certified_accuracy: np.ndarray
    empirical_accuracy: Optional[np.ndarray] = None
    contradictions: int = 0
    adversarial_norm: Optional[np.ndarray] = None
    clean_correct: Optional[np.ndarray] = None

    @property
    def p(self):
        return self.certificate.p

    def curves(self, grid):
        """`(certified, empirical or None)` accuracies on a radius grid."""
        certified = certified_accuracy(self.certificate, self.y, grid)
        if self.adversarial_norm is None:
            return certified, None
        return certified, empirical_accuracy(self.adversarial_norm, self.clean_correct, grid)

    def to_dict(self):
        from tfrobust.evaluation.result import jsonable

        return jsonable({
            "p": "inf" if self.p == np.inf else int(self.p),
            "radii": self.radii,
            "certified_accuracy": self.certified_accuracy,
            "empirical_robust_accuracy": self.empirical_accuracy,
            "contradictions": self.contradictions,
            "abstained": int(self.certificate.abstained.sum()),
            "median_certified_radius": _median_radius(self.certificate, self.y),
        })


def _median_radius(cert, y):
    values = cert.radius[cert.pred == y]
    return float(np.median(values)) if values.size else None


def compare(name, cert, y, radii, *, adversarial_norm=None, clean_correct=None):
    """Certified next to empirical robust accuracy on the same examples.

    Args:
        name: the certificate's name in reports.
        cert: a `Certificate` of N examples.
        y: int labels `[N]`.
        radii: radii of the comparison (>= 0).
        adversarial_norm: optional float `[N]`, the smallest successful
            perturbation an attack found per example in `cert.p` (+inf
            where none); `EvaluationResult.adversarial_norm(p)`.
        clean_correct: bool `[N]`, the attacked model is correct clean
            (required with `adversarial_norm`).

    Returns:
        A `CertificateResult`.

    Raises:
        ValueError: on arrays of another length or bad radii.
    """
    y = _labels(y, len(cert))
    radii = _radii(radii)
    result = CertificateResult(name, cert, y, radii, certified_accuracy(cert, y, radii))
    if adversarial_norm is None:
        return result
    norm = np.asarray(adversarial_norm, np.float64)
    clean = np.asarray(clean_correct, bool) if clean_correct is not None else None
    if norm.shape != (len(cert),) or clean is None or clean.shape != (len(cert),):
        raise ValueError(
            f"Expected `adversarial_norm` and `clean_correct` of shape [{len(cert)}]. "
            f"Received: adversarial_norm.shape={norm.shape}, "
            f"clean_correct.shape={None if clean is None else clean.shape}"
        )
    correct = cert.pred == y
    beyond = cert.radius > norm * (1.0 + _CONTRADICTION_RTOL) + _CONTRADICTION_ATOL
    result.empirical_accuracy = empirical_accuracy(norm, clean, radii)
    result.contradictions = int(np.sum(correct & np.isfinite(norm) & beyond))
    result.adversarial_norm, result.clean_correct = norm, clean
    return result


def mlp1layer_certificate(model, x, *, p=2, batch_size=256, bisection_steps=40, bounds=(0.0, 1.0)):
    """The Cross-Lipschitz certificate (Theorem 2.1) of a one-hidden-layer network.

    Args:
        model: a `tfrobust.models.mlp1layer` network.
        x: float array `[N, ...]` inside `bounds`.
        p: 2 or inf.
        batch_size: examples per call.
        bisection_steps: as in `bounds.mlp1layer_lower_bound`.
        bounds: the input box x must lie in.

    Returns:
        A `Certificate` of the model's predictions.

    Raises:
        ValueError: as `bounds.mlp1layer_lower_bound`.
    """
    import tensorflow as tf

    from tfrobust import bounds as bounds_lib

    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    x = np.asarray(x)
    preds, radii = [], []
    for start in range(0, max(x.shape[0], 1), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size])
        radii.append(np.asarray(bounds_lib.mlp1layer_lower_bound(
            model, xb, p=p, bisection_steps=bisection_steps, bounds=bounds)))
        preds.append(np.asarray(tf.argmax(model(tf.cast(xb, tf.float32)), axis=-1)))
    return Certificate(np.concatenate(preds), np.concatenate(radii).astype(np.float64), p)


def plot_curves(series, path, *, p=2, max_radius=None, title=None):
    """One figure of accuracy against radius: certified (solid) and empirical (dashed).

    Args:
        series: list of `(label, CertificateResult or None, empirical)`
            where `empirical` is None or `(adversarial_norm, clean_correct)`
            for a model without certificate. A `CertificateResult` draws
            its certified curve and, when it has one, its empirical curve in
            the same colour.
        path: the PNG file.
        p: the norm (for the axis label).
        max_radius: right end of the radius axis (default: 1.2 x the
            largest finite certified or adversarial radius, at least the
            comparison radii).
        title: optional title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if max_radius is None:
        ends = [1e-3]
        for _, cert_result, empirical in series:
            arrays = []
            if cert_result is not None:
                arrays += [cert_result.certificate.radius, cert_result.radii]
                if cert_result.adversarial_norm is not None:
                    arrays.append(cert_result.adversarial_norm)
            if empirical is not None:
                arrays.append(empirical[0])
            for a in arrays:
                a = np.asarray(a, np.float64)
                a = a[np.isfinite(a)]
                if a.size:
                    ends.append(float(np.quantile(a, 0.95)) if a.size > 20 else float(a.max()))
        max_radius = 1.2 * max(ends)
    grid = np.linspace(0.0, max_radius, 101)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, cert_result, empirical in series:
        color = None
        if cert_result is not None:
            certified, emp = cert_result.curves(grid)
            (line,) = ax.plot(grid, certified, "-", label=f"{label} (certified)")
            color = line.get_color()
            if emp is not None:
                ax.plot(grid, emp, "--", color=color, label=f"{label} (attack)")
        if empirical is not None:
            ax.plot(grid, empirical_accuracy(empirical[0], empirical[1], grid), "--", color=color,
                    label=f"{label} (attack)")
    ax.set_xlabel(f"{labels.p_label(p)} radius")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
