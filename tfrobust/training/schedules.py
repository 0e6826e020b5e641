"""Learning-rate schedules of the papers and optimizers by name.

Both schedules are piecewise constant in the number of optimizer updates
(`optimizer.iterations`, counted from 0 for the first update), so a run resumed
from a checkpoint continues on exactly the same schedule.

References:
    Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
    Classifier against Adversarial Manipulation", NIPS 2017 (the "manual"
    schedule of its `worker.py`: lr, x0.1 after 72% and x0.01 after 88% of
    all updates).
    Nemcovsky et al., "Smoothed Inference for Improving Adversarial
    Robustness", 2019 (multistep schedule: x0.1 at epochs 200 and 300).
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate


def _check_lr(learning_rate, arg="learning_rate"):
    return _validate.check_float(learning_rate, name=arg, minimum=0.0,
                                 exclusive_minimum=True)


def _check_positive_int(value, arg):
    return _validate.check_int(value, name=arg, minimum=1)


def _numbers(values, arg):
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise _validate.error(arg, "a sequence of numbers", values) from None


def _check_factors(factors, count, arg="factors"):
    factors = _numbers(factors, arg)
    if len(factors) != count:
        raise _validate.error(
            arg, f"one entry per boundary ({count} numbers)", factors)
    if not all(math.isfinite(f) and f > 0 for f in factors):
        raise _validate.error(arg, "finite numbers > 0", factors)
    return factors


def _check_increasing(values, arg, lower, upper):
    values = _numbers(values, arg)
    if not values:
        raise _validate.error(arg, "a sequence of at least one boundary",
                              values)
    if any(not (lower < v <= upper) for v in values) or any(
            b <= a for a, b in zip(values, values[1:])):
        raise _validate.error(
            arg, f"strictly increasing values in ({lower}, {upper}]", values)
    return values


def _piecewise(step, boundaries, values):
    # float64 keeps the comparison exact far beyond float32's 2**24 steps.
    step = tf.cast(tf.convert_to_tensor(step), tf.float64)
    index = tf.reduce_sum(
        tf.cast(step >= tf.constant(boundaries, tf.float64), tf.int32))
    return tf.gather(tf.constant(values, tf.float32), index)


@keras.saving.register_keras_serializable(package="tfrobust")
class PiecewiseByFraction(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant learning rate, boundaries at fractions of training.

    The update with 0-based index `step` uses `lr * factors[i - 1]`, where `i`
    counts the boundaries `fractions[j] * total_steps` that `step` has
    reached, and `lr` before the first boundary. The defaults are the
    Cross-Lipschitz "manual" schedule.

    Args:
        lr: Initial learning rate, a finite number > 0.
        total_steps: Total number of updates of the run (epochs times updates
            per epoch), an integer >= 1.
        fractions: Strictly increasing fractions of `total_steps` in (0, 1].
        factors: Multipliers of `lr` from each boundary on (absolute, not
            cumulative), one per fraction.

    Raises:
        ValueError: on a non-positive `lr` or `total_steps`, on fractions that
            are not increasing inside (0, 1], or on mismatched `factors`.

    References:
        Hein & Andriushchenko, NIPS 2017, code `worker.py` ("manual").
    """

    def __init__(self, lr, total_steps, fractions=(0.72, 0.88),
                 factors=(0.1, 0.01)):
        self.lr = _check_lr(lr, "lr")
        self.total_steps = _check_positive_int(total_steps, "total_steps")
        self.fractions = _check_increasing(fractions, "fractions", 0.0, 1.0)
        self.factors = _check_factors(factors, len(self.fractions))

    def __call__(self, step):
        boundaries = [f * self.total_steps for f in self.fractions]
        values = [self.lr] + [self.lr * f for f in self.factors]
        return _piecewise(step, boundaries, values)

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps,
                "fractions": list(self.fractions),
                "factors": list(self.factors)}


