"""Attack base classes: one locked `__call__`, one overridable gradient source.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks import PGD

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
attack = PGD(threats.LpBall(np.inf, 0.1), steps=10)
x_adv = attack(model, x)                      # untargeted, y = model's labels
```

`Attack.__call__` validates the inputs on the concrete tensors (eagerly,
before any compiled code runs), fills the labels, runs the subclass's
`_run` and always re-projects the result into threat ∩ box, so that no
subclass can return a point outside the declared threat model.
Gradients come from `Attack.value_and_grad`, the single place a
gradient-free estimator (SPSA, NES) overrides to reuse every loop.
"""

import math
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _random

__all__ = [
    "Attack",
    "MinimizationAttack",
    "MinimizationResult",
    "is_adversarial",
    "resolve_loss",
]

# Tolerance for "x lies inside the declared bounds".
_BOUNDS_ATOL = 1e-6
# Tolerance for "the model's rows sum to one" (probability detection).
_PROB_ATOL = 1e-3


def is_adversarial(logits, y, targeted):
    """Whether each example's prediction meets the attack's goal.

    Args:
        logits: float tensor of shape `[B, K]`.
        y: int tensor of shape `[B]`: the true labels (untargeted) or the
            target classes (targeted).
        targeted: Python bool (or boolean scalar tensor).

    Returns:
        Boolean tensor of shape `[B]`: `argmax(logits) == y` when targeted,
        `argmax(logits) != y` otherwise.
    """
    logits = tf.convert_to_tensor(logits)
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    y = tf.cast(y, tf.int32)
    if isinstance(targeted, (bool, np.bool_)):
        return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
    return tf.where(tf.cast(targeted, tf.bool), tf.equal(pred, y), tf.not_equal(pred, y))


def resolve_loss(loss):
    """Maps a loss name or callable to a function `(logits, y) -> [B]`.

    Args:
        loss: one of `"ce"` (cross-entropy), `"margin"` (Carlini-Wagner
            margin), `"dlr"` (difference of logits ratio), or a callable
            `(logits, y) -> [B]` to be maximized by an untargeted attack.

    Returns:
        A callable `(logits, y) -> [B]`.

    Raises:
        ValueError: if `loss` is neither a known name nor callable.
    """
    if callable(loss):
        return loss
    from tfrobust import losses  # Imported late: losses is a sibling module.

    try:
        return losses.get(loss)
    except ValueError:
        raise ValueError(
            "Expected `loss` to be one of 'ce', 'margin', 'dlr' or a callable "
            f"(logits, y) -> [B]. Received: loss={loss!r}"
        ) from None


def _check_bounds(bounds):
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            "Expected `bounds` to be a pair of numbers (lo, hi). "
            f"Received: bounds={bounds!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"Expected `bounds` to be finite with lo < hi. Received: bounds={bounds!r}")
    return lo, hi


