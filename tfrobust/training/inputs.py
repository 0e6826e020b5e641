"""Training and evaluation inputs: validation, elements and per-epoch datasets.

`fit` accepts arrays, a `tf.data.Dataset` of batches, or a function
`epoch -> tf.data.Dataset`. An *element* (one batch) is a tuple
`(x, y, *aux)` or a dict with keys `"x"` and `"y"` (and any others, e.g.
`"index"`): `x` float images in the declared `bounds`, `y` integer labels
`[B]` or float target distributions `[B, K]`. For arrays the loop builds each
epoch's batches itself from a permutation seeded by `(seed, epoch)`, so a run
resumed from a checkpoint at epoch `k` sees exactly the batches an
uninterrupted run sees from epoch `k` on; with `with_index=True` each array
element also carries the examples' positions in the arrays (appended to a
tuple, or under `"index"` in a dict), for per-example tables.

A dataset's batches are checked inside the compiled step (pixels inside
`bounds`, labels in `[0, K)` for the model's K); a failed check stops `fit`
with a `ValueError` naming the argument (see `data_error`).
"""

import math
import re

import numpy as np
import tensorflow as tf

from tfrobust import _validate

# Tolerance for "x lies inside the declared bounds" (as in the attacks).
BOUNDS_ATOL = 1e-6
# Marks the in-graph checks of this module in a TensorFlow error message.
_TAG = "[tfrobust.inputs] "


def check_bounds(bounds):
    """`(lo, hi)` floats, or None (no range check)."""
    if bounds is None:
        return None
    return _validate.check_pair(bounds, name="bounds")


def split(element, arg="train_data"):
    """`(x, y)` of an element: a tuple `(x, y, *aux)` or a dict with x, y."""
    if isinstance(element, dict):
        if "x" in element and "y" in element:
            return element["x"], element["y"]
    elif isinstance(element, (tuple, list)) and len(element) >= 2:
        return element[0], element[1]
    raise _validate.error(
        arg, "made of (x, y) pairs, (x, y, *aux) tuples or dicts with keys "
        "'x' and 'y'",
        element, received=f"an element {_describe(element)}")


def _describe(element):
    if isinstance(element, dict):
        return f"dict with keys {sorted(element)}"
    if isinstance(element, (tuple, list)):
        return f"{type(element).__name__} of length {len(element)}"
    return f"of type {type(element).__name__}"


def split_transformed(out):
    """`(x, y, sample_weight or None)` of an `input_transform` result."""
    if isinstance(out, dict) and "x" in out and "y" in out:
        extra = set(out) - {"x", "y", "sample_weight"}
        if not extra:
            return out["x"], out["y"], out.get("sample_weight")
    elif isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return out[0], out[1], (out[2] if len(out) == 3 else None)
    raise _validate.error(
        "input_transform", "a function returning (x, y), (x, y, "
        "sample_weight) or a dict with keys 'x', 'y' and optionally "
        "'sample_weight'", out, received=f"a result {_describe(out)}")


def _check_range(x, bounds, arg):
    if bounds is None:
        return
    lo, hi = bounds
    x_min, x_max = float(x.min()), float(x.max())
    if x_min < lo - BOUNDS_ATOL or x_max > hi + BOUNDS_ATOL:
        raise ValueError(
            f"Expected the images of {arg} inside bounds=({lo:g}, {hi:g}) "
            "(pass fit(bounds=(lo, hi)) to declare another input range, or "
            f"bounds=None). Received: {arg} with min={x_min:g} and "
            f"max={x_max:g}")


def check_arrays(x, y, arg, bounds=(0.0, 1.0)):
    """Validates NumPy images and labels; returns float32 `x` and `y`.

    `y` holds integer class indices `[N]` (returned as int64) or float target
    distributions `[N, K]` (returned as float32).

    Raises:
        ValueError: naming `arg` on non-float or non-finite images, images
            outside `bounds` (None: not checked), an empty batch, or labels
            of the wrong type, shape or sign.
    """
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
    soft = np.issubdtype(y.dtype, np.floating) and y.ndim == 2
    if not soft and (not np.issubdtype(y.dtype, np.integer)
                     or y.dtype == bool):
        raise ValueError(
            f"Expected the labels of {arg} to be integer class indices [N] "
            f"or float targets [N, K]. Received: {arg}[1].dtype={y.dtype}")
    if y.shape[:1] != (x.shape[0],) or (not soft and y.ndim != 1):
        raise ValueError(
            f"Expected the labels of {arg} to have shape ({x.shape[0]},) "
            f"(or ({x.shape[0]}, K) for soft targets), one per image. "
            f"Received: {arg}[1].shape={y.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"Expected the images of {arg} to be finite. Received: {arg} "
            f"with {int(np.sum(~np.isfinite(x)))} NaN/Inf values")
    _check_range(x, bounds, arg)
    if soft:
        if not np.all(np.isfinite(y)):
            raise ValueError(f"Expected the soft targets of {arg} to be "
                             "finite. Received: NaN/Inf targets")
        return x, y.astype(np.float32, copy=False)
    if y.min() < 0:
        raise ValueError(
            f"Expected the labels of {arg} to be >= 0. Received: min "
            f"label {int(y.min())}")
    return x, y.astype(np.int64, copy=False)


