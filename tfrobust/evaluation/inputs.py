"""Input handling of the engine: attack names and capabilities, data batches, targets.

Capabilities are read from what attacks and models *declare* (never guessed
from other attribute names):

- an attack (`tfrobust.attacks.base.Attack`) declares `black_box`,
  `uses_eot`, `randomized` and `steps` (an attack that wraps another,
  `Restarts` or `TransferAttack`, declares the wrapped attack's). Attacks
  that are not tfrobust
  `Attack`s (any callable `(model, x, y, targeted=...) -> x_adv`) get the
  defaults `black_box=False`, `uses_eot=False`, `randomized=False`,
  `steps=None`, `threat=None` unless they declare these attributes.
- a model may declare `randomized`, `optimizes_at_inference` and `uses_eot`
  (bools, default False); see `tfrobust.evaluation` for the protocol.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.evaluation import labels

__all__ = ["Capabilities", "batch_targets", "batches", "capabilities", "check_batch", "class_name",
           "check_model_input", "check_targets", "default_name", "grid", "model_flag",
           "name_attacks", "pad", "threat_of"]

# Defaults of the declared attack attributes, for callables that declare none.
_ATTACK_DEFAULTS = {"black_box": False, "uses_eot": False, "randomized": False, "steps": None}


class Capabilities(NamedTuple):
    """What an attack declares.

    Attributes:
        threat: its threat as a canonical `LpBall`, or None.
        p: the norm it is judged in (threat's p, a minimization attack's
            `norm_p`), or None.
        steps: iterations, or None.
        black_box, uses_eot, randomized: declared flags.
    """

    threat: object
    p: object
    steps: object
    black_box: bool
    uses_eot: bool
    randomized: bool


def model_flag(model, name):
    """A model's declared flag (`randomized`, `optimizes_at_inference`, `uses_eot`).

    `tfrobust.models.wrappers.declared_flag`: an undeclared flag reads as
    False; a declared one must be a real bool.
    """
    from tfrobust.models.wrappers import declared_flag  # Keras-heavy: loaded on use.

    return declared_flag(model, name)


def threat_of(attack):
    """The canonical `LpBall` of an attack's threat, or None.

    Raises:
        ValueError: for a threat without `p` and `eps`.
    """
    threat = getattr(attack, "threat", None)
    if threat is None:
        return None
    p, eps = getattr(threat, "p", None), getattr(threat, "eps", None)
    if p is None or eps is None:
        raise ValueError(
            "Expected every attack's threat to have `p` and `eps` (e.g. an LpBall). "
            f"Received: threat={threat!r}"
        )
    return labels.ball(p, eps)


def capabilities(attack):
    """The `Capabilities` an attack declares (see the module docstring)."""
    threat = threat_of(attack)
    if threat is not None:
        p = threat.p
    elif isinstance(attack, MinimizationAttack):
        p = _validate.check_p(attack.norm_p, name="norm_p")
    else:
        p = None
    # Wrapper attacks (Restarts, TransferAttack) declare their inner
    # attack's flags and steps themselves, so the attack's own attributes
    # are the whole story.
    found = {key: getattr(attack, key, default) for key, default in _ATTACK_DEFAULTS.items()}
    steps = found["steps"]
    steps = None if steps is None else _validate.check_int(steps, name="steps", minimum=1)
    return Capabilities(threat, p, steps, _validate.check_bool(found["black_box"], name="black_box"),
                        _validate.check_bool(found["uses_eot"], name="uses_eot"),
                        _validate.check_bool(found["randomized"], name="randomized"))


def class_name(attack):
    """The attack's class name; a plain function's own name."""
    if isinstance(attack, Attack):
        return type(attack).__name__
    return getattr(attack, "__name__", None) or type(attack).__name__


def default_name(attack):
    name = class_name(attack)
    threat = threat_of(attack)
    if threat is not None:
        name += f"-{labels.p_label(threat.p)}-{threat.eps:g}"
    return name


def name_attacks(attacks, bounds):
    """dict unique name -> attack, checking every attack is callable and uses `bounds`."""
    if isinstance(attacks, Attack) or (callable(attacks) and not isinstance(attacks, (dict, list, tuple))):
        attacks = [attacks]
    items = list(attacks.items()) if isinstance(attacks, dict) else [(None, a) for a in attacks]
    if not items:
        raise ValueError("Expected at least one attack. Received: attacks=empty")
    named = {}
    for name, attack in items:
        if not callable(attack) or isinstance(attack, (str, bytes, type)):
            raise ValueError(
                "Expected `attacks` to hold tfrobust Attack instances (or attack callables "
                f"(model, x, y, targeted=...) -> x_adv). Received: {name or 'an item'}={attack!r}"
            )
        attack_bounds = getattr(attack, "bounds", None)
        if attack_bounds is not None and tuple(float(b) for b in attack_bounds) != tuple(bounds):
            raise ValueError(
                f"Expected every attack to use bounds={bounds}. "
                f"Received: {name or type(attack).__name__} with bounds={attack_bounds}"
            )
        if name is not None and not (isinstance(name, str) and name):
            raise ValueError(f"Expected attack names to be non-empty strings. Received: {name!r}")
        base = name or default_name(attack)
        unique, i = base, 2
        while unique in named:
            unique, i = f"{base}-{i}", i + 1
        named[unique] = attack
    return named


def grid(threats):
    """The canonical `LpBall`s of `threats` (LpBalls or `(p, eps)` pairs)."""
    balls = []
    for threat in threats or ():
        if isinstance(threat, (tuple, list)) and len(threat) == 2:
            balls.append(labels.ball(*threat))  # LpBall validates p and eps.
            continue
        if isinstance(threat, (str, bytes, tuple, list)) or getattr(threat, "p", None) is None \
                or getattr(threat, "eps", None) is None:
            raise ValueError(
                f"Expected `threats` to hold LpBall objects or (p, eps) pairs. Received: {threat!r}"
            )
        balls.append(labels.ball(threat.p, threat.eps))
    return balls


def _shape_text(shape):
    return "x".join("?" if d is None else str(d) for d in shape)


def model_input_shape(model):
    """The model's per-example input shape where it is known (Keras models), else None."""
    try:
        shape = getattr(model, "input_shape", None)
    except (AttributeError, ValueError):  # an unbuilt Keras model
        return None
    if isinstance(shape, tuple) and shape and all(d is None or isinstance(d, int) for d in shape):
        return shape[1:]
    return None