class Attack:
    """Base class of all attacks: `attack(model, x, y=None, *, targeted=False)`.

    Subclasses implement `_run(model, x, y, targeted) -> x_adv` on validated
    float32 tensors (`y` always given: true labels, or targets when
    `targeted`), and should compile their bodies with `tf.function` so that
    repeated calls with the same shapes do not retrace. The base class
    validates inputs, fills `y` and re-projects the result into threat ∩ box.

    Args:
        threat: a threat model with `project_with_box(x, delta, bounds)` (for
            example `tfrobust.threats.LpBall`), or `None` for attacks whose
            output is only constrained to the box.
        bounds: `(lo, hi)`, the valid input domain.

    Call arguments:
        model: callable mapping a float32 NHWC batch to logits `[B, K]`.
        x: float tensor or array, rank >= 2, values in `bounds`.
        y: int labels of shape `[B]` in `[0, K)`. When `None` (untargeted
            only) the model's own predictions are used.
        targeted: if True, `y` holds target classes the attack tries to reach.

    Returns:
        `x_adv`, a float32 tensor of the shape of `x` inside threat ∩ box.

    Raises:
        ValueError: on bad arguments or inputs (see `__call__`).
    """

    def __init__(self, threat=None, *, bounds=(0.0, 1.0)):
        if threat is not None and not callable(getattr(threat, "project_with_box", None)):
            raise ValueError(
                "Expected `threat` to be a threat model with a "
                "`project_with_box(x, delta, bounds)` method (e.g. "
                f"tfrobust.threats.LpBall) or None. Received: threat={threat!r}"
            )
        self.threat = threat
        self.bounds = _check_bounds(bounds)
        self._warned_probabilities = False

    # ------------------------------------------------------------------
    # Public API.

    def __call__(self, model, x, y=None, *, targeted=False):
        """Runs the attack; see the class docstring.

        Raises:
            ValueError: if `x` is not a non-empty finite float tensor of rank
                >= 2 inside `bounds`; if `y` is not an int vector of length B
                with values in `[0, K)`; if `targeted` is set without `y`; if
                the model does not return finite logits of shape `[B, K]`.
        """
        x, y = self._prepare(model, x, y, targeted)
        x_adv = self._run(model, x, y, bool(targeted))
        return self._finalize(x, x_adv)

    # Declared capabilities, read by the evaluation engine's sanity checks
    # (never guessed from attribute names). Subclasses override them.
    #: The attack reads only the model's outputs (no gradients).
    black_box = False
    #: The attack averages over the model's randomness (EoT) by itself.
    uses_eot = False
    #: The attack draws random numbers (random start, sampling), so it owns
    #: a generator that `random_generators()` declares.
    randomized = False

    def random_generators(self):
        """The generators this attack draws from (for exact training resume).

        Random attacks keep `self.seed` (None: non-deterministic); their
        generator is created here on first use, so that a training loop that
        reseeds declared generators before the first call finds it.
        """
        if not self.randomized:
            return []
        if getattr(self, "_rng", None) is None:
            self._rng = _random.make_generator(getattr(self, "seed", None))
        return [self._rng]

    def _next_seed(self):
        """A fresh stateless seed `[2]` (int32) from the attack's own generator.

        Every call draws new seeds, so repeated calls differ while a seeded
        attack stays reproducible.
        """
        if not self.randomized:
            raise TypeError(f"{type(self).__name__} draws random seeds but does not set "
                            "`randomized = True`.")
        (generator,) = self.random_generators()
        return _random.next_seed(generator)

    def value_and_grad(self, loss_fn, x):
        """Per-example loss and its gradient with respect to `x`.

        The single gradient source of every gradient-based loop: override it
        (e.g. with a finite-difference estimator) to make an attack
        gradient-free without touching the loop.

        Args:
            loss_fn: callable `x -> [B]` per-example losses.
            x: float tensor.

        Returns:
            `(loss, grad)`: `loss` of shape `[B]`, `grad` shaped like `x`
            (zeros where the loss does not depend on `x`).
        """
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(x)
        grad = tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, grad

    def get_config(self):
        """JSON-able description (threat config, bounds) for reports."""
        threat = self.threat
        if threat is not None and hasattr(threat, "get_config"):
            threat = threat.get_config()
        return {"name": type(self).__name__, "threat": threat, "bounds": list(self.bounds)}

    # ------------------------------------------------------------------
    # Subclass hook.

    def _run(self, model, x, y, targeted):
        raise NotImplementedError(f"{type(self).__name__} must implement `_run`.")

    # ------------------------------------------------------------------
    # Validation and projection.

    def _prepare(self, model, x, y, targeted):
        # Value checks run in Python on concrete tensors when eager; inside a
        # caller's tf.function (e.g. adversarial training) they become
        # runtime assertions instead.
        if not callable(model):
            raise ValueError(
                "Expected `model` to be a callable mapping x to logits. "
                f"Received: model={model!r}"
            )
        if y is None and targeted:
            raise ValueError("Expected `y` (the target classes) when targeted=True. Received: y=None")
        x = self._check_x(x)
        logits = tf.convert_to_tensor(model(x))
        batch = x.shape[0]
        if (
            logits.shape.rank != 2
            or logits.shape[1] is None
            or (batch is not None and logits.shape[0] not in (None, batch))
        ):
            raise ValueError(
                f"Expected the model to return logits of shape [B, K] with B={batch}. "
                f"Received: logits.shape={tuple(logits.shape)}"
            )
        num_classes = int(logits.shape[1])
        if tf.executing_eagerly():
            if not bool(tf.reduce_all(tf.math.is_finite(logits))):
                raise ValueError(
                    "Expected the model to return finite logits on x. "
                    "Received: logits containing NaN or Inf"
                )
            self._maybe_warn_probabilities(logits)
        if y is None:
            y = tf.argmax(logits, axis=-1, output_type=tf.int32)
        else:
            y = self._check_y(y, batch, num_classes)
        return x, y

    def _check_x(self, x):
        try:
            x = tf.convert_to_tensor(x)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Expected `x` to be a float tensor or array. Received: x of type {type(x)}"
            ) from e
        if not x.dtype.is_floating:
            raise ValueError(
                "Expected `x` to have a floating dtype (images in [lo, hi]). "
                f"Received: x.dtype={x.dtype.name}"
            )
        if x.shape.rank is None or x.shape.rank < 2:
            raise ValueError(
                "Expected `x` to be a batch of rank >= 2 (e.g. NHWC). "
                f"Received: x.shape={tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"Expected a non-empty batch. Received: x.shape={tuple(x.shape)}")
        x = tf.cast(x, tf.float32)
        lo, hi = self.bounds
        if tf.executing_eagerly():
            if not bool(tf.reduce_all(tf.math.is_finite(x))):
                raise ValueError("Expected `x` to be finite. Received: x containing NaN or Inf")
            x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            if x_min < lo - _BOUNDS_ATOL or x_max > hi + _BOUNDS_ATOL:
                raise ValueError(
                    f"Expected `x` inside bounds={self.bounds}. "
                    f"Received: x with min={x_min} and max={x_max}"
                )
        else:
            x = tf.debugging.assert_all_finite(
                x, "Expected `x` to be finite. Received: x containing NaN or Inf"
            )
            tf.debugging.assert_greater_equal(
                x, lo - _BOUNDS_ATOL, message=f"Expected `x` inside bounds={self.bounds}."
            )
            tf.debugging.assert_less_equal(
                x, hi + _BOUNDS_ATOL, message=f"Expected `x` inside bounds={self.bounds}."
            )
        # Remove sub-tolerance excursions so the box is exact from here on.
        return tf.clip_by_value(x, lo, hi)

    @staticmethod
    def _check_y(y, batch, num_classes):
        try:
            y = tf.convert_to_tensor(y)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Expected `y` to be an int tensor of shape [B]. Received: y of type {type(y)}"
            ) from e
        if not y.dtype.is_integer:
            raise ValueError(
                "Expected `y` to have an integer dtype (class indices). "
                f"Received: y.dtype={y.dtype.name}"
            )
        if y.shape.rank != 1 or (
            batch is not None and y.shape[0] is not None and y.shape[0] != batch
        ):
            raise ValueError(f"Expected `y` of shape [B] with B={batch}. Received: y.shape={tuple(y.shape)}")
        y = tf.cast(y, tf.int32)
        message = f"Expected `y` in [0, {num_classes}) (the model has {num_classes} classes)."
        if tf.executing_eagerly():
            y_min, y_max = int(tf.reduce_min(y)), int(tf.reduce_max(y))
            if y_min < 0 or y_max >= num_classes:
                raise ValueError(f"{message} Received: y with min={y_min} and max={y_max}")
        else:
            tf.debugging.assert_non_negative(y, message=message)
            tf.debugging.assert_less(y, num_classes, message=message)
        return y

    def _maybe_warn_probabilities(self, logits):
        if self._warned_probabilities:
            return
        nonneg = bool(tf.reduce_all(logits >= 0.0))
        if nonneg:
            sums = tf.reduce_sum(logits, axis=-1)
            if bool(tf.reduce_all(tf.abs(sums - 1.0) <= _PROB_ATOL)):
                self._warned_probabilities = True
                warnings.warn(
                    f"{type(self).__name__}: the model's outputs look like "
                    "probabilities (non-negative rows summing to 1), not logits. "
                    "Losses such as cross-entropy and margin expect logits; remove "
                    "the final softmax (its saturation also masks gradients).",
                    stacklevel=3,
                )

    def _finalize(self, x, x_adv):
        x_adv = tf.convert_to_tensor(x_adv)
        if not x_adv.shape.is_compatible_with(x.shape):
            raise ValueError(
                f"{type(self).__name__}._run returned x_adv of shape "
                f"{tuple(x_adv.shape)}; expected the shape of x, {tuple(x.shape)}."
            )
        # Batched tensor ops; not compiled, so that it costs no trace per
        # attack instance (inside a caller's tf.function it is inlined).
        return self._project(x, tf.cast(x_adv, tf.float32))

    def _project(self, x, x_adv):
        """Projects `x_adv` into threat ∩ box around `x` (graph-safe)."""
        lo, hi = self.bounds
        if self.threat is None:
            return tf.clip_by_value(x_adv, lo, hi)
        delta = self.threat.project_with_box(x, x_adv - x, self.bounds)
        # The projection is exact in real arithmetic; the clip removes
        # float rounding of x + delta past the box faces.
        return tf.clip_by_value(x + delta, lo, hi)