def check_element_spec(dataset, arg):
    """Checks that a dataset yields elements with float x and fitting y."""
    spec = dataset.element_spec
    x_spec, y_spec = split(spec, arg)
    if not (isinstance(x_spec, tf.TensorSpec)
            and isinstance(y_spec, tf.TensorSpec)):
        raise ValueError(
            f"Expected {arg} to yield (x, y) tensors (or dicts of them). "
            f"Received: element_spec={spec}")
    if not x_spec.dtype.is_floating:
        raise ValueError(
            f"Expected the images of {arg} to be floating point. "
            f"Received: x dtype={x_spec.dtype.name}")
    if not (y_spec.dtype.is_integer or y_spec.dtype.is_floating):
        raise ValueError(
            f"Expected the labels of {arg} to be integer class indices. "
            f"Received: y dtype={y_spec.dtype.name}")
    if x_spec.shape.rank is not None and x_spec.shape.rank < 2:
        raise ValueError(
            f"Expected {arg} to yield batched images of rank >= 2. "
            f"Received: x shape={x_spec.shape}")
    rank = 1 if y_spec.dtype.is_integer else 2
    if y_spec.shape.rank is not None and y_spec.shape.rank != rank:
        raise ValueError(
            f"Expected {arg} to yield batched labels: integer class indices "
            "of shape [B] or float targets of shape [B, K]. Received: y "
            f"shape={y_spec.shape}, dtype={y_spec.dtype.name}")
    if dataset.cardinality() == 0:
        raise ValueError(f"Expected {arg} to be non-empty. Received: an "
                         "empty dataset")


def assert_element(x, y, num_classes, bounds, arg):
    """In-graph checks of one batch; returns `(x, y)` depending on them.

    Pixels inside `bounds` (None: not checked) and, for integer labels,
    labels in `[0, num_classes)`. A failed check raises an
    `InvalidArgumentError` that `data_error` turns into a `ValueError`.
    """
    checks = []
    if bounds is not None:
        lo, hi = bounds
        x_min, x_max = tf.reduce_min(x), tf.reduce_max(x)
        checks.append(tf.debugging.Assert(
            tf.logical_and(x_min >= lo - BOUNDS_ATOL,
                           x_max <= hi + BOUNDS_ATOL),
            [f"{_TAG}Expected the images of {arg} inside bounds=({lo:g}, "
             f"{hi:g}) (pass fit(bounds=(lo, hi)) to declare another input "
             "range, or bounds=None). Received: a batch with min", x_min,
             "and max", x_max]))
    if y.dtype.is_integer and num_classes is not None:
        y_min, y_max = tf.reduce_min(y), tf.reduce_max(y)
        checks.append(tf.debugging.Assert(
            tf.logical_and(y_min >= 0, y_max < num_classes),
            [f"{_TAG}Expected the labels of {arg} in [0, {num_classes}) for "
             f"a model with {num_classes} outputs. Received: a batch with "
             "labels from", y_min, "to", y_max]))
    if not checks:
        return x, y
    with tf.control_dependencies(checks):
        return tf.identity(x), tf.identity(y)


def data_error(error):
    """The `ValueError` of a failed `assert_element` check, or None."""
    message = getattr(error, "message", str(error))
    match = re.search(r"assertion failed: \[+" + re.escape(_TAG) + r"(.*)",
                      message)
    if match is None:
        return None
    text = match.group(1).split("\n")[0].rstrip("]")
    return ValueError(text.replace("] [", " "))


def check_batch_size(batch_size, arg="batch_size"):
    return _validate.check_int(batch_size, name=arg, minimum=1)


def is_arrays(data):
    """Whether `data` is `(x, y, *aux)` or `{"x", "y", ...}` of arrays."""
    if isinstance(data, dict):
        values = list(data.values())
        return "x" in data and "y" in data and not any(
            isinstance(v, tf.data.Dataset) for v in values)
    return (isinstance(data, (tuple, list)) and len(data) >= 2
            and not any(isinstance(d, tf.data.Dataset) for d in data))


def _cpu_constant(array):
    with tf.device("/cpu:0"):
        return tf.constant(array)


def _check_array_data(data, arg, bounds):
    """The validated arrays of `data` in its structure (tuple or dict)."""
    x, y = check_arrays(*split(data, arg), arg, bounds)
    n = x.shape[0]
    if isinstance(data, dict):
        fields = {k: np.asarray(v) for k, v in data.items()}
        fields.update(x=x, y=y)
        names = list(fields)
    else:
        fields = (x, y, *(np.asarray(v) for v in data[2:]))
        names = [f"{arg}[{i}]" for i in range(len(fields))]
    values = fields.values() if isinstance(fields, dict) else fields
    for name, value in zip(names, values):
        if value.ndim == 0 or value.shape[0] != n:
            raise ValueError(
                f"Expected every array of {arg} to hold one row per image "
                f"({n}). Received: {name} of shape {value.shape}")
    return fields


