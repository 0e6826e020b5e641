"""Tests of the learning-rate schedules, optimizers and strategies by name."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrobust import training
from tfrobust.training import strategy as strategy_lib


def _lr(schedule, step):
    return float(schedule(tf.constant(step, tf.int64)))


def test_piecewise_by_fraction_values_at_boundaries():
    schedule = training.PiecewiseByFraction(0.2, total_steps=100)
    # Updates 0..71 use lr, 72..87 use 0.1 lr, from 88 on 0.01 lr.
    expected = {0: 0.2, 71: 0.2, 72: 0.02, 87: 0.02, 88: 0.002, 99: 0.002,
                10**9: 0.002}
    for step, lr in expected.items():
        assert _lr(schedule, step) == pytest.approx(lr, rel=1e-6), step


def test_piecewise_by_fraction_uneven_total_rounds_boundaries_up():
    schedule = training.PiecewiseByFraction(1.0, total_steps=10)
    # 0.72 * 10 = 7.2: update 7 is the last one before the boundary.
    assert _lr(schedule, 7) == 1.0
    assert _lr(schedule, 8) == pytest.approx(0.1)
    assert _lr(schedule, 9) == pytest.approx(0.01)  # 0.88 * 10 = 8.8


@settings(max_examples=40, deadline=None)
@given(total=st.integers(1, 10**6), step=st.integers(0, 2 * 10**6),
       lr=st.floats(1e-4, 10.0, allow_subnormal=False))
def test_piecewise_by_fraction_matches_reference(total, step, lr):
    schedule = training.PiecewiseByFraction(lr, total_steps=total)
    if step < 0.72 * total:
        expected = lr
    elif step < 0.88 * total:
        expected = 0.1 * lr
    else:
        expected = 0.01 * lr
    assert _lr(schedule, step) == pytest.approx(expected, rel=1e-6)


def test_step_decay_values_and_gamma_form():
    schedule = training.StepDecay(0.1, boundaries_epochs=[200, 300],
                                  factors=0.1, steps_per_epoch=10)
    assert schedule.factors == pytest.approx((0.1, 0.01))
    assert _lr(schedule, 1999) == pytest.approx(0.1)
    assert _lr(schedule, 2000) == pytest.approx(0.01)
    assert _lr(schedule, 2999) == pytest.approx(0.01)
    assert _lr(schedule, 3000) == pytest.approx(0.001)
    explicit = training.StepDecay(1.0, [1, 3], [0.5, 0.2], steps_per_epoch=4)
    values = [_lr(explicit, s) for s in range(16)]
    assert values == pytest.approx([1.0] * 4 + [0.5] * 8 + [0.2] * 4)


@pytest.mark.parametrize("schedule", [
    training.PiecewiseByFraction(0.2, 1000, fractions=(0.5, 0.9),
                                 factors=(0.3, 0.03)),
    training.StepDecay(0.1, [2, 5], [0.1, 0.01], steps_per_epoch=7),
])
def test_schedule_config_round_trip(schedule):
    config = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(
        json.loads(json.dumps(config)))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 13, 499, 500, 899, 900, 5000):
        assert _lr(restored, step) == _lr(schedule, step)
    optimizer = keras.optimizers.SGD(schedule)
    clone = keras.optimizers.SGD.from_config(optimizer.get_config())
    assert float(clone.learning_rate) == pytest.approx(
        float(optimizer.learning_rate))


def test_schedule_drives_the_optimizer_in_fit():
    x = np.random.default_rng(0).uniform(size=(8, 2)).astype(np.float32)
    y = np.array([0, 1] * 4)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    schedule = training.StepDecay(0.5, [1, 2], 0.1, steps_per_epoch=2)
    history = training.fit(model, (x, y), batch_size=4, epochs=3,
                           learning_rate=schedule, verbose=0)
    # The lr logged after each epoch is the one of the next update.
    assert history["lr"] == pytest.approx([0.05, 0.005, 0.005], rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0.0, "total_steps": 10}, "lr"),
    ({"lr": float("inf"), "total_steps": 10}, "lr"),
    ({"lr": 0.1, "total_steps": 0}, "total_steps"),
    ({"lr": 0.1, "total_steps": 2.5}, "total_steps"),
    ({"lr": 0.1, "total_steps": 10, "fractions": (0.9, 0.5)}, "fractions"),
    ({"lr": 0.1, "total_steps": 10, "fractions": (0.5, 1.5)}, "fractions"),
    ({"lr": 0.1, "total_steps": 10, "fractions": ()}, "fractions"),
    ({"lr": 0.1, "total_steps": 10, "factors": (0.1,)}, "factors"),
    ({"lr": 0.1, "total_steps": 10, "factors": (0.1, -1.0)}, "factors"),
])
def test_piecewise_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.PiecewiseByFraction(**kwargs)


@pytest.mark.parametrize("args, match", [
    ((0.1, [], 0.1, 5), "boundaries_epochs"),
    ((0.1, [3, 2], 0.1, 5), "boundaries_epochs"),
    ((0.1, [1.5], 0.1, 5), "whole epochs"),
    ((0.1, [1, 2], [0.1], 5), "factors"),
    ((0.1, [1], 0.1, 0), "steps_per_epoch"),
    ((-0.1, [1], 0.1, 5), "lr"),
])
def test_step_decay_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        training.StepDecay(*args)


@pytest.mark.parametrize("name, cls, momentum, nesterov", [
    ("sgd", keras.optimizers.SGD, 0.0, False),
    ("momentum", keras.optimizers.SGD, 0.9, False),
    ("nesterov", keras.optimizers.SGD, 0.9, True),
    ("adam", keras.optimizers.Adam, None, None),
    ("rmsprop", keras.optimizers.RMSprop, None, None),
])
def test_make_optimizer(name, cls, momentum, nesterov):
    optimizer = training.make_optimizer(name, 0.25)
    assert type(optimizer) is cls
    assert float(optimizer.learning_rate) == pytest.approx(0.25)
    if momentum is not None:
        assert optimizer.momentum == momentum
        assert optimizer.nesterov is nesterov
    schedule = training.StepDecay(0.3, [1], 0.1, steps_per_epoch=1)
    with_schedule = training.make_optimizer(name, schedule)
    assert float(with_schedule.learning_rate) == pytest.approx(0.3)
    assert isinstance(with_schedule.get_config()["learning_rate"], dict)


@pytest.mark.parametrize("name, lr, match", [
    ("lbfgs", 0.1, "name"),
    (None, 0.1, "name"),
    ("sgd", 0.0, "learning_rate"),
    ("sgd", "0.1", "learning_rate"),
])
def test_make_optimizer_errors(name, lr, match):
    with pytest.raises(ValueError, match=match):
        training.make_optimizer(name, lr)


def test_make_strategy_known_names():
    assert training.make_strategy() is tf.distribute.get_strategy()
    assert training.make_strategy("Default") is tf.distribute.get_strategy()
    mirrored = training.make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync >= 1
    one = training.make_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    cpu = training.make_strategy("one_device:/cpu:0")
    assert "CPU:0" in cpu.extended.worker_devices[0]
    assert strategy_lib.is_chief(mirrored)


@pytest.mark.parametrize("name, match", [
    ("tpu", "'default', 'mirrored'.*not supported"),
    ("parameter_server", "one_device"),
    (3, "string"),
    ("one_device:/gpu:99", "exists"),
    ("one_device:not a device", "device"),
    ("mirrored:/cpu:0,", "comma-separated"),
])
def test_make_strategy_errors(name, match):
    with pytest.raises(ValueError, match=match):
        training.make_strategy(name)


@pytest.mark.parametrize("tf_config, match", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "cluster"),
    (json.dumps({"cluster": {"worker": ["localhost:1"]}}), "task"),
    (json.dumps({"cluster": {"worker": "localhost:1"},
                 "task": {"type": "worker", "index": 0}}), "list"),
    (json.dumps({"cluster": {"worker": ["localhost:1"]},
                 "task": {"type": "worker", "index": 3}}), "index"),
])
def test_multi_worker_requires_valid_tf_config(monkeypatch, tf_config, match):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=match):
        training.make_strategy("multi_worker")
