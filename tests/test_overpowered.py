"""OverpoweredAttack: differing close pairs on an undefended classifier, λ >= 0, the z1-fixed variant."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.attacks import OverpoweredAttack
from tfrobust.attacks.overpowered import symmetric_cross_entropy


LEFT = (np.arange(64) % 8 < 4).astype("float32")  # pixels of the left half


def _generator():
    # z[0] sets the left half's brightness, z[1] the right half's.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, activation="sigmoid"),
                              keras.layers.Reshape((8, 8, 1))])
    w = np.stack([4.0 * LEFT, 4.0 * (1 - LEFT)])
    model.layers[0].set_weights([w, np.full(64, -2.0, "float32")])
    return model


def _classifier():
    # Class 0 when the left half is brighter, 1 when the right one is; 2 never wins.
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    d = (LEFT - (1 - LEFT)) / 32.0
    model.layers[-1].set_weights([np.stack([d, -d, np.zeros(64)], 1), np.array([0, 0, -10.0], "float32")])
    return model


@pytest.fixture(scope="module")
def models():
    return _generator(), _classifier()


def test_finds_differing_close_pairs_on_undefended_classifier(models):
    generator, classifier = models
    attack = OverpoweredAttack(generator, eps=1.0, steps=100, learning_rate=0.1, seed=0)
    result = attack(classifier, 16)
    # An undefended linear classifier has a boundary through the generator's
    # range: most pairs must straddle it within eps.
    assert result.success_rate >= 0.75
    pred1 = np.argmax(classifier(result.x1), -1)
    pred2 = np.argmax(classifier(result.x2), -1)
    np.testing.assert_array_equal(np.asarray(result.differ), pred1 != pred2)
    dist = np.linalg.norm((np.asarray(result.x1) - np.asarray(result.x2)).reshape(16, -1), axis=1)
    np.testing.assert_allclose(np.asarray(result.distance), dist, atol=1e-4)
    success = np.asarray(result.success)
    assert np.all(dist[success] <= 1.0 + 1e-5)
    np.testing.assert_allclose(np.asarray(generator(result.z1)), np.asarray(result.x1), atol=1e-6)


def test_lambda_stays_nonnegative(models):
    generator, classifier = models
    # A huge budget makes every constraint slack: the ascent drives λ down to
    # the clamp; no early stop, so it keeps pushing.
    attack = OverpoweredAttack(generator, eps=100.0, steps=30, lambda_lr=10.0, early_stop=False, seed=0)
    lam = np.asarray(attack(classifier, 8).lam)
    assert np.all(lam >= 0.0) and np.all(lam == 0.0)


def test_fixed_z1_variant_and_from_images(models):
    generator, classifier = models
    z1 = tf.random.stateless_uniform([5, 2], [1, 2])
    attack = OverpoweredAttack(generator, eps=1.0, steps=50, seed=0)
    result = attack(classifier, z1=z1)
    np.testing.assert_array_equal(np.asarray(result.z1), np.asarray(z1))
    x = np.asarray(generator(z1))
    from_images = attack.from_images(classifier, x, lambda images: z1)
    np.testing.assert_array_equal(np.asarray(from_images.z1), np.asarray(z1))


def test_seeded_runs_repeat(models):
    generator, classifier = models
    a = OverpoweredAttack(generator, steps=5, seed=3)(classifier, 4)
    b = OverpoweredAttack(generator, steps=5, seed=3)(classifier, 4)
    np.testing.assert_array_equal(np.asarray(a.z2), np.asarray(b.z2))


def test_symmetric_cross_entropy_is_symmetric():
    a = tf.constant([[1.0, 2.0, 0.5]])
    b = tf.constant([[0.0, -1.0, 3.0]])
    np.testing.assert_allclose(symmetric_cross_entropy(a, b), symmetric_cross_entropy(b, a), rtol=1e-6)
    p = tf.nn.softmax(a)
    np.testing.assert_allclose(symmetric_cross_entropy(a, a), -2 * tf.reduce_sum(p * tf.math.log(p)), rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 0.0}, "eps"), ({"steps": 0}, "steps"), ({"z_init": "cauchy"}, "z_init"),
    ({"distance": "l1"}, "distance"), ({"lambda_init": -1.0}, "lambda_init"),
])
def test_bad_arguments(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        OverpoweredAttack(models[0], **kwargs)


def test_bad_calls(models):
    generator, classifier = models
    attack = OverpoweredAttack(generator, steps=2)
    with pytest.raises(ValueError, match="n"):
        attack(classifier, 0)
    with pytest.raises(ValueError, match="z1"):
        attack(classifier, z1=np.zeros([3, 5], "float32"))
    with pytest.raises(ValueError, match="finite"):
        attack(classifier, z1=np.full([3, 2], np.nan, "float32"))
    with pytest.raises(ValueError, match="generator"):
        OverpoweredAttack(lambda z: z)
    with pytest.raises(ValueError, match="projector"):
        attack.from_images(classifier, np.zeros([2, 8, 8, 1], "float32"), projector=3)
