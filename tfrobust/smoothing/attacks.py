"""Attacks on smoothed classifiers: PGD on one noisy pass, EPGD, PGD on the soft vote.

Example:

```python
import numpy as np
import keras
from tfrobust.evaluation import evaluate
from tfrobust.smoothing import SmoothedClassifier
from tfrobust.smoothing.attacks import smoothing_attacks

base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                         keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
y = np.arange(8) % 10
attacks = smoothing_attacks(base, sigma=0.25, eps=0.3, passes=8, seed=0)
defense = SmoothedClassifier(base, sigma=0.25, n=32, vote="prediction")
result = evaluate(defense, (x, y), attacks)       # worst case over the three
```

The defense is judged on its own (vote) output; each attack takes its
gradient on a *view* of it (`ViewAttack`), as in the original code:

* `"pgd"`: PGD on one noisy pass `base(x + sigma * eps)` (the original
  `PGD_FGSMk`: `forward_backward` runs one noisy forward).
* `"epgd"`: `EPGD`, the gradient of the mean cross-entropy over `passes`
  noisy forward passes per step (`EPGD_FGSMk`, an expectation over
  transformation of the loss).
* `"pgd_smoothed"`: PGD on the soft smoothed classifier itself (mean logits
  over `passes` noisy passes, Eq. 25 of the paper; for the vote rules the
  gradient the `SmoothedClassifier` exposes is this one too).
* `"pgd_eot"` (optional): PGD on `EoT(noisy pass, passes, "probs")`, the
  log of the mean softmax (Salman et al.'s SmoothAdv attack).

The app defaults are the original's: 7 steps of eps/4 with a random start.
With weight noise (PNI / CPNI) every pass is its own base call, so that each
pass draws its own weight sample as in the original (one sample per call).
"""

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust import threats as threats_lib
from tfrobust.attacks.pgd import PGD
from tfrobust.attacks.pgd import finite_objective
from tfrobust.attacks.view import ViewAttack  # noqa: F401 (re-exported)
from tfrobust.models.wrappers import EoT

__all__ = ["ATTACK_NAMES", "EPGD", "ViewAttack", "noisy_pass", "original_pgd", "smoothing_attacks"]

#: Names of `smoothing_attacks`; the first three are built by default.
ATTACK_NAMES = ("pgd", "epgd", "pgd_smoothed", "pgd_eot")
#: The original `PGD_FGSMk` defaults: k = 7 steps of eps / 4.
STEPS = 7
STEP_FRACTION = 0.25


def noisy_pass(base, sigma, *, seed=None, chunk_size=None):
    """One noisy forward pass `base(x + sigma * eps)` as a model (a `SmoothedClassifier` with n=1).

    Args:
        base: Keras model returning logits.
        sigma: input-noise level (>= 0).
        seed: seed of the noise, or None.
        chunk_size: passed to the `SmoothedClassifier`.

    Returns:
        A random Keras model `x -> logits` (declares `randomized = True`).
    """
    from tfrobust.smoothing.classifier import SmoothedClassifier

    return SmoothedClassifier(base, sigma=sigma, n=1, vote="soft", seed=seed, chunk_size=chunk_size,
                              name="noisy_pass")


