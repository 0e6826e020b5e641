"""Distributionally adversarial attack (DAA): PGD whose particles interact through a kernel.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks.daa import DAA

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
x_adv = DAA(threats.LpBall(np.inf, 0.1), variant="blob", steps=20, seed=0)(model, x)
```

DAA (Zheng, Chen & Ren 2019) looks for an adversarial *distribution* µ of
the inputs rather than one point per input: it ascends an energy functional
made of the expected loss `E_µ[L(θ, x)]` and a divergence term between µ
and the data distribution, along its Wasserstein gradient flow. With µ
represented by the batch's current iterates `x_1..x_N` (the particles), the
flow's velocity is the loss gradient plus a kernel term that couples the
examples of the batch, and each step is PGD's L∞ step on that velocity:

    x_i <- Π_{B(x_i^0, eps) ∩ box}( x_i + α · sign(∇L(x_i) + c · φ_i) ).

The two particle approximations of the paper, with the RBF kernel
`k(a, b) = exp(-||a - b||² / (2 h²))` and the median heuristic
`h² = median_{ij} ||x_i - x_j||² / (2 log m)`:

* Lagrangian blob (`variant="blob"`, m = N):

      φ_i = 1/N Σ_j [ k(x_i, x_j) ∇L(x_j) - ∇_{x_j} k(x_i, x_j) ],
      ∇_{x_j} k(x_i, x_j) = k(x_i, x_j) (x_i - x_j) / h²,

  with c = 1.1 for the cross-entropy and 10 for the C&W margin.

* Discrete gradient flow (`variant="dgf"`, m = N + 1), the kernel's
  Laplacian-type weight `k'(a, b) = (||a - b||² / (2 h²) - 1) k(a, b)`:

      φ_i = Σ_j k'(x_i, x_j) (x_i - x_j),

  with c = -0.001 for the cross-entropy and -0.01 for the C&W margin.

The signs, the 1/N and 1/h² factors (blob only) and the constants are
those of the authors' released implementation. For the blob, φ is the
kernel-smoothed ascent direction of `E_µ[L] + ∫ µ log µ` (the SVGD form
with the repulsive term negated): c > 0 makes the particles attract, which
raises the divergence of µ from a spread-out data distribution. The medians
run over all N² pairs (zeros of the diagonal included) and the gradient is
that of the ascended objective (the negated loss when targeted). With c = 0
the update is PGD's exactly. Paper settings (MNIST,
eps = 0.3): 200 steps of 0.01 (eps / 30) from a random start, 50 restarts;
the original reshuffles its 10,000 test points into batches of 200 every
10 steps, whereas here the particles are the batch the attack is called
with (the kernel sums are over that batch, so results depend on it).
"""

import tensorflow as tf

from tfrobust import _validate
from tfrobust import losses as losses_lib
from tfrobust.attacks.base import resolve_loss
from tfrobust.attacks.pgd import PGD

__all__ = ["DAA", "kernel_term", "median_bandwidth"]

_VARIANTS = ("blob", "dgf")
# The paper's c, per variant and loss.
_DEFAULT_C = {
    ("blob", "ce"): 1.1,
    ("blob", "margin"): 10.0,
    ("dgf", "ce"): -0.001,
    ("dgf", "margin"): -0.01,
}


def _check_variant(variant):
    return _validate.check_choice(variant, name="variant", choices=_VARIANTS)


