"""Carlini-Wagner L2 attack: the smallest L2 perturbation found by optimization.

Example:

```python
import numpy as np
import keras
from tfrobust.attacks import CarliniWagnerL2

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
attack = CarliniWagnerL2(steps=1000)
result = attack.minimize(model, x)      # MinimizationResult(x_adv, norm, success)
x_adv = attack(model, x)                # the same x_adv (x where unsuccessful)
```

The helpers at the bottom of this module (hyper-parameter checks, the
hinge objective and the per-example binary search over the constant `c`) are
shared with `tfrobust.attacks.ead`, which runs the same outer search.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from tfrobust.attacks.base import MinimizationAttack

__all__ = ["CarliniWagnerL2"]

# Adam constants of the reference implementation (TF1 AdamOptimizer defaults).
_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPSILON = 1e-8
# The reference keeps arctanh finite for pixels on the box faces.
_TANH_SHRINK = 0.999999
# Upper bound of the binary search before any success (the reference's 1e10);
# a bound below `_UPPER_FOUND` means "some c has succeeded".
_UPPER_INIT = 1e10
_UPPER_FOUND = 1e9


class CarliniWagnerL2(MinimizationAttack):
    """Carlini & Wagner's L2 attack (tanh box, Adam, binary search over c).

    Minimizes `||x' - x||_2^2 + c * f(x')` over `x' = lo + (hi - lo) *
    (tanh(w) + 1) / 2`, which keeps `x'` inside the box without clipping.
    `f` is the paper's f6 in the sign conventions of
    `tfrobust.losses.margin` (`m = max_{j != y} z_j - z_y`): untargeted
    `f = max(-m(z, y) + confidence, 0)`, targeted `f = max(m(z, t) +
    confidence, 0)`, which are the paper's `max(., -confidence)` shifted by
    the constant `confidence` as in the reference code. For every example `c`
    starts at `initial_const`, is multiplied by 10 until an attempt succeeds
    and is then bisected; the smallest successful perturbation over all
    attempts is returned. Each attempt runs `steps` iterations of Adam
    (state reset per attempt) and, with `abort_early`, stops an example once
    its loss has not decreased by 0.01% over `steps // 10` iterations.

    An example counts as successful when the goal holds with the confidence
    margin: `max_{j != y} z_j - z_y > confidence` (untargeted) or
    `z_t - max_{j != t} z_j > confidence` (targeted).

    Args:
        threat: optional budget (e.g. `LpBall(2, eps)`): `__call__` returns x
            for examples whose minimal perturbation exceeds it. `None` (the
            default) gives the unbounded minimal perturbation.
        binary_search_steps: number of attempts with different `c` (paper 9).
            With 10 or more, the last attempt uses the upper bound of the
            search, as in the reference implementation.
        steps: Adam iterations per attempt. The paper uses 10000; 1000 is a
            common budget that loses little on small networks.
        learning_rate: Adam step size (paper 1e-2).
        initial_const: first value of `c` (paper 1e-3).
        confidence: the margin kappa required of a success (paper 0).
        abort_early: stop an example's attempt when its loss stalls.
        bounds: `(lo, hi)`, the valid input domain.

    Raises:
        ValueError: on a non-positive `steps`, `binary_search_steps`,
            `learning_rate` or `initial_const`, a negative `confidence`, or
            a non-boolean `abort_early`.

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural
        Networks", IEEE S&P 2017 (arXiv:1608.04644).
    """

    norm_p = 2

    def __init__(
        self,
        threat=None,
        *,
        binary_search_steps=9,
        steps=10000,
        learning_rate=1e-2,
        initial_const=1e-3,
        confidence=0.0,
        abort_early=True,
        bounds=(0.0, 1.0),
    ):
        super().__init__(threat, bounds=bounds)
        self.binary_search_steps = check_int("binary_search_steps", binary_search_steps, 1)
        self.steps = check_int("steps", steps, 1)
        self.learning_rate = check_float("learning_rate", learning_rate, positive=True)
        self.initial_const = check_float("initial_const", initial_const, positive=True)
        self.confidence = check_float("confidence", confidence, positive=False)
        self.abort_early = check_bool("abort_early", abort_early)
        self._attempt_fn = None

    def get_config(self):
        config = super().get_config()
        config.update(
            binary_search_steps=self.binary_search_steps,
            steps=self.steps,
            learning_rate=self.learning_rate,
            initial_const=self.initial_const,
            confidence=self.confidence,
            abort_early=self.abort_early,
        )
        return config

    def _minimize(self, model, x, y, targeted):
        if self._attempt_fn is None:
            self._attempt_fn = tf.function(self._attempt, reduce_retracing=True)
        lo, hi = self.bounds
        half_range = (hi - lo) / 2.0
        center = (hi + lo) / 2.0
        w0 = tf.atanh((x - center) / half_range * _TANH_SHRINK)
        search = BinarySearch(tf.shape(x)[0], self.initial_const)
        best_dist = tf.fill(tf.shape(x)[:1], tf.constant(np.inf, tf.float32))
        best_x = x
        for attempt in range(self.binary_search_steps):
            if self.binary_search_steps >= 10 and attempt == self.binary_search_steps - 1:
                search.use_upper_bound()
            found, best_dist, best_x = self._attempt_fn(
                model, x, w0, y, search.const, best_dist, best_x, targeted
            )
            search.update(found)
        return best_x, tf.math.is_finite(best_dist)

    def _attempt(self, model, x, w0, y, const, best_dist, best_x, targeted):
        """One Adam run at fixed per-example `c`; updates the overall best."""
        lo, hi = self.bounds
        half_range = (hi - lo) / 2.0
        center = (hi + lo) / 2.0
        kappa = tf.constant(self.confidence, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        objective = signed_margin(model, y, targeted)
        period = max(self.steps // 10, 1)
        batch_shape = tf.shape(x)[:1]
        expand = lambda v: tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))  # noqa: E731

        def body(i, w, m, v, active, prev_loss, found, best_dist, best_x):
            tanh_w = tf.tanh(w)
            x_adv = tanh_w * half_range + center
            sm, grad_sm = self.value_and_grad(objective, x_adv)
            dist = squared_l2(x_adv - x)
            loss = dist + const * tf.maximum(sm + kappa, 0.0)
            success = sm < -kappa
            found = tf.logical_or(found, success)
            better = success & (dist < best_dist)
            best_dist = tf.where(better, dist, best_dist)
            best_x = tf.where(expand(better), x_adv, best_x)
            if self.abort_early:
                # The reference tests the batch's summed loss; testing each
                # example's own loss keeps results independent of the batch.
                check = tf.equal(i % period, 0)
                stalled = check & (loss > prev_loss * 0.9999)
                active = active & ~stalled
                prev_loss = tf.where(check, loss, prev_loss)
            # The hinge's gradient is the margin's where the hinge is
            # positive and zero where it is clipped at 0.
            hinge_grad = tf.cast(sm + kappa > 0.0, tf.float32) * const
            grad_x = 2.0 * (x_adv - x) + expand(hinge_grad) * grad_sm
            grad_w = grad_x * half_range * (1.0 - tf.square(tanh_w))
            t = tf.cast(i + 1, tf.float32)
            m_new = _ADAM_BETA1 * m + (1.0 - _ADAM_BETA1) * grad_w
            v_new = _ADAM_BETA2 * v + (1.0 - _ADAM_BETA2) * tf.square(grad_w)
            step = lr * tf.sqrt(1.0 - _ADAM_BETA2**t) / (1.0 - _ADAM_BETA1**t)
            w_new = w - step * m_new / (tf.sqrt(v_new) + _ADAM_EPSILON)
            mask = expand(active)
            # Stopped examples keep their iterate (and so their best) frozen.
            w = tf.where(mask, w_new, w)
            m = tf.where(mask, m_new, m)
            v = tf.where(mask, v_new, v)
            return i + 1, w, m, v, active, prev_loss, found, best_dist, best_x

        def cond(i, w, m, v, active, *_):
            return (i < self.steps) & tf.reduce_any(active)

        zeros = tf.zeros_like(x)
        state = (
            tf.constant(0),
            w0,
            zeros,
            zeros,
            tf.ones(batch_shape, tf.bool),
            # The reference starts from 1e6, which aborts at the very first
            # check any attempt whose initial loss exceeds 1e6 (large c); the
            # paper means "stop when the loss stalls", so start from +inf.
            tf.fill(batch_shape, tf.constant(np.inf, tf.float32)),
            tf.zeros(batch_shape, tf.bool),
            best_dist,
            best_x,
        )
        state = tf.while_loop(cond, body, state)
        _, _, _, _, _, _, found, best_dist, best_x = state
        return found, best_dist, best_x


# ----------------------------------------------------------------------
# Pieces shared with EAD.


def signed_margin(model, y, targeted):
    """Returns `x -> s * margin(model(x), y)`, negative once the goal holds.

    `s = -1` untargeted (the margin of `tfrobust.losses` is positive when
    misclassified) and `s = +1` targeted (the margin of the target class is
    negative when the target wins), so a minimizer always drives it down and
    `s * margin < -confidence` is the success test with confidence.
    """
    from tfrobust import losses  # Imported late: losses is a sibling module.

    sign = 1.0 if targeted else -1.0

    def objective(x):
        return sign * losses.margin(model(x), y)

    return objective


def squared_l2(delta):
    """Per-example squared L2 norm over every non-batch axis."""
    return tf.reduce_sum(tf.square(delta), axis=list(range(1, delta.shape.rank)))


class BinarySearch:
    """The reference's per-example search over the constant c.

    Until an attempt succeeds, c is multiplied by 10 (and becomes a lower
    bound); afterwards it is the midpoint of the bracket [lower, upper].
    """

    def __init__(self, batch_size, initial_const):
        self.const = tf.fill([batch_size], tf.constant(initial_const, tf.float32))
        self.lower = tf.zeros([batch_size], tf.float32)
        self.upper = tf.fill([batch_size], tf.constant(_UPPER_INIT, tf.float32))

    def use_upper_bound(self):
        self.const = self.upper

    def update(self, found):
        self.upper = tf.where(found, tf.minimum(self.upper, self.const), self.upper)
        self.lower = tf.where(found, self.lower, tf.maximum(self.lower, self.const))
        bracketed = self.upper < _UPPER_FOUND
        midpoint = (self.lower + self.upper) / 2.0
        self.const = tf.where(
            bracketed, midpoint, tf.where(found, self.const, self.const * 10.0)
        )


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def check_float(name, value, positive):
    """Checks a finite real number that is > 0 (`positive`) or >= 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        what = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"Expected `{name}` to be {what}. Received: {name}={value!r}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Expected `{name}` to be a bool. Received: {name}={value!r}")
    return bool(value)