class TrainSource:
    """Yields the (undistributed) dataset of each epoch and its length.

    Args:
        data: `(x, y, *aux)` arrays or a dict of arrays with keys "x" and
            "y", a `tf.data.Dataset` of such batches, or a function
            `epoch -> tf.data.Dataset`.
        batch_size: Global batch size, required for arrays only.
        seed: Seed of the per-epoch permutations of arrays.
        steps_per_epoch: None for one pass over the data per epoch;
            otherwise the number of batches each epoch takes. A dataset is
            then repeated and read on across epochs (Keras semantics).
        drop_remainder: Drop the last incomplete batch of arrays.
        bounds: The declared input range of the images, or None.
        with_index: Add each example's row number to array elements.
    """

    def __init__(self, data, *, batch_size, seed, steps_per_epoch,
                 drop_remainder, bounds=(0.0, 1.0), with_index=False):
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.arrays = None
        self.function = None
        with_index = _validate.check_bool(with_index, name="with_index")
        if is_arrays(data):
            if batch_size is None:
                raise ValueError(
                    "Expected batch_size when train_data is given as arrays. "
                    "Received: batch_size=None")
            self.batch_size = check_batch_size(batch_size)
            fields = _check_array_data(data, "train_data", bounds)
            if with_index and isinstance(fields, dict) and "index" in fields:
                raise ValueError(
                    "Expected train_data without an 'index' key when "
                    "with_index=True (it adds one). Received: keys "
                    f"{sorted(fields)}")
            self.num_examples = fields["x"].shape[0] if isinstance(
                fields, dict) else fields[0].shape[0]
            self.drop_remainder = bool(drop_remainder)
            if self.drop_remainder and self.num_examples < self.batch_size:
                raise ValueError(
                    f"Expected at least batch_size={self.batch_size} examples "
                    "with drop_remainder=True. Received: "
                    f"{self.num_examples} examples")
            self.arrays = split(fields)
            self._tensors = tf.nest.map_structure(_cpu_constant, fields)
            self._with_index = with_index
            return
        if with_index:
            raise ValueError(
                "Expected with_index=True only with array train_data; a "
                "dataset carries its own indices (e.g. dict elements with an "
                "'index' key). Received: train_data of type "
                f"{type(data).__name__}")
        if isinstance(data, tf.data.Dataset):
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
                "Expected train_data to be a tuple (x, y, *aux) of arrays, a "
                "dict of arrays, a tf.data.Dataset of batches or a function "
                f"epoch -> tf.data.Dataset. Received: train_data of type "
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

    def _gather(self, i):
        element = tf.nest.map_structure(lambda t: tf.gather(t, i),
                                        self._tensors)
        if not self._with_index:
            return element
        if isinstance(element, dict):
            return {**element, "index": i}
        return (*element, i)

    def _array_dataset(self, epoch):
        n = self.num_examples
        rng = np.random.default_rng([self.seed, epoch])
        if self.steps_per_epoch is None:
            order = rng.permutation(n)
        else:
            needed = self.steps_per_epoch * self.batch_size
            order = np.concatenate([rng.permutation(n) for _ in range(
                math.ceil(needed / n))])[:needed]
        dataset = tf.data.Dataset.from_tensor_slices(order).batch(
            self.batch_size, drop_remainder=self.drop_remainder)
        dataset = dataset.map(self._gather,
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
        """A small element of the training data (for building the model):
        the first two array rows, or the first batch of the dataset."""
        if self.arrays is not None:
            return self._gather(tf.range(min(2, self.num_examples),
                                         dtype=tf.int64))
        dataset = (self.function(0) if self.function is not None
                   else self.dataset)
        for element in dataset.take(1):
            return element
        raise ValueError("Expected train_data to be non-empty. Received: an "
                         "empty dataset")


def eval_dataset(data, batch_size, arg="eval_data", bounds=(0.0, 1.0)):
    """A batched dataset of `(x, y)` from arrays or a dataset."""
    if is_arrays(data):
        x, y = check_arrays(*split(data, arg), arg, bounds)
        dataset = tf.data.Dataset.from_tensor_slices(
            (_cpu_constant(x), _cpu_constant(y)))
        return dataset.batch(check_batch_size(batch_size)).prefetch(
            tf.data.AUTOTUNE)
    if isinstance(data, tf.data.Dataset):
        check_element_spec(data, arg)
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError(f"Expected {arg} to be finite. Received: an "
                             "infinite dataset")
        if not (isinstance(data.element_spec, tuple)
                and len(data.element_spec) == 2):
            data = data.map(lambda *e: split(e[0] if len(e) == 1 else e))
        return data
    raise ValueError(
        f"Expected {arg} to be a tuple (x, y) of arrays or a tf.data.Dataset "
        f"of (x, y) batches. Received: {arg} of type {type(data).__name__}")
