"""Box-constrained minimal-L2 attack of the Cross-Lipschitz paper.

Example:

```python
import numpy as np
from tfrobust import models
from tfrobust.attacks.boxed_linear import BoxedLinearL2

model = models.mlp1layer((28, 28, 1), 10, hidden_units=64)
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
result = BoxedLinearL2(mult=1.2).minimize(model, x)
result.norm      # per-example upper bounds on the minimal L2 change
```

Each step solves the linearized problem exactly: with v = ∇f_orig − ∇f_t
and c = f_t − f_orig < 0, minimize ‖δ‖₂ subject to ⟨v, δ⟩ = c and
lo ≤ x + δ ≤ hi (`boxed_linear_step`, O(d log d) per example). A binary
search over c then moves the solution onto the real decision boundary, each
candidate being checked with a forward pass of the model, so every
returned δ provably changes the class: its norm is an upper bound on the
minimal adversarial L2 perturbation.

References:
    Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
    Classifier against Adversarial Manipulation", NIPS 2017.
"""

import math

import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import nonfinite_rows

__all__ = [
    "MULT_BY_DATASET",
    "BoxedLinearL2",
    "boxed_linear_step",
]

# Growth factor of the bracketing phase per dataset, as in the original.
MULT_BY_DATASET = {"mnist": 1.2, "cifar10": 1.3, "gtsrb": 1.2}


def _solve_flat(x, v, c, lo, hi):
    """`boxed_linear_step` on rows: x, v [N, d], c [N] -> (delta, feasible)."""
    lo_gap = lo - x
    hi_gap = hi - x
    # Coordinate i saturates at the face -λ v_i reaches first: b_i = lo - x_i
    # when v_i > 0, hi - x_i when v_i < 0, at λ_i = -b_i / v_i >= 0.
    face = tf.where(v > 0, lo_gap, tf.where(v < 0, hi_gap, tf.zeros_like(x)))
    nonzero = tf.not_equal(v, 0)
    safe_v = tf.where(nonzero, v, tf.ones_like(v))
    inf = tf.constant(math.inf, x.dtype)
    lam = tf.where(nonzero, tf.maximum(-face / safe_v, 0.0), inf)

    order = tf.argsort(lam, axis=-1, stable=True)
    lam_s = tf.gather(lam, order, batch_dims=1)
    v_s = tf.gather(v, order, batch_dims=1)
    face_s = tf.gather(face, order, batch_dims=1)
    v_sq = tf.square(v_s)
    v_face = v_s * face_s
    # After the k-th breakpoint, coordinates m > k are still free.
    # Reverse cumsums end in exact zeros, so no cancellation there.
    free_after = tf.cumsum(v_sq, axis=-1, reverse=True, exclusive=True)
    free_from = tf.cumsum(v_sq, axis=-1, reverse=True)
    sat_upto = tf.cumsum(v_face, axis=-1)
    sat_before = tf.cumsum(v_face, axis=-1, exclusive=True)
    # g(λ_k) = Σ_{m<=k} v_m b_m − λ_k Σ_{m>k} v_m²; λ_k = inf only where
    # v = 0, and then nothing is free after it.
    finite_lam = tf.where(free_after > 0, lam_s, tf.zeros_like(lam_s))
    g = sat_upto - finite_lam * free_after

    c_col = c[:, None]
    crossed = g <= c_col
    feasible = tf.logical_and(tf.reduce_any(crossed, axis=-1), c < 0)
    first = tf.argmax(tf.cast(crossed, tf.int32), axis=-1, output_type=tf.int32)
    # On [λ_{k-1}, λ_k], g(λ) = Σ_{m<k} v_m b_m − λ Σ_{m>=k} v_m²; the free
    # set includes coordinate k itself, whose v is nonzero, so no 0/0.
    free = tf.gather(free_from, first, batch_dims=1)
    sat = tf.gather(sat_before, first, batch_dims=1)
    lam_star = tf.math.divide_no_nan(sat - c, free)
    delta = tf.clip_by_value(-lam_star[:, None] * v, lo_gap, hi_gap)
    delta = tf.where(feasible[:, None], delta, tf.zeros_like(delta))
    return delta, feasible


