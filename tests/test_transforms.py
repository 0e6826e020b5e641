"""Tests of tfrobust.transforms: the boxed-linear adversarial-training step
(moved here from attacks/) and the generic `Adversarial` transform."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import _random
from tfrobust import attacks
from tfrobust import models
from tfrobust import threats
from tfrobust import transforms
from tfrobust.transforms import BoxedLinearAdversarialTransform
from tfrobust.transforms import boxed_linear_training_step
from tfrobust.testing import linear_two_class_model

D = 16


def _linear_model(seed=0):
    """Two classes with f_0 - f_1 = w·x + b; the boundary is a hyperplane."""
    return linear_two_class_model(seed, (4, 4, 1))


@pytest.fixture(scope="module")
def mlp():
    keras.utils.set_random_seed(3)
    model = models.mlp1layer((4, 4, 1), 5, hidden_units=24)
    rng = np.random.default_rng(3)
    model.get_layer("hidden").kernel.assign(rng.normal(size=(D, 24)) * 0.8)
    model.get_layer("logits").kernel.assign(rng.normal(size=(24, 5)))
    return model


def test_training_step_partial_move_on_linear_model():
    model, w, b = _linear_model(1)
    x = np.random.default_rng(8).uniform(0.3, 0.7, size=(8, 4, 4, 1)).astype("float32")
    margin = x.reshape(8, -1) @ w + b
    x_adv = boxed_linear_training_step(model, x, seed=0).numpy()
    assert np.all((x_adv >= 0) & (x_adv <= 1))
    new_margin = x_adv.reshape(8, -1) @ w + b
    # c·U[0,1): a random fraction of the way to the boundary, never across.
    assert np.all(np.sign(new_margin) == np.sign(margin))
    assert np.all(np.abs(new_margin) <= np.abs(margin) + 1e-5)
    assert np.any(np.abs(new_margin) < np.abs(margin) - 1e-3)


def test_boxed_linear_transform_replaces_first_half_in_tf_function(mlp):
    x = np.random.default_rng(9).uniform(size=(7, 4, 4, 1)).astype("float32")
    y = np.arange(7) % 5
    transform = BoxedLinearAdversarialTransform(alpha_adv=0.5, seed=1)
    # fit's contract: the whole element; a dict element works alike.
    x_out, y_out = tf.function(lambda x, y: transform(mlp, (x, y)))(x, y)
    changed = np.abs(x_out.numpy() - x).reshape(7, -1).max(-1) > 0
    n_adv = round(0.5 * 7)
    assert not changed[n_adv:].any()
    assert changed[:n_adv].sum() >= n_adv - 1
    np.testing.assert_array_equal(y_out.numpy(), y)
    assert np.all((x_out.numpy() >= 0) & (x_out.numpy() <= 1))
    # The same seed gives the same draw eagerly and compiled.
    eager = BoxedLinearAdversarialTransform(alpha_adv=0.5, seed=1)(
        mlp, {"x": x, "y": y, "index": np.arange(7)})[0]
    np.testing.assert_allclose(eager.numpy(), x_out.numpy(), atol=1e-6)
    again = BoxedLinearAdversarialTransform.from_config(transform.get_config())
    assert again.get_config() == transform.get_config()
    # Its generator is declared, so fit reseeds it.
    assert _random.generators_of([transform]) == [transform._seed_gen]
    with pytest.raises(ValueError, match="alpha_adv"):
        BoxedLinearAdversarialTransform(alpha_adv=1.5)


def test_adversarial_transform_mix_and_declared_generator(mlp):
    x = np.random.default_rng(2).uniform(0.2, 0.8, size=(6, 4, 4, 1)).astype("float32")
    y = np.argmax(mlp(x).numpy(), -1)
    pgd = attacks.PGD(threats.LpBall(np.inf, 0.05), steps=3, random_start=True, seed=0)
    full = transforms.Adversarial(pgd)
    x_adv, y_out = full(mlp, (x, y))
    np.testing.assert_array_equal(y_out, y)
    assert np.max(np.abs(x_adv.numpy() - x)) <= 0.05 + 1e-6
    assert np.max(np.abs(x_adv.numpy() - x)) > 0
    half = transforms.Adversarial(pgd, mix=0.5)
    x_half, _ = half(mlp, {"x": x, "y": y})
    same = np.all(x_half.numpy() == x, axis=(1, 2, 3))
    assert same[3:].all() and not same[:3].any()
    none, _ = transforms.Adversarial(pgd, mix=0.0).apply(mlp, x, y)
    np.testing.assert_array_equal(none, x)
    # The attack's lazily created generator is declared through the transform.
    (generator,) = _random.generators_of([full])
    assert generator is pgd.random_generators()[0]


@pytest.mark.parametrize("kwargs, match", [
    ({"attack": 3}, "attack"),
    ({"attack": lambda m, x, y: x, "mix": 1.5}, "mix"),
    ({"attack": lambda m, x, y: x, "mix": True}, "mix"),
])
def test_adversarial_transform_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        transforms.Adversarial(**kwargs)


def test_transform_rejects_an_element_without_x_and_y(mlp):
    with pytest.raises(ValueError, match="'x' and 'y'"):
        transforms.Adversarial(lambda m, x, y: x)(mlp, {"image": np.zeros((1, 4, 4, 1))})
