"""Argument checks of `fit` and building the model on a transformed sample."""

import inspect
import warnings

import keras
import tensorflow as tf

from tfrobust import _validate
from tfrobust.training import inputs
from tfrobust.training import schedules


def check_model(model):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "Expected model to be a keras.Model (or keras.layers.Layer) "
            "returning logits. Received: model of type "
            f"{type(model).__name__}")


def check_strategy_match(model, strategy):
    variables = model.trainable_variables
    if not variables:
        raise ValueError(
            "Expected model to have trainable variables. Received: a model "
            "without any (is it built and trainable?)")
    variable = getattr(variables[0], "value", variables[0])
    if not strategy.extended.variable_created_in_scope(variable):
        raise ValueError(
            "Expected model to be created under strategy.scope() of the "
            f"strategy passed to fit. Received: strategy={strategy!r} while "
            "the model's variables belong to another strategy; create the "
            "model inside `with strategy.scope():`")


def make_optimizer(optimizer, learning_rate, strategy):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        owner = getattr(optimizer, "_distribution_strategy", strategy)
        if owner is not strategy:
            raise ValueError(
                "Expected the optimizer instance to be created under "
                "strategy.scope() of the strategy passed to fit (or pass its "
                f"name). Received: optimizer={optimizer!r}")
        return optimizer
    if (not isinstance(optimizer, str)
            or optimizer.lower() not in schedules.OPTIMIZER_NAMES):
        raise ValueError(
            f"Expected optimizer to be one of {schedules.OPTIMIZER_NAMES} or "
            f"a keras.optimizers.Optimizer. Received: optimizer={optimizer!r}")
    with strategy.scope():
        return schedules.make_optimizer(optimizer, learning_rate)


def check_callbacks(callbacks):
    callbacks = list(callbacks or ())
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise ValueError(
                "Expected callbacks to be keras.callbacks.Callback instances. "
                f"Received: {callback!r}")
    return callbacks


def check_logits(logits):
    if len(logits.shape) != 2:
        raise ValueError(
            "Expected model to return logits of shape [B, K]. Received: "
            f"output shape {tuple(logits.shape)}")
    return int(logits.shape[-1])


def known_num_classes(model):
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, tuple) and len(shape) == 2 and isinstance(
            shape[-1], int):
        return shape[-1]
    return None


def build_model(model, source, strategy, input_transform):
    """Runs the model on a transformed sample (building it); returns K.

    The model sees what training feeds it: the input transform's output
    (which may differ in shape or channels from the stored images). A built
    model fed by a dataset is not run (reading a batch would advance the
    dataset's own shuffling state); K is then read from its output shape
    when known, else checked inside the step.
    """
    if source.arrays is None and model.built:
        return known_num_classes(model)
    element = source.sample()
    with strategy.scope():
        if input_transform is None:
            x, _ = inputs.split(element)
        else:
            x, _, _ = inputs.split_transformed(
                input_transform(model, element))
        logits = model(x, training=False)
    return check_logits(logits)


def check_transform(input_transform):
    """`input_transform` must take `(model, batch)`: one rule, no guessing."""
    if input_transform is None:
        return None
    if not callable(input_transform):
        raise _validate.error(
            "input_transform", "a function (model, batch) -> (x, y), "
            "(x, y, sample_weight) or a dict", input_transform)
    try:
        signature = inspect.signature(input_transform)
    except (TypeError, ValueError):
        return input_transform  # Builtins and C callables: trust them.
    _warn_undeclared_generators(input_transform)
    try:
        signature.bind(None, None)
    except TypeError:
        raise _validate.error(
            "input_transform", "a function (model, batch) of two arguments: "
            "the model and the whole dataset element (x, y[, aux...]) or "
            "dict. An old-style fn(model, x, y) is wrapped as "
            "`lambda model, batch: fn(model, *batch[:2])`", input_transform,
            received=f"input_transform with signature {signature}") from None
    return input_transform


def _warn_undeclared_generators(transform):
    """Warns about generator attributes that `fit` will not reseed.

    Reseeding is declared (`random_generators()`), never found by scanning;
    this look at the attributes only warns, for transforms written when fit
    still scanned them.
    """
    if callable(getattr(transform, "random_generators", None)):
        return
    names = [name for name, value in sorted(vars(transform).items())
             if isinstance(value, (keras.random.SeedGenerator,
                                   tf.random.Generator))] if hasattr(
        transform, "__dict__") else []
    if names:
        warnings.warn(
            f"input_transform has random generator attributes {names} but no "
            "random_generators() method declaring them; fit does not reseed "
            "them, so a resumed run will draw other numbers than an "
            "uninterrupted one. Add `def random_generators(self): return "
            f"[self.{names[0]}, ...]`.", RuntimeWarning, stacklevel=3)


def check_state(state):
    if state is None:
        return {}
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and k for k in state):
        raise _validate.error(
            "state", "a dict name -> tf.Variable (or a nest of them)", state)
    for leaf in tf.nest.flatten(state):
        if not isinstance(leaf, (tf.Variable, keras.Variable)):
            raise _validate.error(
                "state", "a dict name -> tf.Variable (or a nest of "
                "variables)", state,
                received=f"a leaf of type {type(leaf).__name__}")
    return state
