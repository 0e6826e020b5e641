"""EAD: the elastic-net attack, L1-oriented minimal perturbations.

Example:

```python
import numpy as np
import keras
from tfrobust.attacks import EAD

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
attack = EAD(beta=1e-2, decision_rule="L1", steps=1000)
result = attack.minimize(model, x)   # result.norm holds L1 norms
```
"""

import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.const_search import ConstSearchAttack
from tfrobust.attacks.const_search import signed_margin
from tfrobust.attacks.const_search import squared_l2

__all__ = ["EAD"]

_DECISION_RULES = ("EN", "L1")


class EAD(ConstSearchAttack):
    """Chen et al.'s elastic-net attack (projected ISTA / FISTA, binary search).

    Minimizes `c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1` over the box,
    with `f` the Carlini-Wagner hinge of `CarliniWagnerL2` (same confidence
    and sign conventions). Each of the `binary_search_steps` attempts (with
    per-example `c`, searched as in C&W) runs `steps` iterations of

        x_{k+1} = S_beta(y_k - a_k * grad g(y_k))
        y_{k+1} = Proj_box(x_{k+1} + k / (k + 3) * (x_{k+1} - x_k))

    where `g = c * f + ||. - x||_2^2` is the smooth part, `S_beta` is the
    element-wise shrinkage-thresholding of `x' - x` by `beta` followed by the
    box projection, `a_k = learning_rate * (1 - k / steps) ** 0.5` is the
    polynomially decayed step, and `y` is the FISTA slack variable (`y = x`
    for ISTA). Among the successful iterates `x_k` of all attempts, the one
    with the smallest elastic-net distance `beta * L1 + L2^2` (rule "EN") or
    the smallest L1 distance (rule "L1") is returned.

    As in the paper and its reference code the threshold of `S_beta` is
    `beta` itself, not `a_k * beta` as in textbook ISTA: the effective L1
    weight grows as the step decays, which drives late iterates towards
    sparser (and eventually unsuccessful) perturbations while the best
    successful iterate is kept.

    Args:
        threat: optional budget (e.g. `LpBall(1, eps)`): `__call__` returns x
            for examples whose minimal perturbation exceeds it. `None` (the
            default) gives the unbounded minimal perturbation.
        beta: the L1 weight. The paper reports 1e-3 (its code's default) and
            1e-2; 1e-2 (the default here, as in common re-implementations)
            gives sparser perturbations. 0 reduces EAD to a box-projected
            C&W L2 attack.
        decision_rule: "EN" or "L1", the distance that ranks successful
            iterates (case-insensitive).
        steps: iterations per attempt (paper 1000).
        binary_search_steps: number of attempts with different `c` (paper 9).
        learning_rate: initial step size `a_0` (paper 1e-2).
        initial_const: first value of `c` (paper 1e-3).
        confidence: the margin kappa required of a success (paper 0).
        fista: use the FISTA momentum (True, the paper's choice) or plain
            ISTA (False).
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on a negative `beta` or `confidence`, an unknown
            `decision_rule`, non-positive `steps`, `binary_search_steps`,
            `learning_rate` or `initial_const`, or a non-boolean `fista`.

    References:
        Chen, Sharma, Zhang, Yi & Hsieh, "EAD: Elastic-Net Attacks to Deep
        Neural Networks via Adversarial Examples", AAAI 2018
        (arXiv:1709.04114).
    """

    norm_p = 1
    # Success is tested on the model at the returned iterate itself.
    success_verified = True

    def __init__(
        self,
        threat=None,
        *,
        beta=1e-2,
        decision_rule="EN",
        steps=1000,
        binary_search_steps=9,
        learning_rate=1e-2,
        initial_const=1e-3,
        confidence=0.0,
        fista=True,
        bounds=(0.0, 1.0),
        validate="full",
    ):
        super().__init__(
            threat,
            binary_search_steps=binary_search_steps,
            steps=steps,
            learning_rate=learning_rate,
            initial_const=initial_const,
            confidence=confidence,
            bounds=bounds,
            validate=validate,
        )
        self.beta = _validate.check_float(beta, name="beta", minimum=0.0)
        rule = decision_rule.upper() if isinstance(decision_rule, str) else None
        if rule not in _DECISION_RULES:
            raise ValueError(
                "Expected `decision_rule` to be 'EN' or 'L1'. "
                f"Received: decision_rule={decision_rule!r}"
            )
        self.decision_rule = rule
        self.fista = _validate.check_bool(fista, name="fista")

    def get_config(self):
        return dict(
            super().get_config(), beta=self.beta, decision_rule=self.decision_rule, fista=self.fista
        )

    def _attempt(self, model, x, y, const, best_dist, best_x, targeted):
        """One (F)ISTA run at fixed per-example `c`; updates the overall best."""
        lo, hi = self.bounds
        beta = tf.constant(self.beta, tf.float32)
        kappa = tf.constant(self.confidence, tf.float32)
        objective = signed_margin(model, y, targeted)
        axes = list(range(1, x.shape.rank))
        expand = lambda v: tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))  # noqa: E731

        def body(k, x_k, slack, found, best_dist, best_x):
            kf = tf.cast(k, tf.float32)
            step = self.learning_rate * tf.sqrt(1.0 - kf / self.steps)
            sm, grad_sm = self.value_and_grad(objective, slack)
            # NaN rows (non-finite logits, see `signed_margin`) move by the
            # distance term only.
            grad_sm = tf.where(tf.math.is_finite(grad_sm), grad_sm, tf.zeros_like(grad_sm))
            hinge_grad = tf.cast(sm + kappa > 0.0, tf.float32) * const
            grad = 2.0 * (slack - x) + expand(hinge_grad) * grad_sm
            x_next = shrink(slack - step * grad, x, beta, lo, hi)
            if self.fista:
                momentum = kf / (kf + 3.0)
                # The paper projects the slack onto the box (its eq. 7); the
                # reference code leaves it unprojected.
                slack = tf.clip_by_value(x_next + momentum * (x_next - x_k), lo, hi)
            else:
                slack = x_next
            success = objective(x_next) < -kappa
            delta = x_next - x
            l1 = tf.reduce_sum(tf.abs(delta), axis=axes)
            if self.decision_rule == "EN":
                dist = squared_l2(delta) + beta * l1
            else:
                dist = l1
            found = found | success
            better = success & (dist < best_dist)
            best_dist = tf.where(better, dist, best_dist)
            best_x = tf.where(expand(better), x_next, best_x)
            return k + 1, x_next, slack, found, best_dist, best_x

        def cond(k, *_):
            return k < self.steps

        state = (
            tf.constant(0),
            x,
            x,
            tf.zeros(tf.shape(x)[:1], tf.bool),
            best_dist,
            best_x,
        )
        _, _, _, found, best_dist, best_x = tf.while_loop(cond, body, state)
        return found, best_dist, best_x


def shrink(z, x, beta, lo, hi):
    """Projected shrinkage-thresholding: `clip(x + soft(z - x, beta), lo, hi)`.

    Coordinates of `z` within `beta` of `x` return to `x`; the others move
    `beta` towards it and are projected onto the box (`x` lies in the box).
    """
    diff = z - x
    soft = tf.sign(diff) * tf.maximum(tf.abs(diff) - beta, 0.0)
    return tf.clip_by_value(x + soft, lo, hi)
