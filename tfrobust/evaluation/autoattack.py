"""AutoAttack in TensorFlow: APGD-CE, APGD-T, FAB-T and Square in sequence.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.evaluation import auto_attack

result = auto_attack(model, x, y, threats.LpBall(np.inf, 8 / 255), seed=0)
result.robust_accuracy                 # final: worst case over the sequence
result.accuracy_after                  # {"apgd-ce": ..., "apgd-t": ..., ...}
result.x_adv, result.broken_by         # per example
```

Each attack runs only on the points still robust after the previous ones
(clean-correct points no attack has broken yet), as in Croce & Hein's
reference, so the sequence costs little more than its first attack on a
weak model and the final accuracy is the per-point worst case over all of
them. An adversarial point counts only if it lies inside threat ∩ box
(`LpBall.norm` within eps up to float rounding) and the model's logits
there are finite.

Versions (AutoAttack's):
- `"standard"`: APGD-CE (100 steps, 1 restart), APGD-T (100 steps, 9
  target classes), FAB-T (100 steps, 9 target classes), Square (5000
  queries). For L1 the L1 versions of APGD and FAB run; Square has no L1
  version here and is left out (said in `result.attacks`).
- `"plus"`: APGD-CE and APGD-DLR with 5 restarts, FAB (5 restarts), Square
  (5 restarts), APGD-T, FAB-T.
- `"rand"`: for randomized defenses, APGD-CE and APGD-DLR with gradients
  averaged over 20 forward passes (EoT), 1 restart.
- or a list mixing those names and `tfrobust.attacks.Attack` instances.

As in the reference, FAB's later restarts and FAB-T's later target classes
run only on the points not yet broken within eps (`budgeted=True`); APGD
drops the broken points from its batch at each checkpoint (its default
`drop_found`); neither changes which points count as broken.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.
"""

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.threats import within_eps

__all__ = ["AutoAttackResult", "auto_attack", "auto_attack_sequence"]

VERSIONS = ("standard", "plus", "rand")
_NAMES = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


class AutoAttackResult(NamedTuple):
    """Result of `auto_attack`.

    Attributes:
        x_adv: float32 array like x: the adversarial point where one was
            found, else x.
        clean_correct: bool `[N]`.
        robust: bool `[N]`: clean-correct and not broken by any attack.
        broken_by: object array `[N]`: the name of the attack that first
            broke each point ("" where none did or the point was misclassified).
        accuracy_after: dict name -> robust accuracy after that attack (in
            sequence order).
        nonfinite: dict name -> number of attacked points whose adversarial
            logits were not finite (never counted as broken).
        seconds: dict name -> wall time of that attack.
        attacks: the names in the order they ran.
    """

    x_adv: np.ndarray
    clean_correct: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    accuracy_after: dict
    nonfinite: dict
    seconds: dict
    attacks: tuple

    @property
    def clean_accuracy(self):
        return float(np.mean(self.clean_correct))

    @property
    def robust_accuracy(self):
        return float(np.mean(self.robust))

    def to_dict(self):
        return {"clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "accuracy_after": dict(self.accuracy_after), "nonfinite": dict(self.nonfinite),
                "seconds": dict(self.seconds), "attacks": list(self.attacks), "n_examples": len(self.robust)}


def _make(name, threat, *, seed, bounds, version):
    # Imported on use: building the sequence is the only place that needs them.
    from tfrobust.attacks.apgd import APGD, APGDT
    from tfrobust.attacks.fab import FAB, FABT
    from tfrobust.attacks.square import Square

    plus = version == "plus"
    eot = 20 if version == "rand" else 1
    restarts = 5 if plus else 1
    common = dict(seed=seed, bounds=bounds)
    if name == "apgd-ce":
        return APGD(threat, loss="ce", steps=100, restarts=restarts, eot_samples=eot, **common)
    if name == "apgd-dlr":
        return APGD(threat, loss="dlr", steps=100, restarts=restarts, eot_samples=eot, **common)
    if name == "apgd-t":
        return APGDT(threat, steps=100, n_target_classes=9, eot_samples=eot, **common)
    if name == "fab":
        return FAB(threat, steps=100, restarts=restarts, budgeted=True, **common)
    if name == "fab-t":
        return FABT(threat, steps=100, n_target_classes=9, budgeted=True, **common)
    if name == "square":
        return Square(threat, n_queries=5000, p_init=0.8, restarts=restarts, **common)
    raise _validate.error("version", f"one of {VERSIONS} or a list of names in {_NAMES} "
                          "and Attack instances", name)


def auto_attack_sequence(threat, version="standard", *, seed=0, bounds=(0.0, 1.0)):
    """The `(name, attack)` pairs `auto_attack` runs for `version`.

    Raises:
        ValueError: on an unknown version or name.
    """
    p = getattr(threat, "p", None)
    if p not in (1, 2, np.inf):
        raise _validate.error("threat", "an LpBall with p in {1, 2, inf}", threat)
    if isinstance(version, str):
        _validate.check_choice(version, name="version", choices=VERSIONS)
        names = {
            "standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
            "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
            "rand": ["apgd-ce", "apgd-dlr"],
        }[version]
        if p == 1:
            names = [n for n in names if n != "square"]  # no L1 Square here
        return [(n, _make(n, threat, seed=seed, bounds=bounds, version=version)) for n in names]
    try:
        items = list(version)
    except TypeError:
        raise _validate.error("version", f"one of {VERSIONS} or a list", version) from None
    if not items:
        raise _validate.error("version", "a non-empty list of attacks", version)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, _make(item, threat, seed=seed, bounds=bounds, version="standard")))
        elif callable(item):
            out.append((getattr(item, "name", None) or type(item).__name__, item))
        else:
            raise _validate.error("version", "attack names or Attack instances", item)
    return out