class EPGD(PGD):
    """Expectation PGD: each step ascends the mean loss over `passes` noisy forward passes.

    The loss (and its gradient) is `(1 / m) * sum_j loss(model(x))` over `m =
    passes` calls of the random `model` (the original `EPGD_FGSMk`:
    `expectation_forward_backward` scales each pass's loss by 1/m and
    accumulates the gradients), i.e. PGD on the expectation of the loss
    rather than on the loss of the expected logits. The passes run in a
    `tf.while_loop` inside PGD's compiled loop, one model call each, so a
    model with weight noise draws a fresh weight sample per pass. The best
    iterate is judged on the mean logits of the same passes.

    Args:
        threat: an `LpBall`.
        passes: m, noisy passes per step (>= 1; the original's m_train, 8).
        steps, step_size, random_start, loss, restarts, bounds, seed,
            early_stop, validate: as `PGD` (step_size None: 2.5 eps / steps).

    Raises:
        ValueError: on `passes < 1` or a bad PGD argument.

    References:
        Nemcovsky et al., "Smoothed Inference for Improving Adversarial
        Robustness", 2019 (Eq. 24); Athalye, Engstrom, Ilyas & Kwok,
        "Synthesizing Robust Adversarial Examples", ICML 2018.
    """

    uses_eot = True

    def __init__(self, threat, *, passes=8, **kwargs):
        super().__init__(threat, **kwargs)
        self.passes = _validate.check_int(passes, name="passes", minimum=1)

    def get_config(self):
        config = super().get_config()
        config.update(passes=self.passes)
        return config

    def objective_and_grad(self, model, x, y, targeted):
        m = self.passes

        def one_pass(j, obj_sum, grad_sum, logits_sum):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = tf.cast(tf.convert_to_tensor(model(x)), tf.float32)
                obj = self.objective(logits, y, targeted)
            grad = tape.gradient(obj, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
            return j + 1, obj_sum + finite_objective(obj, logits), grad_sum + grad, logits_sum + logits

        # The first pass fixes the class count of the accumulators.
        _, obj0, grad0, logits0 = one_pass(0, 0.0, tf.zeros_like(x), 0.0)
        _, obj, grad, logits = tf.while_loop(
            lambda j, *_: j < m, one_pass, (tf.constant(1), obj0, grad0, logits0))
        return obj / m, grad / m, logits / m


def original_pgd(eps, *, p=np.inf, steps=STEPS, step_size=None, random_start=True, bounds=(0.0, 1.0),
                 seed=None, passes=None, validate="full"):
    """The original's PGD (`passes=None`) or EPGD: `steps` steps of `eps / 4`, random start.

    Args:
        eps: the budget (pixel units).
        p: the norm (inf in the paper).
        steps: 7 in the original.
        step_size: None for `eps / 4` (the original's alpha).
        random_start: uniform start in the ball (the original's default).
        bounds: input domain.
        seed: seed of the random start.
        passes: None for PGD, else EPGD over this many passes.
        validate: the attack's input checks (`"cheap"` inside training).

    Returns:
        A `PGD` or `EPGD`.
    """
    threat = threats_lib.LpBall(p, eps)
    step_size = STEP_FRACTION * float(eps) if step_size is None else step_size
    kwargs = dict(steps=steps, step_size=step_size, random_start=random_start, bounds=bounds, seed=seed,
                  validate=validate)
    if passes is None:
        return PGD(threat, **kwargs)
    return EPGD(threat, passes=passes, **kwargs)


def smoothing_attacks(base, sigma, eps, *, passes=8, steps=STEPS, step_size=None, p=np.inf,
                      names=ATTACK_NAMES[:3], per_pass_calls=False, bounds=(0.0, 1.0), seed=0):
    """The white-box attacks on a smoothed `base` as `ViewAttack`s, for `evaluate`.

    Args:
        base: the base model (logits; may carry weight noise).
        sigma: the defense's input-noise level (the views use the same).
        eps: budget.
        passes: m of EPGD and of the smoothed / EoT views (the original's
            m_train, 8).
        steps, step_size, p: PGD settings (default 7 steps of eps / 4).
        names: which of `ATTACK_NAMES` to build.
        per_pass_calls: one base call per pass in the smoothed views (set it
            for weight-noise bases: one weight sample per pass).
        bounds: input domain.
        seed: base seed (each attack and view derives its own).

    Returns:
        dict name -> `ViewAttack`.

    Raises:
        ValueError: on an unknown name or bad settings.
    """
    from tfrobust.smoothing.classifier import SmoothedClassifier

    names = list(names)
    for name in names:
        _validate.check_choice(name, name="names", choices=ATTACK_NAMES)
    passes = _validate.check_int(passes, name="passes", minimum=1)
    chunk = 1 if per_pass_calls else None
    out = {}
    for i, name in enumerate(names):
        s = seed + 10 * i
        one = noisy_pass(base, sigma, seed=s + 1)
        if name == "pgd":
            attack, view = original_pgd(eps, p=p, steps=steps, step_size=step_size, bounds=bounds, seed=s), one
        elif name == "epgd":
            attack = original_pgd(eps, p=p, steps=steps, step_size=step_size, bounds=bounds, seed=s,
                                  passes=passes)
            view = one
        elif name == "pgd_smoothed":
            attack = original_pgd(eps, p=p, steps=steps, step_size=step_size, bounds=bounds, seed=s)
            view = SmoothedClassifier(base, sigma=sigma, n=passes, vote="soft", seed=s + 1, chunk_size=chunk,
                                      name="soft_smoothed")
        else:
            attack = original_pgd(eps, p=p, steps=steps, step_size=step_size, bounds=bounds, seed=s)
            view = EoT(one, n=passes, average="probs", max_batch=None if not per_pass_calls else 1)
        out[name] = ViewAttack(attack, view, averages=name == "pgd_smoothed" and passes > 1)
    return out
