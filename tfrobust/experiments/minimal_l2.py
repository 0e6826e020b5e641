"""Per-example bounds on the minimal adversarial L2 change, and summaries.

Upper bounds are the per-example minimum over several minimal-L2 attacks
(`UPPER_ATTACKS`: the paper's box-constrained attack `attacks.BoxedLinearL2`,
Carlini-Wagner L2, DeepFool, FAB and DDN); each attack's adversarial example
provably flips the class, so the smallest is an upper bound too, and never
worse than the boxed-linear one alone. Certified lower bounds come from
Theorem 2.1 of Hein & Andriushchenko (`bounds.mlp1layer_lower_bound`,
one-hidden-layer networks).
"""

import json

import numpy as np
import tensorflow as tf

from tfrobust import bounds
from tfrobust import threats
from tfrobust.attacks.boxed_linear import MULT_BY_DATASET
from tfrobust.attacks.boxed_linear import BoxedLinearL2
from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
from tfrobust.attacks.ddn import DDN
from tfrobust.attacks.deepfool import DeepFool
from tfrobust.attacks.fab import FAB
from tfrobust.models.mlp import is_mlp1layer

__all__ = ["UPPER_ATTACKS", "attack_spec", "robustness_bounds", "summarize_bounds", "upper_bound_attack"]

#: The attacks whose per-example minimum is the reported upper bound.
UPPER_ATTACKS = ("boxed_linear", "cw", "deepfool", "fab", "ddn")


def _builders(dataset):
    # Budgets: C&W with 4 searches over c (from c = 1) of 100 Adam steps at
    # lr 0.05 (its 9 x 10000 would cost an hour per model on a 2-core CPU;
    # it is one member of a minimum), DeepFool's and FAB's papers' defaults
    # (50 / 100 steps), and DDN's strong setting (100 steps).
    return {
        "boxed_linear": lambda **kw: BoxedLinearL2(**{"mult": MULT_BY_DATASET.get(dataset, 1.2), **kw}),
        "cw": lambda **kw: CarliniWagnerL2(
            **{"binary_search_steps": 4, "steps": 100, "initial_const": 1.0, "learning_rate": 0.05, **kw}),
        "ddn": lambda **kw: DDN(**{"steps": 100, **kw}),
        "deepfool": lambda **kw: DeepFool(**{"p": 2, "steps": 50, **kw}),
        # eps only scales FAB's random restarts (one restart: none).
        "fab": lambda **kw: FAB(threats.LpBall(2, kw.pop("eps", 1.0)), **{"steps": 100, "seed": 0, **kw}),
    }


def attack_spec(attacks):
    """`{name: kwargs}` from a sequence of attack names or such a dict.

    Raises:
        ValueError: on an empty spec or an unknown attack name.
    """
    if attacks is None:
        attacks = UPPER_ATTACKS
    spec = dict(attacks) if isinstance(attacks, dict) else {name: {} for name in attacks}
    unknown = sorted(set(spec) - set(_builders("mnist")))
    if not spec or unknown:
        raise ValueError(
            f"Expected upper-bound attacks among {sorted(_builders('mnist'))}. "
            f"Received: attacks={attacks!r}"
        )
    return {name: dict(kwargs or {}) for name, kwargs in spec.items()}


def upper_bound_attack(name, dataset="mnist", **kwargs):
    """The minimal-L2 attack `name` of `UPPER_ATTACKS` with the evaluation's budget."""
    attack_spec([name])
    return _builders(dataset)[name](**kwargs)


