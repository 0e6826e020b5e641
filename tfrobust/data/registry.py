"""The datasets tfrobust knows: names, splits, class counts, image shapes."""

from typing import Callable, NamedTuple

import numpy as np

from tfrobust import _validate

DATASETS = ("mnist", "cifar10", "gtsrb", "digits")
SPLITS = ("train", "test")

_NUM_CLASSES = {"mnist": 10, "cifar10": 10, "gtsrb": 43, "digits": 10}
_INPUT_SHAPE = {
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "gtsrb": (32, 32, 3),
    "digits": (8, 8, 1),
}


class Source(NamedTuple):
    """One split located on disk by a reader's `locate(base, split)`.

    Attributes:
        location: the file, archive or folder that holds the split; shown in
            messages and part of the cache key.
        files: paths whose size and modification time identify this copy, so
            the cache notices a file rewritten in the same process.
        read: a callable taking no arguments that parses the files and
            returns `(x, y)` as `finalize` does.
    """

    location: str
    files: tuple
    read: Callable


def check_name(name):
    """Returns the canonical (lower-case) dataset name, or raises ValueError."""
    if isinstance(name, str) and name.lower() in DATASETS:
        return name.lower()
    raise _validate.error("name", "one of " + ", ".join(map(repr, DATASETS)), name)


def check_split(split):
    """Returns `split` if it is a known split, or raises ValueError."""
    return _validate.check_choice(split, name="split", choices=SPLITS)


def num_classes(name):
    """The number of classes of a dataset.

    Args:
        name: one of `DATASETS`.

    Returns:
        An int: 10 for mnist, cifar10 and digits, 43 for gtsrb.

    Raises:
        ValueError: if `name` is not a known dataset.
    """
    return _NUM_CLASSES[check_name(name)]


def input_shape(name):
    """The (height, width, channels) shape of one image of a dataset.

    Args:
        name: one of `DATASETS`.

    Returns:
        A tuple of three ints, e.g. `(28, 28, 1)` for mnist.

    Raises:
        ValueError: if `name` is not a known dataset.
    """
    return _INPUT_SHAPE[check_name(name)]


def finalize(images, labels, name, source, max_value=255, label_source=None):
    """Checks parsed uint8 images and labels; returns float32 [0, 1], int64.

    Every reader ends here, so the guarantees of `load` (shape, dtype, value
    range, label range, matching counts) are enforced in one place.

    Args:
        images: uint8 array of shape [N, H, W, C] (or [N, H, W] for one
            channel).
        labels: integer array of shape [N].
        name: canonical dataset name.
        source: the file or location the arrays came from, for messages.
        max_value: the pixel value that maps to 1.0 (255, or 16 for digits).
        label_source: where the labels came from, when not `source`.

    Returns:
        `(x, y)`: float32 NHWC images in [0, 1] and int64 labels.

    Raises:
        ValueError: on any inconsistency, naming `source`.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    label_source = label_source or source
    expected = _INPUT_SHAPE[name]
    if images.ndim == 3 and expected[-1] == 1:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(
            f"Expected {name} images of shape [N, {expected[0]}, {expected[1]},"
            f" {expected[2]}] in {source}. Received: shape={images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"Expected uint8 pixels in {source}. Received: dtype={images.dtype}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected a 1-D integer label vector in {label_source}. Received: "
            f"shape={labels.shape}, dtype={labels.dtype}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"Expected as many labels in {label_source} as images in {source}. "
            f"Received: {len(labels)} labels for {len(images)} images"
        )
    if len(images) == 0:
        raise ValueError(f"Expected at least one image in {source}. Received: 0")
    k = _NUM_CLASSES[name]
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"Expected labels in [0, {k}) in {label_source}. Received: "
            f"label {int(labels[i])} at index {i}"
        )
    if max_value < 255 and images.max() > max_value:
        raise ValueError(
            f"Expected pixel values in [0, {max_value}] in {source}. "
            f"Received: max={int(images.max())}"
        )
    # Dividing after the cast rounds correctly, so max_value maps to 1.0.
    x = images.astype(np.float32)
    x /= np.float32(max_value)
    return x, labels.astype(np.int64)
