"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T) of Croce & Hein: step-size-free PGD.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks import APGD, APGDT

apgd = APGD(threats.LpBall(np.inf, 8 / 255), loss="ce", steps=100, seed=0)
x_adv = apgd(model, x, y)
apgd_t = APGDT(threats.LpBall(np.inf, 8 / 255), n_target_classes=9, seed=0)
x_adv = apgd_t(model, x, y)          # untargeted goal, targeted DLR inside
```

APGD replaces PGD's fixed step size by a budget-aware schedule: it starts
at `2 eps` (L∞, L2) and halves the step at checkpoints `w_j` (`p_0 = 0`,
`p_1 = 0.22`, `p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`, `w_j =
ceil(p_j N)`) when the loss increased in at most `rho = 0.75` of the steps
since the last checkpoint, or when the step was not reduced at the last
checkpoint and the best loss has not improved since. After a reduction the
iterate restarts from the best point found. Steps use momentum `alpha =
0.75`: `x_{k+1} = P(x_k + alpha (z_{k+1} - x_k) + (1 - alpha)(x_k - x_{k-1}))`
with `z_{k+1} = P(x_k + eta_k * steepest(grad))`.

APGD-L1 (Croce & Hein 2021) follows the same loop with the sparse steepest
step of adaptive sparsity (the top `k` coordinates of the gradient, `k`
following the sparsity of the best point found), the exact projection onto
the L1 ball intersected with the box, no momentum, and its own step rule
(reset to `eps` when the sparsity dropped by 5% since the last checkpoint,
else divided by 1.5, within `[eps / 10, eps]`, checkpoints every 4% of the
budget).

All restarts, the schedule and the best-iterate bookkeeping run in one
compiled `tf.while_loop` on the whole batch; APGD-T loops in Python only
over its (at most 9) target classes, each run on the points still robust.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.
    Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on
    image classifiers", ICML 2021.
"""

import functools

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust import losses
from tfrobust.attacks.base import Attack, is_adversarial

__all__ = ["APGD", "APGDT", "apgd_checkpoints"]

# Momentum weight of the paper (alpha in Algorithm 1).
_MOMENTUM = 0.75


def apgd_checkpoints(steps):
    """The iterations at which APGD (L∞, L2) may halve its step size.

    `p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`,
    checkpoints `ceil(p_j * steps)` for `0 < p_j <= 1`, as realised by the
    reference code (window length starting at `0.22 N` and shrinking by
    `0.03 N` per checkpoint down to `0.06 N`, each rounded down to an
    integer >= 1).

    Args:
        steps: the iteration budget N.

    Returns:
        A list of 1-based iteration counts after which a check happens.
    """
    steps = _validate.check_int(steps, name="steps", minimum=1)
    window = max(int(0.22 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    minimum = max(int(0.06 * steps), 1)
    points, at = [], 0
    while at + window <= steps:
        at += window
        points.append(at)
        window = max(window - shrink, minimum)
    return points


def _expand(v, x):
    return tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))


def _flat(v):
    return tf.reshape(v, [tf.shape(v)[0], -1])


def _finite_rows(logits):
    return tf.reduce_all(tf.math.is_finite(logits), axis=-1)


class APGD(Attack):
    """Auto-PGD with the CE or DLR loss, L∞, L2 or L1, with restarts.

    Untargeted `apgd(model, x, y)` maximizes the loss of the true class;
    targeted `apgd(model, x, y_target, targeted=True)` minimizes the CE of
    the target (`loss="ce"`) or maximizes the targeted DLR of the target
    against the clean prediction (`loss="dlr"`, needs K >= 4). The result
    is, per example, the first restart's adversarial point if any restart
    found one, otherwise the highest-loss point.

    Args:
        threat: `tfrobust.threats.LpBall` with p in {1, 2, inf}.
        loss: "ce" (APGD-CE) or "dlr" (APGD-DLR; K >= 3).
        steps: iterations per restart (paper: 100).
        restarts: independent random starts (AutoAttack: 1 for APGD-CE
            standard, 5 in its "plus" version).
        rho: the oscillation threshold of the step-size rule (0.75).
        eot_samples: gradients averaged per step over this many forward
            passes (Expectation over Transformation for randomized models;
            AutoAttack's "rand" version uses 20).
        seed: int for reproducible random starts, None for fresh ones.
        bounds: the input box.
        validate: "full" or "cheap" (no extra forward pass; see `Attack`).
        drop_found: points already adversarial leave the batch at the next
            step-size checkpoint, and a run ends once none is left (a success
            is final: the point returned is an earlier adversarial iterate,
            and the later steps are not computed for it). None (default): on
            unless `eot_samples > 1`, where one noisy pass's success does not
            mean the point is adversarial on average and later iterates are
            stronger.

    Raises:
        ValueError: on bad arguments.
    """

    randomized = True

    def __init__(self, threat, *, loss="ce", steps=100, restarts=1, rho=0.75, eot_samples=1,
                 seed=None, bounds=(0.0, 1.0), validate="full", drop_found=None):
        super().__init__(threat, bounds=bounds, validate=validate)
        if threat is None or getattr(threat, "p", None) not in (1, 2, np.inf):
            raise _validate.error("threat", "an LpBall with p in {1, 2, inf}", threat)
        self.loss = _validate.check_choice(loss, name="loss", choices=("ce", "dlr"))
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.restarts = _validate.check_int(restarts, name="restarts", minimum=1)
        self.rho = _validate.check_float(rho, name="rho", minimum=0.0, maximum=1.0)
        self.eot_samples = _validate.check_int(eot_samples, name="eot_samples", minimum=1)
        self.uses_eot = self.eot_samples > 1
        self.seed = _validate.check_int(seed, name="seed", minimum=0, allow_none=True)
        if drop_found is not None and not isinstance(drop_found, bool):
            raise _validate.error("drop_found", "None or a bool", drop_found)
        self.drop_found = drop_found
        self._drop_found = (not self.uses_eot) if drop_found is None else drop_found
        self._rng = None
        self._compiled = tf.function(functools.partial(type(self)._attack_once, self),
                                     reduce_retracing=True)

    def get_config(self):
        return dict(super().get_config(), loss=self.loss, steps=self.steps, restarts=self.restarts,
                    rho=self.rho, eot_samples=self.eot_samples, seed=self.seed,
                    drop_found=self.drop_found)

    # ------------------------------------------------------------------

    def _run(self, model, x, y, targeted):
        # Only the targeted DLR loss reads the clean predictions; the other
        # modes skip that extra forward pass.
        if self.loss == "dlr" and targeted is not False:
            y_clean = tf.argmax(model(x), axis=-1, output_type=tf.int32)
        else:
            y_clean = y
        targeted = tf.constant(targeted, tf.bool) if isinstance(targeted, bool) else targeted
        return self._best_of_restarts(model, x, y, y_clean, targeted)

    def _best_of_restarts(self, model, x, y, y_clean, targeted):
        best_x, best_loss, best_succ = self._compiled(model, x, y, y_clean, targeted, self._next_seed())
        for _ in range(self.restarts - 1):
            # Later restarts run only on the points no restart has broken yet,
            # as the reference's perturb() does: a success is final.
            index = tf.where(~best_succ)[:, 0]
            seed = self._next_seed()
            if tf.executing_eagerly() and int(tf.size(index)) == 0:
                continue
            x_adv, loss, succ = self._compiled(model, tf.gather(x, index), tf.gather(y, index),
                                               tf.gather(y_clean, index), targeted, seed)
            # Among failures the higher loss wins.
            take = succ | (loss > tf.gather(best_loss, index))
            rows = index[:, None]
            best_x = tf.tensor_scatter_nd_update(
                best_x, rows, tf.where(_expand(take, x_adv), x_adv, tf.gather(best_x, index)))
            best_loss = tf.tensor_scatter_nd_update(
                best_loss, rows, tf.where(take, loss, tf.gather(best_loss, index)))
            best_succ = tf.tensor_scatter_nd_update(best_succ, rows, succ)
        return best_x

    def objective(self, logits, y, y_clean, targeted):
        """Per-example objective to maximize (CE, DLR, or their targeted forms)."""
        logits = tf.cast(logits, tf.float32)
        if self.loss == "ce":
            value = losses.cross_entropy(logits, y)
            return tf.where(targeted, -value, value)
        untargeted = losses.dlr(logits, y)
        if logits.shape[-1] is not None and logits.shape[-1] < 4:
            return untargeted
        return tf.where(targeted, losses.dlr_targeted(logits, y_clean, y), untargeted)

    def _objective_and_grad(self, model, x_adv, y, y_clean, targeted):
        """Objective, gradient (averaged over `eot_samples` passes) and logits."""
        def one(z):
            stash = []

            def f(v):
                logits = model(v)
                stash.append(logits)
                return self.objective(logits, y, y_clean, targeted)

            obj, grad = self.value_and_grad(f, z)
            return obj, grad, tf.cast(stash[-1], tf.float32)

        obj, grad, logits = one(x_adv)
        if self.eot_samples > 1:
            def body(j, obj_sum, grad_sum, _):
                o, g, lg = one(x_adv)
                return j + 1, obj_sum + o, grad_sum + g, lg

            _, obj, grad, logits = tf.while_loop(
                lambda j, *_: j < self.eot_samples, body, (tf.constant(1), obj, grad, logits))
            obj = obj / self.eot_samples
            grad = grad / self.eot_samples
        # A NaN gradient entry would spread through the projection to the
        # whole example; a non-finite loss must never look like progress.
        grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
        obj = tf.where(tf.math.is_finite(obj), obj, tf.fill(tf.shape(obj), -np.inf))
        return obj, grad, logits

    def _success(self, logits, y, targeted):
        return is_adversarial(logits, y, targeted) & _finite_rows(logits)

    def _start(self, x, seed):
        """The reference's random start: on the L∞ / L2 sphere of radius eps
        (a uniform draw rescaled to unit max / a Gaussian to unit norm), for
        L1 a Gaussian projected onto the L1 ball ∩ box."""
        lo, hi = self.bounds
        p, eps = self.threat.p, float(self.threat.eps)
        if p == np.inf:
            t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
            scale = tf.reduce_max(tf.abs(_flat(t)), axis=-1)
        else:
            t = tf.random.stateless_normal(tf.shape(x), seed)
            scale = tf.norm(_flat(t), axis=-1)
        if p == 1:
            return x + self.threat.project_with_box(x, t, self.bounds)
        return tf.clip_by_value(x + eps * t / (_expand(scale, x) + 1e-12), lo, hi)

    def _project(self, x, z):
        return x + self.threat.project_with_box(x, z - x, self.bounds)

    def _attack_once(self, model, x, y, y_clean, targeted, seed):
        p, eps, steps = self.threat.p, float(self.threat.eps), self.steps
        n_features = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
        batch = tf.shape(x)[0]
        alpha = 1.0 if p == 1 else 2.0
        window0 = max(int(0.04 * steps), 1) if p == 1 else max(int(0.22 * steps), 1)
        shrink, min_window = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)

        x_adv = self._start(x, seed)
        obj, grad, logits = self._objective_and_grad(model, x_adv, y, y_clean, targeted)
        succ = self._success(logits, y, targeted)
        state = dict(
            i=tf.constant(0), x_adv=x_adv, x_old=x_adv, grad=grad,
            x_best=x_adv, grad_best=grad, loss_best=obj, loss_prev=obj,
            x_found=x_adv, found=succ,
            step=tf.fill([batch], tf.constant(alpha * eps, tf.float32)),
            counter=tf.constant(0), window=tf.constant(window0),
            increases=tf.zeros([batch]),
            loss_best_last=obj, reduced_last=tf.ones([batch], tf.bool),
            topk=tf.fill([batch], 0.2), sparsity_old=tf.fill([batch], n_features),
            x0=x, y=y, y_clean=y_clean, ids=tf.range(batch),
        )
        # Rows leave the batch (drop_found) into these full-batch results.
        results = dict(x=x_adv, loss=obj, found=tf.zeros([batch], tf.bool))
        scalars = ("i", "counter", "window")

        def steepest(g):
            if p == np.inf:
                return tf.sign(g)
            if p == 2:
                return g / (_expand(tf.norm(_flat(g), axis=-1), g) + 1e-12)
            return g  # L1: handled by the sparse step below

        def sparse_step(g, topk):
            # Keep the coordinates whose |g| reaches the (1 - topk) quantile.
            magnitudes = tf.sort(tf.abs(_flat(g)), axis=-1)
            index = tf.cast(tf.clip_by_value((1.0 - topk) * n_features, 0.0, n_features - 1.0), tf.int32)
            threshold = tf.gather(magnitudes, index, batch_dims=1)
            signs = tf.sign(g) * tf.cast(tf.abs(g) >= _expand(threshold, g), g.dtype)
            l1 = tf.reduce_sum(tf.abs(_flat(signs)), axis=-1)
            return signs / (_expand(l1, g) + 1e-10)

        def body(s, results):
            i, step = s["i"], s["step"]
            x_cur, grad = s["x_adv"], s["grad"]
            x, y, y_clean = s["x0"], s["y"], s["y_clean"]
            if p == 1:
                x_next = self._project(x, x_cur + _expand(step, x) * sparse_step(grad, s["topk"]))
            else:
                z = self._project(x, x_cur + _expand(step, x) * steepest(grad))
                a = tf.where(i > 0, _MOMENTUM, 1.0)
                x_next = self._project(x, x_cur + a * (z - x_cur) + (1.0 - a) * (x_cur - s["x_old"]))
            obj, grad, logits = self._objective_and_grad(model, x_next, y, y_clean, targeted)
            succ = self._success(logits, y, targeted)
            # The last adversarial iterate, as in the reference's x_best_adv.
            x_found = tf.where(_expand(succ, x), x_next, s["x_found"])
            found = s["found"] | succ
            better = obj > s["loss_best"]
            x_best = tf.where(_expand(better, x), x_next, s["x_best"])
            grad_best = tf.where(_expand(better, x), grad, s["grad_best"])
            loss_best = tf.where(better, obj, s["loss_best"])
            # Increases of the loss since the last checkpoint; the first step
            # is compared with the starting point (the reference compares it
            # with an unwritten zero entry of its loss history).
            increases = s["increases"] + tf.cast(obj > s["loss_prev"], tf.float32)
            counter = s["counter"] + 1
            out = dict(s, i=i + 1, x_adv=x_next, x_old=x_cur, grad=grad, x_best=x_best,
                       grad_best=grad_best, loss_best=loss_best, loss_prev=obj, x_found=x_found,
                       found=found, counter=counter, increases=increases)
            return tf.cond(tf.equal(counter, s["window"]), lambda: checkpoint(out, results),
                           lambda: (out, results))

        def write(results, s, rows):
            """Results of the batch rows `rows` written at their original ids."""
            ids = tf.gather(s["ids"], rows)[:, None]
            found = tf.gather(s["found"], rows)
            x_row = tf.where(_expand(found, s["x0"]), tf.gather(s["x_found"], rows), tf.gather(s["x_best"], rows))
            return dict(x=tf.tensor_scatter_nd_update(results["x"], ids, x_row),
                        loss=tf.tensor_scatter_nd_update(results["loss"], ids, tf.gather(s["loss_best"], rows)),
                        found=tf.tensor_scatter_nd_update(results["found"], ids, found))

        def drop(s, results):
            results = write(results, s, tf.where(s["found"])[:, 0])
            keep = tf.where(~s["found"])[:, 0]
            return {k: v if k in scalars else tf.gather(v, keep) for k, v in s.items()}, results

        def checkpoint(s, results):
            x = s["x0"]
            window_f = tf.cast(s["window"], tf.float32)
            if p == 1:
                sparsity = tf.reduce_sum(tf.cast(tf.abs(_flat(s["x_best"] - x)) > 0, tf.float32), -1)
                reset = sparsity / s["sparsity_old"] < 0.95
                step = tf.where(reset, alpha * eps, s["step"] / 1.5)
                step = tf.clip_by_value(step, alpha * eps / 10.0, alpha * eps)
                extra = dict(topk=sparsity / n_features / 1.5, sparsity_old=sparsity,
                             window=s["window"])
            else:
                oscillating = s["increases"] <= window_f * self.rho
                stalled = ~s["reduced_last"] & (s["loss_best_last"] >= s["loss_best"])
                reset = oscillating | stalled
                step = tf.where(reset, s["step"] / 2.0, s["step"])
                extra = dict(reduced_last=reset, loss_best_last=s["loss_best"],
                             window=tf.maximum(s["window"] - shrink, min_window))
            mask = _expand(reset, x)
            s = dict(s, step=step, counter=tf.constant(0), increases=tf.zeros_like(s["increases"]),
                     x_adv=tf.where(mask, s["x_best"], s["x_adv"]),
                     grad=tf.where(mask, s["grad_best"], s["grad"]), **extra)
            return drop(s, results) if self._drop_found else (s, results)

        def cond(s, results):
            if self._drop_found:
                return (s["i"] < steps) & ~tf.reduce_all(s["found"])  # also ends on an empty batch
            return s["i"] < steps

        # The batch axis of the loop state may shrink (drop_found).
        invariants = {k: v.shape if k in scalars else tf.TensorShape([None]).concatenate(v.shape[1:])
                      for k, v in state.items()}
        results_shapes = {k: v.shape for k, v in results.items()}
        state, results = tf.while_loop(cond, body, (state, results), maximum_iterations=steps,
                                       shape_invariants=(invariants, results_shapes))
        results = write(results, state, tf.range(tf.shape(state["ids"])[0]))
        return results["x"], results["loss"], results["found"]


class APGDT(APGD):
    """APGD-T: targeted APGD-DLR over the top classes, untargeted goal.

    For each of the `n_target_classes` classes ranked 2nd, 3rd, ... by the
    clean logits, runs targeted APGD with the targeted DLR loss on the
    points not yet misclassified, as in AutoAttack. `attack(model, x, y)`
    returns a misclassified point wherever one target succeeded. Targeted
    calls (`targeted=True`) are plain targeted APGD-DLR towards `y`.

    Args:
        threat, steps, rho, eot_samples, seed, bounds: as `APGD`.
        n_target_classes: how many runner-up classes to target (9, capped at
            K - 1).
        restarts: restarts per target class (AutoAttack: 1).
    """

    def __init__(self, threat, *, n_target_classes=9, steps=100, restarts=1, rho=0.75,
                 eot_samples=1, seed=None, bounds=(0.0, 1.0), validate="full"):
        super().__init__(threat, loss="dlr", steps=steps, restarts=restarts, rho=rho,
                         eot_samples=eot_samples, seed=seed, bounds=bounds, validate=validate)
        self.n_target_classes = _validate.check_int(n_target_classes, name="n_target_classes", minimum=1)

    def get_config(self):
        return dict(super().get_config(), n_target_classes=self.n_target_classes)

    def _run(self, model, x, y, targeted):
        logits = model(x)
        num_classes = logits.shape[-1]
        if num_classes is None or num_classes < 4:
            raise ValueError("Expected a model with at least 4 classes for APGD-T's targeted DLR loss. "
                             f"Received: logits.shape={tuple(logits.shape)}")
        y_clean = tf.argmax(logits, axis=-1, output_type=tf.int32)
        if not isinstance(targeted, bool):
            if not tf.executing_eagerly():
                raise ValueError("Expected `targeted` to be a Python bool for APGDT (its untargeted "
                                 f"mode loops over target classes). Received: targeted={targeted!r}")
            targeted = bool(targeted)
        if targeted:
            return self._best_of_restarts(model, x, y, y_clean, tf.constant(True))
        ranked = tf.argsort(logits, axis=-1, direction="DESCENDING", stable=True)
        x_adv = x
        robust = ~self._success(logits, y, False)
        for rank in range(1, min(self.n_target_classes, num_classes - 1) + 1):
            index = tf.where(robust)[:, 0]
            if tf.executing_eagerly() and int(tf.size(index)) == 0:
                break
            x_sub, y_sub = tf.gather(x, index), tf.gather(y, index)
            target = tf.gather(ranked[:, rank], index)
            candidate = self._best_of_restarts(model, x_sub, target, y_sub, tf.constant(True))
            # The goal is untargeted: any misclassification counts.
            hit = self._success(model(candidate), y_sub, False)
            x_adv = tf.tensor_scatter_nd_update(
                x_adv, index[:, None], tf.where(_expand(hit, x_sub), candidate, tf.gather(x_adv, index)))
            robust = tf.tensor_scatter_nd_update(robust, index[:, None], ~hit)
        return x_adv
