"""Projected gradient descent: one PGD for every norm, FGSM / BIM / MI-FGSM as presets.

(`Restarts`, the best of n runs of any attack, lives in `attacks/restarts.py`.)

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks import PGD, FGSM

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
x_adv = PGD(threats.LpBall(2, 0.5), steps=20, seed=0)(model, x)
x_fgsm = FGSM(0.1)(model, x)
```

The norm lives in the threat, never in the attack: the step direction is
the threat's steepest direction (sign, normalized gradient, sparse
box-aware top-k for L1) and the projection is the threat's exact projection
onto ball ∩ box.
"""

import functools

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import losses
from tfrobust import threats
from tfrobust.attacks import optimizers as optimizers_lib
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import is_adversarial
from tfrobust.attacks.base import nonfinite_rows
from tfrobust.attacks.base import resolve_loss

__all__ = ["PGD", "FGSM", "BIM", "MIFGSM"]


def _expand(mask, x):
    """Reshapes a per-example `[B]` tensor to broadcast against `x`."""
    return tf.reshape(mask, [-1] + [1] * (x.shape.rank - 1))


def _better(obj, succ, best_obj, best_succ):
    """Whether a candidate beats the incumbent: success first, then objective.

    An incumbent success is never replaced, so the first successful iterate
    is kept (it tends to be the least perturbed one).
    """
    return tf.logical_and(tf.logical_not(best_succ), tf.logical_or(succ, obj > best_obj))


def _keep_best(best, candidate, x):
    """Merges `(x_adv, objective, success)` triples per example (see `_better`)."""
    if best is None:
        return candidate
    x_adv, obj, succ = candidate
    take = _better(obj, succ, best[1], best[2])
    return (
        tf.where(_expand(take, x), x_adv, best[0]),
        tf.where(take, obj, best[1]),
        tf.logical_or(succ, best[2]),
    )


def _sign(targeted):
    """-1 for a targeted attack (it descends the loss), +1 otherwise."""
    if isinstance(targeted, (bool, np.bool_)):
        return -1.0 if targeted else 1.0
    return tf.where(tf.cast(targeted, tf.bool), -1.0, 1.0)


def _as_bool_tensor(targeted):
    """A boolean scalar tensor, so that both modes share one trace."""
    return targeted if isinstance(targeted, tf.Tensor) else tf.constant(bool(targeted))


def finite_objective(obj, logits):
    """`obj` with -inf where it or the logits are not finite.

    A NaN or infinite objective must never win the best-iterate comparison
    (`inf > best` would keep a point where the model breaks down).
    """
    bad = tf.logical_or(nonfinite_rows(logits), tf.logical_not(tf.math.is_finite(obj)))
    return tf.where(bad, tf.constant(-np.inf, obj.dtype), obj)


