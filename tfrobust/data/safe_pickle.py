"""Loading the official CIFAR-10 python pickles without running their code.

`pickle.load` imports and calls whatever globals a file names, so a crafted
"data batch" could execute anything. The official batches (written by Python
2's cPickle) only need three numpy globals to rebuild their uint8 array; this
unpickler resolves those and refuses every other global.
"""

import io
import pickle
import struct

import numpy as np

# ndarray.__reduce__ names numpy's private array-rebuilding function; Python 2
# era files call it numpy.core.multiarray, NumPy 2 writes numpy._core.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class DisallowedGlobalError(ValueError):
    """A pickle asked for a global outside the allowed numpy set."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = sorted(f"{m}.{n}" for m, n in _ALLOWED)
            raise DisallowedGlobalError(
                f"Expected only the globals {allowed} in a CIFAR-10 pickle. "
                f"Received: a reference to {module}.{name}, refused (loading it "
                f"could run arbitrary code)"
            ) from None


def loads(data, source):
    """Unpickles `data` allowing only the numpy globals CIFAR-10 needs.

    Python 2 byte strings are returned as `bytes` (as in the official
    files, whose keys are b"data", b"labels", ...).

    Args:
        data: the pickle bytes.
        source: the file name, for messages.

    Returns:
        The unpickled object.

    Raises:
        ValueError: naming `source`, when the pickle refers to any other
            global or is malformed.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DisallowedGlobalError as e:
        raise DisallowedGlobalError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as e:
        raise ValueError(
            f"Expected a valid CIFAR-10 python pickle in {source}. Received "
            f"a malformed pickle: {type(e).__name__}: {e}"
        ) from e
