"""Per-example bounds on the minimal adversarial L2 change, and summaries.

Upper bounds come from the box-constrained attack with binary search
(`attacks.BoxedLinearL2`), certified lower bounds from Theorem 2.1 of Hein &
Andriushchenko (`bounds.mlp1layer_lower_bound`, one-hidden-layer networks).
"""

import numpy as np
import tensorflow as tf

from tfrobust import bounds
from tfrobust.attacks.boxed_linear import MULT_BY_DATASET
from tfrobust.attacks.boxed_linear import BoxedLinearL2
from tfrobust.models.mlp import is_mlp1layer


def robustness_bounds(model, x, dataset="mnist", batch_size=128, lower=True):
    """Per-example bounds on the minimal adversarial L2 change of `model`.

    The upper bound is the norm of the smallest adversarial example found by
    the box-constrained attack (it provably flips the class); the lower bound
    is Theorem 2.1's certified radius, available for the one-hidden-layer
    network only. Both refer to the class the model predicts.

    Returns:
        A dict of NumPy arrays: `pred`, `upper` (inf where the attack failed)
        and, when `lower` is true and the model is an `mlp1layer`, `lower`.
    """
    attack = BoxedLinearL2(mult=MULT_BY_DATASET.get(dataset, 1.2))
    preds, uppers, lowers = [], [], []
    can_certify = lower and is_mlp1layer(model)
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start : start + batch_size])
        pred = tf.argmax(model(xb, training=False), axis=-1)
        preds.append(pred.numpy())
        uppers.append(attack.minimize(model, xb, pred).norm.numpy())
        if can_certify:
            lowers.append(bounds.mlp1layer_lower_bound(model, xb, p=2).numpy())
    result = {"pred": np.concatenate(preds), "upper": np.concatenate(uppers)}
    if can_certify:
        result["lower"] = np.concatenate(lowers)
    return result


def summarize_bounds(bounds_dict, y):
    """Mean and median bounds over the correctly classified points."""
    correct = bounds_dict["pred"] == y
    summary = {"n_points": int(len(y)), "n_correct": int(correct.sum())}
    for key in ("upper", "lower"):
        if key not in bounds_dict:
            continue
        values = bounds_dict[key][correct]
        finite = values[np.isfinite(values)]
        summary[f"{key}_bound_mean"] = float(finite.mean()) if finite.size else None
        summary[f"{key}_bound_median"] = (
            float(np.median(finite)) if finite.size else None
        )
        summary[f"{key}_bound_failed"] = int(values.size - finite.size)
    return summary
