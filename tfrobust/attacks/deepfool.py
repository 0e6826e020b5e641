"""DeepFool: iterative linearization towards the closest decision boundary.

Example:

```python
import numpy as np
import keras
from tfrobust.attacks import DeepFool

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
result = DeepFool(p=np.inf).minimize(model, x)   # result.norm: L-inf norms
```
"""

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import is_adversarial

__all__ = ["DeepFool"]
# The reference implementation adds this to every step's distance so that
# the iterate lands strictly past the linearized boundary.
_STEP_SLACK = 1e-4


class DeepFool(MinimizationAttack):
    """Moosavi-Dezfooli et al.'s DeepFool for the L2 or L∞ norm.

    At each iteration the classifier is linearized around the current point
    `x_i`. Untargeted, for every candidate class `k != y` (the `candidates -
    1` classes with the largest logits at `x`), `f_k = z_k - z_y` and `w_k =
    grad f_k`; the closest linearized boundary is `l = argmin_k |f_k| /
    ||w_k||_q` (q the dual norm: 2 for L2, 1 for L∞), and the step towards
    it is `r = (|f_l| / ||w_l||_q + 1e-4) * w_l / ||w_l||_2` for L2 and
    `(|f_l| / ||w_l||_1 + 1e-4) * sign(w_l)` for L∞. Steps accumulate in
    `r_tot` and the next point is `clip(x + (1 + overshoot) * r_tot)`;
    an example stops as soon as it is adversarial. Targeted, the only
    boundary is the one between the target `t` and the current top class
    (`f = z_t - max_{j != t} z_j`), until `t` wins.

    All examples run together: stopped examples are masked, and the
    candidate gradients come from one call of `value_and_grad` on the batch
    tiled `candidates - 1` times.

    Args:
        threat: optional budget (e.g. `LpBall(2, eps)`): `__call__` returns x
            for examples whose perturbation exceeds it. `None` (the default)
            gives the unbounded minimal perturbation.
        p: 2 or `np.inf` (also "l2", "inf", "linf"): the norm minimized.
        steps: maximum number of iterations (paper 50).
        overshoot: the factor `1 + overshoot` applied to the accumulated
            perturbation to cross the boundary (paper 0.02).
        candidates: number of top classes at `x` considered, the label
            included (reference code 10); capped at the number of classes.
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` or `"cheap"` (see `Attack`).

    An iterate where the model's logits are not finite is not adversarial:
    the example keeps stepping (and fails if it never leaves that region).

    Raises:
        ValueError: on an unknown `p`, non-positive `steps`, negative
            `overshoot` or `candidates < 2`.

    References:
        Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate
        method to fool deep neural networks", CVPR 2016 (arXiv:1511.04599).
    """

    norm_p = 2
    # Success is tested on the model at the returned iterate itself.
    success_verified = True

    def __init__(
        self, threat=None, *, p=2, steps=50, overshoot=0.02, candidates=10, bounds=(0.0, 1.0),
        validate="full",
    ):
        super().__init__(threat, bounds=bounds, validate=validate)
        try:
            norm = _validate.check_p(p, name="p")
        except ValueError:
            norm = None
        if norm not in (2, np.inf):
            raise _validate.error("p", "2 or np.inf (or 'l2', 'linf')", p)
        self.p = norm
        self.norm_p = norm
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.overshoot = _validate.check_float(overshoot, name="overshoot", minimum=0.0)
        self.candidates = _validate.check_int(candidates, name="candidates", minimum=2)
        self._loop_fn = None

    def get_config(self):
        config = super().get_config()
        config.update(
            p="inf" if self.p == np.inf else 2,
            steps=self.steps,
            overshoot=self.overshoot,
            candidates=self.candidates,
        )
        return config

    def _minimize(self, model, x, y, targeted):
        if self._loop_fn is None:
            self._loop_fn = tf.function(self._loop, reduce_retracing=True)
        return self._loop_fn(model, x, y, targeted)

    def _loop(self, model, x, y, targeted):
        lo, hi = self.bounds
        scale = 1.0 + self.overshoot
        rank = x.shape.rank
        logits = model(x)
        num_classes = logits.shape[-1]
        if num_classes < 2:
            raise ValueError(
                "Expected a model with at least 2 classes. "
                f"Received: logits of shape {tuple(logits.shape)}"
            )
        if targeted:
            others = None
            num_pairs = 1
        else:
            # The top `candidates - 1` classes other than y at the start, as
            # the reference fixes its candidate set from the clean logits.
            num_pairs = min(self.candidates, num_classes) - 1
            masked = tf.where(tf.one_hot(y, num_classes) > 0, -np.inf, logits)
            others = tf.math.top_k(masked, k=num_pairs).indices
        flat_others = None if others is None else tf.reshape(others, [-1])
        y_rep = tf.repeat(y, num_pairs)

        def objective(x_rep):
            z = model(x_rep)
            z_y = tf.gather(z, y_rep, batch_dims=1)
            if targeted:
                # f = z_t - max_{j != t} z_j: the boundary between the target
                # and whichever class currently wins.
                rest = tf.where(tf.one_hot(y_rep, num_classes) > 0, -np.inf, z)
                return z_y - tf.reduce_max(rest, axis=-1)
            return tf.gather(z, flat_others, batch_dims=1) - z_y

        def body(i, r_tot, active):
            x_i = tf.clip_by_value(x + scale * r_tot, lo, hi)
            x_rep = tf.repeat(x_i, num_pairs, axis=0)
            f, w = self.value_and_grad(objective, x_rep)
            # A non-finite f (the model breaks down near x_i) gives no step.
            f = tf.reshape(tf.where(tf.math.is_finite(f), f, np.inf), [-1, num_pairs])
            w = tf.where(tf.math.is_finite(w), w, tf.zeros_like(w))
            w = tf.reshape(w, tf.concat([[-1, num_pairs], tf.shape(x)[1:]], 0))
            w_axes = list(range(2, rank + 1))
            w_l2 = tf.sqrt(tf.reduce_sum(tf.square(w), axis=w_axes))
            w_dual = w_l2 if self.p == 2 else tf.reduce_sum(tf.abs(w), axis=w_axes)
            dist = tf.where(w_dual > 0.0, tf.abs(f) / tf.maximum(w_dual, 1e-30), np.inf)
            closest = tf.argmin(dist, axis=1, output_type=tf.int32)
            pert = tf.gather(dist, closest, batch_dims=1)
            w_l = tf.gather(w, closest, batch_dims=1)
            if self.p == 2:
                norm_l = tf.gather(w_l2, closest, batch_dims=1)
                direction = w_l / tf.reshape(tf.maximum(norm_l, 1e-30), [-1] + [1] * (rank - 1))
            else:
                direction = tf.sign(w_l)
            # A vanishing gradient gives no finite step: the example stays put.
            length = tf.where(tf.math.is_finite(pert) & active, pert + _STEP_SLACK, 0.0)
            r_tot = r_tot + tf.reshape(length, [-1] + [1] * (rank - 1)) * direction
            x_next = tf.clip_by_value(x + scale * r_tot, lo, hi)
            active = active & ~is_adversarial(model(x_next), y, targeted)
            return i + 1, r_tot, active

        def cond(i, r_tot, active):
            return (i < self.steps) & tf.reduce_any(active)

        active = ~is_adversarial(logits, y, targeted)
        state = (tf.constant(0), tf.zeros_like(x), active)
        _, r_tot, active = tf.while_loop(cond, body, state)
        return tf.clip_by_value(x + scale * r_tot, lo, hi), ~active
