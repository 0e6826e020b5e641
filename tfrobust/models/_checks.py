"""Argument checks specific to the model builders, on top of `tfrobust._validate`.

Generic scalars (`steps`, `alpha`, ...) are checked with `_validate` directly;
what lives here is what only architectures need: image shapes with the
smallest size an architecture's downsampling can take, class counts and
dropout rates.
"""

import numbers

from tfrobust import _validate


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
        raise _validate.error(
            name,
            "a tuple of 3 positive ints (height, width, channels)",
            input_shape,
        )
    shape = tuple(int(d) for d in shape)
    if shape[0] < min_spatial or shape[1] < min_spatial:
        raise _validate.error(
            name,
            f"an image shape with height and width >= {min_spatial} "
            "(this architecture's downsampling)",
            input_shape,
        )
    return shape


def check_num_classes(num_classes):
    """Number of classes: an int >= 1."""
    return _validate.check_int(num_classes, name="num_classes", minimum=1)


def check_rate(value, *, name):
    """A dropout rate in [0, 1)."""
    return _validate.check_float(
        value, name=name, minimum=0.0, maximum=1.0, exclusive_maximum=True
    )
