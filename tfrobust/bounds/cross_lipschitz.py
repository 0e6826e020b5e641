"""Certified lower bounds on the minimal adversarial change (Theorem 2.1).

Example:

```python
import numpy as np
from tfrobust import bounds, models

model = models.mlp1layer((28, 28, 1), 10, hidden_units=64)
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
r2 = bounds.mlp1layer_lower_bound(model, x, p=2)         # L2 radii
r_inf = bounds.mlp1layer_lower_bound(model, x, p=np.inf)  # L∞ radii
```

No perturbation δ with ‖δ‖_p ≤ r (r the returned radius) changes the
prediction c = argmax_j f_j(x) of the network.

Theorem 2.1 (Hein & Andriushchenko, 2017). With 1/p + 1/q = 1, the class
stays c for every δ with

    ‖δ‖_p ≤ max_{R>0} min{ min_{j≠c} (f_c(x) − f_j(x)) / L_cj(R), R },
    L_cj(R) ≥ max_{y∈B_p(x,R)} ‖∇f_c(y) − ∇f_j(y)‖_q.

Any upper bound L_cj(R) gives a valid radius, and every single R > 0 gives
a valid radius min{r(R), R} with r(R) = min_j (f_c − f_j)/L_cj(R).

Derivation of L_cj(R) for f_r(y) = Σ_l w_lr σ(⟨u_l, y⟩) (no biases, u_l the
l-th column of the hidden kernel U [d, H], σ = ScaledSoftplus(α), so
σ'(t) = sigmoid(α t) is positive and increasing):

1. ∇f_c(y) − ∇f_j(y) = Σ_l Δw_l σ'(⟨u_l, y⟩) u_l = U β(y) with
   Δw_l = w_lc − w_lj and β_l(y) = Δw_l σ'(⟨u_l, y⟩).
2. Hölder: for ‖y − x‖_p ≤ R, |⟨u_l, y − x⟩| ≤ R ‖u_l‖_q, so with
   a_l = ⟨u_l, x⟩ and σ' increasing,
   σ'(⟨u_l, y⟩) ∈ [s⁻_l, s⁺_l] = [σ'(a_l − R‖u_l‖_q), σ'(a_l + R‖u_l‖_q)].
3. Interval arithmetic per unit (the sign of Δw_l decides which end is
   which): β_l = m_l + e_l with midpoint m_l = Δw_l (s⁻_l + s⁺_l)/2 and
   |e_l| ≤ ρ_l = |Δw_l| (s⁺_l − s⁻_l)/2; also |β_l| ≤ |Δw_l| s⁺_l.
4. Three bounds on ‖U β‖_q, each valid for every such β:
   (A) ‖U m‖_q + Σ_l ρ_l ‖u_l‖_q        (triangle inequality on U e);
   (B) ‖U m‖_q + ‖U‖_{2→q} ‖ρ‖₂          (operator norm on U e);
   (C) ‖U‖_{2→q} ‖Δw ⊙ s⁺‖₂             (operator norm on U β, the simple
                                          bound of the paper's kind).
   ‖U‖_{2→2} is the largest singular value; for q = 1 we use
   ‖U‖_{2→1} ≤ min(√d ‖U‖_{2→2}, Σ_i ‖U_{i,:}‖₂) (Cauchy-Schwarz per row).
   L_cj(R) = min(A, B, C). When the σ' intervals are narrow (small R),
   ρ ≈ 0 and A, B approach the exact ‖∇f_c(x) − ∇f_j(x)‖_q; C covers large R.
5. At R = 0 the bound is exact, and for R > 0 it is at least the value at x
   (it bounds a maximum over a ball containing x), so r(R) ≤ r(0): the best
   R lies in [0, r(0)]. We bisect there on the crossing r(R) = R (r is
   non-increasing for the exact maximum; for our bound the bisection may be
   slightly suboptimal but never invalid) and return the largest
   min{r(R), R} over all evaluated R, each of which is a valid certificate.

Everything is computed in float64 from the model's weights; the result is
rounded down to float32. The radius is 0 when x is misclassified with
respect to a given y or when the top two logits tie.

Float32 rounding allowance. The theorem is about the exact f, but the
model runs in float32, whose logits f̂ differ from f. If |f̂_r(y) − f_r(y)|
≤ ε_r(x) for every y in the ball B_p(x, R₀), it suffices that the exact
margin stays above ε_c + ε_j, so the margins are replaced by
f_c(x) − f_j(x) − ε_c − ε_j (the radius shrinks by (ε_c + ε_j)/L_cj(R)
per class). R₀ is the radius r(0) of step 5 without the allowance, the
largest radius ever returned, so one ε serves the whole search. With
u = 2⁻²⁴ (`unit_roundoff`), γ_n = n u / (1 − n u) and any summation order
(the classical bound |fl(Σ a_i b_i) − Σ a_i b_i| ≤ γ_n Σ |a_i b_i|,
Higham, Accuracy and Stability of Numerical Algorithms, Thm. 3.5; it also
covers blocked and FMA kernels), for y ∈ B_p(x, R₀):

a. hidden pre-activations: |â_l − a_l(y)| ≤ E_a,l = γ_d (⟨|u_l|, |x|⟩ +
   R₀ ‖u_l‖_q), since Σ_i |u_il| |y_i| ≤ ⟨|u_l|, |x|⟩ + ‖u_l‖_q ‖y − x‖_p;
   and â_l ≤ A_l = a_l(x) + R₀ ‖u_l‖_q + E_a,l.
b. activation: σ is 1-Lipschitz (σ' = sigmoid ≤ 1) and increasing, and
   one evaluation of softplus(α t)/α in float32 (a product, TensorFlow's
   softplus with its two cut-offs at |α t| ≈ 13.9, which are relatively
   ≤ 8u off, exp and log1p each within a few ulps, a quotient) errs by at
   most ≈ u (14 σ + 0.3/α); we allow C_σ u (σ + 1/α) with C_σ = 32, so
   |ŝ_l − σ(a_l)| ≤ E_s,l = E_a,l + C_σ u (σ(A_l) + 1/α).
c. output: |f̂_r − f_r| ≤ ε_r = Σ_l |w_lr| (E_s,l + γ_H (σ(A_l) + E_s,l)).

This assumes IEEE float32 arithmetic in the model's matmuls: on GPUs
where TensorFlow's TF32 mode is on (its default on Ampere and newer), pass
`unit_roundoff=2**-11` or turn TF32 off. On the trained MNIST networks of
`docs/results/cross_lipschitz_mnist.md` the allowance is at most 0.0025 in
L2 (median 0.0011, 0.15% of the radius); it is a large fraction only of
radii that are themselves tiny. `unit_roundoff=None` certifies the exact
(float64) formula only.

References:
    Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
    Classifier against Adversarial Manipulation", NIPS 2017, Theorem 2.1.
"""

