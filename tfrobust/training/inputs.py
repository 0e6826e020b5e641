"""Training and evaluation inputs: validation and per-epoch datasets.

`fit` accepts NumPy arrays, a `tf.data.Dataset` of `(x, y)` batches, or a
function `epoch -> tf.data.Dataset`. For arrays the loop builds each epoch's
batches itself from a permutation seeded by `(seed, epoch)`, so a run resumed
from a checkpoint at epoch `k` sees exactly the batches an uninterrupted run
sees from epoch `k` on.
"""

import math
import numbers

import numpy as np
import tensorflow as tf


def check_arrays(x, y, arg):
    """Validates a NumPy `(x, y)` pair; returns float32 `x` and int64 `y`."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype == object or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"Expected the images of {arg} to be a floating-point array "
            f"(float32 NHWC in [0, 1]). Received: {arg}[0].dtype={x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"Expected the images of {arg} to have rank >= 2 (batch first). "
            f"Received: {arg}[0].shape={x.shape}")
    if x.shape[0] == 0:
        raise ValueError(
            f"Expected {arg} to hold at least one example. "
            f"Received: {arg}[0].shape={x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        raise ValueError(
            f"Expected the labels of {arg} to be integer class indices. "
            f"Received: {arg}[1].dtype={y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"Expected the labels of {arg} to have shape ({x.shape[0]},), one "
            f"per image. Received: {arg}[1].shape={y.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"Expected the images of {arg} to be finite. Received: {arg} "
            f"with {int(np.sum(~np.isfinite(x)))} NaN/Inf values")
    if y.min() < 0:
        raise ValueError(
            f"Expected the labels of {arg} to be >= 0. Received: min "
            f"label {int(y.min())}")
    return x, y.astype(np.int64, copy=False)


def check_element_spec(dataset, arg):
    """Checks that a dataset yields `(x, y)` with float x and integer y."""
    spec = dataset.element_spec
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and all(
            isinstance(s, tf.TensorSpec) for s in spec)):
        raise ValueError(
            f"Expected {arg} to yield (x, y) pairs of tensors. "
            f"Received: element_spec={spec}")
    x_spec, y_spec = spec
    if not x_spec.dtype.is_floating:
        raise ValueError(
            f"Expected the images of {arg} to be floating point. "
            f"Received: x dtype={x_spec.dtype.name}")
    if not y_spec.dtype.is_integer:
        raise ValueError(
            f"Expected the labels of {arg} to be integer class indices. "
            f"Received: y dtype={y_spec.dtype.name}")
    if x_spec.shape.rank is not None and x_spec.shape.rank < 2:
        raise ValueError(
            f"Expected {arg} to yield batched images of rank >= 2. "
            f"Received: x shape={x_spec.shape}")
    if y_spec.shape.rank is not None and y_spec.shape.rank != 1:
        raise ValueError(
            f"Expected {arg} to yield batched labels of shape [B]. "
            f"Received: y shape={y_spec.shape}")
    if dataset.cardinality() == 0:
        raise ValueError(f"Expected {arg} to be non-empty. Received: an "
                         "empty dataset")


def check_batch_size(batch_size, arg="batch_size"):
    if (isinstance(batch_size, bool) or not isinstance(
            batch_size, numbers.Integral) or batch_size < 1):
        raise ValueError(
            f"Expected {arg} to be an integer >= 1. "
            f"Received: {arg}={batch_size!r}")
    return int(batch_size)


def _is_pair(data):
    return isinstance(data, (tuple, list)) and len(data) == 2 and not any(
        isinstance(d, tf.data.Dataset) for d in data)


def _cpu_constant(array):
    with tf.device("/cpu:0"):
        return tf.constant(array)


class TrainSource:
    """Yields the (undistributed) dataset of each epoch and its length.

    Args:
        data: `(x, y)` NumPy arrays, a `tf.data.Dataset` of `(x, y)`
            batches, or a function `epoch -> tf.data.Dataset`.
        batch_size: Global batch size, required for arrays only.
        seed: Seed of the per-epoch permutations of arrays.
        steps_per_epoch: None for one pass over the data per epoch;
            otherwise the number of batches each epoch takes. A dataset is
            then repeated and read on across epochs (Keras semantics).
        drop_remainder: Drop the last incomplete batch of arrays.
    """

    def __init__(self, data, *, batch_size, seed, steps_per_epoch,
                 drop_remainder):
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self._iterator_dataset = None
        self.arrays = None
        self.function = None
        if _is_pair(data):
            if batch_size is None:
                raise ValueError(
                    "Expected batch_size when train_data is a tuple (x, y) of "
                    "arrays. Received: batch_size=None")
            self.batch_size = check_batch_size(batch_size)
            x, y = check_arrays(data[0], data[1], "train_data")
            self.num_examples = x.shape[0]
            self.drop_remainder = bool(drop_remainder)
            if self.drop_remainder and self.num_examples < self.batch_size:
                raise ValueError(
                    f"Expected at least batch_size={self.batch_size} examples "
                    "with drop_remainder=True. Received: "
                    f"{self.num_examples} examples")
            self.arrays = (x, y)
            self._tensors = (_cpu_constant(x), _cpu_constant(y))
        elif isinstance(data, tf.data.Dataset):
            check_element_spec(data, "train_data")
            self.dataset = data
            if (data.cardinality() == tf.data.INFINITE_CARDINALITY
                    and steps_per_epoch is None):
                raise ValueError(
                    "Expected steps_per_epoch for an infinite train_data "
                    "dataset. Received: steps_per_epoch=None")
        elif callable(data):
            self.function = data
        else:
            raise ValueError(
                "Expected train_data to be a tuple (x, y) of arrays, a "
                "tf.data.Dataset of (x, y) batches or a function epoch -> "
                f"tf.data.Dataset. Received: train_data of type "
                f"{type(data).__name__}")

    @property
    def persistent(self):
        """Whether one iterator is read on across epochs."""
        return (self.arrays is None and self.function is None
                and self.steps_per_epoch is not None)

    def known_steps(self, dataset):
        """Batches per epoch when known in advance, else None."""
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        cardinality = int(dataset.cardinality())
        return cardinality if cardinality >= 0 else None

    def _array_dataset(self, epoch):
        n = self.num_examples
        rng = np.random.default_rng([self.seed, epoch])
        if self.steps_per_epoch is None:
            order = rng.permutation(n)
        else:
            needed = self.steps_per_epoch * self.batch_size
            order = np.concatenate([rng.permutation(n) for _ in range(
                math.ceil(needed / n))])[:needed]
        x, y = self._tensors
        dataset = tf.data.Dataset.from_tensor_slices(order).batch(
            self.batch_size, drop_remainder=self.drop_remainder)
        dataset = dataset.map(lambda i: (tf.gather(x, i), tf.gather(y, i)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def dataset_for_epoch(self, epoch):
        """The dataset of `epoch` (0-based); for a persistent source, the
        repeated dataset (to be iterated once for the whole run)."""
        if self.arrays is not None:
            return self._array_dataset(epoch)
        if self.function is not None:
            dataset = self.function(epoch)
            if not isinstance(dataset, tf.data.Dataset):
                raise ValueError(
                    "Expected the train_data function to return a "
                    f"tf.data.Dataset. Received: {type(dataset).__name__} "
                    f"for epoch={epoch}")
            check_element_spec(dataset, "train_data")
            if self.steps_per_epoch is not None:
                dataset = dataset.repeat().take(self.steps_per_epoch)
            return dataset
        if self.steps_per_epoch is not None:
            if self.dataset.cardinality() != tf.data.INFINITE_CARDINALITY:
                return self.dataset.repeat()
        return self.dataset

    def sample(self):
        """A small batch of images (for building the model)."""
        if self.arrays is not None:
            return self.arrays[0][:1]
        dataset = (self.function(0) if self.function is not None
                   else self.dataset)
        for x, _ in dataset.take(1):
            return x[:1]
        raise ValueError("Expected train_data to be non-empty. Received: an "
                         "empty dataset")


def eval_dataset(data, batch_size, arg="eval_data"):
    """A batched dataset of `(x, y)` from arrays or a dataset."""
    if _is_pair(data):
        x, y = check_arrays(data[0], data[1], arg)
        dataset = tf.data.Dataset.from_tensor_slices(
            (_cpu_constant(x), _cpu_constant(y)))
        return dataset.batch(check_batch_size(batch_size)).prefetch(
            tf.data.AUTOTUNE)
    if isinstance(data, tf.data.Dataset):
        check_element_spec(data, arg)
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"Expected {arg} to be finite. Received: an "
                             "infinite dataset")
        return data
    raise ValueError(
        f"Expected {arg} to be a tuple (x, y) of arrays or a tf.data.Dataset "
        f"of (x, y) batches. Received: {arg} of type {type(data).__name__}")