class PGD(Attack):
    """Projected gradient descent (ascent of the loss) inside threat ∩ box.

    Each step moves `x <- x + step_size * direction` with the optimizer's
    direction (steepest ascent of the threat's norm by default), then
    projects exactly: `x <- x0 + threat.project_with_box(x0, x - x0,
    bounds)`. The best iterate per example is kept, as in auto-attack: the
    first one that is adversarial, otherwise the one with the highest loss.
    A targeted attack minimizes the loss towards `y` (the targets; with
    `loss="dlr"` it maximizes the targeted DLR loss instead, see
    `objective`). Random restarts keep the most adversarial result per example. The
    whole batch runs in one compiled `tf.while_loop`.

    Args:
        threat: `tfrobust.threats.LpBall`-like threat (needs `eps`,
            `steepest_direction`, `project_with_box`, `random_init`).
        steps: number of gradient steps (40, Madry et al.).
        step_size: step length in the threat's norm; `None` gives
            `2.5 * eps / steps` (Madry et al.).
        random_start: start from a uniform draw in the ball, clipped to the
            box (Madry et al.).
        loss: `"ce"`, `"margin"`, `"dlr"` or a callable `(logits, y) -> [B]`
            that an untargeted attack maximizes.
        optimizer: update rule with `init` / `update`
            (`optimizers.SteepestAscent()` or `optimizers.Momentum()`).
        restarts: number of independent runs (random starts) per call.
        bounds: `(lo, hi)` input domain.
        seed: integer seed of the random starts; `None` for a fresh one.
            Two attacks built with the same seed give the same result,
            compiled or eager.
        early_stop: stop once every example is adversarial.
        validate: `"full"` or `"cheap"` (see `Attack`). With "cheap" and
            labels given, one call runs the model `steps + 1` times per
            restart (once per step and once on the last iterate; FGSM once).

    Raises:
        ValueError: on a threat without the needed methods, non-positive
            `steps` or `restarts`, a negative `step_size`, an unknown loss or
            a bad optimizer.

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018. Croce & Hein, "Reliable evaluation of
        adversarial robustness with an ensemble of diverse parameter-free
        attacks", ICML 2020 (best-iterate bookkeeping, DLR loss).
    """

    def __init__(
        self,
        threat,
        *,
        steps=40,
        step_size=None,
        random_start=True,
        loss="ce",
        optimizer=None,
        restarts=1,
        bounds=(0.0, 1.0),
        seed=None,
        early_stop=False,
        validate="full",
    ):
        super().__init__(threat, bounds=bounds, validate=validate)
        for method in ("steepest_direction", "random_init"):
            if threat is None or not callable(getattr(threat, method, None)):
                raise ValueError(
                    f"Expected `threat` to be an LpBall-like threat with `{method}`. "
                    f"Received: threat={threat!r}"
                )
        eps = float(threat.eps)
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.restarts = _validate.check_int(restarts, name="restarts", minimum=1)
        if step_size is None:
            step_size = 2.5 * eps / self.steps
        self.step_size = _validate.check_float(step_size, name="step_size", minimum=0.0)
        self.random_start = _validate.check_bool(random_start, name="random_start")
        # Only a random start draws random numbers (restarts without one
        # repeat the same deterministic run).
        self.randomized = self.random_start
        self.loss = loss
        self._loss_fn = resolve_loss(loss)
        optimizer = optimizers_lib.SteepestAscent() if optimizer is None else optimizer
        if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
            raise ValueError(
                "Expected `optimizer` to have `init(x)` and "
                f"`update(grad, state, threat, x, bounds)`. Received: optimizer={optimizer!r}"
            )
        self.optimizer = optimizer
        self.seed = _random.check_seed(seed, allow_none=True)
        self.early_stop = _validate.check_bool(early_stop, name="early_stop")
        self._rng = None
        self._y_clean = None
        # A partial, not the bound method: TensorFlow counts traces per code
        # object, so every new attack instance would add to one count and
        # set off "excessive retracing" warnings.
        self._compiled = tf.function(functools.partial(type(self)._attack_once, self))

    def get_config(self):
        config = super().get_config()
        optimizer = self.optimizer
        config.update(
            steps=self.steps,
            step_size=self.step_size,
            random_start=self.random_start,
            loss=self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", repr(self.loss)),
            optimizer=optimizer.get_config() if hasattr(optimizer, "get_config") else repr(optimizer),
            restarts=self.restarts,
            seed=self.seed,
            early_stop=self.early_stop,
        )
        return config

    # ------------------------------------------------------------------

    def _run(self, model, x, y, targeted):
        best = None
        # A tensor, so that targeted and untargeted calls share one trace.
        targeted = _as_bool_tensor(targeted)
        for _ in range(self.restarts):
            # A deterministic run still takes a seed argument (one signature).
            seed = self._next_seed() if self.randomized else tf.zeros([2], tf.int32)
            best = _keep_best(best, self._compiled(model, x, y, targeted, seed), x)
        return best[0]

    def objective(self, logits, y, targeted):
        """The per-example objective `[B]` the loop ascends.

        The loss when untargeted, its negation when targeted (descending the
        loss towards the target `y`). The DLR loss is the exception: targeted,
        it becomes the targeted DLR of Croce & Hein (the plain DLR's
        denominator would otherwise reward spreading the other logits rather
        than reaching the target), computed against the clean predictions.
        """
        value = tf.cast(self._loss_fn(logits, y), tf.float32)
        y_clean = getattr(self, "_y_clean", None)
        if y_clean is None or targeted is False:
            return _sign(targeted) * value
        value_targeted = tf.cast(losses.dlr_targeted(logits, y_clean, y), tf.float32)
        if targeted is True:
            return value_targeted
        return tf.where(tf.cast(targeted, tf.bool), value_targeted, value)

    def objective_and_grad(self, model, x, y, targeted):
        """Per-example objective (see `objective`), its gradient, and logits.

        Args:
            model: callable returning logits.
            x: current iterate.
            y: labels or targets.
            targeted: Python bool or boolean scalar tensor.

        Returns:
            `(objective [B], grad like x, logits [B, K])`, with non-finite
            gradient entries replaced by zero (a NaN would otherwise spread
            through the projection to the whole example).
        """
        if type(self).value_and_grad is Attack.value_and_grad:
            # Reuse the forward pass of the gradient for the logits.
            stash = []

            def objective_keep(z):
                logits = model(z)
                stash.append(logits)
                return self.objective(logits, y, targeted)

            obj, grad = self.value_and_grad(objective_keep, x)
            logits = stash[-1]
        else:
            # A custom estimator may call the objective on other points.
            _, grad = self.value_and_grad(lambda z: self.objective(model(z), y, targeted), x)
            logits = model(x)
            obj = self.objective(logits, y, targeted)
        grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
        return finite_objective(obj, logits), grad, logits

    def _attack_once(self, model, x, y, targeted, seed):
        """One run from one (random) start; returns `(x_best, obj_best, success_best)`."""
        threat, bounds = self.threat, self.bounds
        if self.random_start:
            # Clipping to the box only shrinks each coordinate of the
            # uniform draw, so the start stays in the ball (Madry et al.).
            lo, hi = bounds
            x_start = tf.clip_by_value(x + threat.random_init(x, seed=seed), lo, hi)
        else:
            x_start = x
        batch = tf.shape(x)[0]
        best_obj = tf.fill([batch], tf.constant(-np.inf, tf.float32))
        best_succ = tf.zeros([batch], tf.bool)
        state = self.optimizer.init(x)
        # Read by `objective` while this graph is traced (targeted DLR only,
        # which needs K >= 4 and is measured against the clean predictions).
        self._y_clean = None
        if isinstance(self.loss, str) and self.loss.lower() == "dlr":
            clean_logits = model(x)
            if clean_logits.shape[-1] is not None and clean_logits.shape[-1] >= 4:
                self._y_clean = tf.argmax(clean_logits, axis=-1, output_type=tf.int32)

        def update_best(i, x_cur, obj, succ, best_x, best_obj, best_succ):
            # The start point is not a candidate: FGSM must return its step.
            take = tf.logical_and(i > 0, _better(obj, succ, best_obj, best_succ))
            return (
                tf.where(_expand(take, x), x_cur, best_x),
                tf.where(take, obj, best_obj),
                tf.logical_or(best_succ, tf.logical_and(take, succ)),
            )

        def cond(i, x_cur, state, best_x, best_obj, best_succ):
            go = i < self.steps
            if self.early_stop:
                go = tf.logical_and(go, tf.logical_not(tf.reduce_all(best_succ)))
            return go

        def body(i, x_cur, state, best_x, best_obj, best_succ):
            obj, grad, logits = self.objective_and_grad(model, x_cur, y, targeted)
            succ = is_adversarial(logits, y, targeted)
            best_x, best_obj, best_succ = update_best(i, x_cur, obj, succ, best_x, best_obj, best_succ)
            direction, state = self.optimizer.update(grad, state, threat, x_cur, bounds)
            x_next = x_cur + self.step_size * direction
            x_next = x + threat.project_with_box(x, x_next - x, bounds)
            return i + 1, x_next, state, best_x, best_obj, best_succ

        i, x_cur, _, best_x, best_obj, best_succ = tf.while_loop(
            cond,
            body,
            (tf.constant(0), x_start, state, x_start, best_obj, best_succ),
            maximum_iterations=self.steps,
        )
        if self.steps == 1 and self.restarts == 1:
            # A single step's iterate is the result whatever it scores, and
            # nothing compares it with another run: skip its forward pass.
            self._y_clean = None
            return x_cur, best_obj, best_succ
        logits = model(x_cur)
        obj = finite_objective(self.objective(logits, y, targeted), logits)
        succ = is_adversarial(logits, y, targeted)
        best = update_best(i, x_cur, obj, succ, best_x, best_obj, best_succ)
        self._y_clean = None  # a graph tensor: never let it outlive the trace
        return best


