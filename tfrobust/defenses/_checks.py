"""Input checks shared by the optimising defenses (inversion, Deep Image Prior)."""

import tensorflow as tf

BOUNDS_ATOL = 1e-6


def check_images(x, *, name="x", bounds=(0.0, 1.0)):
    """`x` as a float32 tensor, checked to be finite and inside `bounds`.

    The values are checked only when running eagerly: inside a compiled
    attack the attack itself keeps its iterates in the box, and a
    data-dependent Python error cannot be raised from a graph.

    Raises:
        ValueError: naming `name` for a non-float, non-finite or
            out-of-range batch.
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"Expected `{name}` to have a floating dtype (images in [0, 1]). "
                         f"Received: {name}.dtype={x.dtype.name}")
    x = tf.cast(x, tf.float32)
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(f"Expected `{name}` to be finite. Received: {name} containing NaN or Inf")
        lo, hi = bounds
        if x.shape.num_elements():
            x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
            if x_min < lo - BOUNDS_ATOL or x_max > hi + BOUNDS_ATOL:
                raise ValueError(f"Expected `{name}` inside bounds={tuple(bounds)}. "
                                 f"Received: {name} with min={x_min:g} and max={x_max:g}")
    return x


def shape_of(model, attr):
    """`model.input_shape` / `output_shape` without the batch dimension (or None)."""
    try:
        shape = getattr(model, attr)
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    if not isinstance(shape, tuple):
        return None
    return tuple(shape[1:])