import math

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.models.mlp import is_mlp1layer
from tfrobust.models.mlp import unpack_mlp1layer

__all__ = ["float32_logit_error", "mlp1layer_lower_bound"]

# Agreement required between the model's own logits and the closed form.
_LOGITS_RTOL = 1e-3
# Slack of "x lies inside the box" (float32 rounding of normalised pixels).
_BOX_ATOL = 1e-6
# IEEE float32 unit roundoff, and the allowance for one evaluation of the
# scaled softplus in units of u (step b of the module docstring: ~14 derived,
# doubled for the ulps of the library exp / log1p).
FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_SOFTPLUS_ULPS = 32.0


def _check_p(p):
    # The theorem is derived for p = 2 and p = inf (dual norms 2 and 1).
    try:
        value = _validate.check_p(p, name="p")
    except ValueError:
        value = None
    if value not in (2, np.inf):
        raise _validate.error("p", "2 or np.inf (also 'l2', 'inf', 'linf')", p)
    return value


def _check_box(x, bounds):
    """Refuses inputs outside the box the certificate is about."""
    if bounds is None:
        return
    lo, hi = _validate.check_pair(bounds, name="bounds")
    x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    if x_min < lo - _BOX_ATOL or x_max > hi + _BOX_ATOL:
        raise ValueError(
            f"Expected `x` inside bounds=({lo:g}, {hi:g}), the input domain the certificate "
            f"is about (pass bounds=None for inputs of another range). Received: x with "
            f"min={x_min:.6g} and max={x_max:.6g}"
        )


