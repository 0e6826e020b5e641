"""Argument checks shared by the model builders (Keras-style messages)."""

import math
import numbers


def check_input_shape(input_shape, min_spatial=1, name="input_shape"):
    """Validates an image shape `(height, width, channels)`.

    Args:
        input_shape: The shape to check.
        min_spatial: Smallest height and width the architecture can take
            (its total downsampling factor, or more).
        name: Argument name used in the error message.

    Returns:
        The shape as a tuple of Python ints.

    Raises:
        ValueError: If the shape is not three positive ints or its spatial
            size is below `min_spatial`.
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != 3
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool)
            for d in shape
        )
        or not all(d > 0 for d in shape)
    ):
        raise ValueError(
            f"Expected `{name}` to be a tuple of 3 positive ints "
            f"(height, width, channels). Received: {name}={input_shape!r}"
        )
    shape = tuple(int(d) for d in shape)
    if shape[0] < min_spatial or shape[1] < min_spatial:
        raise ValueError(
            f"Expected `{name}` to have height and width >= {min_spatial} "
            "for this architecture's downsampling. "
            f"Received: {name}={input_shape!r}"
        )
    return shape


def check_positive_int(value, name, minimum=1):
    """Returns `value` as an int, or raises ValueError if it is < minimum."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(
            f"Expected `{name}` to be an int >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_num_classes(num_classes):
    """Number of classes: an int >= 1."""
    return check_positive_int(num_classes, "num_classes")


def check_rate(value, name):
    """A dropout rate in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"Expected `{name}` to be a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_positive_float(value, name, allow_zero=False):
    """A finite float > 0 (or >= 0 when `allow_zero`)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"Expected `{name}` to be a finite float {bound}. "
            f"Received: {name}={value!r}"
        )
    return float(value)
