"""tf.data pipelines over in-memory image arrays."""

import numbers

import numpy as np

from tfrobust.data import loader


def _check_int(value, arg, minimum):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise ValueError(
            f"Expected {arg} to be an integer >= {minimum}. Received: "
            f"{arg}={value!r}"
        )


def _check_arrays(x, y):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4:
        raise ValueError(
            f"Expected x of rank 4 (NHWC images). Received: x.shape={x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"Expected x to be float images in [0, 1]. Received: "
            f"x.dtype={x.dtype}"
        )
    if len(x) == 0:
        raise ValueError("Expected at least one image. Received: x.shape="
                         f"{x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"Expected y to be integer labels of shape [{len(x)}] (one per "
            f"image). Received: y.shape={y.shape}, y.dtype={y.dtype}"
        )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("Expected finite pixel values. Received: x with "
                         "NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"Expected pixel values in [0, 1]. Received: x in [{lo}, {hi}]"
        )
    if y.min() < 0:
        raise ValueError(
            f"Expected non-negative labels. Received: y.min()={int(y.min())}"
        )
    return x, y.astype(np.int64, copy=False)


def to_dataset(x, y, batch_size=128, shuffle=True, seed=0,
               drop_remainder=False, repeat=False):
    """A batched, shuffled, prefetched `tf.data.Dataset` of `(x, y)` batches.

    Shuffling permutes example indices (not the images themselves, so no
    image buffer is filled) and draws a new permutation every epoch; with an
    integer `seed` the sequence of epoch orders is the same on every run.
    Batches are gathered from the arrays in one op per batch.

    Args:
        x: float images [N, H, W, C] in [0, 1].
        y: integer labels [N].
        batch_size: examples per batch, >= 1.
        shuffle: whether to shuffle (every epoch).
        seed: int seed of the shuffle, or None for a random one.
        drop_remainder: whether to drop the last, smaller batch.
        repeat: whether to repeat forever (reshuffling each pass).

    Returns:
        A `tf.data.Dataset` of `(float32 [b, H, W, C], int64 [b])`.

    Raises:
        ValueError: on bad shapes, dtypes, values or arguments.
    """
    import tensorflow as tf

    _check_int(batch_size, "batch_size", 1)
    if seed is not None:
        _check_int(seed, "seed", 0)
    for arg, value in (("shuffle", shuffle), ("drop_remainder", drop_remainder),
                       ("repeat", repeat)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"Expected {arg} to be a bool. Received: {arg}={value!r}"
            )
    x, y = _check_arrays(x, y)
    n = len(x)
    x_t = tf.constant(x)
    y_t = tf.constant(y)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=bool(drop_remainder))
    ds = ds.map(lambda idx: (tf.gather(x_t, idx), tf.gather(y_t, idx)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_dataset(name, split, data_dir=None, batch_size=128, shuffle=True,
                 seed=0, drop_remainder=False, repeat=False, *, download=True):
    """`load` followed by `to_dataset`.

    Args:
        name: one of `DATASETS`.
        split: "train" or "test".
        data_dir: as in `load`.
        batch_size, shuffle, seed, drop_remainder, repeat: as in
            `to_dataset`.
        download: as in `load`.

    Returns:
        A batched, shuffled (seeded, every epoch), prefetched
        `tf.data.Dataset` of `(x, y)`.

    Raises:
        ValueError, FileNotFoundError: as `load` and `to_dataset`.
    """
    x, y = loader.load(name, split, data_dir, download=download)
    return to_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      drop_remainder=drop_remainder, repeat=repeat)
