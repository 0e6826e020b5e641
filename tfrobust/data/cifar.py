"""CIFAR-10 from the official binary or python versions, extracted or archived.

Binary version: each `.bin` file is a stream of 3073-byte records, one label
byte (0..9) then 3072 pixel bytes, 1024 red, 1024 green and 1024 blue, each
a row-major 32x32 plane. Python version: each batch is a pickled dict whose
b"data" is a uint8 array [N, 3072] in the same plane order and whose
b"labels" is a list of N ints; pickles are read with `safe_pickle`, never
with plain `pickle.load`. The official (Python 2) batches and batches
re-pickled by Python 3 at any protocol (0 to 5) load.

Archives (`cifar-10-binary.tar.gz`, `cifar-10-python.tar.gz`) are read in
memory, member by member, without extracting anything to disk.

References:
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

import os
import tarfile

import numpy as np

from tfrobust.data import registry, safe_pickle

RECORD_BYTES = 1 + 32 * 32 * 3
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_BATCHES = {"train": _TRAIN, "test": ("test_batch",)}

# (folder inside the archive / on disk, archive name, batch-file suffix).
_BIN = ("cifar-10-batches-bin", "cifar-10-binary.tar.gz", ".bin")
_PY = ("cifar-10-batches-py", "cifar-10-python.tar.gz", "")


def searched_names(split):
    """The folders, archives and batch names `locate` looks for."""
    first = _BATCHES[split][0]
    return [
        f"{_BIN[0]}/{first}.bin ...",
        _BIN[1],
        f"{_PY[0]}/{first} ...",
        _PY[1],
        f"{first}.bin or {first} (extracted batches directly in the folder)",
    ]


def _planes_to_nhwc(pixels):
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def parse_binary(data, source):
    """Parses one binary-version batch.

    Args:
        data: the file's bytes.
        source: the file name, for messages.

    Returns:
        `(images, labels)`: uint8 [N, 32, 32, 3] and uint8 [N].

    Raises:
        ValueError: if the stream is empty or not a whole number of records,
            or a label byte is not in 0..9.
    """
    n, extra = divmod(len(data), RECORD_BYTES)
    if n == 0 or extra:
        raise ValueError(
            f"Expected a non-empty stream of {RECORD_BYTES}-byte records "
            f"(1 label byte + 3072 pixel bytes) in {source}. Received: "
            f"{len(data)} bytes = {n} records + {extra} extra bytes"
        )
    records = np.frombuffer(data, np.uint8).reshape(n, RECORD_BYTES)
    labels = records[:, 0]
    bad = labels >= 10
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"Expected label bytes in 0..9 in {source}. Received: byte "
            f"{int(labels[i])} in record {i} (is this a CIFAR-100 or "
            f"misaligned file?)"
        )
    return _planes_to_nhwc(records[:, 1:]), labels


def _key(batch, name, source):
    # Python 2 pickles give bytes keys; a batch re-saved by Python 3 has str.
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise ValueError(
        f"Expected a CIFAR-10 batch dict with keys 'data' and 'labels' in "
        f"{source}. Received: keys {sorted(map(repr, batch))}"
    )


def parse_pickle(data, source):
    """Parses one python-version batch, safely.

    Args:
        data: the pickle's bytes.
        source: the file name, for messages.

    Returns:
        `(images, labels)`: uint8 [N, 32, 32, 3] and int64 [N].

    Raises:
        ValueError: on a disallowed global, a malformed pickle, missing keys,
            or arrays of the wrong type or size.
    """
    batch = safe_pickle.loads(data, source)
    if not isinstance(batch, dict):
        raise ValueError(
            f"Expected a pickled dict in {source}. Received: "
            f"{type(batch).__name__}"
        )
    pixels = _key(batch, "data", source)
    labels = _key(batch, "labels", source)
    if (not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8
            or pixels.ndim != 2 or pixels.shape[1] != RECORD_BYTES - 1):
        desc = (f"shape={pixels.shape}, dtype={pixels.dtype}"
                if isinstance(pixels, np.ndarray) else type(pixels).__name__)
        raise ValueError(
            f"Expected 'data' to be a uint8 array of shape [N, 3072] in "
            f"{source}. Received: {desc}"
        )
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Expected 'labels' to be a list of ints in {source}. Received: "
            f"{e}"
        ) from e
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected 'labels' to be a list of ints in {source}. Received: "
            f"shape={labels.shape}, dtype={labels.dtype}"
        )
    if len(labels) != len(pixels):
        raise ValueError(
            f"Expected as many labels as images in {source}. Received: "
            f"{len(labels)} labels for {len(pixels)} images"
        )
    bad = (labels < 0) | (labels >= 10)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"Expected labels in [0, 10) in {source}. Received: label "
            f"{int(labels[i])} at index {i}"
        )
    return _planes_to_nhwc(pixels), labels.astype(np.int64)


def _combine(parts, location):
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1].astype(np.int64) for p in parts])
    return registry.finalize(images, labels, "cifar10", location)


def _read_folder(folder, names, parse):
    parts = []
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            parts.append(parse(f.read(), path))
    return _combine(parts, folder)


def _read_archive(archive, folder, names, parse):
    wanted = {f"{folder}/{name}": name for name in names}
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                # Archives built with `tar -C dir .` prefix members with "./".
                member_name = member.name.removeprefix("./")
                if member_name in wanted and member.isfile():
                    found[member_name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(
            f"Expected a readable tar archive at {archive}. Received: "
            f"{type(e).__name__}: {e}"
        ) from e
    missing = [m for m in wanted if m not in found]
    if missing:
        raise ValueError(
            f"Expected members {sorted(wanted)} in {archive}. Received an "
            f"archive without {missing}"
        )
    parts = [parse(found[m], f"{archive}:{m}") for m in wanted]
    return _combine(parts, archive)


def _folder_source(folder, names, parse, split):
    paths = [os.path.join(folder, n) for n in names]
    present = [os.path.isfile(p) for p in paths]
    if not any(present):
        return None
    if not all(present):
        missing = [n for n, ok in zip(names, present) if not ok]
        raise FileNotFoundError(
            f"Found part of the CIFAR-10 {split} batches in {folder} but not "
            f"{missing}. Put all of {list(names)} there."
        )
    return registry.Source(
        location=folder,
        files=tuple(paths),
        read=lambda: _read_folder(folder, names, parse),
    )


def locate(base, split):
    """Finds the split inside `base`, trying in order: the extracted binary
    folder, the binary archive, the extracted python folder, the python
    archive, and extracted batches lying directly in `base`.

    Returns:
        A `registry.Source`, or None when none of these is there.

    Raises:
        FileNotFoundError: when only some of the split's batches are there.
    """
    for (folder, archive, suffix), parse in ((_BIN, parse_binary),
                                            (_PY, parse_pickle)):
        names = tuple(b + suffix for b in _BATCHES[split])
        source = _folder_source(os.path.join(base, folder), names, parse, split)
        if source is not None:
            return source
        path = os.path.join(base, archive)
        if os.path.isfile(path):
            return registry.Source(
                location=path,
                files=(path,),
                read=lambda path=path, folder=folder, names=names, parse=parse:
                    _read_archive(path, folder, names, parse),
            )
    for suffix, parse in ((".bin", parse_binary), ("", parse_pickle)):
        names = tuple(b + suffix for b in _BATCHES[split])
        source = _folder_source(base, names, parse, split)
        if source is not None:
            return source
    return None