@keras.saving.register_keras_serializable(package="tfrobust")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Multistep learning rate with boundaries given in epochs.

    Every update of (0-based) epoch `e` uses `lr * factors[i - 1]`, where `i`
    counts the boundaries `<= e` (`lr` when there are none), like the
    multistep schedules of SIAM (`--schedule 200 300 --gamma 0.1`).

    Args:
        lr: Initial learning rate, a finite number > 0.
        boundaries_epochs: Strictly increasing epochs (>= 1) at whose start
            the rate changes.
        factors: Either one multiplier per boundary (absolute, not
            cumulative), or a single number `gamma` meaning `gamma ** i`
            after the i-th boundary.
        steps_per_epoch: Updates per epoch, an integer >= 1.

    Raises:
        ValueError: on a non-positive `lr` or `steps_per_epoch`, unordered
            boundaries, or factors that do not match the boundaries.

    References:
        Nemcovsky et al., "Smoothed Inference for Improving Adversarial
        Robustness", 2019, code `train.py` (`--schedule`, `--gamma`).
    """

    def __init__(self, lr, boundaries_epochs, factors, steps_per_epoch):
        self.lr = _check_lr(lr, "lr")
        self.boundaries_epochs = _check_increasing(
            boundaries_epochs, "boundaries_epochs", 0.0, np.inf)
        if any(b != int(b) for b in self.boundaries_epochs):
            raise _validate.error("boundaries_epochs", "whole epochs",
                                  boundaries_epochs)
        self.boundaries_epochs = tuple(int(b) for b in self.boundaries_epochs)
        count = len(self.boundaries_epochs)
        if isinstance(factors, numbers.Real) and not isinstance(factors, bool):
            gamma = _check_factors([factors], 1)[0]
            factors = [gamma ** (i + 1) for i in range(count)]
        self.factors = _check_factors(factors, count)
        self.steps_per_epoch = _check_positive_int(
            steps_per_epoch, "steps_per_epoch")

    def __call__(self, step):
        boundaries = [b * self.steps_per_epoch for b in self.boundaries_epochs]
        values = [self.lr] + [self.lr * f for f in self.factors]
        return _piecewise(step, boundaries, values)

    def get_config(self):
        return {"lr": self.lr,
                "boundaries_epochs": list(self.boundaries_epochs),
                "factors": list(self.factors),
                "steps_per_epoch": self.steps_per_epoch}


OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam", "rmsprop")


def check_learning_rate(learning_rate):
    """Returns `learning_rate` if it is a positive number or a schedule."""
    if isinstance(learning_rate,
                  keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    return _check_lr(learning_rate)


def make_optimizer(name, learning_rate, **kwargs):
    """Creates a Keras optimizer by the name the original scripts use.

    Call it under the strategy's scope (`fit` does) so that the optimizer's
    variables are distributed like the model's.

    Args:
        name: `"sgd"` (plain SGD), `"momentum"` (SGD with momentum 0.9, the
            `--opt_method=momentum` of the Cross-Lipschitz `worker.py`),
            `"nesterov"` (SGD with Nesterov momentum 0.9, as in SIAM),
            `"adam"` or `"rmsprop"` (Keras defaults otherwise).
        learning_rate: A finite number > 0 or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        **kwargs: Passed on to the Keras optimizer (e.g. `clipnorm=0.05`,
            `weight_decay=1e-4`).

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: on an unknown name or an invalid learning rate.
    """
    if not isinstance(name, str) or name.lower() not in OPTIMIZER_NAMES:
        raise _validate.error(
            "name", "one of " + ", ".join(map(repr, OPTIMIZER_NAMES)), name)
    learning_rate = check_learning_rate(learning_rate)
    name = name.lower()
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, **kwargs)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, **kwargs)
    if name == "nesterov":
        return keras.optimizers.SGD(learning_rate, momentum=0.9,
                                    nesterov=True, **kwargs)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, **kwargs)
    return keras.optimizers.RMSprop(learning_rate, **kwargs)