def _check_unit_roundoff(unit_roundoff):
    if unit_roundoff is None:
        return 0.0
    return _validate.check_float(unit_roundoff, name="unit_roundoff", minimum=0.0, maximum=1e-3)


def float32_logit_error(model, x, radius, p=2, *, unit_roundoff=FLOAT32_UNIT_ROUNDOFF):
    """Bound ε [B, K] on the float32 model's logit error within a ball.

    For every y with ‖y − x_b‖_p ≤ radius_b, |f̂_r(y) − f_r(y)| ≤ ε[b, r],
    f̂ the model evaluated with unit roundoff `unit_roundoff` and f the exact
    formula (steps a-c of the module docstring); the allowance
    `mlp1layer_lower_bound` makes.

    Args:
        model: a `tfrobust.models.mlp1layer` network.
        x: float tensor [B, ...] with the model's d values per example.
        radius: float [B] (or a scalar) ball radii, >= 0.
        p: 2 or np.inf, the norm of the ball.
        unit_roundoff: the arithmetic's unit roundoff (2⁻²⁴).

    Returns:
        float64 tensor [B, K].

    Raises:
        ValueError: on an unsupported model, bad `p`, `unit_roundoff` or
            radius.
    """
    u, w, alpha = unpack_mlp1layer(model)
    q = 2 if _check_p(p) == 2 else 1
    unit = _check_unit_roundoff(unit_roundoff)
    f64 = tf.float64
    u = tf.cast(u, f64)
    x_flat = tf.reshape(tf.cast(x, f64), [-1, int(u.shape[0])])
    radius = tf.broadcast_to(tf.cast(radius, f64), tf.shape(x_flat)[:1])
    if not bool(tf.reduce_all(radius >= 0.0)):
        raise _validate.error("radius", "radii >= 0", radius.numpy())
    return _logit_error(x_flat, u, tf.cast(w, f64), tf.constant(alpha, f64), q, radius,
                        tf.constant(unit, f64))


def _dual_norm(t, q, axis):
    if q == 2:
        return tf.norm(t, axis=axis)
    return tf.reduce_sum(tf.abs(t), axis=axis)


def _lipschitz_bound(radius, a, unit_norms, delta_w, u, op_norm, q, alpha):
    """L_cj(R) of the module docstring, shape [B, K], for radii `radius` [B]."""
    spread = radius[:, None] * unit_norms[None, :]
    s_lo = tf.sigmoid(alpha * (a - spread))[:, None, :]
    s_hi = tf.sigmoid(alpha * (a + spread))[:, None, :]
    mid = delta_w * 0.5 * (s_lo + s_hi)
    rad = tf.abs(delta_w) * 0.5 * (s_hi - s_lo)
    center = _dual_norm(tf.einsum("dh,bkh->bkd", u, mid), q, axis=-1)
    bound_a = center + tf.reduce_sum(rad * unit_norms, axis=-1)
    bound_b = center + op_norm * tf.norm(rad, axis=-1)
    bound_c = op_norm * tf.norm(tf.abs(delta_w) * s_hi, axis=-1)
    return tf.minimum(bound_a, tf.minimum(bound_b, bound_c))


def _gamma(n, unit):
    n_u = tf.cast(n, unit.dtype) * unit
    return n_u / (1.0 - n_u)


def _logit_error(x_flat, u, w, alpha, q, radius, unit):
    """ε [B, K] of the module docstring (steps a-c) over B_p(x, radius)."""
    d, h = tf.shape(u)[0], tf.shape(u)[1]
    unit_norms = _dual_norm(u, q, axis=0)
    spread = radius[:, None] * unit_norms[None, :]
    err_a = _gamma(d, unit) * (tf.matmul(tf.abs(x_flat), tf.abs(u)) + spread)
    act_hi = tf.math.softplus(alpha * (tf.matmul(x_flat, u) + spread + err_a)) / alpha
    err_s = err_a + _SOFTPLUS_ULPS * unit * (act_hi + 1.0 / alpha)
    per_unit = err_s + _gamma(h, unit) * (act_hi + err_s)
    return tf.matmul(per_unit, tf.abs(w))