class MinimizationResult(NamedTuple):
    """Result of `MinimizationAttack.minimize`.

    Attributes:
        x_adv: float32 tensor shaped like x; equals x where unsuccessful.
        norm: float32 `[B]`, the `norm_p` norm of `x_adv - x`; +inf where
            unsuccessful.
        success: bool `[B]`, whether `x_adv` meets the goal (re-checked on the
            model by the base class).
    """

    x_adv: tf.Tensor
    norm: tf.Tensor
    success: tf.Tensor


def _lp_norm(delta, p):
    flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
    if p == np.inf:
        return tf.reduce_max(tf.abs(flat), axis=-1)
    if p == 1:
        return tf.reduce_sum(tf.abs(flat), axis=-1)
    if p == 2:
        return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=-1))
    raise ValueError(f"Expected `norm_p` in {{1, 2, inf}}. Received: norm_p={p!r}")


class MinimizationAttack(Attack):
    """Attack that searches the smallest successful perturbation.

    Subclasses implement `_minimize(model, x, y, targeted) -> (x_adv,
    success)` and set the class attribute `norm_p` (2 for C&W, DeepFool-L2
    and the boxed-linear attack, 1 for EAD, `np.inf` for DeepFool-L∞). The
    base clips `x_adv` to the box, re-checks success on the model, and
    reports the `norm_p` norm (+inf and `x_adv = x` where unsuccessful).

    When a `threat` is given, `__call__` is an attack with a budget:
    examples whose perturbation has threat-norm above `threat.eps` are
    returned unchanged, and the rest are re-projected into threat ∩ box.

    Args:
        threat: optional threat model (a budget for `__call__`).
        bounds: `(lo, hi)`, the valid input domain.
    """

    norm_p = 2

    def minimize(self, model, x, y=None, *, targeted=False):
        """Runs the minimization; see the class docstring.

        Args:
            model: callable mapping x to logits `[B, K]`.
            x: float tensor in `bounds`, rank >= 2, non-empty.
            y: int labels `[B]` (targets when `targeted`); `None` uses the
                model's predictions (untargeted only).
            targeted: whether `y` holds target classes.

        Returns:
            A `MinimizationResult(x_adv, norm, success)`.

        Raises:
            ValueError: on bad inputs, as `Attack.__call__`.
        """
        x, y = self._prepare(model, x, y, targeted)
        return self._checked_minimize(model, x, y, bool(targeted))

    def _checked_minimize(self, model, x, y, targeted):
        x_adv, success = self._minimize(model, x, y, targeted)
        x_adv = tf.convert_to_tensor(x_adv)
        if not x_adv.shape.is_compatible_with(x.shape):
            raise ValueError(
                f"{type(self).__name__}._minimize returned x_adv of shape "
                f"{tuple(x_adv.shape)}; expected the shape of x, {tuple(x.shape)}."
            )
        lo, hi = self.bounds
        x_adv = tf.clip_by_value(tf.cast(x_adv, tf.float32), lo, hi)
        # Trust the model, not the subclass's bookkeeping.
        success = tf.logical_and(
            tf.cast(success, tf.bool), is_adversarial(model(x_adv), y, targeted)
        )
        mask = tf.reshape(success, [-1] + [1] * (x.shape.rank - 1))
        x_adv = tf.where(mask, x_adv, x)
        norm = tf.where(
            success, _lp_norm(x_adv - x, self.norm_p), tf.constant(np.inf, tf.float32)
        )
        return MinimizationResult(x_adv, norm, success)

    def _run(self, model, x, y, targeted):
        result = self._checked_minimize(model, x, y, targeted)
        if self.threat is None:
            return result.x_adv
        eps = float(self.threat.eps)
        within = self.threat.norm(result.x_adv - x) <= eps * (1.0 + 1e-5) + 1e-7
        mask = tf.reshape(within, [-1] + [1] * (x.shape.rank - 1))
        return tf.where(mask, result.x_adv, x)

    def _minimize(self, model, x, y, targeted):
        raise NotImplementedError(f"{type(self).__name__} must implement `_minimize`.")