def _pairwise_sq_dists(flat):
    sq = tf.reduce_sum(tf.square(flat), axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(flat, flat, transpose_b=True)
    # The expansion can go slightly negative and leaves round-off on the diagonal.
    d2 = tf.nn.relu(d2)
    return tf.linalg.set_diag(d2, tf.zeros_like(sq))


def _median(values):
    """Median of a 1-D tensor (mean of the two middle values for even sizes)."""
    v = tf.sort(values)
    n = tf.size(v)
    return 0.5 * (v[(n - 1) // 2] + v[n // 2])


def median_bandwidth(sq_dists, variant="blob"):
    """The median heuristic `h² = median(sq_dists) / (2 log m)` of DAA.

    Args:
        sq_dists: float tensor `[N, N]` of squared pairwise distances.
        variant: `"blob"` (m = N) or `"dgf"` (m = N + 1).

    Returns:
        Scalar float tensor `h² > 0`. Where the heuristic is undefined (N = 1
        for the blob, or a zero median when most iterates coincide) it falls
        back to 1: all kernel values between coincident points are 1 then,
        whatever h.

    Raises:
        ValueError: on an unknown variant.
    """
    _check_variant(variant)
    sq_dists = tf.convert_to_tensor(sq_dists)
    n = tf.cast(tf.shape(sq_dists)[0], sq_dists.dtype)
    m = n if variant == "blob" else n + 1.0
    h2 = 0.5 * _median(tf.reshape(sq_dists, [-1])) / tf.math.log(m)
    ok = tf.logical_and(tf.math.is_finite(h2), h2 > 0)
    return tf.where(ok, h2, tf.ones_like(h2))


def kernel_term(x, grad, variant="blob"):
    """The interaction term φ of DAA (see the module docstring), batched.

    Args:
        x: float tensor `[N, ...]`, the current iterates (particles).
        grad: float tensor like `x`, the gradients of the ascended objective.
        variant: `"blob"` (Lagrangian blob) or `"dgf"` (discrete gradient flow).

    Returns:
        A float32 tensor like `x`.

    Raises:
        ValueError: on an unknown variant or mismatched shapes.

    References:
        Zheng, Chen & Ren, "Distributionally Adversarial Attack", AAAI 2019.
    """
    _check_variant(variant)
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    grad = tf.cast(tf.convert_to_tensor(grad), tf.float32)
    if not x.shape.is_compatible_with(grad.shape):
        raise ValueError(
            "Expected `x` and `grad` to have the same shape. "
            f"Received: x.shape={tuple(x.shape)}, grad.shape={tuple(grad.shape)}"
        )
    batch = tf.shape(x)[0]
    flat = tf.reshape(x, [batch, -1])
    # Everything below depends on differences only; centring first keeps the
    # |a|² + |b|² - 2 a.b expansion from cancelling (identical rows give 0).
    flat = flat - tf.reduce_mean(flat, axis=0, keepdims=True)
    d2 = _pairwise_sq_dists(flat)
    h2 = median_bandwidth(d2, variant)
    rbf = tf.exp(-d2 / (2.0 * h2))
    if variant == "blob":
        weights = rbf
    else:
        weights = (d2 / (2.0 * h2) - 1.0) * rbf
    # Σ_j w_ij (x_i - x_j) without forming the [N, N, d] differences.
    spread = flat * tf.reduce_sum(weights, axis=1, keepdims=True) - tf.matmul(weights, flat)
    if variant == "blob":
        flat_grad = tf.reshape(grad, [batch, -1])
        term = (tf.matmul(rbf, flat_grad) - spread / h2) / tf.cast(batch, tf.float32)
    else:
        term = spread
    return tf.reshape(term, tf.shape(x))


class DAA(PGD):
    """Distributionally adversarial attack: PGD plus DAA's kernel interaction.

    Each step adds `c · kernel_term(x, grad, variant)` to the loss gradient
    of the batch before PGD's steepest-ascent step and projection into
    threat ∩ box (the paper's sign step for L∞; other balls take their own
    steepest direction). All of PGD's machinery (random start, best iterate,
    restarts, seeding) is reused.

    Args:
        threat: `tfrobust.threats.LpBall`-like threat (L∞ in the paper).
        variant: `"blob"` (DAA-BLOB) or `"dgf"` (DAA-DGF).
        c: weight of the kernel term; `None` takes the paper's value for the
            variant and loss (blob: 1.1 for "ce", 10 for "margin"; dgf:
            -0.001 and -0.01). Required for other losses.
        steps: number of steps (200).
        step_size: step length; `None` gives `eps / 30` (0.01 at the paper's
            eps = 0.3).
        random_start: uniform start in the ball (True, as the paper).
        loss: `"ce"` (the paper's default), `"margin"`, or another PGD loss.
        restarts: independent runs, the best kept per example (the paper
            uses 50 on MNIST).
        bounds: `(lo, hi)` input domain.
        seed: integer seed of the random starts.
        early_stop: stop once every example is adversarial.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on an unknown variant, a non-finite `c`, a missing `c`
            for a loss without a paper default, or as `PGD`.

    References:
        Zheng, Chen & Ren, "Distributionally Adversarial Attack", AAAI 2019.
    """

    def __init__(
        self,
        threat,
        *,
        variant="blob",
        c=None,
        steps=200,
        step_size=None,
        random_start=True,
        loss="ce",
        restarts=1,
        bounds=(0.0, 1.0),
        seed=None,
        early_stop=False,
        validate="full",
    ):
        self.variant = _check_variant(variant)
        if step_size is None and threat is not None and hasattr(threat, "eps"):
            step_size = float(threat.eps) / 30.0
        super().__init__(
            threat,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            loss=loss,
            restarts=restarts,
            bounds=bounds,
            seed=seed,
            early_stop=early_stop,
            validate=validate,
        )
        if c is None:
            fn = resolve_loss(loss)
            kind = {losses_lib.cross_entropy: "ce", losses_lib.margin: "margin"}.get(fn)
            if kind is None:
                raise ValueError(
                    "Expected `c` for a loss without a paper default (only 'ce' and "
                    f"'margin' have one). Received: c=None, loss={loss!r}"
                )
            c = _DEFAULT_C[(variant, kind)]
        self.c = _validate.check_float(c, name="c")

    def get_config(self):
        config = super().get_config()
        config.update(variant=self.variant, c=self.c)
        return config

    def objective_and_grad(self, model, x, y, targeted):
        """PGD's objective and gradient, the gradient plus `c` times the kernel term."""
        obj, grad, logits = super().objective_and_grad(model, x, y, targeted)
        term = kernel_term(x, grad, self.variant)
        # A degenerate kernel must not turn a finite gradient into NaN.
        term = tf.where(tf.math.is_finite(term), term, tf.zeros_like(term))
        return obj, grad + tf.constant(self.c, grad.dtype) * term, logits

