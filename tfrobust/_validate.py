"""The one set of argument checks of tfrobust.

Every public function and class validates its arguments with these helpers,
so that a bad argument always gives a `ValueError` of one form:

    Expected `steps` to be an integer >= 1. Received: steps=0

Each check is keyword-only after the value (`check_int(steps, name="steps",
minimum=1)`), returns the value converted to its plain Python type, and
accepts NumPy scalars but never `bool` where a number is expected (Python's
`True` is an `int`, and `steps=True` is always a mistake).
"""

import math
import numbers

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_p",
    "check_pair",
    "error",
]

_P_ALIASES = {"1": 1, "l1": 1, "2": 2, "l2": 2, "inf": np.inf, "linf": np.inf, "l_inf": np.inf}


def error(name, expected, value, *, received=None):
    """The `ValueError` of the one message form.

    Args:
        name: the argument's name, as the caller wrote it.
        expected: what was expected, e.g. "an integer >= 1".
        value: the value received (shown with `repr`).
        received: optional text shown instead of `name=repr(value)` (for
            arrays, where a summary such as "x.shape=(3,)" says more).
    """
    shown = received if received is not None else f"{name}={value!r}"
    return ValueError(f"Expected `{name}` to be {expected}. Received: {shown}")


def _bounds_text(minimum, maximum, exclusive_minimum, exclusive_maximum):
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if exclusive_maximum else '<='} {maximum}")
    return " and ".join(parts)


def check_int(value, *, name, minimum=None, maximum=None, allow_none=False):
    """An integer (not bool) in `[minimum, maximum]`; returns `int(value)`.

    Raises:
        ValueError: naming `name` if `value` is not such an integer.
    """
    if allow_none and value is None:
        return None
    ok = (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, (numbers.Integral, np.integer))
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        bounds = _bounds_text(minimum, maximum, False, False)
        expected = "an integer" + (f" {bounds}" if bounds else "") + (" or None" if allow_none else "")
        raise error(name, expected, value)
    return int(value)


def check_float(value, *, name, minimum=None, maximum=None, exclusive_minimum=False,
                exclusive_maximum=False, allow_none=False, allow_inf=False):
    """A finite real number (not bool) within the given bounds; returns `float`.

    Args:
        allow_inf: also accept `+inf` / `-inf` (e.g. `p`, or "no limit").

    Raises:
        ValueError: naming `name` if `value` is not such a number (NaN never
            passes).
    """
    if allow_none and value is None:
        return None
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (numbers.Real, np.floating, np.integer))
    if ok:
        value_f = float(value)
        ok = not math.isnan(value_f) and (allow_inf or math.isfinite(value_f))
        if ok and minimum is not None:
            ok = value_f > minimum if exclusive_minimum else value_f >= minimum
        if ok and maximum is not None:
            ok = value_f < maximum if exclusive_maximum else value_f <= maximum
    if not ok:
        bounds = _bounds_text(minimum, maximum, exclusive_minimum, exclusive_maximum)
        kind = "a real number" if allow_inf else "a finite real number"
        expected = kind + (f" {bounds}" if bounds else "") + (" or None" if allow_none else "")
        raise error(name, expected, value)
    return value_f


def check_bool(value, *, name, allow_tensor=False):
    """A real boolean: `True`/`False`, a NumPy bool, or (with `allow_tensor`)
    a 0-d boolean tensor, returned unchanged when it is a symbolic tensor.

    Strings, numbers and None are refused: `targeted="no"` must not mean
    `True`.

    Raises:
        ValueError: naming `name` otherwise.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if allow_tensor:
        dtype = getattr(value, "dtype", None)
        shape = getattr(value, "shape", None)
        if dtype is not None and shape is not None and getattr(dtype, "is_bool", dtype == np.bool_) \
                and len(tuple(shape)) == 0:
            try:
                return bool(value)  # eager tensor or 0-d array
            except (TypeError, ValueError):
                return value  # symbolic: decided in the graph
            except Exception:  # tf.errors.OperatorNotAllowedInGraphError
                return value
    expected = "a bool" + (" (or a 0-d boolean tensor)" if allow_tensor else "")
    raise error(name, expected, value)


def check_choice(value, *, name, choices):
    """One of `choices` (compared with `==`); returns `value`.

    Raises:
        ValueError: naming `name` and listing the choices otherwise.
    """
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok:
        raise error(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_p(p, *, name="p"):
    """The exponent of an Lp norm: 1, 2 or inf, also as "l1", "l2", "linf",
    "inf", "1", "2". Returns `1`, `2` or `np.inf`.

    Raises:
        ValueError: naming `name` otherwise.
    """
    if isinstance(p, str) and p.strip().lower() in _P_ALIASES:
        return _P_ALIASES[p.strip().lower()]
    if not isinstance(p, (bool, np.bool_, str)) and isinstance(p, (numbers.Real, np.generic)):
        try:
            value = float(p)
        except (TypeError, ValueError):
            value = None
        if value in (1.0, 2.0):
            return int(value)
        if value == math.inf:
            return np.inf
    raise error(name, "one of 1, 2, inf (or 'l1', 'l2', 'linf')", p)


def check_pair(value, *, name, increasing=True):
    """A pair of finite numbers `(lo, hi)` (with `lo < hi` when `increasing`).

    Raises:
        ValueError: naming `name` otherwise.
    """
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise error(name, "a pair of numbers (lo, hi)", value) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or (increasing and not lo < hi):
        raise error(name, "a pair of finite numbers with lo < hi", value)
    return lo, hi