@tf.autograph.experimental.do_not_convert
def boxed_linear_step(x, v, c, bounds=(0.0, 1.0)):
    """Exact minimizer of ‖δ‖₂ s.t. ⟨v, δ⟩ = c and lo ≤ x + δ ≤ hi, batched.

    KKT: δ(λ) = clip(−λ v, lo − x, hi − x) with λ ≥ 0, and
    g(λ) = ⟨v, δ(λ)⟩ is piecewise linear and non-increasing, with a
    breakpoint where each coordinate reaches its face. The breakpoints are
    sorted per example, g is evaluated at all of them with cumulative sums,
    and λ* is solved in closed form on the interval where g crosses c:
    O(d log d) per example with no loop over coordinates.

    In the attack's orientation v = ∇f_orig − ∇f_target and
    c = f_target − f_orig < 0. The problem is infeasible when c ≥ 0, when
    v = 0, or when c is below min_λ g(λ) (the target is not reachable inside
    the box); then `feasible` is False and δ = 0.

    Args:
        x: float tensor [B, ...] inside `bounds`.
        v: float tensor shaped like `x`.
        c: float tensor [B] (or a scalar, broadcast over the batch).
        bounds: `(lo, hi)`, the box.

    Returns:
        `(delta, feasible)`: `delta` shaped like `x`, `feasible` bool [B].

    Raises:
        ValueError: on mismatched shapes, a non-float `x`, bad `bounds`, or
            (when run eagerly) non-finite values or `x` outside the box.
    """
    lo, hi = _validate.check_pair(bounds, name="bounds")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"Expected `x` to have a floating dtype. Received: x.dtype={x.dtype.name}")
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"Expected `x` of rank >= 2 ([B, ...]). Received: x.shape={tuple(x.shape)}")
    v = tf.cast(tf.convert_to_tensor(v), x.dtype)
    if not v.shape.is_compatible_with(x.shape):
        raise ValueError(
            f"Expected `v` shaped like x {tuple(x.shape)}. Received: v.shape={tuple(v.shape)}"
        )
    c = tf.cast(tf.convert_to_tensor(c), x.dtype)
    batch = tf.shape(x)[0]
    if c.shape.rank == 0:
        c = tf.fill([batch], c)
    if c.shape.rank != 1 or not c.shape.is_compatible_with(x.shape[:1]):
        raise ValueError(
            f"Expected `c` of shape [B] with B={x.shape[0]}. Received: c.shape={tuple(c.shape)}"
        )
    if tf.executing_eagerly():
        for name, t in (("x", x), ("v", v), ("c", c)):
            if not bool(tf.reduce_all(tf.math.is_finite(t))):
                raise ValueError(f"Expected `{name}` to be finite. Received: {name} with NaN or Inf")
        x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if int(tf.size(x)) and (x_min < lo - 1e-6 or x_max > hi + 1e-6):
            raise ValueError(f"Expected `x` inside bounds={(lo, hi)}. "
                             f"Received: x with min={x_min} and max={x_max}")
    x_flat = tf.clip_by_value(tf.reshape(x, [batch, -1]), lo, hi)
    delta, feasible = _solve_flat(x_flat, tf.reshape(v, [batch, -1]), c, lo, hi)
    return tf.reshape(delta, tf.shape(x)), feasible


