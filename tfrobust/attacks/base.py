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
before any compiled code runs; the checks live in `_checks.py`), fills the
labels, runs the subclass's `_run` and always re-projects the result into
threat ∩ box, so that no subclass can return a point outside the declared
threat model. Gradients come from `Attack.value_and_grad`, the single place
a gradient-free estimator (SPSA, NES) overrides to reuse every loop.

The model an attack's `_run` sees is wrapped once (`_checks.LogitsModel`):
it returns float32 logits whatever float dtype the model uses, and is
called with `training=False` only if it accepts that keyword. Rows of
non-finite logits never count as adversarial (`is_adversarial`,
`nonfinite_rows`). `validate="cheap"` skips the forward pass on `x` that
`"full"` validation spends (for defenses whose forward pass is expensive).

Every attack declares what the evaluation engine's sanity checks read:
`black_box`, `uses_eot`, `randomized` (with `random_generators()`) and
`steps`.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import threats as threats_lib
from tfrobust.attacks import _checks
from tfrobust.attacks._checks import nonfinite_rows

__all__ = [
    "Attack",
    "MinimizationAttack",
    "MinimizationResult",
    "is_adversarial",
    "nonfinite_rows",
    "resolve_loss",
]

_VALIDATE_MODES = ("full", "cheap")


def is_adversarial(logits, y, targeted):
    """Whether each example's prediction meets the attack's goal.

    A row with any NaN or infinite logit is never adversarial: its argmax
    is not a prediction, and a numerically fragile model must not look
    broken by the attack (see `nonfinite_rows`).

    Args:
        logits: float tensor of shape `[B, K]`.
        y: int tensor of shape `[B]`: the true labels (untargeted) or the
            target classes (targeted).
        targeted: Python bool (or boolean scalar tensor).

    Returns:
        Boolean tensor of shape `[B]`: `argmax(logits) == y` when targeted,
        `argmax(logits) != y` otherwise, and False on non-finite rows.
    """
    logits = tf.convert_to_tensor(logits)
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    y = tf.cast(y, tf.int32)
    if isinstance(targeted, (bool, np.bool_)):
        goal = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
    else:
        goal = tf.where(tf.cast(targeted, tf.bool), tf.equal(pred, y), tf.not_equal(pred, y))
    return tf.logical_and(goal, tf.logical_not(nonfinite_rows(logits)))


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
        raise _validate.error("loss", "one of 'ce', 'margin', 'dlr' or a callable (logits, y) -> [B]",
                              loss) from None


