"""Input checks of `Attack.__call__`: the model, `x`, `y` and the logits.

Kept apart from `base.py` so that the attack base reads as the protocol
(`__call__` -> `_prepare` -> `_run` -> `_finalize`) and this module as the
list of what is checked. Every check raises a `ValueError` naming the
argument; value checks run in Python on concrete tensors and become
`tf.debugging` assertions inside a caller's `tf.function`.

The model is wrapped once per call in a `LogitsModel`: every attack sees
float32 logits of shape `[B, K]` with `K >= 2`, whatever dtype the model
returns, and the model is called with `training=False` only when it
accepts that keyword.
"""

import inspect
import warnings
import weakref

import keras
import tensorflow as tf

from tfrobust import _validate

__all__ = ["LogitsModel", "logits_model", "check_x", "check_y", "check_logits", "check_input_shape",
           "check_targeted", "known_input_shape", "known_num_classes", "maybe_warn_probabilities", "nonfinite_rows"]

# Tolerance for "x lies inside the declared bounds".
BOUNDS_ATOL = 1e-6
# Tolerance for "the model's rows sum to one" (probability detection).
PROB_ATOL = 1e-3
# Without a model that declares its input shape, a batch has at most this
# rank (NHWC images); a rank-5 array is a stacked batch by mistake.
MAX_RANK_UNKNOWN_MODEL = 4


def nonfinite_rows(logits):
    """Bool `[B]`: whether each row of `logits` has a NaN or an infinity.

    Such a row never counts as adversarial (the argmax of a NaN row is 0, a
    meaningless "prediction"); the evaluation engine counts these rows.
    """
    logits = tf.convert_to_tensor(logits)
    return tf.logical_not(tf.reduce_all(tf.math.is_finite(logits), axis=-1))


def _accepts_training(model):
    """Whether `model(x, training=False)` is a valid call (decided once)."""
    if isinstance(model, keras.layers.Layer):
        return True
    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):  # builtins, some C-implemented callables
        return False
    return any(p.name == "training" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in params)


def check_logits(logits, batch=None, *, require_static=True):
    """Static checks of a model output: float `[B, K]`, `K >= 2`; returns float32.

    With `require_static=False` (inside an attack's loops) a rank or a
    class count that is unknown at trace time passes.

    Raises:
        ValueError: on a non-float dtype, a shape other than `[B, K]` with
            the given `B`, or fewer than 2 classes.
    """
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        raise ValueError(
            "Expected the model to return floating-point logits. "
            f"Received: logits.dtype={logits.dtype.name} (class indices or a bool are not logits)"
        )
    rank = logits.shape.rank
    if not require_static and (rank is None or (rank == 2 and logits.shape[1] is None)):
        return tf.cast(logits, tf.float32)
    if (
        rank != 2
        or logits.shape[1] is None
        or (batch is not None and logits.shape[0] not in (None, batch))
    ):
        raise ValueError(
            f"Expected the model to return logits of shape [B, K] with B={batch}. "
            f"Received: logits.shape={tuple(logits.shape)}"
        )
    if logits.shape[1] < 2:
        raise ValueError(
            "Expected the model to return logits for at least 2 classes (an argmax over one "
            f"logit can never change). Received: logits.shape={tuple(logits.shape)}"
        )
    return logits if logits.dtype == tf.float32 else tf.cast(logits, tf.float32)


class LogitsModel:
    """The model as every attack sees it: `x -> float32 logits [B, K]`.

    Casts float16 / bfloat16 / float64 logits to float32 (the dtype of every
    attack's arithmetic), refuses integer outputs and fewer than 2 classes,
    and passes `training=False` only to Keras layers and callables that
    declare a `training` parameter. For `tf.function` two wrappers of one
    model are the same argument (`__tf_tracing_type__`), so wrapping anew on
    every attack call never retraces the attacks' compiled loops.

    Args:
        model: callable mapping a float32 batch to logits.
    """

    def __init__(self, model):
        self.model = model
        self._training_kwarg = _accepts_training(model)

    def __call__(self, x):
        out = self.model(x, training=False) if self._training_kwarg else self.model(x)
        return check_logits(out, require_static=False)

    def __tf_tracing_type__(self, context):
        del context
        return _LogitsModelType(self)

    def __repr__(self):
        return f"LogitsModel({self.model!r})"


