"""Running the attacks: one attack at a time over every batch, per-example results.

The examples are attacked batch by batch (each attack compiles its own loop
once per batch shape; a short last batch is padded with its own examples so
that it reuses that trace). Attacks run one after the other over the whole
data, so each attack's `AttackResult` is complete (and handed to an
`on_result` callback, e.g. to write it to disk) before the next one starts:
a crash in a later attack keeps what was done.

Every verdict comes from the model: an example is broken by an attack if
the model's prediction at `x_adv` reaches the attack's goal. Adversarial
points where the model's logits are non-finite are counted apart and are
never counted as misclassified (`argmax` of a NaN row is 0, which would
otherwise make a numerically fragile model look broken).
"""

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.evaluation import inputs
from tfrobust.evaluation import labels
from tfrobust.evaluation.result import AttackResult

__all__ = ["Batch", "nonfinite_rows", "predict", "predictions", "run_attack", "run_attacks"]

try:  # The attack base owns the one definition, where it is available.
    from tfrobust.attacks.base import nonfinite_rows
except ImportError:  # an attack base without it: the same test here
    def nonfinite_rows(logits):
        """bool `[B]`: rows of `logits` with a NaN or Inf entry."""
        logits = tf.convert_to_tensor(logits)
        return tf.logical_not(tf.reduce_all(tf.math.is_finite(logits), axis=-1))


class Batch(NamedTuple):
    """One batch as the attacks see it.

    Attributes:
        x, y: the batch's `n` examples (NumPy).
        x_run, y_run: padded to the full batch size; `y_run` holds the
            targets of a targeted evaluation.
        n: number of real examples.
    """

    x: np.ndarray
    y: np.ndarray
    x_run: np.ndarray
    y_run: np.ndarray
    n: int


def predict(model, x):
    """`(pred, nonfinite)` NumPy arrays `[B]`; `pred` is -1 where the logits are non-finite."""
    return predictions(model(tf.constant(x)))


def predictions(logits):
    """`(pred, nonfinite)` of a logits batch (see `predict`)."""
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        raise ValueError(f"Expected the model to return float logits. Received: dtype {logits.dtype.name}")
    bad = np.asarray(nonfinite_rows(logits))
    pred = np.asarray(tf.argmax(tf.where(tf.math.is_finite(logits), logits, tf.zeros_like(logits)),
                                axis=-1, output_type=tf.int64))
    return np.where(bad, -1, pred), bad


def _norms(delta):
    # LpBall.norm is the library's one per-example norm.
    return {labels.norm_key(p): np.asarray(labels.ball(p, 0.0).norm(delta), np.float32)
            for p in (1, 2, np.inf)}


def _attack_batch(attack, model, x, y, targeted):
    """The attack's call on one batch (graph-compatible): `x_adv` or `(x_adv, min_norm)`."""
    if not isinstance(attack, MinimizationAttack):
        return tf.convert_to_tensor(attack(model, x, y, targeted=targeted), tf.float32)
    # One minimization gives both the smallest perturbation and the result
    # under the budget (as MinimizationAttack.__call__ would return it).
    res = attack.minimize(model, x, y, targeted=targeted)
    return res.x_adv, res.norm


def _finish_batch(attack, x, out, bounds):
    """Host side of one batch: `(x_adv, min_norm or None)` as NumPy arrays, inside threat ∩ box."""
    x = tf.convert_to_tensor(x)
    if not isinstance(attack, MinimizationAttack):
        x_adv = tf.convert_to_tensor(out[0] if isinstance(out, tuple) else out, tf.float32)
        if not isinstance(attack, Attack):
            # A foreign attack: the engine itself keeps x_adv inside threat ∩ box.
            threat = getattr(attack, "threat", None)
            if threat is not None:
                x_adv = x + threat.project_with_box(x, x_adv - x, bounds)
            x_adv = tf.clip_by_value(x_adv, *bounds)
        return np.asarray(x_adv), None
    x_adv, norm = (tf.convert_to_tensor(t) for t in out)
    threat = attack.threat
    if threat is not None:
        within = labels.inside(np.asarray(threat.norm(x_adv - x)), float(threat.eps))
        x_adv = tf.where(within.reshape((-1,) + (1,) * (x.shape.rank - 1)), x_adv, x)
        lo, hi = attack.bounds
        x_adv = tf.clip_by_value(x + threat.project_with_box(x, x_adv - x, attack.bounds), lo, hi)
    return np.asarray(x_adv), np.asarray(norm)