class Attack:
    """Base class of all attacks: `attack(model, x, y=None, *, targeted=False)`.

    Subclasses implement `_run(model, x, y, targeted) -> x_adv` on validated
    float32 tensors (`y` always given: true labels, or targets when
    `targeted`; `model` wrapped so that it returns float32 logits), and
    should compile their bodies with `tf.function` so that repeated calls
    with the same shapes do not retrace. The base class validates inputs,
    fills `y` and re-projects the result into threat ∩ box.

    Args:
        threat: a threat model with `project_with_box(x, delta, bounds)` (for
            example `tfrobust.threats.LpBall`), or `None` for attacks whose
            output is only constrained to the box.
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` (default) also runs the model once on `x` before
            the attack, to check its logits (shape, finite, not
            probabilities) and the range of `y`; `"cheap"` checks shapes,
            dtypes and the values of `x` only, and runs the model on `x`
            only when `y` is None (the labels need it). Use "cheap" for
            defenses whose forward pass is expensive (an inner optimisation).

    Call arguments:
        model: callable mapping a float32 NHWC batch to logits `[B, K]`
            (any float dtype; cast to float32), `K >= 2`.
        x: float tensor or array, rank >= 2, values in `bounds`; its
            per-example shape must match the model's declared input shape.
        y: int labels of shape `[B]` in `[0, K)`. When `None` (untargeted
            only) the model's own predictions are used.
        targeted: a bool (or 0-d boolean tensor); if True, `y` holds target
            classes the attack tries to reach.

    Returns:
        `x_adv`, a float32 tensor of the shape of `x` inside threat ∩ box.

    Raises:
        ValueError: on bad arguments or inputs (see `__call__`).
    """

    # Declared capabilities, read by the evaluation engine's sanity checks
    # (never guessed from attribute names). Subclasses override them, as
    # class or instance attributes.
    #: The attack reads only the target model's outputs (no gradients of it).
    black_box = False
    #: The attack averages over the model's randomness (EoT) by itself.
    uses_eot = False
    #: The attack draws random numbers (random start, sampling), so it owns
    #: a generator that `random_generators()` declares.
    randomized = False
    #: Iterations per run: 1 for single-step attacks, None when the attack
    #: is not iterative (or the count is not meaningful).
    steps = None

    def __init__(self, threat=None, *, bounds=(0.0, 1.0), validate="full"):
        if threat is not None and not callable(getattr(threat, "project_with_box", None)):
            raise ValueError(
                "Expected `threat` to be a threat model with a "
                "`project_with_box(x, delta, bounds)` method (e.g. "
                f"tfrobust.threats.LpBall) or None. Received: threat={threat!r}"
            )
        self.threat = threat
        self.bounds = _check_bounds(bounds)
        self.validate = _validate.check_choice(validate, name="validate", choices=_VALIDATE_MODES)
        self._warned_probabilities = False

    # ------------------------------------------------------------------
    # Public API.

    def __call__(self, model, x, y=None, *, targeted=False):
        """Runs the attack; see the class docstring.

        Raises:
            ValueError: if `x` is not a non-empty finite float tensor of rank
                >= 2 inside `bounds` matching the model's input shape; if `y`
                is not an int vector of length B with values in `[0, K)`; if
                `targeted` is not a bool or is set without `y`; if the model
                does not return finite float logits of shape `[B, K]`, K >= 2.
        """
        model, x, y, targeted = self._validated(model, x, y, targeted)
        x_adv = self._run(model, x, y, targeted)
        return self._finalize(x, x_adv)

    def random_generators(self):
        """The generators this attack draws from (for exact training resume).

        Random attacks keep `self.seed` (None: non-deterministic); their
        generator is created here on first use, so that a training loop that
        reseeds declared generators before the first call finds it.
        """
        if not self.randomized:
            return []
        return [self._generator()]

    def _generator(self):
        """The attack's own `tf.random.Generator`, created on first use."""
        if getattr(self, "_rng", None) is None:
            self._rng = _random.make_generator(getattr(self, "seed", None))
        return self._rng

    def _next_seed(self):
        """A fresh stateless seed `[2]` (int32) from the attack's own generator.

        Every call draws new seeds, so repeated calls differ while a seeded
        attack stays reproducible.
        """
        if not self.randomized:
            raise TypeError(f"{type(self).__name__} draws random seeds but does not set "
                            "`randomized = True`.")
        return _random.next_seed(self._generator())

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
        return {"name": type(self).__name__, "threat": threat, "bounds": list(self.bounds),
                "validate": self.validate}

    # ------------------------------------------------------------------
    # Subclass hook.

    def _run(self, model, x, y, targeted):
        raise NotImplementedError(f"{type(self).__name__} must implement `_run`.")

    # ------------------------------------------------------------------
    # Validation and projection.

    def _prepare(self, model, x, y, targeted):
        """Validates the call; returns `(x, y)` (see `_validated`)."""
        _, x, y, _ = self._validated(model, x, y, targeted)
        return x, y

    def _validated(self, model, x, y, targeted):
        """Validates the call; returns `(wrapped_model, x, y, targeted)`.

        `targeted` comes back as a Python bool (or a symbolic boolean tensor
        inside a caller's graph), the model as a `_checks.LogitsModel`
        (float32 logits, `training=False` only where accepted).
        """
        # Value checks run in Python on concrete tensors when eager; inside a
        # caller's tf.function (e.g. adversarial training) they become
        # runtime assertions instead.
        if not callable(model):
            raise ValueError(
                "Expected `model` to be a callable mapping x to logits. "
                f"Received: model={model!r}"
            )
        targeted = _checks.check_targeted(targeted)
        if y is None and targeted is not False:
            raise ValueError("Expected `y` (the target classes) when targeted=True. Received: y=None")
        model = _checks.logits_model(model)
        x = _checks.check_x(x, self.bounds)
        _checks.check_input_shape(model, x)
        batch = x.shape[0]
        if self.validate == "cheap" and y is not None:
            # The label range is checked when the model declares K.
            num_classes = _checks.known_num_classes(model)
            if num_classes is not None and num_classes < 2:
                _checks.check_logits(tf.zeros([1, num_classes]))  # the one-logit error
            return model, x, _checks.check_y(y, batch, num_classes), targeted
        logits = _checks.check_logits(model(x), batch)
        num_classes = int(logits.shape[1])
        if tf.executing_eagerly():
            if bool(tf.reduce_any(nonfinite_rows(logits))):
                raise ValueError(
                    "Expected the model to return finite logits on x. "
                    "Received: logits containing NaN or Inf"
                )
            _checks.maybe_warn_probabilities(self, logits)
        if y is None:
            y = tf.argmax(logits, axis=-1, output_type=tf.int32)
        else:
            y = _checks.check_y(y, batch, num_classes)
        return model, x, y, targeted

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