class _LogitsModelType(tf.types.experimental.TraceType):
    """Trace type of a `LogitsModel`: equal for wrappers of the same model.

    Holds weak references only (like TensorFlow's own type for Python
    objects), so the trace cache never keeps a model alive.
    """

    def __init__(self, wrapper):
        self._wrapper = weakref.ref(wrapper)
        try:
            self._model = weakref.ref(wrapper.model)
        except TypeError:  # not weak-referenceable: compare by identity
            model = wrapper.model
            self._model = lambda: model
        self._id = id(wrapper.model)
        self._flag = wrapper._training_kwarg

    def is_subtype_of(self, other):
        return self == other

    def most_specific_common_supertype(self, types):
        return self if all(self == other for other in types) else None

    def placeholder_value(self, placeholder_context):
        del placeholder_context
        return self._wrapper()  # the wrapper of the call being traced

    def cast(self, value, casting_context):
        del casting_context
        if isinstance(value, LogitsModel) and value.model is self._model():
            return value
        raise ValueError(f"Can not cast {value!r} to {self!r}")

    def __eq__(self, other):
        if not isinstance(other, tf.types.experimental.TraceType):
            return NotImplemented
        if not isinstance(other, _LogitsModelType):
            return False
        model = self._model()
        return model is not None and model is other._model() and self._flag == other._flag

    def __hash__(self):
        return hash((self._id, self._flag))

    def __repr__(self):
        return f"_LogitsModelType({self._model()!r})"


def logits_model(model):
    """`model` wrapped in a `LogitsModel` (a `LogitsModel` is returned as is)."""
    return model if isinstance(model, LogitsModel) else LogitsModel(model)


def known_input_shape(model):
    """The model's declared input shape `(None, ...)`, or None when unknown.

    Keras models built on an `Input` declare it; plain callables, subclassed
    models and multi-input models do not.
    """
    if isinstance(model, LogitsModel):
        model = model.model
    if not isinstance(model, keras.Model):
        return None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not all(d is None or isinstance(d, int) for d in shape):
        return None  # several inputs: not an image classifier's single x
    return shape


def known_num_classes(model):
    """K from the model's declared output shape `(None, K)`, or None."""
    if isinstance(model, LogitsModel):
        model = model.model
    if not isinstance(model, keras.Model):
        return None
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[1], int):
        return shape[1]
    return None


def _shape_text(dims):
    return "x".join("?" if d is None else str(d) for d in dims)


def check_input_shape(model, x):
    """Compares `x` with the model's known input shape (or a plausible rank).

    Raises:
        ValueError: "missing batch axis" when `x` is one example; "model
            input AxBxC vs data DxExF" when the per-example shapes differ;
            a rank message for a 5-D (or higher) `x` and a model of unknown
            input shape.
    """
    shape = known_input_shape(model)
    rank = x.shape.rank
    if shape is None:
        if rank > MAX_RANK_UNKNOWN_MODEL:
            raise ValueError(
                f"Expected `x` to be a batch of rank 2 to {MAX_RANK_UNKNOWN_MODEL} (e.g. NHWC). "
                f"Received: x.shape={tuple(x.shape)} (a stacked list of batches?)"
            )
        return
    expected = tuple(shape[1:])
    if rank == len(shape) - 1 and x.shape.is_compatible_with(expected):
        raise ValueError(
            "Expected `x` to be a batch (missing batch axis): the model takes inputs of shape "
            f"{(None,) + expected}. Received: x.shape={tuple(x.shape)}; use x[None] for one example"
        )
    per_example = tuple(x.shape[1:])
    if rank != len(shape) or not tf.TensorShape(per_example).is_compatible_with(expected):
        raise ValueError(
            f"Expected `x` to match the model's input shape: model input {_shape_text(expected)} "
            f"vs data {_shape_text(per_example)}. Received: x.shape={tuple(x.shape)}"
        )