@tf.function(reduce_retracing=True, autograph=False)
def _certify(x_flat, u, w, alpha, q, steps, valid, unit):
    """Bisection over R for all examples at once; float64 throughout.

    `unit` is the unit roundoff of the model's arithmetic (0: no allowance).
    """
    a = tf.matmul(x_flat, u)
    logits = tf.matmul(tf.math.softplus(alpha * a) / alpha, w)
    num_classes = tf.shape(w)[1]
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    exact_margin = tf.gather(logits, pred, batch_dims=1)[:, None] - logits
    w_t = tf.transpose(w)
    delta_w = tf.gather(w_t, pred)[:, None, :] - w_t[None, :, :]
    is_self = tf.one_hot(pred, num_classes, on_value=True, off_value=False)
    unit_norms = _dual_norm(u, q, axis=0)
    sv_max = tf.linalg.svd(u, compute_uv=False)[0]
    if q == 2:
        op_norm = sv_max
    else:
        d = tf.cast(tf.shape(u)[0], u.dtype)
        op_norm = tf.minimum(tf.sqrt(d) * sv_max, tf.reduce_sum(tf.norm(u, axis=1)))
    inf = tf.constant(math.inf, u.dtype)

    def ratio(radius, margin):
        lips = _lipschitz_bound(radius, a, unit_norms, delta_w, u, op_norm, q, alpha)
        # L = 0 means f_c - f_j is constant near x: never crossed if positive.
        positive = lips > 0
        r = tf.where(positive, margin / tf.where(positive, lips, tf.ones_like(lips)),
                     tf.where(margin > 0, inf, tf.zeros_like(margin)))
        r = tf.where(is_self, inf, r)
        return tf.reduce_min(r, axis=-1)

    zeros = tf.zeros_like(exact_margin[:, 0])
    hi = ratio(zeros, exact_margin)
    # The optimum lies in [0, r(0)]. r(0) is infinite only when no class
    # can compete at all (K = 1, or every gradient difference is zero with a
    # positive margin); 0 is then reported, which is trivially valid.
    finite = tf.math.is_finite(hi)
    hi = tf.where(finite, hi, zeros)
    # The allowance over the largest ball any returned radius can reach.
    eps = _logit_error(x_flat, u, w, alpha, q, hi, unit)
    eps_pred = tf.gather(eps, pred, batch_dims=1)[:, None]
    margin = exact_margin - tf.where(is_self, tf.zeros_like(eps), eps_pred + eps)
    hi = tf.where(finite, tf.maximum(ratio(zeros, margin), 0.0), zeros)

    def bisect(i, lo, hi, best):
        mid = 0.5 * (lo + hi)
        r_mid = ratio(mid, margin)
        best = tf.maximum(best, tf.minimum(r_mid, mid))
        above = r_mid >= mid
        return i + 1, tf.where(above, mid, lo), tf.where(above, hi, mid), best

    _, lo, hi, best = tf.while_loop(
        lambda i, *_: i < steps, bisect, (tf.constant(0), zeros, hi, zeros)
    )
    r_hi = ratio(hi, margin)
    best = tf.maximum(best, tf.minimum(r_hi, hi))
    best = tf.where(valid, best, zeros)
    return best, logits, pred


