"""Loading the official CIFAR-10 python pickles without running their code.

`pickle.load` imports and calls whatever globals a file names, so a crafted
"data batch" could execute anything. This unpickler resolves only the
globals a CIFAR-10 batch (a dict of bytes, lists of ints and uint8 arrays)
needs at any pickle protocol, and refuses every other global by name:

- `numpy.ndarray`, `numpy.dtype` and numpy's `_reconstruct` (as
  `numpy.core.multiarray` or NumPy 2's `numpy._core.multiarray`): how
  protocols 0-4 rebuild an array, including the official Python 2 files.
- `_codecs.encode`, only as `_codecs.encode(<str>, "latin1")`: how Python 3
  writes a non-empty `bytes` object (the dict keys, the array data) at
  protocol 2 or lower; `builtins.bytes` (`__builtin__.bytes`) only called
  with no argument, how it writes `b""`.
- numpy's `_frombuffer` (`numpy.core.numeric` or `numpy._core.numeric`),
  only as `_frombuffer(<bytes or bytearray>, <numpy dtype without objects>,
  <tuple of ints >= 0>, "C" or "F")`: how protocol 5 rebuilds an array.

The callables are replaced by local functions that check their arguments'
types before doing the one harmless thing the real one would do; anything
else raises `DisallowedGlobalError` naming the global and what it was called
with.
"""

import functools
import io
import numbers
import pickle
import struct

import numpy as np

# ndarray.__reduce__ names numpy's private array-rebuilding function; Python 2
# era files call it numpy.core.multiarray, NumPy 2 writes numpy._core.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]


class DisallowedGlobalError(ValueError):
    """A pickle asked for a global outside the allowed set, or called an
    allowed one with arguments other than those a CIFAR-10 batch needs.

    Attributes:
        global_name: the refused global, e.g. "os.system".
    """

    def __init__(self, message, global_name):
        super().__init__(message)
        self.global_name = global_name


def _describe(args):
    """Argument types for a message (short strings and dtypes by value)."""
    shown = []
    for a in args:
        if isinstance(a, str) and len(a) <= 20:
            shown.append(repr(a))
        elif isinstance(a, np.dtype):
            shown.append(f"dtype({a.str!r})")
        else:
            shown.append(type(a).__name__)
    return ", ".join(shown)


def _refuse_call(global_name, expected, args):
    return DisallowedGlobalError(
        f"Expected {global_name} to be called as {expected} in a CIFAR-10 "
        f"pickle. Received: {global_name}({_describe(args)}), refused",
        global_name,
    )


def _codecs_encode(global_name, *args):
    # Python 3 pickles bytes at protocol <= 2 as encode(bytes-as-latin-1, "latin1").
    if len(args) == 2 and type(args[0]) is str and type(args[1]) is str \
            and args[1] == "latin1":
        return args[0].encode("latin1")
    raise _refuse_call(global_name, f"{global_name}(<str>, 'latin1')", args)


def _empty_bytes(global_name, *args):
    # ... and the empty bytes object as bytes() (a call with no argument).
    if not args:
        return b""
    raise _refuse_call(global_name, f"{global_name}() with no argument", args)


def _is_shape(shape):
    return type(shape) is tuple and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
        for d in shape)


def _frombuffer(global_name, *args):
    # numpy's own _frombuffer (protocol 5) is frombuffer(...).reshape(...).
    if len(args) == 4:
        buf, dtype, shape, order = args
        if (type(buf) in (bytes, bytearray) and isinstance(dtype, np.dtype)
                and not dtype.hasobject and _is_shape(shape)
                and type(order) is str and order in ("C", "F")):
            return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)
    raise _refuse_call(
        global_name,
        f"{global_name}(<bytes or bytearray>, <dtype without objects>, "
        "<tuple of ints >= 0>, 'C' or 'F')",
        args)


_CHECKED = {
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,  # Python 2's name, at protocol <= 2
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{key: functools.partial(check, ".".join(key)) for key, check in _CHECKED.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED))
            raise DisallowedGlobalError(
                f"Expected a CIFAR-10 pickle to use only the globals {allowed}. "
                f"Received: a reference to {module}.{name}, refused (loading "
                f"it could run arbitrary code)",
                f"{module}.{name}",
            ) from None


def loads(data, source):
    """Unpickles `data` allowing only the globals a CIFAR-10 batch needs.

    Any pickle protocol (0 to 5) is read. Python 2 byte strings are returned
    as `bytes` (as in the official files, whose keys are b"data",
    b"labels", ...).

    Args:
        data: the pickle bytes.
        source: the file name, for messages.

    Returns:
        The unpickled object.

    Raises:
        DisallowedGlobalError: (a `ValueError`) naming `source` and the
            refused global, when the pickle refers to any other global or
            calls an allowed one with other arguments.
        ValueError: naming `source`, when the pickle is malformed.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DisallowedGlobalError as e:
        raise DisallowedGlobalError(f"{source}: {e}", e.global_name) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as e:
        raise ValueError(
            f"Expected a valid CIFAR-10 python pickle in {source}. Received "
            f"a malformed pickle: {type(e).__name__}: {e}"
        ) from e
