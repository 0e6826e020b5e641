"""Check 6: inference that optimizes, or whose outputs depend on the batch."""

import numpy as np
import tensorflow as tf

from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.flags import emit as _emit
from tfrobust.evaluation.sanity.model_checks import _as_batch
from tfrobust.evaluation.sanity.model_checks import _declares

__all__ = ["check_dynamic"]

_REMEDY = (
    "attack the defense adaptively: differentiate through (or around, with BPDA: "
    "Defense.bpda(), tfrobust.models.wrappers.BPDA) the optimization it runs at inference, "
    "add EoT over its randomness, and evaluate with the batch composition it is deployed "
    "with (or one example at a time) so that attacks and reported accuracy see the same function."
)


def _max_difference(a, b):
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def check_dynamic(model, x, *, n_examples=16, rtol=1e-4, atol=1e-4, warn=True):
    """Flags inference that optimizes, or whose outputs depend on the batch.

    A defense that runs an optimization in its forward pass (declared
    `optimizes_at_inference = True`, e.g. an inversion or Deep Image Prior)
    is not a fixed function an attack can follow with plain gradients; a
    model whose prediction for an example changes with the other examples
    of its batch (batch statistics at inference, a batch-wide optimization)
    is a different function during the attack than during evaluation.
    Both make attack numbers unreliable unless the attack is adaptive.

    The batch test calls the model on `x`, on `x` in reversed order, on its
    two halves separately and on its first example alone, and compares each
    example's logits. It is skipped for a model that is random (two
    identical calls differ, or it declares `randomized = True`): the
    randomness check covers it.

    Args:
        model: callable `x -> logits`.
        x: float batch; the first `n_examples` (>= 2 used) are taken.
        n_examples: batch size of the test (16).
        rtol, atol: tolerance on the logits, `atol + rtol * max|logit|`
            (float32 kernels may differ across batch sizes in the last
            bits).
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` "dynamic", or None.

    Raises:
        ValueError: if `x` is not a non-empty float batch.
    """
    x = _as_batch(x)[:max(int(n_examples), 2)]
    n = int(x.shape[0])
    optimizes = _declares(model, "optimizes_at_inference")
    details = {"optimizes_at_inference": optimizes, "n_examples": n, "batch_test": "run"}
    problems = []
    if optimizes:
        problems.append("the model declares optimizes_at_inference=True (its forward pass "
                        "runs an optimization)")
    first = np.asarray(model(x), np.float64)
    second = np.asarray(model(x), np.float64)
    scale = float(np.max(np.abs(first))) if first.size else 0.0
    tol = atol + rtol * scale
    if _declares(model, "randomized") or _max_difference(first, second) > tol:
        details["batch_test"] = "skipped: the model is random"
    elif n >= 2:
        order = np.arange(n)[::-1]
        variants = {
            "reversed": np.asarray(model(tf.gather(x, order)), np.float64)[np.argsort(order)],
            "halves": np.concatenate([np.asarray(model(x[:n // 2]), np.float64),
                                      np.asarray(model(x[n // 2:]), np.float64)]),
        }
        single = np.asarray(model(x[:1]), np.float64)
        diffs = {k: _max_difference(v, first) for k, v in variants.items()}
        diffs["single"] = _max_difference(single, first[:1])
        changed = max(float(np.mean(np.argmax(v, -1) != np.argmax(first, -1))) for v in variants.values())
        details.update(max_logit_difference=max(diffs.values()), differences=diffs,
                       prediction_change_rate=changed, tolerance=tol)
        if max(diffs.values()) > tol:
            problems.append(
                f"its outputs depend on the batch: the same examples in another batch "
                f"composition give logits differing by up to {max(diffs.values()):.3g} "
                f"({100 * changed:.1f}% of predictions change)")
    if not problems:
        return None
    return _emit(SanityFlag("dynamic", "Inference is dynamic: " + "; ".join(problems) + ".", _REMEDY,
                            details), warn)
