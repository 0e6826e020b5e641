"""The Gaussian copies that `Smooth` and `SmoothedClassifier` feed their base."""

import tensorflow as tf


def noisy_copies(x, passes, sigma, seed, shared):
    """`passes` noisy copies of each image of `x` `[B, ...]`, draw-major
    (`[passes * B, ...]`: copy j of image i at `j * B + i`).

    `seed`: a stateless seed `[2]`. `shared`: copy j of every image gets the
    same draw (one `[passes, 1, ...]` draw instead of `[passes * B, ...]`).
    """
    if shared:
        tail = x.shape[1:].as_list() if x.shape[1:].is_fully_defined() else tf.shape(x)[1:]
        noise = tf.random.stateless_normal(tf.concat([[passes, 1], tail], 0), seed=seed, dtype=x.dtype)
        return tf.reshape(x[None] + sigma * noise, tf.concat([[-1], tail], 0))
    # A static multiples rank keeps the tiled batch's rank (and the image
    # shape) known to the base's ops, which runs faster on CPU.
    tiled = tf.tile(x, tf.stack([passes] + [1] * (x.shape.rank - 1)))
    return tiled + sigma * tf.random.stateless_normal(tf.shape(tiled), seed=seed, dtype=x.dtype)
