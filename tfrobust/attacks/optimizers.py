"""Update rules of the PGD family: each turns a gradient into a step direction.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks import PGD, optimizers

attack = PGD(threats.LpBall(np.inf, 8 / 255), steps=10,
             optimizer=optimizers.Momentum(decay=1.0), random_start=False)
```

An optimizer is a tiny object with `init(x) -> state` and
`update(grad, state, threat, x, bounds) -> (direction, state)`. `grad` is the
gradient of the objective the attack *ascends* (the loop negates the loss of
a targeted attack before calling `update`), `x` is the current iterate, and
the returned direction has unit threat-norm per example (zero where the
gradient vanishes). State is a nest of tensors so that the loop can carry it
through `tf.while_loop`.

`OptimStep` adapts any optimiser of `tfrobust.optim` (Adam for SPSA) to
this protocol, so the library has one Adam.
"""

import tensorflow as tf

from tfrobust import _validate
from tfrobust import optim

__all__ = ["SteepestAscent", "Momentum", "OptimStep"]


class SteepestAscent:
    """Plain steepest ascent of the threat's norm: the PGD / BIM / FGSM step.

    The direction is `threat.steepest_direction(grad, x, bounds)`: the sign of
    the gradient for L∞, the normalized gradient for L2, and the sparse
    box-aware top-k direction for L1.

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018.
    """

    def init(self, x):
        """Returns a dummy scalar state (the rule is memory-less)."""
        del x
        return tf.zeros([], tf.float32)

    def update(self, grad, state, threat, x, bounds):
        """Returns `(threat.steepest_direction(grad, x, bounds), state)`."""
        return threat.steepest_direction(grad, x=x, bounds=bounds), state

    def get_config(self):
        return {"name": "SteepestAscent"}

    def __repr__(self):
        return "SteepestAscent()"


class Momentum:
    """Momentum iterative method (MI-FGSM) of Dong et al. 2018.

    Accumulates `g_{t+1} = decay * g_t + grad / ||grad||_1` (the L1 norm per
    example, which makes the scale of gradients irrelevant across
    iterations), then steps in the threat's steepest direction of
    `g_{t+1}`: `sign(g)` for L∞ (Algorithm 1 of the paper) and `g / ||g||_2`
    for L2 (the paper's L2 variant).

    Args:
        decay: the decay factor `mu >= 0` (1.0 in the paper).

    Raises:
        ValueError: if `decay` is negative or not finite.

    References:
        Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
    """

    def __init__(self, decay=1.0):
        self.decay = _validate.check_float(decay, name="decay", minimum=0.0)

    def init(self, x):
        """Returns the zero accumulated gradient `g_0`."""
        return tf.zeros_like(x, dtype=tf.float32)

    def update(self, grad, state, threat, x, bounds):
        """Accumulates the L1-normalized gradient and returns its steepest direction."""
        rank = grad.shape.rank
        axes = list(range(1, rank))
        l1 = tf.reduce_sum(tf.abs(grad), axis=axes, keepdims=True)
        # A zero gradient adds nothing (rather than NaN) to the accumulator.
        normalized = tf.math.divide_no_nan(grad, l1)
        g = self.decay * state + normalized
        return threat.steepest_direction(g, x=x, bounds=bounds), g

    def get_config(self):
        return {"name": "Momentum", "decay": self.decay}

    def __repr__(self):
        return f"Momentum(decay={self.decay})"


class OptimStep:
    """A `tfrobust.optim` optimiser as a PGD update rule (ascent, unnormalized).

    The optimiser runs with learning rate 1 on the negated gradient (it
    descends), so its step is the ascent direction and the loop's
    `step_size` plays the learning rate: `x <- x + step_size * direction` is
    one optimiser step on the ascended objective, followed by the loop's
    projection. The direction ignores the threat's geometry (SPSA's Adam).

    Args:
        optimizer: an optimiser of `tfrobust.optim` (its learning rate is
            replaced by 1), or a name: "adam", "sgd", "momentum".

    Raises:
        ValueError: on an unknown optimiser.
    """

    def __init__(self, optimizer="adam"):
        optimizer = optim.get(optimizer)
        config = {k: v for k, v in optimizer.get_config().items() if k != "name"}
        config["learning_rate"] = 1.0
        self.optimizer = type(optimizer)(**config)

    def init(self, x):
        """The optimiser's state for `x` (float32)."""
        return self.optimizer.init(tf.zeros_like(x, dtype=tf.float32))

    def update(self, grad, state, threat, x, bounds):
        """One optimiser step on `-grad`; returns `(direction, state)`."""
        del threat, x, bounds  # the optimiser's direction ignores the geometry
        grad = tf.cast(grad, tf.float32)
        # From 0, a unit-rate descent step on -grad is the ascent direction.
        direction, state = self.optimizer.step(tf.zeros_like(grad), -grad, state)
        return direction, state

    def get_config(self):
        config = self.optimizer.get_config()
        config.pop("learning_rate")
        return {"name": "OptimStep", "optimizer": config}

    def __repr__(self):
        return f"OptimStep({self.optimizer!r})"
