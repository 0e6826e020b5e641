"""Tests of the RBFCNN defense: m-sample inference, BPDA surrogate, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import rbf, threats
from tfrobust.attacks import PGD
from tfrobust.defenses.rbf_cnn import RBFCNN
from tfrobust.layers.rbf import RBFLayer, ReconstructionLayer


def _templates(k=6, c=1, seed=0):
    rng = np.random.default_rng(seed)
    return rbf.Templates(rng.uniform(size=(k, 3, 3, c)).astype("float32"),
                         rng.uniform(0.2, 1.0, size=k).astype("float32"))


def _classifier(shape=(8, 8, 1), classes=4, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes)])


@pytest.fixture
def x():
    return np.random.default_rng(1).uniform(size=(5, 8, 8, 1)).astype("float32")


def test_inference_is_the_log_mean_of_softmaxes(x):
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=0.0, samples=3)
    recon = defense.reconstruction(x)
    expected = tf.nn.log_softmax(defense.classifier(recon)).numpy()
    # beta2 = 0: every sample is the same reconstruction.
    np.testing.assert_allclose(defense(x).numpy(), expected, atol=1e-5)
    logits_train = defense(x, training=True).numpy()
    np.testing.assert_allclose(tf.nn.log_softmax(logits_train).numpy(), expected, atol=1e-5)


def test_noisy_samples_are_averaged_in_one_batched_call(x):
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=1.0, samples=8, seed=0)
    out = defense(x).numpy()
    assert out.shape == (5, 4) and np.all(np.isfinite(out))
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-4)
    assert not np.allclose(out, defense(x).numpy())             # random
    defense.set_knobs(beta2=0.0, samples=1)
    np.testing.assert_allclose(defense(x).numpy(), defense(x).numpy())


def _grad(fn, xt):
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(fn(xt)[:, 0])
    return tape.gradient(out, xt).numpy()


def test_bpda_gradient_is_the_deterministic_reconstructions(x):
    # The paper's BPDA backward pass is that of the beta2 = 0
    # reconstruction; at beta2 = 0 forward and surrogate coincide, so the
    # BPDA gradient must equal the exact one.
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=0.0, samples=1)
    xt = tf.constant(x)
    exact = _grad(lambda t: defense.classifier(defense.reconstruction(t)), xt)
    assert np.any(exact != 0)
    np.testing.assert_allclose(_grad(defense.bpda(), xt), exact, rtol=1e-4, atol=1e-6)
    # With noise the forward changes but the backward stays the surrogate's.
    defense.set_knobs(beta2=1.5)
    noisy = _grad(defense.bpda(), xt)
    assert np.all(np.isfinite(noisy)) and np.any(noisy != 0)


def test_adaptive_attack_runs_through_bpda_and_eot(x):
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=1.0, samples=2, seed=0)
    y = np.argmax(defense(x).numpy(), -1)
    attack = PGD(threats.LpBall(np.inf, 0.3), steps=3, seed=0)
    x_adv = attack(defense.eot(4, bpda=True), x, y)
    assert np.all(np.abs(x_adv.numpy() - x) <= 0.3 + 1e-6)
    assert defense.randomized and not defense.optimizes_at_inference


def test_save_load_keeps_templates_knobs_and_outputs(tmp_path, x):
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=0.0, samples=2)
    defense.set_knobs(beta1=20.0, samples=3)
    expected = defense(x).numpy()
    path = str(tmp_path / "rbf_cnn.keras")
    defense.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)
    assert int(loaded.samples.numpy()) == 3 and float(loaded.reconstruction.beta1.numpy()) == 20.0
    means = [v for v in loaded.weights if "means" in v.path]
    assert len(means) == 1  # one copy of the templates


def test_bad_arguments():
    with pytest.raises(ValueError, match="reconstruction"):
        RBFCNN(_classifier(), keras.layers.Dense(3))
    with pytest.raises(ValueError, match="samples"):
        RBFCNN.from_templates(_templates(), _classifier(), samples=0)
    defense = RBFCNN.from_templates(_templates(), _classifier())
    with pytest.raises(ValueError, match="beta2"):
        defense.set_knobs(beta2=-1.0)


def test_export_serves_with_knobs_chosen_per_request(tmp_path, x):
    defense = RBFCNN.from_templates(_templates(), _classifier(), beta1=10.0, beta2=0.0, samples=1, seed=0)
    expected = defense(x).numpy()
    path = defense.export_with_knobs(str(tmp_path / "sm"))
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), expected, atol=1e-5)
    # beta2 = 0 with any m equals the deterministic model; beta2 > 0 changes it.
    same = served.serve_knobs(tf.constant(x), tf.constant(0.0), tf.constant(4)).numpy()
    np.testing.assert_allclose(same, expected, atol=1e-5)
    noisy = served.serve_knobs(tf.constant(x), tf.constant(1.5), tf.constant(8)).numpy()
    assert noisy.shape == expected.shape and not np.allclose(noisy, expected)
    # The knobs of the exported model itself are untouched by a request.
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), expected, atol=1e-5)
