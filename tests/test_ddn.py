"""Tests of DDN, the decoupled direction and norm attack (minimal L2)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import DDN
from tfrobust.attacks import DeepFool
from tfrobust.testing import run_attack_test
from tfrobust.testing import small_trained_mnist_model

_SIDE = 4


class _Linear:
    """Two-class linear classifier z = (0, w.x + b) on flattened 4x4 inputs."""

    def __init__(self, w, b):
        self.kernel = tf.constant(np.stack([np.zeros_like(w), w], axis=1), tf.float32)
        self.bias = tf.constant([0.0, b], tf.float32)

    def __call__(self, x):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), self.kernel) + self.bias


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


def test_linear_closed_form():
    # The minimal L2 change of a linear classifier is |f| / ||w||_2; points
    # well inside the box, so the box does not bind.
    rng = np.random.default_rng(1)
    w = rng.normal(size=_SIDE * _SIDE)
    b = -0.5 * w.sum()
    dist = np.array([0.1, 0.2, 0.3, 0.4])
    u = rng.uniform(0.45, 0.55, size=(len(dist), w.size))
    x = u - ((u @ w + b + dist * np.linalg.norm(w)) / (w @ w))[:, None] * w[None]
    model = _Linear(w, b)
    exact = np.abs(x @ w + b) / np.linalg.norm(w)
    result = DDN(steps=200).minimize(model, x.reshape(-1, _SIDE, _SIDE, 1).astype(np.float32))
    norm = result.norm.numpy()
    assert np.all(result.success.numpy())
    assert np.all(norm >= exact * (1 - 1e-4))  # nothing below the true minimum
    np.testing.assert_allclose(norm, exact, rtol=0.05)


def test_attack_table(trained):
    # eps = 0 returns x, output in threat ∩ box, accuracy drops, targeted
    # hits, eager == compiled.
    run_attack_test(lambda eps, seed: DDN(threats.LpBall(2, eps), steps=30), trained.model,
                    trained.x[:32], trained.y[:32], eps=2.0, max_accuracy_ratio=0.5,
                    min_target_rate=0.3)


def test_minimal_norms_are_consistent_and_competitive(trained):
    x, y = trained.x[:32], trained.y[:32]
    result = DDN(steps=100).minimize(trained.model, x, y)
    success = result.success.numpy()
    assert success.mean() >= 0.95
    x_adv = result.x_adv.numpy()
    pred = np.argmax(trained.model(x_adv).numpy(), -1)
    np.testing.assert_array_equal(pred != y, success)
    measured = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=-1)
    np.testing.assert_allclose(result.norm.numpy()[success], measured[success], rtol=1e-5)
    # Within reach of DeepFool's minimal norms (DDN is a strong L2 attack).
    deepfool = DeepFool().minimize(trained.model, x, y).norm.numpy()
    both = success & np.isfinite(deepfool)
    assert np.median(result.norm.numpy()[both] / deepfool[both]) < 1.1


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"init_epsilon": 0.0}, "init_epsilon"), ({"gamma": 0.0}, "gamma"),
    ({"gamma": 1.0}, "gamma"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDN(**kwargs)