def mlp1layer_lower_bound(model, x, p=2, bisection_steps=40, *, y=None, bounds=(0.0, 1.0),
                          unit_roundoff=FLOAT32_UNIT_ROUNDOFF):
    """Certified radius of every example for a one-hidden-layer network.

    See the module docstring for the theorem, the bound on the local
    Cross-Lipschitz constant and the search over R.

    Args:
        model: a `tfrobust.models.mlp1layer` network (Flatten, Dense "hidden"
            without bias, ScaledSoftplus, Dense "logits" without bias;
            dropout layers are the identity at inference).
        x: float tensor [B, ...] whose flattened size is the model's d.
        p: 2 or np.inf (also "l2", "inf", "linf"): the norm of the
            perturbation; the dual q = 2 or 1 is used on the gradients.
        bisection_steps: bisection iterations on R (40).
        y: optional int labels [B]; the radius is 0 where the predicted
            class differs from y (a guarantee is only meaningful for a
            correct prediction). Without y, radii refer to the prediction.
        bounds: `(lo, hi)`, the input domain: `x` outside it is refused
            (a radius about an input no data can be, e.g. pixels in
            [0, 255] for a [0, 1] model, is meaningless). None skips the
            check (the bound itself holds for any x).
        unit_roundoff: unit roundoff of the arithmetic the model runs in
            (2⁻²⁴, IEEE float32): the radius allows for the model's rounding
            error (module docstring). None certifies the exact formula only.

    Returns:
        float32 tensor [B]: no δ with ‖δ‖_p ≤ radius changes the predicted
        class of the float32 model. 0 for misclassified points, tied top
        logits, or margins within the rounding allowance.

    Raises:
        ValueError: on an unsupported model, bad `p` or `bisection_steps`,
            or an `x` (or `y`) of the wrong type, shape, with non-finite
            values or outside `bounds`; also if the model's logits disagree with the closed
            form (the certificate would not be about this model).

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """
    if not is_mlp1layer(model):
        layers = [type(layer).__name__ for layer in getattr(model, "layers", [])]
        raise ValueError(
            "Expected a one-hidden-layer network (tfrobust.models.mlp1layer): the closed-form "
            f"bound certifies only that model. Received: model with layers={layers}"
        )
    u, w, alpha = unpack_mlp1layer(model)
    p = _check_p(p)
    steps = _validate.check_int(bisection_steps, name="bisection_steps", minimum=1)
    unit = _check_unit_roundoff(unit_roundoff)
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"Expected `x` to have a floating dtype. Received: x.dtype={x.dtype.name}")
    d = int(u.shape[0])
    if x.shape.rank is None or x.shape.rank < 2 or x.shape[1:].num_elements() != d:
        raise ValueError(
            f"Expected `x` of shape [B, ...] with {d} values per example (the "
            f"model's input size). Received: x.shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected a non-empty batch. Received: x.shape={tuple(x.shape)}")
    if not bool(tf.reduce_all(tf.math.is_finite(x))):
        raise ValueError("Expected `x` to be finite. Received: x containing NaN or Inf")
    _check_box(x, bounds)
    batch = int(x.shape[0])
    model_logits = tf.convert_to_tensor(model(tf.cast(x, tf.float32), training=False))
    num_classes = int(w.shape[1])
    valid = tf.ones([batch], tf.bool)
    if y is not None:
        y = tf.convert_to_tensor(y)
        if not y.dtype.is_integer or y.shape.rank != 1 or y.shape[0] != batch:
            raise ValueError(
                f"Expected `y` to be an int tensor of shape [{batch}]. "
                f"Received: y with dtype={y.dtype.name} and shape={tuple(y.shape)}"
            )
        if int(tf.size(y)) and (int(tf.reduce_min(y)) < 0 or int(tf.reduce_max(y)) >= num_classes):
            raise ValueError(f"Expected `y` in [0, {num_classes}). Received: y={y.numpy()}")
        valid = tf.equal(tf.argmax(model_logits, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32))

    f64 = tf.float64
    x_flat = tf.reshape(tf.cast(x, f64), [batch, d])
    radius, logits, pred = _certify(
        x_flat, tf.cast(u, f64), tf.cast(w, f64), tf.constant(alpha, f64),
        2 if p == 2 else 1, tf.constant(steps), valid, tf.constant(unit, f64),
    )
    scale = 1.0 + float(tf.reduce_max(tf.abs(logits)))
    err = float(tf.reduce_max(tf.abs(logits - tf.cast(model_logits, f64))))
    if err > _LOGITS_RTOL * scale:
        raise ValueError(
            "Expected the model's logits to match the one-hidden-layer closed "
            f"form f(x) = W^T softplus_alpha(U^T x). Received: a model whose logits "
            f"differ by {err:.3g}"
        )
    # Where float32 rounding makes the model pick another class (a near-tie),
    # the guarantee is about a different class: certify nothing there.
    same = tf.equal(pred, tf.argmax(model_logits, axis=-1, output_type=tf.int32))
    radius = tf.where(same, radius, tf.zeros_like(radius))
    out = tf.cast(radius, tf.float32)
    # Round down: a certificate must not grow in the cast.
    return tf.where(tf.cast(out, f64) > radius, tf.math.nextafter(out, tf.zeros_like(out)), out)