def _check_bounds(bounds):
    return _validate.check_pair(bounds, name="bounds")


class WrapsAttack:
    """Mixin of attacks built around an inner `self.attack` (restarts, transfer):
    they declare the inner attack's capabilities and generators, so the engine
    and `fit` see through them without walking attributes."""

    uses_eot = property(lambda self: self.attack.uses_eot)
    randomized = property(lambda self: self.attack.randomized)
    steps = property(lambda self: self.attack.steps)

    def random_generators(self):
        return self.attack.random_generators()


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


class MinimizationAttack(Attack):
    """Attack that searches the smallest successful perturbation.

    Subclasses implement `_minimize(model, x, y, targeted) -> (x_adv,
    success)` and set the class attribute `norm_p` (2 for C&W, DeepFool-L2
    and the boxed-linear attack, 1 for EAD, `np.inf` for DeepFool-L∞). The
    base clips `x_adv` to the box, re-checks success on the model (skipped
    with `validate="cheap"` when the subclass sets `success_verified`), and
    reports the `norm_p` norm (+inf and `x_adv = x` where unsuccessful).

    When a `threat` is given, `__call__` is an attack with a budget:
    examples whose perturbation has threat-norm above `threat.eps` are
    returned unchanged, and the rest are re-projected into threat ∩ box.

    Args:
        threat: optional threat model (a budget for `__call__`).
        bounds: `(lo, hi)`, the valid input domain.
        validate: `"full"` or `"cheap"`, as for `Attack`.
    """

    norm_p = 2
    #: The subclass's `success` was measured on the model at exactly the
    #: returned `x_adv` (finite logits included), so `validate="cheap"` may
    #: skip the re-check's forward pass.
    success_verified = False

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
        model, x, y, targeted = self._validated(model, x, y, targeted)
        return self._checked_minimize(model, x, y, targeted)

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
        success = tf.cast(success, tf.bool)
        if not (self.validate == "cheap" and self.success_verified):
            # Trust the model, not the subclass's bookkeeping (is_adversarial
            # also refuses rows with non-finite logits).
            success = tf.logical_and(success, is_adversarial(model(x_adv), y, targeted))
        mask = tf.reshape(success, [-1] + [1] * (x.shape.rank - 1))
        x_adv = tf.where(mask, x_adv, x)
        norm = tf.where(
            success, self._norm_ball.norm(x_adv - x), tf.constant(np.inf, tf.float32)
        )
        return MinimizationResult(x_adv, norm, success)

    @property
    def _norm_ball(self):
        """An `LpBall` of the minimized norm: the library's one per-example norm."""
        return threats_lib.LpBall(self.norm_p, 0.0)

    def _run(self, model, x, y, targeted):
        result = self._checked_minimize(model, x, y, targeted)
        if self.threat is None:
            return result.x_adv
        delta = result.x_adv - x
        contains = getattr(self.threat, "contains", None)
        if callable(contains):
            within = contains(delta)
        else:  # a threat without `contains`: the same slack on its norm
            within = threats_lib.within_eps(self.threat.norm(delta), self.threat.eps)
        mask = tf.reshape(within, [-1] + [1] * (x.shape.rank - 1))
        return tf.where(mask, result.x_adv, x)

    def _minimize(self, model, x, y, targeted):
        raise NotImplementedError(f"{type(self).__name__} must implement `_minimize`.")