def _attack_outputs(attack, model, batches, targeted, bounds, strategy):
    """Yields `(x_adv, min_norm)` per batch (see `tfrobust.distribute.stream_batches`).

    The streams cover the model's generators too (a randomized defense
    draws noise inside the attack), and the caller's prediction of batch i
    runs on stream `n + i`: with and without a strategy, the attack and the
    final prediction of every batch see the same noise, whichever replica
    ran it.
    """
    from tfrobust import distribute

    raw = distribute.stream_batches(
        strategy, lambda x, y: _attack_batch(attack, model, x, y, targeted),
        [(b.x_run, b.y_run) for b in batches], streams=distribute.BatchStreams.of([attack, model]))
    for b, out in zip(batches, raw):
        yield _finish_batch(attack, b.x_run, out, bounds)


def _config(attack):
    get_config = getattr(attack, "get_config", None)
    return get_config() if callable(get_config) else {"name": inputs.class_name(attack)}


def run_attack(name, attack, model, batches, *, y, y_target, clean, bounds, keep_adversarials,
               strategy=None):
    """Runs one attack over every batch; returns its `AttackResult`.

    With a `strategy`, the batches are dealt to its replicas (see
    `tfrobust.distribute.run_batches`); the per-example results are those
    of `strategy=None`.
    """
    caps = inputs.capabilities(attack)
    targeted = y_target is not None
    preds, bad, norms, min_norms, advs = [], [], [], [], []
    start = time.perf_counter()
    # The outputs first: their generator finishes (positions the streams) before zip stops.
    for (x_adv, min_norm), b in zip(_attack_outputs(attack, model, batches, targeted, bounds, strategy),
                                    batches):
        pred, nonfinite = predict(model, x_adv)
        preds.append(pred[:b.n])
        bad.append(nonfinite[:b.n])
        norms.append(_norms(x_adv[:b.n] - b.x))
        if min_norm is not None:
            min_norms.append(min_norm[:b.n])
        if keep_adversarials:
            advs.append(x_adv[:b.n])
    seconds = time.perf_counter() - start
    pred, nonfinite = np.concatenate(preds), np.concatenate(bad)
    # A non-finite output is no class: never a success of the attack.
    broken = ((pred == y_target) & (y_target != y)) if targeted else (pred != y)
    broken &= ~nonfinite
    return AttackResult(
        name=name, config=_config(attack), threat=caps.threat, p=caps.p,
        minimization=isinstance(attack, MinimizationAttack), steps=caps.steps,
        black_box=caps.black_box, broken=broken, robust=clean & ~broken, pred=pred,
        norms={k: np.concatenate([n[k] for n in norms]) for k in labels.NORM_KEYS},
        min_norm=np.concatenate(min_norms) if min_norms else None, seconds=seconds,
        nonfinite=nonfinite, uses_eot=caps.uses_eot, randomized=caps.randomized,
        x_adv=np.concatenate(advs) if keep_adversarials else None,
    )


def run_attacks(model, named, batches, *, y, y_target, clean, bounds, keep_adversarials=False,
                on_result=None, strategy=None):
    """Runs every attack in turn; returns dict name -> `AttackResult`.

    Args:
        model: callable returning logits.
        named: dict name -> attack.
        batches: list of `Batch`.
        y: int `[N]` labels; y_target: int `[N]` targets or None.
        clean: bool `[N]` clean-correct.
        bounds: `(lo, hi)`.
        keep_adversarials: keep each `x_adv`.
        on_result: optional callable `(AttackResult) -> None`, called as
            soon as each attack has finished.
    """
    results = {}
    for name, attack in named.items():
        results[name] = run_attack(name, attack, model, batches, y=y, y_target=y_target, clean=clean,
                                   bounds=bounds, keep_adversarials=keep_adversarials, strategy=strategy)
        if on_result is not None:
            on_result(results[name])
    return results