def check_x(x, bounds):
    """`x` as a float32 batch inside `bounds` (clipped to the box exactly).

    Raises:
        ValueError: if `x` is not a non-empty finite float tensor of rank
            >= 2 inside `bounds`.
    """
    try:
        x = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Expected `x` to be a float tensor or array. Received: x of type {type(x)}"
        ) from e
    if not x.dtype.is_floating:
        raise ValueError(
            "Expected `x` to have a floating dtype (images in [lo, hi]). "
            f"Received: x.dtype={x.dtype.name}"
        )
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(
            "Expected `x` to be a batch of rank >= 2 (e.g. NHWC). "
            f"Received: x.shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected a non-empty batch. Received: x.shape={tuple(x.shape)}")
    x = tf.cast(x, tf.float32)
    lo, hi = bounds
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError("Expected `x` to be finite. Received: x containing NaN or Inf")
        x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if x_min < lo - BOUNDS_ATOL or x_max > hi + BOUNDS_ATOL:
            raise ValueError(
                f"Expected `x` inside bounds={bounds}. "
                f"Received: x with min={x_min} and max={x_max}"
            )
    else:
        x = tf.debugging.assert_all_finite(
            x, "Expected `x` to be finite. Received: x containing NaN or Inf"
        )
        tf.debugging.assert_greater_equal(
            x, lo - BOUNDS_ATOL, message=f"Expected `x` inside bounds={bounds}."
        )
        tf.debugging.assert_less_equal(
            x, hi + BOUNDS_ATOL, message=f"Expected `x` inside bounds={bounds}."
        )
    # Remove sub-tolerance excursions so the box is exact from here on.
    return tf.clip_by_value(x, lo, hi)


def check_y(y, batch, num_classes=None):
    """`y` as int32 `[B]` with values in `[0, num_classes)` (`>= 0` when K is unknown).

    Raises:
        ValueError: on a non-integer dtype, a shape other than `[B]`, or
            (eagerly) values out of range.
    """
    try:
        y = tf.convert_to_tensor(y)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"Expected `y` to be an int tensor of shape [B]. Received: y of type {type(y)}"
        ) from e
    if not y.dtype.is_integer:
        raise ValueError(
            "Expected `y` to have an integer dtype (class indices). "
            f"Received: y.dtype={y.dtype.name}"
        )
    if y.shape.rank != 1 or (
        batch is not None and y.shape[0] is not None and y.shape[0] != batch
    ):
        raise ValueError(f"Expected `y` of shape [B] with B={batch}. Received: y.shape={tuple(y.shape)}")
    y = tf.cast(y, tf.int32)
    if num_classes is None:
        message = "Expected `y` to be class indices >= 0."
    else:
        message = f"Expected `y` in [0, {num_classes}) (the model has {num_classes} classes)."
    if tf.executing_eagerly():
        y_min, y_max = int(tf.reduce_min(y)), int(tf.reduce_max(y))
        if y_min < 0 or (num_classes is not None and y_max >= num_classes):
            raise ValueError(f"{message} Received: y with min={y_min} and max={y_max}")
    else:
        tf.debugging.assert_non_negative(y, message=message)
        if num_classes is not None:
            tf.debugging.assert_less(y, num_classes, message=message)
    return y


def check_targeted(targeted):
    """A real bool or a 0-d boolean tensor (symbolic ones pass unchanged)."""
    return _validate.check_bool(targeted, name="targeted", allow_tensor=True)


def maybe_warn_probabilities(attack, logits):
    """Warns once per attack if the rows look like probabilities, not logits."""
    if attack._warned_probabilities:
        return
    if bool(tf.reduce_all(logits >= 0.0)):
        sums = tf.reduce_sum(logits, axis=-1)
        if bool(tf.reduce_all(tf.abs(sums - 1.0) <= PROB_ATOL)):
            attack._warned_probabilities = True
            warnings.warn(
                f"{type(attack).__name__}: the model's outputs look like "
                "probabilities (non-negative rows summing to 1), not logits. "
                "Losses such as cross-entropy and margin expect logits; remove "
                "the final softmax (its saturation also masks gradients).",
                stacklevel=4,
            )