class FGSM(PGD):
    """Fast gradient sign method: one step of size `eps`, no random start.

    For `p=inf` this is `x + eps * sign(grad)` (Goodfellow et al.); for
    `p=2` and `p=1` it is the single steepest step of that norm (the
    normalized gradient, the sparse box-aware L1 direction), projected.

    Args:
        eps: perturbation budget (>= 0).
        p: norm, `np.inf`, 2 or 1 (or their string names).
        loss: as in `PGD`.
        bounds: `(lo, hi)` input domain.

    References:
        Goodfellow et al., "Explaining and Harnessing Adversarial Examples",
        ICLR 2015.
    """

    def __init__(self, eps, p=np.inf, *, loss="ce", bounds=(0.0, 1.0), validate="full"):
        threat = threats.LpBall(p, eps)
        super().__init__(threat, steps=1, step_size=threat.eps, random_start=False, loss=loss, bounds=bounds,
                         validate=validate)


class BIM(PGD):
    """Basic iterative method (I-FGSM): PGD without random start.

    Defaults follow Kurakin et al. for L∞: `step_size = (hi - lo) / 255`
    (one intensity level) and `steps = min(eps + 4, 1.25 * eps)` with eps
    measured in intensity levels. For other norms (not covered by the
    paper) the defaults are 10 steps of `eps / steps`.

    Args:
        threat: `LpBall`-like threat.
        steps: number of steps, or `None` for the default above.
        step_size: step length, or `None` for the default above.
        loss: as in `PGD`.
        bounds: `(lo, hi)` input domain.
        early_stop: as in `PGD`.

    References:
        Kurakin et al., "Adversarial examples in the physical world", ICLR
        Workshop 2017.
    """

    def __init__(self, threat, steps=None, step_size=None, *, loss="ce", bounds=(0.0, 1.0), early_stop=False,
                 validate="full"):
        eps = float(getattr(threat, "eps", 0.0))
        lo, hi = bounds
        if float(getattr(threat, "p", 0)) == np.inf:
            levels = eps * 255.0 / (float(hi) - float(lo))
            if steps is None:
                steps = max(1, int(min(levels + 4.0, 1.25 * levels)))
            if step_size is None:
                step_size = (float(hi) - float(lo)) / 255.0
        else:
            steps = 10 if steps is None else steps
            if step_size is None and isinstance(steps, (int, np.integer)) and steps > 0:
                step_size = eps / steps
        super().__init__(threat, steps=steps, step_size=step_size, random_start=False, loss=loss,
                         bounds=bounds, early_stop=early_stop, validate=validate)


class MIFGSM(PGD):
    """Momentum iterative FGSM of Dong et al. 2018.

    Paper defaults: 10 steps of `eps / steps`, decay `mu = 1.0`, no random
    start; the update is `optimizers.Momentum(decay)`.

    Args:
        threat: `LpBall`-like threat.
        steps: number of steps (10).
        decay: momentum decay `mu` (1.0).
        loss: as in `PGD`.
        bounds: `(lo, hi)` input domain.
        early_stop: as in `PGD`.

    References:
        Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
    """

    def __init__(self, threat, steps=10, decay=1.0, *, loss="ce", bounds=(0.0, 1.0), early_stop=False,
                 validate="full"):
        steps = _validate.check_int(steps, name="steps", minimum=1)
        super().__init__(threat, steps=steps, step_size=float(getattr(threat, "eps", 0.0)) / steps,
                         random_start=False, loss=loss, optimizer=optimizers_lib.Momentum(decay),
                         bounds=bounds, early_stop=early_stop, validate=validate)
