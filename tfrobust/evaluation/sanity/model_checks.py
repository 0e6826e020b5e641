"""Checks 1, 2 and 5: they call the model (randomness, gradients, huge eps)."""

import math

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.flags import emit as _emit

__all__ = ["check_gradients", "check_large_eps", "check_randomness", "uses_eot"]


def _as_batch(x):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating or x.shape.rank is None or x.shape.rank < 2 or x.shape[0] == 0:
        raise ValueError(
            "Expected `x` to be a non-empty float batch of rank >= 2. "
            f"Received: x with dtype={x.dtype.name} and shape={tuple(x.shape)}"
        )
    return tf.cast(x, tf.float32)


def _labels(model, x, y):
    if y is None:
        return tf.argmax(model(x), axis=-1, output_type=tf.int32)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise ValueError(
            f"Expected `y` to be int labels of shape [{x.shape[0]}]. "
            f"Received: y with dtype={y.dtype} and shape={y.shape}"
        )
    return tf.constant(y, tf.int32)


# ---------------------------------------------------------------------------
# 1. Randomness without EoT.


def _declares(model, name):
    """Whether `model` or one of its Keras sub-layers declares the flag `name`."""
    from tfrobust.evaluation.inputs import model_flag

    stack, seen = [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if model_flag(layer, name):
            return True
        stack.extend(getattr(layer, "layers", None) or [])
    return False


def uses_eot(model, attacks=()):
    """Whether the evaluation averages a random model over draws (EoT).

    True when the model (or a Keras sub-layer of it) declares
    `uses_eot = True` (as `tfrobust.models.wrappers.EoT` does), or when an
    attack declares `uses_eot = True` (an attack that averages gradients
    over the model's randomness itself, e.g. `APGD(eot_samples=n)`).
    """
    from tfrobust.evaluation.inputs import capabilities

    if _declares(model, "uses_eot"):
        return True
    return any(capabilities(attack).uses_eot for attack in attacks)


def check_randomness(model, x, *, attacks=(), rtol=1e-5, atol=1e-6, warn=True):
    """Flags a random model evaluated without EoT.

    A model is random when two identical calls disagree, or when it (or a
    Keras sub-layer) declares `randomized = True`.

    A randomized defense evaluated by attacks that follow one random draw of
    its gradient looks more robust than it is (Athalye et al. 2018, Sec. 4.1).

    Args:
        model: callable `x -> logits`.
        x: float batch the model is called on twice.
        attacks: the attacks of the evaluation (one may declare `uses_eot`).
        rtol, atol: tolerances of "identical logits" (`np.allclose`).
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` if the model is random and no EoT is used, else None.

    Raises:
        ValueError: if `x` is not a non-empty float batch.
    """
    x = _as_batch(x)
    first = np.asarray(model(x), np.float64)
    second = np.asarray(model(x), np.float64)
    declared = _declares(model, "randomized")
    if (np.allclose(first, second, rtol=rtol, atol=atol) and not declared) or uses_eot(model, attacks):
        return None
    spread = float(np.max(np.abs(first - second)))
    changed = float(np.mean(np.argmax(first, -1) != np.argmax(second, -1)))
    return _emit(SanityFlag(
        "randomness",
        ("The model declares randomized=True" if declared else "The model is random") +
        f": two identical calls differ by up to {spread:.3g} in the logits "
        f"({100 * changed:.1f}% of predictions change), and no attack uses expectation "
        "over transformation.",
        "wrap the model in EoT(model, n=...) (tfrobust.models.wrappers.EoT) so the "
        "attacks follow the expected gradient, and evaluate with several draws.",
        {"max_logit_difference": spread, "prediction_change_rate": changed, "declared": declared},
    ), warn)


# ---------------------------------------------------------------------------
# 2. Zero or non-finite gradients.


def check_gradients(model, x, y=None, *, threshold=0.05, warn=True):
    """Flags masked gradients: exactly zero or non-finite input gradients.

    The gradient of the cross-entropy and of the C&W margin with respect to
    `x` is computed per example. An example is masked when its gradient has
    a NaN/Inf entry, or when both gradients are exactly zero (quantization,
    `stop_gradient`, non-differentiable preprocessing). When only the
    cross-entropy gradient vanishes (a saturated softmax), the remedy is a
    margin-type loss instead.

    Args:
        model: callable `x -> logits`.
        x: float batch.
        y: int labels `[B]`, or None for the model's predictions.
        threshold: largest tolerated fraction of masked examples (5%).
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` if more than `threshold` of the examples are masked,
        else None.

    Raises:
        ValueError: on a bad `x`, `y` or `threshold`.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"Expected `threshold` in [0, 1). Received: threshold={threshold!r}")
    from tfrobust import losses  # Sibling module, loaded on use.

    x = _as_batch(x)
    y = _labels(model, x, y)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = tf.cast(model(x), tf.float32)
        ce = losses.cross_entropy(logits, y)
        mg = losses.margin(logits, y)
    zero = tf.UnconnectedGradients.ZERO
    g_ce = tape.gradient(ce, x, unconnected_gradients=zero)
    g_mg = tape.gradient(mg, x, unconnected_gradients=zero)
    del tape
    axes = list(range(1, x.shape.rank))

    def per_example(g):
        g = tf.cast(g, tf.float32)
        nonfinite = tf.logical_not(tf.reduce_all(tf.math.is_finite(g), axis=axes))
        allzero = tf.reduce_all(tf.equal(g, 0.0), axis=axes)
        return nonfinite.numpy(), allzero.numpy()

    nan_ce, zero_ce = per_example(g_ce)
    nan_mg, zero_mg = per_example(g_mg)
    nonfinite = nan_ce | nan_mg
    masked = nonfinite | (zero_ce & zero_mg)
    details = {
        "masked_fraction": float(masked.mean()),
        "nonfinite_fraction": float(nonfinite.mean()),
        "zero_fraction": float((zero_ce & zero_mg).mean()),
        "zero_cross_entropy_fraction": float(zero_ce.mean()),
        "threshold": float(threshold),
    }
    if masked.mean() > threshold:
        return _emit(SanityFlag(
            "gradients",
            f"The input gradient is exactly zero or non-finite for "
            f"{100 * masked.mean():.1f}% of the examples "
            f"({100 * nonfinite.mean():.1f}% non-finite).",
            "the defense masks gradients; use BPDA(forward, surrogate) "
            "(tfrobust.models.wrappers.BPDA) with a differentiable approximation of "
            "the non-differentiable part, or a gradient-free attack.",
            details,
        ), warn)
    if zero_ce.mean() > threshold:
        return _emit(SanityFlag(
            "gradients",
            f"The cross-entropy gradient vanishes exactly for {100 * zero_ce.mean():.1f}% "
            "of the examples (saturated softmax), while the margin gradient does not.",
            "attack with a margin-type loss (loss='margin' or loss='dlr').",
            details,
        ), warn)
    return None


# ---------------------------------------------------------------------------
# 5. Huge eps must break every example.


def check_large_eps(model, x, y=None, *, bounds=(0.0, 1.0), p=np.inf, n_examples=100,
                    steps=20, threshold=0.05, seed=0, warn=True):
    """Flags an attack that cannot reach the whole input space.

    PGD (cross-entropy, no random start, so that broken gradients cannot be
    hidden by a lucky start) runs with a radius covering the whole box:
    `eps = hi - lo` for L∞, `sqrt(d) (hi - lo)` for L2, `d (hi - lo)` for
    L1 (d the input dimension). With every input reachable, a working
    gradient attack must reach ~0% accuracy (Athalye et al. 2018, Sec. 3.1;
    Carlini et al. 2019, Sec. 5.2).

    Args:
        model: callable `x -> logits`.
        x: float batch inside `bounds`; only the first `n_examples` are used.
        y: int labels, or None for the model's predictions.
        bounds: `(lo, hi)` input domain.
        p: the norm of the ball (1, 2 or np.inf); all cover the same box.
        n_examples: size of the subset attacked.
        steps: PGD steps (20).
        threshold: largest tolerated robust accuracy (5%).
        seed: seed of the attack.
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` if the robust accuracy exceeds `threshold`, else None.

    Raises:
        ValueError: on bad arguments or inputs.
    """
    from tfrobust import threats  # Sibling modules, loaded on use.
    from tfrobust.attacks.pgd import PGD

    n_examples = _validate.check_int(n_examples, name="n_examples", minimum=1)
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"Expected `threshold` in [0, 1). Received: threshold={threshold!r}")
    x = _as_batch(x)[:n_examples]
    y = _labels(model, x, None if y is None else np.asarray(y)[:n_examples])
    lo, hi = threats.Box.coerce(bounds).lo, threats.Box.coerce(bounds).hi
    ball = threats.LpBall(p, 1.0)
    d = int(np.prod(x.shape[1:]))
    eps = (hi - lo) * {np.inf: 1.0, 2: math.sqrt(d), 1: float(d)}[ball.p]
    attack = PGD(threats.LpBall(ball.p, eps), steps=steps, random_start=False, loss="ce",
                 bounds=(lo, hi), seed=seed)
    x_adv = attack(model, x, y)
    logits = tf.convert_to_tensor(model(x_adv))
    # A non-finite row predicts no class (its argmax would be 0): not correct.
    finite = tf.reduce_all(tf.math.is_finite(logits), axis=-1)
    robust = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y) & finite
    accuracy = float(tf.reduce_mean(tf.cast(robust, tf.float32)))
    if accuracy <= threshold:
        return None
    p_name = "Linf" if ball.p == np.inf else f"L{ball.p}"
    return _emit(SanityFlag(
        "large_eps",
        f"PGD ({steps} steps) with {p_name} eps={eps:g}, which covers the whole input "
        f"box, leaves {100 * accuracy:.1f}% of {int(x.shape[0])} examples correctly "
        "classified.",
        "attack cannot reach the whole input space: gradients are broken; check for "
        "gradient masking (BPDA, EoT, margin loss) before trusting small-eps numbers.",
        {"p": "inf" if ball.p == np.inf else ball.p, "eps": eps, "steps": steps,
         "robust_accuracy": accuracy, "n_examples": int(x.shape[0]),
         "threshold": float(threshold)},
    ), warn)