def robustness_bounds(model, x, dataset="mnist", batch_size=128, lower=True, attacks=None):
    """Per-example bounds on the minimal adversarial L2 change of `model`.

    The upper bound is the smallest norm over the attacks in `attacks` of an
    adversarial example (each provably flips the class); the lower bound is
    Theorem 2.1's certified radius, with the float32 rounding allowance,
    available for the one-hidden-layer network only. Both refer to the
    class the model predicts.

    Args:
        model: a Keras classifier returning logits.
        x: float array [N, ...] in [0, 1].
        dataset: sets the boxed-linear attack's growth factor.
        batch_size: evaluation chunk.
        lower: whether to certify (one-hidden-layer networks only).
        attacks: names in `UPPER_ATTACKS` (default: all) or a dict
            `{name: constructor kwargs}` (a smaller budget, e.g.
            `{"cw": {"steps": 200}}`).

    Returns:
        A dict of NumPy arrays: `pred`; `upper` (the minimum over attacks,
        inf where all failed) and `upper_<name>` per attack; when `lower`
        is true and the model is an `mlp1layer`, `lower` (float32 model)
        and `lower_exact` (the float64 formula, without the allowance).
    """
    spec = attack_spec(attacks)
    built = {name: upper_bound_attack(name, dataset, **kw) for name, kw in spec.items()}
    can_certify = lower and is_mlp1layer(model)
    parts = {"pred": []}
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start : start + batch_size])
        pred = tf.argmax(model(xb, training=False), axis=-1)
        parts["pred"].append(pred.numpy())
        for name, attack in built.items():
            parts.setdefault(f"upper_{name}", []).append(attack.minimize(model, xb, pred).norm.numpy())
        if can_certify:
            # 20 bisection steps narrow [0, r(0)] to a millionth of r(0).
            parts.setdefault("lower", []).append(
                bounds.mlp1layer_lower_bound(model, xb, p=2, bisection_steps=20).numpy())
            parts.setdefault("lower_exact", []).append(
                bounds.mlp1layer_lower_bound(model, xb, p=2, bisection_steps=20, unit_roundoff=None).numpy())
    result = {key: np.concatenate(values) for key, values in parts.items()}
    result["upper"] = np.min([result[f"upper_{name}"] for name in spec], axis=0)
    return result


def _stats(values, prefix, summary):
    finite = values[np.isfinite(values)]
    summary[f"{prefix}_mean"] = float(finite.mean()) if finite.size else None
    summary[f"{prefix}_median"] = float(np.median(finite)) if finite.size else None
    summary[f"{prefix}_failed"] = int(values.size - finite.size)


def summarize_bounds(bounds_dict, y):
    """Mean and median bounds over the correctly classified points.

    Besides `upper_bound_*` and `lower_bound_*`: per attack its median and
    the number of points where it alone or jointly gave the minimum and the
    median ratio of its norm to the minimum (`upper_<name>_median`,
    `upper_<name>_best`, `upper_<name>_ratio_median`), and the rounding
    allowance `lower_exact - lower` (`rounding_allowance_median`, `_max`,
    and its median fraction of the exact radius, `_relative_median`).
    """
    correct = bounds_dict["pred"] == y
    summary = {"n_points": int(len(y)), "n_correct": int(correct.sum())}
    for key in ("upper", "lower"):
        if key in bounds_dict:
            _stats(bounds_dict[key][correct], f"{key}_bound", summary)
    names = [k[len("upper_"):] for k in bounds_dict if k.startswith("upper_")]
    if names:
        summary["upper_attacks"] = names
    for name in names:
        values = bounds_dict[f"upper_{name}"][correct]
        finite = values[np.isfinite(values)]
        summary[f"upper_{name}_median"] = float(np.median(finite)) if finite.size else None
        best = bounds_dict["upper"][correct]
        summary[f"upper_{name}_best"] = int(np.sum(values <= best))
        both = np.isfinite(values) & np.isfinite(best) & (best > 0)
        # How far this attack alone is above the minimum (1.0: never worse).
        summary[f"upper_{name}_ratio_median"] = float(np.median(values[both] / best[both])) if both.any() else None
    if "lower_exact" in bounds_dict:
        allowance = (bounds_dict["lower_exact"] - bounds_dict["lower"])[correct]
        exact = bounds_dict["lower_exact"][correct]
        relative = allowance[exact > 0] / exact[exact > 0]
        summary["rounding_allowance_median"] = float(np.median(allowance)) if allowance.size else None
        summary["rounding_allowance_max"] = float(allowance.max()) if allowance.size else None
        summary["rounding_allowance_relative_median"] = float(np.median(relative)) if relative.size else None
    return summary


def spec_key(attacks):
    """A JSON string identifying an attack spec (for caches)."""
    return json.dumps(attack_spec(attacks), sort_keys=True)
