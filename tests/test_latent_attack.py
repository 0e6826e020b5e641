"""LatentAttack: points of the generator's range near x that the classifier gets wrong."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import LatentAttack

LEFT = (np.arange(64) % 8 < 4).astype("float32")


@pytest.fixture(scope="module")
def models():
    # The generator's range: images whose halves have brightness set by z;
    # the classifier tells which half is brighter.
    generator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, activation="sigmoid"),
                                  keras.layers.Reshape((8, 8, 1))])
    generator.layers[0].set_weights([np.stack([4.0 * LEFT, 4.0 * (1 - LEFT)]), np.full(64, -2.0, "float32")])
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    d = (LEFT - (1 - LEFT)) / 32.0
    classifier.layers[-1].set_weights([np.stack([d, -d], 1), np.zeros(2, "float32")])
    return generator, classifier


def _points(generator):
    # Near the boundary: left half slightly brighter (class 0) or darker (class 1).
    z = np.array([[0.6, 0.4], [0.4, 0.6], [0.55, 0.45], [0.45, 0.55]], "float32")
    return z, np.asarray(generator(z))


def test_breaks_classifier_within_budget_on_the_range(models):
    generator, classifier = models
    z, x = _points(generator)
    y = np.argmax(classifier(x), -1)
    attack = LatentAttack(generator, classifier, threats.LpBall(2, 2.0), projector=lambda images: z,
                          copies=2, noise_samples=2, noise_norm=0.05, steps=100, learning_rate=0.05,
                          lambda_init=1.0, lambda_lr=10.0, seed=0)
    x_adv = np.asarray(attack(classifier, x, y))
    norms = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
    assert np.all(norms <= 2.0 + 1e-4)
    assert np.all((x_adv >= 0) & (x_adv <= 1))
    assert np.mean(np.argmax(classifier(x_adv), -1) != y) >= 0.75
    # An in-budget result is G(z) itself: its halves are uniform.
    flat = x_adv.reshape(len(x), -1)
    np.testing.assert_allclose(flat[:, LEFT == 1].std(axis=1), 0.0, atol=1e-5)


def test_random_start_without_projector_stays_in_threat(models):
    generator, classifier = models
    _, x = _points(generator)
    attack = LatentAttack(generator, classifier, threats.LpBall(2, 0.5), copies=1, noise_samples=1, steps=3,
                          seed=0)
    x_adv = np.asarray(attack(classifier, x, np.zeros(len(x), "int64")))
    assert np.all(np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1) <= 0.5 + 1e-4)


def test_bad_arguments(models):
    generator, classifier = models
    with pytest.raises(ValueError, match="threat"):
        LatentAttack(generator, classifier, threats.LpBall(np.inf, 0.3))
    with pytest.raises(ValueError, match="copies"):
        LatentAttack(generator, classifier, copies=0)
    with pytest.raises(ValueError, match="projector"):
        LatentAttack(generator, classifier, projector=3)
    with pytest.raises(ValueError, match="classifier"):
        LatentAttack(generator, None)
    attack = LatentAttack(generator, classifier, copies=1, noise_samples=1, steps=1)
    _, x = _points(generator)
    with pytest.raises(ValueError, match="targeted"):
        attack(classifier, x, np.zeros(len(x), "int64"), targeted=True)
    with pytest.raises(ValueError):
        attack(classifier, x + 2.0, np.zeros(len(x), "int64"))