def check_model_input(model, x_shape):
    """Refuses data whose example shape differs from the model's declared input.

    Raises:
        ValueError: e.g. "model input 8x8x1 vs data 28x28x1".
    """
    expected = model_input_shape(model)
    got = tuple(x_shape[1:])
    if expected is None:
        return
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(
            "Expected `data` images of the model's input shape. Received: model input "
            f"{_shape_text(expected)} vs data {_shape_text(got)}"
        )


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


def _check_dataset(data):
    spec = data.element_spec
    if not isinstance(spec, (tuple, list)) or len(spec) != 2:
        raise ValueError(
            "Expected `data` to yield (x, y) batches. "
            f"Received: a dataset with element_spec={spec!r}"
        )
    x_spec, y_spec = spec
    if getattr(y_spec, "shape", None) is not None and y_spec.shape.rank == 0:
        raise ValueError(
            "Expected `data` to be a batched tf.data.Dataset of (x [B, ...], y [B]): the "
            "dataset is not batched (call .batch(n)). "
            f"Received: element shapes x={tuple(x_spec.shape)}, y=()"
        )


def batches(data, batch_size, bounds):
    """Yields checked `(x, y)` NumPy batches of `data` (arrays or a batched dataset)."""
    if isinstance(data, tf.data.Dataset):
        _check_dataset(data)
        for i, (xb, yb) in enumerate(data):
            yield check_batch(xb.numpy(), yb.numpy(), bounds, f"data batch {i}")
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


def check_labels(y, num_classes, name):
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"Expected the labels of `{name}` in [0, {num_classes}) (the model has {num_classes} "
            f"classes). Received: {name} labels in [{y.min()}, {y.max()}]"
        )


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
