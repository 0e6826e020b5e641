"""tf.data pipelines over in-memory image arrays."""

import numpy as np

from tfrobust import _validate
from tfrobust.data import loader


def _check_arrays(x, y):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4:
        raise _validate.error("x", "NHWC images of rank 4", x,
                              received=f"x.shape={x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise _validate.error("x", "float images in [0, 1]", x,
                              received=f"x.dtype={x.dtype}")
    if len(x) == 0:
        raise _validate.error("x", "at least one image", x,
                              received=f"x.shape={x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise _validate.error(
            "y", f"integer labels of shape [{len(x)}] (one per image)", y,
            received=f"y.shape={y.shape}, y.dtype={y.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise _validate.error("x", "finite pixel values", x,
                              received="x with NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise _validate.error("x", "pixel values in [0, 1]", x,
                              received=f"x in [{lo}, {hi}]")
    if y.min() < 0:
        raise _validate.error("y", "non-negative labels", y,
                              received=f"y.min()={int(y.min())}")
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

    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    # tf.data takes any int64 seed; negative ones are refused as elsewhere.
    seed = _validate.check_int(seed, name="seed", minimum=0, maximum=2**63 - 1,
                               allow_none=True)
    shuffle = _validate.check_bool(shuffle, name="shuffle")
    drop_remainder = _validate.check_bool(drop_remainder, name="drop_remainder")
    repeat = _validate.check_bool(repeat, name="repeat")
    x, y = _check_arrays(x, y)
    n = len(x)
    x_t = tf.constant(x)
    y_t = tf.constant(y)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
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