def _candidates(attack, model, x, y, parts, strategy):
    """Yields the attack's `x_adv` (float32 NumPy) on each part; part i on stream i, the
    caller's prediction on stream n + i (`tfrobust.distribute.stream_batches`)."""
    from tfrobust import distribute

    outs = distribute.stream_batches(
        strategy, lambda xb, yb: tf.convert_to_tensor(attack(model, xb, yb), tf.float32),
        [(x[part], y[part]) for part in parts], streams=distribute.BatchStreams.of([attack, model]))
    for out in outs:
        yield np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float32)


def auto_attack(model, x, y, threat, *, version="standard", batch_size=500, seed=0, bounds=(0.0, 1.0),
                verbose=0, strategy=None):
    """Runs the AutoAttack sequence; each attack only on points still robust.

    Args:
        model: callable mapping a float32 batch to logits `[B, K]`.
        x: float array `[N, ...]` in `bounds`.
        y: int labels `[N]`.
        threat: `tfrobust.threats.LpBall`.
        version: "standard", "plus", "rand", or a list of names
            (apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square) and attacks.
        batch_size: examples per attack call.
        seed: seed of every random attack in the sequence.
        bounds: the input box.
        verbose: 1 prints the accuracy after each attack.
        strategy: optional `tf.distribute.Strategy`: each attack's batches
            (of the points still robust) are dealt to its replicas inside
            `strategy.run` and gathered back in order
            (`tfrobust.distribute`); the result equals `strategy=None`'s
            (batch i of each attack draws from random stream i in both).
            Call it outside `strategy.scope()`.

    Returns:
        An `AutoAttackResult`.

    Raises:
        ValueError: on bad arguments or inputs (shapes, labels, bounds).
    """
    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        raise _validate.error("x", "a non-empty batch of rank >= 2", x, received=f"x.shape={x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise _validate.error("y", f"integer labels of shape ({len(x)},)", y,
                              received=f"y.shape={y.shape}, y.dtype={y.dtype}")
    if not np.all(np.isfinite(x)) or x.min() < bounds[0] - 1e-6 or x.max() > bounds[1] + 1e-6:
        raise _validate.error("x", f"finite values inside bounds={tuple(bounds)}", x,
                              received=f"x with min={np.nanmin(x)} and max={np.nanmax(x)}")
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise _validate.error("strategy", "a tf.distribute.Strategy or None", strategy)
    sequence = auto_attack_sequence(threat, version, seed=seed, bounds=bounds)

    num_classes = []

    def predict(batch):
        logits = tf.cast(model(tf.constant(batch)), tf.float32).numpy()
        num_classes.append(logits.shape[-1])
        finite = np.all(np.isfinite(logits), axis=-1)
        # A non-finite row predicts no class (-1): never a misclassification.
        return np.where(finite, np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=-1), -1), finite

    pred = np.concatenate([predict(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
    if y.min() < 0 or y.max() >= num_classes[0]:
        raise _validate.error("y", f"labels in [0, {num_classes[0]}) (the model has {num_classes[0]} classes)",
                              y, received=f"y with min={y.min()} and max={y.max()}")
    clean_correct = pred == y
    robust = clean_correct.copy()
    x_adv = x.copy()
    broken_by = np.full(len(x), "", dtype=object)
    accuracy_after, nonfinite, seconds = {}, {}, {}
    eps = float(threat.eps)
    for name, attack in sequence:
        start = time.time()
        n_nonfinite = 0
        index = np.flatnonzero(robust)
        parts = [index[i:i + batch_size] for i in range(0, len(index), batch_size)]
        # The generator first: it finishes (positions the streams) before zip stops.
        for candidate, part in zip(_candidates(attack, model, x, y, parts, strategy), parts):
            pred_adv, finite = predict(candidate)
            norms = threat.norm(tf.constant(candidate - x[part])).numpy()
            inside = within_eps(norms, eps) & np.all(
                (candidate >= bounds[0] - 1e-6) & (candidate <= bounds[1] + 1e-6),
                axis=tuple(range(1, candidate.ndim)))
            # Non-finite adversarial logits never count as a break.
            broken = finite & (pred_adv != y[part]) & inside
            n_nonfinite += int(np.sum(~finite))
            hit = part[broken]
            x_adv[hit] = candidate[broken]
            robust[hit] = False
            broken_by[hit] = name
        seconds[name] = time.time() - start
        accuracy_after[name] = float(np.mean(robust))
        nonfinite[name] = n_nonfinite
        if verbose:
            print(f"{name}: robust accuracy {accuracy_after[name]:.2%} ({seconds[name]:.1f} s)")
    return AutoAttackResult(x_adv, clean_correct, robust, broken_by, accuracy_after, nonfinite,
                            seconds, tuple(name for name, _ in sequence))
