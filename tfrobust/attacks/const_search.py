"""What Carlini-Wagner L2 and EAD share: the outer search over the constant c.

Both minimize `distance + c * hinge` for a per-example constant `c` found by
the reference code's search (multiply by 10 until success, then bisect),
with the same hyper-parameters, checks and success test. `ConstSearchAttack`
holds that part; a subclass supplies one attempt at fixed `c`
(`_attempt(model, x, y, const, best_dist, best_x, targeted) -> (found,
best_dist, best_x)`), which the base compiles once and calls
`binary_search_steps` times.
"""

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import nonfinite_rows

__all__ = ["ConstSearchAttack", "BinarySearch", "signed_margin", "squared_l2"]

# Upper bound of the binary search before any success (the reference's 1e10);
# a bound below `_UPPER_FOUND` means "some c has succeeded".
_UPPER_INIT = 1e10
_UPPER_FOUND = 1e9


class ConstSearchAttack(MinimizationAttack):
    """Base of the attacks that search a per-example constant c.

    Args:
        threat: optional budget, see `MinimizationAttack`.
        binary_search_steps: number of attempts with different `c`. With 10
            or more, the last attempt uses the upper bound of the search, as
            in the reference implementation.
        steps: iterations per attempt.
        learning_rate: step size of the inner optimizer.
        initial_const: first value of `c`.
        confidence: the margin kappa required of a success.
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on a non-positive `steps`, `binary_search_steps`,
            `learning_rate` or `initial_const`, or a negative `confidence`.
    """

    def __init__(
        self,
        threat,
        *,
        binary_search_steps,
        steps,
        learning_rate,
        initial_const,
        confidence,
        bounds,
        validate="full",
    ):
        super().__init__(threat, bounds=bounds, validate=validate)
        positive = dict(minimum=0.0, exclusive_minimum=True)
        self.binary_search_steps = _validate.check_int(binary_search_steps, name="binary_search_steps",
                                                       minimum=1)
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", **positive)
        self.initial_const = _validate.check_float(initial_const, name="initial_const", **positive)
        self.confidence = _validate.check_float(confidence, name="confidence", minimum=0.0)
        self._attempt_fn = None

    def get_config(self):
        config = super().get_config()
        config.update(
            binary_search_steps=self.binary_search_steps,
            steps=self.steps,
            learning_rate=self.learning_rate,
            initial_const=self.initial_const,
            confidence=self.confidence,
        )
        return config

    def _attempt(self, model, x, y, const, best_dist, best_x, targeted):
        raise NotImplementedError

    def _minimize(self, model, x, y, targeted):
        if self._attempt_fn is None:
            self._attempt_fn = tf.function(self._attempt, reduce_retracing=True)
        search = BinarySearch(tf.shape(x)[0], self.initial_const)
        best_dist = tf.fill(tf.shape(x)[:1], tf.constant(np.inf, tf.float32))
        best_x = x
        for attempt in range(self.binary_search_steps):
            if self.binary_search_steps >= 10 and attempt == self.binary_search_steps - 1:
                search.use_upper_bound()
            found, best_dist, best_x = self._attempt_fn(
                model, x, y, search.const, best_dist, best_x, targeted
            )
            search.update(found)
        return best_x, tf.math.is_finite(best_dist)


def signed_margin(model, y, targeted):
    """Returns `x -> s * margin(model(x), y)`, negative once the goal holds.

    `s = -1` untargeted (the margin of `tfrobust.losses` is positive when
    misclassified) and `s = +1` targeted (the margin of the target class is
    negative when the target wins), so a minimizer always drives it down and
    `s * margin < -confidence` is the success test with confidence. Rows
    with non-finite logits give NaN, which no success test passes (an
    infinite logit would otherwise make the margin -inf, a "success").
    """
    from tfrobust import losses  # Imported late: losses is a sibling module.

    sign = 1.0 if targeted else -1.0

    def objective(x):
        logits = model(x)
        value = sign * losses.margin(logits, y)
        return tf.where(nonfinite_rows(logits), tf.constant(np.nan, value.dtype), value)

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

