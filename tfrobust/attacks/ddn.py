"""DDN, the decoupled direction and norm attack (Rony et al. 2019), L2.

Example:

```python
from tfrobust.attacks import DDN

result = DDN(steps=100).minimize(model, x, y)   # x_adv, norm (inf where failed), success
```

A minimal-L2 attack that separates the direction of the perturbation from
its norm: a normalized gradient step on the cross-entropy moves the
direction, and the norm is set to ε, which shrinks by the factor 1 − γ
after an adversarial iterate and grows by 1 + γ otherwise. The smallest
adversarial iterate is kept. Follows the paper's Algorithm 1 as Foolbox 3
implements it (the implementation the project's audit ran): step size
cosine-annealed from 1 to 0.01, ε starting at `init_epsilon` and capped by
the largest L2 distance inside the box, no quantization.

References:
    Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, "Decoupling
    Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks
    and Defenses", CVPR 2019 (arXiv:1811.09600).
"""

import math

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import is_adversarial

__all__ = ["DDN"]

_MAX_STEP, _MIN_STEP = 1.0, 0.01  # the cosine schedule of the step size


class DDN(MinimizationAttack):
    """Decoupled direction and norm: minimal-L2 adversarial examples.

    At step i (of `steps`), with δ the current perturbation: the iterate
    x + δ is tested (and kept if adversarial and the smallest so far); δ
    moves by α_i g/‖g‖₂, g the gradient of the cross-entropy of the label
    (ascended; descended on the target's when targeted), α_i = 0.01 + 0.99
    (1 + cos(π i / steps)) / 2; ε becomes ε (1 − γ) if the iterate was
    adversarial, else ε (1 + γ), at most the largest L2 distance from x
    inside the box; δ is rescaled to norm ε and x + δ clipped to the box.
    All examples run together in one compiled `tf.while_loop`.

    Args:
        threat: optional budget (e.g. `LpBall(2, eps)`): `__call__` returns
            x for examples whose perturbation exceeds it. `None` (default)
            gives the unbounded minimal perturbation.
        steps: iterations (Foolbox's default 10 is the paper's fast
            setting; 100 is its strong one, used here).
        init_epsilon: the first norm ε (1.0).
        gamma: the factor by which ε changes per step (0.05).
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on non-positive `steps` or `init_epsilon`, or `gamma`
            outside (0, 1).

    References:
        Rony et al., "Decoupling Direction and Norm for Efficient
        Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019.
    """

    norm_p = 2
    # Success is tested on the model at the returned iterate itself.
    success_verified = True

    def __init__(self, threat=None, *, steps=100, init_epsilon=1.0, gamma=0.05, bounds=(0.0, 1.0),
                 validate="full"):
        super().__init__(threat, bounds=bounds, validate=validate)
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.init_epsilon = _validate.check_float(init_epsilon, name="init_epsilon", minimum=0.0,
                                                  exclusive_minimum=True)
        self.gamma = _validate.check_float(gamma, name="gamma", minimum=0.0, exclusive_minimum=True,
                                           maximum=1.0)
        if self.gamma >= 1.0:
            raise _validate.error("gamma", "a value in (0, 1)", gamma)
        self._loop_fn = tf.function(self._loop, reduce_retracing=True, autograph=False)

    def get_config(self):
        return dict(super().get_config(), steps=self.steps, init_epsilon=self.init_epsilon,
                    gamma=self.gamma)

    def _minimize(self, model, x, y, targeted):
        return self._loop_fn(model, x, y, bool(targeted))

    def _loop(self, model, x, y, targeted):
        lo, hi = self.bounds
        batch = tf.shape(x)[0]
        expand = lambda v: tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))  # noqa: E731
        l2 = lambda v: tf.norm(tf.reshape(v, [batch, -1]), axis=-1)  # noqa: E731
        worst_norm = l2(tf.maximum(x - lo, hi - x))
        sign = 1.0 if targeted else -1.0  # descend the target's CE; ascend the label's

        def body(i, delta, epsilon, best_norm, best_x):
            x_adv = x + delta
            # The gradient's forward pass also gives the success test (no
            # second pass); `seen` holds its logits (trace-time closure).
            seen = {}

            def loss_fn(z):
                seen["logits"] = model(z)
                return sign * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=seen["logits"])

            _, grad = self.value_and_grad(loss_fn, x_adv)
            adversarial = is_adversarial(seen["logits"], y, targeted)
            norm = l2(delta)
            better = adversarial & (norm < best_norm)
            best_norm = tf.where(better, norm, best_norm)
            best_x = tf.where(expand(better), x_adv, best_x)
            frac = tf.cast(i, tf.float32) / float(self.steps)
            step = _MIN_STEP + (_MAX_STEP - _MIN_STEP) * (1.0 + tf.cos(math.pi * frac)) / 2.0
            grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
            g_norm = l2(grad)
            direction = grad / expand(tf.where(g_norm > 0, g_norm, tf.ones_like(g_norm)))
            # Gradient descent on the (signed) loss.
            delta = delta - step * direction
            epsilon = tf.minimum(epsilon * tf.where(adversarial, 1.0 - self.gamma, 1.0 + self.gamma),
                                 worst_norm)
            d_norm = l2(delta)
            delta = delta * expand(tf.where(d_norm > 0, epsilon / tf.where(d_norm > 0, d_norm, 1.0), 0.0))
            delta = tf.clip_by_value(x + delta, lo, hi) - x
            return i + 1, delta, epsilon, best_norm, best_x

        inf = tf.fill([batch], tf.constant(np.inf, tf.float32))
        init = (tf.constant(0), tf.zeros_like(x), tf.fill([batch], self.init_epsilon), inf, x)
        _, delta, _, best_norm, best_x = tf.while_loop(lambda i, *_: i < self.steps, body, init)
        # The last iterate has not been tested inside the loop.
        last = x + delta
        adversarial = is_adversarial(model(last), y, targeted)
        better = adversarial & (l2(delta) < best_norm)
        best_norm = tf.where(better, l2(delta), best_norm)
        best_x = tf.where(expand(better), last, best_x)
        return best_x, tf.math.is_finite(best_norm)