def _input_gradients(attack, model, x):
    """Logits [B, K] and all K input gradients [B, K, d].

    `model` is the attack's wrapped model (`_checks.LogitsModel`), which
    calls Keras models in inference mode and plain callables as they are.
    """
    if type(attack).value_and_grad is Attack.value_and_grad:
        # Default autodiff source: one forward pass and a vectorized
        # Jacobian, exact per example since inference-mode layers do not mix
        # examples (and several times cheaper to trace than K tapes).
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x)
        grads = tape.batch_jacobian(
            logits, x, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return logits, tf.reshape(grads, [tf.shape(x)[0], int(logits.shape[-1]), -1])
    logits = model(x)
    num_classes = int(logits.shape[-1])
    grads = []
    for k in range(num_classes):
        # One gradient source: `value_and_grad` (overridable by estimators).
        _, g = attack.value_and_grad(lambda z, k=k: model(z)[:, k], x)
        grads.append(tf.reshape(g, [tf.shape(x)[0], -1]))
    return logits, tf.stack(grads, axis=1)


class BoxedLinearL2(MinimizationAttack):
    """Minimal-L2 attack: exact box-constrained linear steps + binary search.

    For every example and every target class k other than the original class
    (all K − 1 targets, solved together), v = ∇f_orig − ∇f_k and
    c = f_k − f_orig. The search over c follows the original:

    1. Bracketing: solve the linearized step for c; if the new point is
       adversarial (checked with a forward pass: some class other than the
       original one has a larger logit), remember δ and divide c by `mult`;
       if not, multiply c by `mult`; if the step is infeasible, divide c by
       `mult`, and give up on that target when this happens once
       `give_up_after` or more iterations have been made. Stop when both an
       adversarial and a non-adversarial c are known.
    2. Bisection between the last adversarial and non-adversarial c until
       ‖δ‖₂ changes by less than `tol` between two iterations.

    The result for a target is its last adversarial δ (on the wrong side of
    the boundary, within `tol`); the smallest over targets is returned, and
    +inf where no target succeeds. `mult` becomes `flat_mult` for a target
    whose mean |v| is below `flat_threshold` (very flat, e.g. Cross-Lipschitz
    regularized, models). All targets of a chunk of `batch_size` examples run
    in lockstep in one compiled `tf.while_loop`, one batched forward pass per
    iteration; `max_iter` caps that loop (the original has no cap; its
    searches end in a few dozen iterations, so the cap only guards against
    endless loops, and a capped search still returns its last adversarial δ).

    Gradients are taken in inference mode, so BatchNorm uses its moving
    statistics (the original switched to batch statistics for gradients;
    that couples the examples and is not the per-example quantity the
    method assumes).

    With `targeted=True`, only the target class y is searched and success
    means the target's logit is the largest. Examples already adversarial
    (prediction ≠ y untargeted, = y targeted) are returned unchanged with
    norm 0.

    Args:
        threat: optional threat model; `__call__` then keeps only the
            perturbations within its budget (see `MinimizationAttack`).
        bounds: `(lo, hi)`, the valid input domain.
        mult: bracketing growth factor; the original's per-dataset values
            are in `MULT_BY_DATASET` (1.2 MNIST, 1.3 CIFAR-10, 1.2 GTSRB).
        flat_mult: growth factor for flat targets (1.7).
        flat_threshold: mean |v| below which a target is flat (0.01).
        tol: bisection stops when ‖δ‖₂ changes by less (0.01).
        give_up_after: iterations after which an infeasible step ends the
            search of a target (10).
        max_iter: cap on the total iterations of one search (100).
        batch_size: examples per chunk (the original's 25); memory grows as
            batch_size · (K − 1) · d.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on bad hyper-parameters, or bad inputs at call time.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """

    norm_p = 2

    def __init__(self, threat=None, *, bounds=(0.0, 1.0), mult=1.2, flat_mult=1.7,
                 flat_threshold=0.01, tol=0.01, give_up_after=10, max_iter=100,
                 batch_size=25, validate="full"):
        super().__init__(threat, bounds=bounds, validate=validate)
        above_one = dict(minimum=1.0, exclusive_minimum=True)
        self.mult = _validate.check_float(mult, name="mult", **above_one)
        self.flat_mult = _validate.check_float(flat_mult, name="flat_mult", **above_one)
        self.flat_threshold = _validate.check_float(flat_threshold, name="flat_threshold", minimum=0.0)
        self.tol = _validate.check_float(tol, name="tol", minimum=0.0, exclusive_minimum=True)
        self.give_up_after = _validate.check_int(give_up_after, name="give_up_after", minimum=0)
        self.max_iter = _validate.check_int(max_iter, name="max_iter", minimum=1)
        self.batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        # The loops are explicit `tf.while_loop`s: autograph would only add
        # seconds of source transformation to every first trace.
        self._chunk_fn = tf.function(self._chunk, reduce_retracing=True, autograph=False)

    @property
    def steps(self):
        """The cap on one search's iterations (`max_iter`)."""
        return self.max_iter

    def get_config(self):
        config = super().get_config()
        config.update(
            mult=self.mult, flat_mult=self.flat_mult, flat_threshold=self.flat_threshold,
            tol=self.tol, give_up_after=self.give_up_after, max_iter=self.max_iter,
            batch_size=self.batch_size,
        )
        return config

    def _minimize(self, model, x, y, targeted):
        total = int(x.shape[0])
        chunk = min(self.batch_size, total)
        pieces, success = [], []
        for start in range(0, total, chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            size = int(xb.shape[0])
            if size < chunk:
                # Pad the last chunk with copies of its first example so that
                # every chunk has one shape: a retrace costs far more than the
                # few extra rows.
                pad = tf.zeros([chunk - size], tf.int32)
                xb = tf.concat([xb, tf.gather(xb, pad)], axis=0)
                yb = tf.concat([yb, tf.gather(yb, pad)], axis=0)
            x_adv, ok = self._chunk_fn(model, xb, yb, targeted)
            pieces.append(x_adv[:size])
            success.append(ok[:size])
        return tf.concat(pieces, axis=0), tf.concat(success, axis=0)

    def _success(self, logits, cls, targeted):
        """Adversarial test of the original: some other class beats `cls`."""
        own = tf.gather(logits, cls, batch_dims=1)
        others = tf.where(
            tf.one_hot(cls, tf.shape(logits)[1], on_value=True, off_value=False),
            tf.constant(-math.inf, logits.dtype), logits,
        )
        best_other = tf.reduce_max(others, axis=-1)
        # Targeted: `cls` is the target and must beat every other class.
        # Non-finite logits never count (an infinite one would "win").
        won = own > best_other if targeted else best_other > own
        return tf.logical_and(won, tf.logical_not(nonfinite_rows(logits)))

    def _chunk(self, model, x, y, targeted):
        lo, hi = self.bounds
        batch = tf.shape(x)[0]
        logits, grads = _input_gradients(self, model, x)
        num_classes = int(logits.shape[-1])
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        already = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
        if targeted:
            targets = y[:, None]
        else:
            # All K - 1 classes other than y, per example, in class order.
            others = tf.range(num_classes - 1, dtype=tf.int32)[None, :]
            targets = others + tf.cast(others >= y[:, None], tf.int32)
        n_t = int(targets.shape[1])
        orig = tf.repeat(pred if targeted else y, n_t)
        tgt = tf.reshape(targets, [-1])
        row_ex = tf.repeat(tf.range(batch), n_t)
        x_flat = tf.reshape(x, [batch, -1])
        x_rows = tf.gather(x_flat, row_ex)
        g_rows = tf.gather(grads, row_ex)
        f_rows = tf.gather(logits, row_ex)
        v = tf.gather(g_rows, orig, batch_dims=1) - tf.gather(g_rows, tgt, batch_dims=1)
        c0 = tf.gather(f_rows, tgt, batch_dims=1) - tf.gather(f_rows, orig, batch_dims=1)
        mult = tf.where(
            tf.reduce_mean(tf.abs(v), axis=-1) < self.flat_threshold, self.flat_mult, self.mult
        )
        check_cls = tgt if targeted else orig
        best, found = self._search(model, x, x_rows, v, c0, mult, check_cls,
                                   tf.gather(already, row_ex), targeted)
        # Smallest successful δ over the targets of each example.
        norms = tf.where(found, tf.norm(best, axis=-1), math.inf)
        pick = tf.argmin(tf.reshape(norms, [batch, n_t]), axis=-1, output_type=tf.int32)
        delta = tf.gather(tf.reshape(best, [batch, n_t, -1]), pick, batch_dims=1)
        success = tf.reduce_any(tf.reshape(found, [batch, n_t]), axis=-1)
        delta = tf.where(already[:, None], tf.zeros_like(delta), delta)
        x_adv = tf.clip_by_value(x_flat + delta, lo, hi)
        return tf.reshape(x_adv, tf.shape(x)), tf.logical_or(success, already)

    def _search(self, model, x, x_rows, v, c0, mult, check_cls, skip, targeted):
        """Binary search over c for all rows at once; see the class docstring."""
        lo, hi = self.bounds
        image_shape = tf.concat([[-1], tf.shape(x)[1:]], axis=0)
        n = tf.shape(x_rows)[0]
        zeros = tf.zeros([n], x_rows.dtype)
        false = tf.zeros([n], tf.bool)

        def body(step, c, done, phase2, succ_c, fail_c, has_succ, has_fail, best, cur_norm):
            delta, feasible = _solve_flat(x_rows, v, c, lo, hi)
            x_try = tf.clip_by_value(x_rows + delta, lo, hi)
            logits = model(tf.reshape(x_try, image_shape))
            flipped = tf.logical_and(feasible, self._success(logits, check_cls, targeted))
            norm = tf.norm(x_try - x_rows, axis=-1)
            active = tf.logical_not(done)
            p1 = tf.logical_and(active, tf.logical_not(phase2))
            p2 = tf.logical_and(active, phase2)

            won = tf.logical_and(active, flipped)
            lost = tf.logical_and(active, tf.logical_and(feasible, tf.logical_not(flipped)))
            # Phase 2 counts an infeasible step as a failure, like the original
            # (whose zero step leaves x on the original side).
            lost = tf.logical_or(lost, tf.logical_and(p2, tf.logical_not(feasible)))
            best = tf.where(won[:, None], x_try - x_rows, best)
            succ_c = tf.where(won, c, succ_c)
            fail_c = tf.where(lost, c, fail_c)
            has_succ = tf.logical_or(has_succ, won)
            has_fail = tf.logical_or(has_fail, lost)

            give_up = tf.logical_and(p1, tf.logical_and(tf.logical_not(feasible),
                                                        step >= self.give_up_after))
            # Entering phase 2 the original compares this step's norm with 0.
            enter = tf.logical_and(p1, tf.logical_and(has_succ, has_fail))
            enter = tf.logical_and(enter, tf.logical_not(give_up))
            prev_norm = tf.where(enter, zeros, cur_norm)
            cur_norm = tf.where(active, norm, cur_norm)
            converged = tf.abs(cur_norm - prev_norm) <= self.tol
            stop = tf.logical_or(give_up, tf.logical_and(tf.logical_or(enter, p2), converged))
            done = tf.logical_or(done, stop)
            phase2 = tf.logical_or(phase2, enter)

            c_p1 = tf.where(lost, c * mult, c / mult)
            c = tf.where(tf.logical_and(p1, tf.logical_not(enter)), c_p1, c)
            c = tf.where(phase2, 0.5 * (succ_c + fail_c), c)
            return step + 1, c, done, phase2, succ_c, fail_c, has_succ, has_fail, best, cur_norm

        def cond(step, c, done, *rest):
            return tf.logical_and(step < self.max_iter, tf.logical_not(tf.reduce_all(done)))

        state = (tf.constant(0), c0, skip, false, zeros, zeros, false, false,
                 tf.zeros_like(x_rows), zeros)
        state = tf.while_loop(cond, body, state)
        return state[8], state[6]
