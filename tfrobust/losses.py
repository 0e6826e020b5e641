"""Per-example attack losses, all to be MAXIMIZED by an untargeted attack.

Each function maps logits [B, K] and integer labels [B] to a loss [B];
larger values mean "more adversarial". A targeted attack with target classes
`t` maximizes `-loss(logits, t)` for `cross_entropy` and `margin`, or uses
`dlr_targeted(logits, y, t)`.

>>> loss = margin(model(x), y, kappa=0.0)   # C&W: 0 once x is misclassified
"""

import tensorflow as tf

from tfrobust import _validate

__all__ = ["cross_entropy", "margin", "dlr", "dlr_targeted", "get"]


def _check(logits, min_classes, **labels):
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        raise ValueError(f"Expected logits to have a floating dtype. Received: logits.dtype={logits.dtype.name}")
    if logits.shape.rank is not None and logits.shape.rank != 2:
        raise ValueError(f"Expected logits of shape [B, K]. Received: logits.shape={logits.shape}")
    num_classes = logits.shape[-1] if logits.shape.rank == 2 else None
    if num_classes is not None and num_classes < min_classes:
        raise ValueError(f"Expected at least {min_classes} classes. Received: logits.shape={logits.shape}")
    out = [logits]
    for name, y in labels.items():
        y = tf.convert_to_tensor(y)
        if not y.dtype.is_integer:
            raise ValueError(f"Expected {name} to have an integer dtype. Received: {name}.dtype={y.dtype.name}")
        if y.shape.rank is not None and y.shape.rank != 1:
            raise ValueError(f"Expected {name} of shape [B]. Received: {name}.shape={y.shape}")
        if not y.shape.is_compatible_with(logits.shape[:1]):
            raise ValueError(f"Expected {name} to have one label per row of logits. "
                             f"Received: {name}.shape={y.shape}, logits.shape={logits.shape}")
        if tf.executing_eagerly() and num_classes is not None and y.shape.num_elements():
            values = y.numpy()
            if values.min() < 0 or values.max() >= num_classes:
                raise ValueError(f"Expected {name} in [0, {num_classes}). "
                                 f"Received: {name} with values in [{values.min()}, {values.max()}]")
        out.append(tf.cast(y, tf.int32))
    return out


def _label_logit(logits, y):
    return tf.gather(logits, y, axis=1, batch_dims=1)


def _max_other(logits, y):
    """max_{j != y} z_j, per row."""
    mask = tf.one_hot(y, tf.shape(logits)[1], on_value=True, off_value=False)
    # The dtype's lowest value rather than -inf keeps 0 * (-inf) NaNs out of
    # any later arithmetic on the masked entries.
    return tf.reduce_max(tf.where(mask, logits.dtype.min, logits), axis=1)


def cross_entropy(logits, y):
    """Sparse softmax cross-entropy per example.

    Args:
        logits: float tensor [B, K].
        y: integer labels [B] in [0, K).

    Returns:
        Float tensor [B].

    Raises:
        ValueError: on wrong ranks, dtypes, or (eagerly) labels out of range.
    """
    logits, y = _check(logits, 1, y=y)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def margin(logits, y, kappa=None):
    """Carlini-Wagner margin `max_{j != y} z_j - z_y` (positive = misclassified).

    Args:
        logits: float tensor [B, K], K >= 2.
        y: integer labels [B].
        kappa: optional confidence >= 0; the margin is clipped from above at
            kappa (`tf.minimum(margin, kappa)`, i.e. -f6 of C&W), so nothing
            is gained beyond that confidence.

    Returns:
        Float tensor [B].

    Raises:
        ValueError: on wrong ranks, dtypes, labels, or a negative kappa.

    References:
        Carlini & Wagner, "Towards evaluating the robustness of neural
        networks", IEEE S&P 2017.
    """
    logits, y = _check(logits, 2, y=y)
    value = _max_other(logits, y) - _label_logit(logits, y)
    if kappa is None:
        return value
    kappa = _validate.check_float(kappa, name="kappa", minimum=0.0)
    return tf.minimum(value, tf.constant(kappa, logits.dtype))


def dlr(logits, y):
    """Difference-of-logits-ratio loss `-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)`.

    `z_pi1 >= z_pi2 >= ...` are the sorted logits. The loss is invariant to
    shifting and rescaling the logits, and positive once x is misclassified.

    Args:
        logits: float tensor [B, K], K >= 3.
        y: integer labels [B].

    Returns:
        Float tensor [B].

    Raises:
        ValueError: on wrong ranks, dtypes or labels, or K < 3.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020.
    """
    logits, y = _check(logits, 3, y=y)
    top = tf.math.top_k(logits, k=3).values
    numerator = _label_logit(logits, y) - _max_other(logits, y)
    return -numerator / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits, y, y_target):
    """Targeted DLR loss `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`.

    Larger values mean the target logit is further above the true one.

    Args:
        logits: float tensor [B, K], K >= 4.
        y: integer true labels [B].
        y_target: integer target labels [B].

    Returns:
        Float tensor [B].

    Raises:
        ValueError: on wrong ranks, dtypes or labels, or K < 4.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020.
    """
    logits, y, y_target = _check(logits, 4, y=y, y_target=y_target)
    top = tf.math.top_k(logits, k=4).values
    numerator = _label_logit(logits, y) - _label_logit(logits, y_target)
    return -numerator / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


_BY_NAME = {
    "cross_entropy": cross_entropy, "ce": cross_entropy, "xent": cross_entropy,
    "margin": margin, "cw": margin,
    "dlr": dlr,
}


def get(identifier):
    """Returns the loss function named by `identifier`, or `identifier` if callable.

    Args:
        identifier: a callable `(logits, y) -> [B]`, or one of "cross_entropy"
            ("ce", "xent"), "margin" ("cw"), "dlr".

    Raises:
        ValueError: if the name is unknown.
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    raise ValueError(f"Expected a callable or one of {sorted(_BY_NAME)}. Received: identifier={identifier!r}")
