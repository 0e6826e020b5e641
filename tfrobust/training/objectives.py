"""The data term of `fit`'s objective: built-in losses and `loss_fn` checks.

A loss is `fn(y, logits) -> [B]` (per-example, then averaged over the global
batch, with sample weights when the input transform gives them) or a scalar
(taken as the batch mean of the replica). The built-in choices:

- `"cross_entropy"` (the default): softmax cross-entropy against integer
  labels `[B]`, or against float target distributions `[B, K]` (soft
  targets, e.g. label smoothing).
- `"soft_cross_entropy"`: the same, requiring float targets `[B, K]`.
"""

import tensorflow as tf

from tfrobust import _validate

LOSS_NAMES = ("cross_entropy", "soft_cross_entropy")


def is_soft(y):
    """Whether `y` holds target distributions `[B, K]` (not class indices)."""
    return y.dtype.is_floating


def cross_entropy(y, logits):
    """Per-example softmax cross-entropy against hard or soft labels.

    Args:
        y: int labels `[B]`, or float target distributions `[B, K]`.
        logits: `[B, K]` logits.

    Returns:
        A float32 `[B]` tensor.
    """
    logits = tf.cast(logits, tf.float32)
    if is_soft(y):
        return soft_cross_entropy(y, logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(y, tf.int64), logits=logits)


def soft_cross_entropy(y, logits):
    """Per-example cross-entropy `-sum_k y_k log softmax(logits)_k`.

    The targets need not be normalized (clipped one-hot targets, as in label
    smoothing by clipping, are used as they are).

    Args:
        y: float targets `[B, K]`.
        logits: `[B, K]` logits.

    Returns:
        A float32 `[B]` tensor.

    Raises:
        ValueError: if `y` is not a float tensor of rank 2.
    """
    if not y.dtype.is_floating or (y.shape.rank is not None
                                   and y.shape.rank != 2):
        raise _validate.error(
            "y", "float target distributions of shape [B, K] for "
            "loss_fn='soft_cross_entropy'", y,
            received=f"y.dtype={y.dtype.name}, y.shape={tuple(y.shape)}")
    logits = tf.cast(logits, tf.float32)
    return -tf.reduce_sum(tf.cast(y, tf.float32)
                          * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def resolve_loss(loss_fn):
    """`loss_fn` as a function `(y, logits) -> [B] or scalar`.

    Raises:
        ValueError: on an unknown name or a non-callable.
    """
    if loss_fn is None:
        return cross_entropy
    if isinstance(loss_fn, str):
        name = _validate.check_choice(loss_fn, name="loss_fn",
                                      choices=LOSS_NAMES)
        return cross_entropy if name == "cross_entropy" else (
            soft_cross_entropy)
    if not callable(loss_fn):
        raise _validate.error(
            "loss_fn", f"one of {LOSS_NAMES} or a function (y, logits) -> "
            "per-example losses [B] or a scalar", loss_fn)
    return loss_fn
