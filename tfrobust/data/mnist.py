"""MNIST from the official IDX files, gzipped or not.

The IDX format (LeCun et al.) is a 4-byte big-endian magic number whose third
byte is the element type (0x08 = unsigned byte) and whose fourth is the number
of dimensions, then one big-endian uint32 per dimension, then the elements in
row-major order. MNIST images have magic 2051 (ubyte, 3 dims: count, rows,
cols) and labels 2049 (ubyte, 1 dim: count).

References:
    LeCun, Cortes and Burges, "The MNIST database of handwritten digits".
"""

import gzip
import os
import zlib

import numpy as np

from tfrobust.data import registry

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_WHAT = {IMAGES_MAGIC: "unsigned bytes, 3 dimensions: an images file",
         LABELS_MAGIC: "unsigned bytes, 1 dimension: a labels file"}


def searched_names(split):
    """The file names `locate` looks for, for error messages."""
    return [f"{n}[.gz]" for n in _FILES[split]]


def _read_bytes(path):
    if not path.endswith(".gz"):
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(
            f"Expected a valid gzip file at {path}. Received a file that "
            f"cannot be decompressed: {e}"
        ) from e


def read_idx(path, expected_magic):
    """Parses one unsigned-byte IDX file and checks its header against its body.

    Args:
        path: the file, gzipped when its name ends with `.gz`.
        expected_magic: `IMAGES_MAGIC` or `LABELS_MAGIC`.

    Returns:
        A uint8 array shaped as the header declares.

    Raises:
        ValueError: on a wrong magic number, a truncated header or body, or a
            body longer than the header declares.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(
            f"Expected an IDX header of at least 4 bytes in {path}. "
            f"Received: a truncated file of {len(data)} bytes"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        hint = ""
        if magic in _WHAT:
            hint = f" ({_WHAT[magic]}; were the files swapped?)"
        raise ValueError(
            f"Expected IDX magic number {expected_magic} "
            f"({_WHAT[expected_magic]}) in {path}. Received: magic "
            f"number {magic}{hint}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"Expected an IDX header of {header} bytes in {path}. "
            f"Received: a truncated file of {len(data)} bytes"
        )
    dims = tuple(
        int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)
    )
    declared = int(np.prod(dims, dtype=np.int64))
    body = len(data) - header
    if body < declared:
        raise ValueError(
            f"Expected {declared} data bytes in {path} (header dimensions "
            f"{dims}). Received: {body} bytes; the file is truncated"
        )
    if body > declared:
        raise ValueError(
            f"Expected {declared} data bytes in {path} (header dimensions "
            f"{dims}). Received: {body} bytes; the header count does not "
            f"match the data"
        )
    return np.frombuffer(data, np.uint8, count=declared, offset=header).reshape(
        dims
    )


def read(images_path, labels_path):
    """Reads one MNIST split from its images and labels IDX files.

    Returns:
        `(x, y)`: float32 images [N, 28, 28, 1] in [0, 1], int64 labels [N].

    Raises:
        ValueError: if either file is corrupt, or they disagree.
    """
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    return registry.finalize(
        images, labels, "mnist", images_path, label_source=labels_path
    )


def _find(base, stem):
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(base, candidate)
        if os.path.isfile(path):
            return path
    return None


def locate(base, split):
    """Finds the split's IDX files directly inside `base`.

    Returns:
        A `registry.Source`, or None when neither file is there.

    Raises:
        FileNotFoundError: when one of the pair is there and the other is not.
    """
    stems = _FILES[split]
    paths = [_find(base, stem) for stem in stems]
    if all(p is None for p in paths):
        return None
    for stem, path in zip(stems, paths):
        if path is None:
            found = next(p for p in paths if p is not None)
            raise FileNotFoundError(
                f"Found {found} but not its companion {stem} (or {stem}.gz) "
                f"in {base}. Put both MNIST {split} files in that directory."
            )
    images_path, labels_path = paths
    return registry.Source(
        location=images_path,
        files=tuple(paths),
        read=lambda: read(images_path, labels_path),
    )
