"""Input handling of the engine: attack names and kinds, data batches, targets."""

import numpy as np
import tensorflow as tf

from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.evaluation import result as result_lib

__all__ = ["batch_targets", "batches", "check_batch", "check_int", "check_targets", "default_name",
           "describe", "grid_keys", "name_attacks", "pad", "threat_key"]


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def threat_key(threat):
    p, eps = getattr(threat, "p", None), getattr(threat, "eps", None)
    if p is None or eps is None:
        return None
    return (float(p), float(eps))


def describe(attack):
    """`(threat key, p, steps, black_box)` of an attack (looking through wrappers)."""
    key = None if attack.threat is None else threat_key(attack.threat)
    if attack.threat is not None and key is None:
        raise ValueError(
            "Expected every attack's threat to have `p` and `eps` (e.g. an LpBall). "
            f"Received: threat={attack.threat!r}"
        )
    p = key[0] if key else (float(attack.norm_p) if isinstance(attack, MinimizationAttack) else None)
    inner, steps, black_box = attack, None, False
    while inner is not None:
        steps = steps if steps is not None else getattr(inner, "steps", None)
        black_box = black_box or bool(getattr(inner, "black_box", False))
        inner = getattr(inner, "attack", None)
    return key, p, steps, black_box


def default_name(attack):
    name = type(attack).__name__
    if attack.threat is not None and threat_key(attack.threat):
        p, eps = threat_key(attack.threat)
        name += f"-{result_lib.p_label(p)}-{eps:g}"
    return name


def name_attacks(attacks, bounds):
    if isinstance(attacks, Attack):
        attacks = [attacks]
    items = list(attacks.items()) if isinstance(attacks, dict) else [(None, a) for a in attacks]
    if not items:
        raise ValueError("Expected at least one attack. Received: attacks=empty")
    named = {}
    for name, attack in items:
        if not isinstance(attack, Attack):
            raise ValueError(
                "Expected `attacks` to hold tfrobust Attack instances. "
                f"Received: {name or 'an item'}={attack!r}"
            )
        if tuple(attack.bounds) != tuple(bounds):
            raise ValueError(
                f"Expected every attack to use bounds={bounds}. "
                f"Received: {name or type(attack).__name__} with bounds={attack.bounds}"
            )
        if name is not None and not (isinstance(name, str) and name):
            raise ValueError(f"Expected attack names to be non-empty strings. Received: {name!r}")
        base = name or default_name(attack)
        unique, i = base, 2
        while unique in named:
            unique, i = f"{base}-{i}", i + 1
        named[unique] = attack
    return named


def grid_keys(threats):
    keys = []
    for threat in threats or ():
        key = threat_key(threat) if not isinstance(threat, (tuple, list)) else None
        if key is None and isinstance(threat, (tuple, list)) and len(threat) == 2:
            from tfrobust.threats import LpBall  # Validates p and eps.

            ball = LpBall(*threat)
            key = (float(ball.p), ball.eps)
        if key is None:
            raise ValueError(
                "Expected `threats` to hold LpBall objects or (p, eps) pairs. "
                f"Received: {threat!r}"
            )
        keys.append(key)
    return keys


def check_batch(x, y, bounds, where):
    x, y = np.asarray(x), np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"Expected float images in {where}. Received: x.dtype={x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"Expected a non-empty batch of rank >= 2 in {where}. Received: x.shape={x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise ValueError(
            f"Expected int labels of shape [{x.shape[0]}] in {where}. "
            f"Received: y.dtype={y.dtype}, y.shape={y.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"Expected finite images in {where}. Received: x containing NaN or Inf")
    lo, hi = bounds
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise ValueError(
            f"Expected images inside bounds={bounds} in {where}. "
            f"Received: x with min={x.min()} and max={x.max()}"
        )
    return np.clip(x.astype(np.float32), lo, hi), y.astype(np.int64)


def batches(data, batch_size, bounds):
    if isinstance(data, tf.data.Dataset):
        for i, element in enumerate(data):
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError(
                    "Expected `data` to yield (x, y) batches. "
                    f"Received: an element of type {type(element).__name__}"
                )
            yield check_batch(element[0].numpy(), element[1].numpy(), bounds, f"data batch {i}")
        return
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "Expected `data` to be (x, y) arrays or a tf.data.Dataset of (x, y) batches. "
            f"Received: data of type {type(data).__name__}"
        )
    x, y = check_batch(data[0], data[1], bounds, "data")
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def pad(a, size):
    """Repeats a batch's own examples up to `size` rows (reuses the compiled trace)."""
    reps = -(-size // a.shape[0])
    return np.concatenate([a] * reps)[:size]


def batch_targets(targets, y, num_classes, rng, offset):
    if targets is None:
        return None
    if isinstance(targets, str):
        # A uniformly random class other than the label.
        return (y + rng.integers(1, num_classes, size=y.shape)) % num_classes
    if np.ndim(targets) == 0:
        return np.full_like(y, int(targets))
    return np.asarray(targets)[offset:offset + y.shape[0]].astype(np.int64)


def check_targets(targets, data):
    if targets is None or (isinstance(targets, str) and targets == "random"):
        return
    if isinstance(targets, str):
        raise ValueError(f"Expected `targets` to be None, 'random', an int or an int array. Received: targets={targets!r}")
    arr = np.asarray(targets)
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
        raise ValueError(
            f"Expected `targets` to be an int or an int array [N]. Received: targets with dtype={arr.dtype}"
        )
    if arr.ndim == 1:
        if isinstance(data, tf.data.Dataset) or arr.shape[0] != np.shape(data[1])[0]:
            raise ValueError(
                "Expected a per-example `targets` array of the length of y (with (x, y) "
                f"arrays as data). Received: targets.shape={arr.shape}"
            )
