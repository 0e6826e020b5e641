"""Tests of tfrobust.layers.noise: GaussianInputNoise, PNIConv2D, PNIDense, CPNIConv2D."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import models
from tfrobust.layers import CPNIConv2D, GaussianInputNoise, PNIConv2D, PNIDense
from tfrobust.testing import assert_rate_within, run_layer_test

# P(|Z| < 1) for a standard normal Z: the rate the statistical tests check.
P_ONE_SD = math.erf(1.0 / math.sqrt(2.0))


def _assert_std(samples, std):
    """`samples` are N(0, std^2) elementwise: the rate of |s| < std is binomial."""
    samples = np.asarray(samples, np.float64).ravel()
    inside = int(np.sum(np.abs(samples) < np.broadcast_to(std, samples.shape).ravel()))
    assert_rate_within(inside, samples.size, P_ONE_SD)


# -- Keras contract (noise scales 0: deterministic, so outputs compare exactly) --

def test_gaussian_input_noise_contract():
    run_layer_test(GaussianInputNoise, {"sigma": 0.0, "seed": 1}, (2, 5, 5, 1),
                   expected_output_shape=(2, 5, 5, 1), expected_num_trainable_weights=0,
                   expected_num_non_trainable_weights=1, reference_fn=lambda x: x)


def test_pni_conv_contract():
    run_layer_test(PNIConv2D, {"filters": 3, "kernel_size": 3, "padding": "same", "alpha_init": 0.0,
                               "act_noise_a": True, "act_noise_b": True, "seed": 2},
                   (2, 6, 6, 2), expected_output_shape=(2, 6, 6, 3), expected_num_trainable_weights=5)


def test_cpni_conv_contract():
    run_layer_test(CPNIConv2D, {"filters": 3, "kernel_size": 3, "a_init": 0.0, "f_init": 0.0, "seed": 3,
                                "noise_rank": 2}, (2, 6, 6, 2),
                   expected_output_shape=(2, 4, 4, 3), expected_num_trainable_weights=4)


def test_pni_dense_contract():
    run_layer_test(PNIDense, {"units": 4, "alpha_init": 0.0, "seed": 4}, (3, 7),
                   expected_output_shape=(3, 4), expected_num_trainable_weights=3)


def test_pni_with_zero_scale_is_the_plain_layer():
    x = np.random.default_rng(0).uniform(size=(3, 6, 6, 2)).astype("float32")
    noisy = PNIConv2D(4, 3, alpha_init=0.0, seed=0)
    plain = keras.layers.Conv2D(4, 3)
    noisy(x), plain(x)
    plain.set_weights(noisy.get_weights()[:2])
    np.testing.assert_allclose(noisy(x), plain(x), rtol=1e-5, atol=1e-6)


# -- statistics of the injected noise -----------------------------------------

def test_gaussian_input_noise_std_and_always_on():
    layer = GaussianInputNoise(0.3, seed=0)
    zeros = np.zeros((50, 20, 20, 1), np.float32)
    _assert_std(layer(zeros, training=False), 0.3)        # on at inference
    layer.set_sigma(0.05)                                   # run-time knob
    _assert_std(layer(zeros, training=True), 0.05)
    assert not np.allclose(layer(zeros), layer(zeros))      # fresh noise per call


def _kernel_noise(layer, draws):
    return np.stack([np.asarray(layer._noisy_kernel(layer.kernel) - layer.kernel) for _ in range(draws)])


def test_pni_weight_noise_std_is_alpha_times_std_w():
    layer = PNIConv2D(8, 3, seed=0)
    layer(np.zeros((1, 5, 5, 4), np.float32))
    std_w = float(np.std(layer.kernel.numpy()))
    _assert_std(_kernel_noise(layer, 40), 0.25 * std_w)


def test_cpni_weight_noise_diagonal_and_low_rank_parts():
    x = np.zeros((1, 5, 5, 4), np.float32)
    # Diagonal part alone (F = 0): independent N(0, std(W)^2 a_d), a_d = 0.0625.
    diagonal = CPNIConv2D(8, 3, f_init=0.0, seed=0)
    diagonal(x)
    _assert_std(_kernel_noise(diagonal, 40), 0.25 * float(np.std(diagonal.kernel.numpy())))
    # Low-rank part alone (a_d = 0): with F = 0.01 everywhere every weight of
    # one draw moves by the same std(W) * 0.01 * sum(eps_f), std
    # 0.01 * sqrt(5) * std(W): fully correlated across the weights, one
    # value per draw, in the units of the weights (not absolute).
    low_rank = CPNIConv2D(8, 3, a_init=0.0, seed=1)
    low_rank(x)
    draws = _kernel_noise(low_rank, 300).reshape(300, -1)
    np.testing.assert_allclose(draws, draws[:, :1].repeat(draws.shape[1], axis=1), atol=1e-7)
    _assert_std(draws[:, 0], 0.01 * math.sqrt(5) * float(np.std(low_rank.kernel.numpy())))
    # The original's units (f_units="absolute"): the same shift, unscaled.
    original = CPNIConv2D(8, 3, a_init=0.0, f_units="absolute", seed=1)
    original(x)
    _assert_std(_kernel_noise(original, 300).reshape(300, -1)[:, 0], 0.01 * math.sqrt(5))
    assert original.get_config()["f_units"] == "absolute"


def test_pni_activation_noise_std():
    layer = PNIDense(3, weight_noise=False, act_noise_a=True, seed=0, alpha_init=0.5,
                     kernel_initializer="identity", use_bias=False)
    x = np.random.default_rng(1).normal(size=(4000, 3)).astype(np.float32)
    out = np.asarray(layer(x)) - x                           # identity kernel: the input noise
    _assert_std(out, 0.5 * float(np.std(x)))


def test_one_weight_sample_per_batch_fresh_per_call():
    layer = PNIDense(5, seed=0)
    x = np.tile(np.random.default_rng(0).uniform(size=(1, 6)).astype(np.float32), (4, 1))
    a, b = np.asarray(layer(x)), np.asarray(layer(x))
    np.testing.assert_allclose(a, a[:1].repeat(4, axis=0), rtol=1e-6)  # shared within a batch
    assert not np.allclose(a, b)                                        # new sample per call


def test_noise_layers_are_differentiable_in_their_scales():
    layer = PNIConv2D(2, 3, seed=0)
    x = tf.random.uniform((2, 5, 5, 1), seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    assert np.abs(grads[-1]).sum() > 0                                  # alpha learns


# -- save / export under fixed seeds ----------------------------------------------

def _noisy_model():
    return keras.Sequential([keras.Input((6, 6, 1)), GaussianInputNoise(0.2, seed=5),
                             CPNIConv2D(3, 3, seed=6), PNIConv2D(2, 3, act_noise_b=True, seed=7),
                             keras.layers.Flatten(), PNIDense(4, seed=8)])


def test_saved_and_exported_noisy_model_draws_the_same_noise(tmp_path):
    x = np.random.default_rng(0).uniform(size=(3, 6, 6, 1)).astype(np.float32)
    model = _noisy_model()
    model.build((None, 6, 6, 1))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    model.export(os.path.join(tmp_path, "sm"), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec((None, 6, 6, 1), tf.float32)])
    loaded = keras.saving.load_model(path)
    served = tf.saved_model.load(os.path.join(tmp_path, "sm"))
    first = np.asarray(model(x))
    # Same weights, same seeds, same generator state: the same noise.
    np.testing.assert_allclose(np.asarray(loaded(x)), first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(served.serve(tf.constant(x))), first, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(model(x)), first)                 # and it moves on
    loaded.layers[0].set_sigma(0.0)                                     # knob on the loaded model
    assert float(loaded.layers[0].sigma.numpy()) == 0.0
    assert loaded.layers[0].get_config()["sigma"] == 0.0


# -- bad arguments -----------------------------------------------------------------

@pytest.mark.parametrize("make, arg", [
    (lambda: GaussianInputNoise(-0.1), "sigma"),
    (lambda: GaussianInputNoise(float("nan")), "sigma"),
    (lambda: PNIConv2D(2, 3, alpha_init=-0.25), "alpha_init"),
    (lambda: PNIDense(2, alpha_init=-1.0), "alpha_init"),
    (lambda: CPNIConv2D(2, 3, a_init=-0.1), "a_init"),
    (lambda: CPNIConv2D(2, 3, f_init=-0.1), "f_init"),
    (lambda: CPNIConv2D(2, 3, f_units="weights"), "f_units"),
    (lambda: CPNIConv2D(2, 3, noise_rank=0), "noise_rank"),
    (lambda: PNIConv2D(2, 3, weight_noise="yes"), "weight_noise"),
    (lambda: PNIConv2D(2, 3, data_format="channels_first"), "data_format"),
    (lambda: GaussianInputNoise(0.1, seed=-1), "seed"),
])
def test_bad_arguments(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


def test_set_sigma_rejects_negative():
    with pytest.raises(ValueError, match="sigma"):
        GaussianInputNoise(0.1).set_sigma(-1.0)


# -- builders -------------------------------------------------------------------------

def _types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_builders_noise_option():
    assert "PNIConv2D" not in _types(models.resnet_cifar(8, input_shape=(8, 8, 3)))   # default unchanged
    pni = models.resnet_cifar(8, input_shape=(8, 8, 3), noise="pni", noise_seed=0)
    assert "Conv2D" not in _types(pni) and _types(pni)[-1] == "PNIDense"
    cpni = models.cw_mnist_cnn((8, 8, 1), noise="cpni", noise_seed=0)
    assert _types(cpni).count("CPNIConv2D") == 4 and _types(cpni)[-1] == "PNIDense"
    with pytest.raises(ValueError, match="noise"):
        models.resnet_cifar(8, input_shape=(8, 8, 3), noise="gauss")


def test_first_conv_follows_weight_noise_flag():
    # The original builds the first conv without the flag (always noisy).
    model = models.resnet_cifar(8, input_shape=(8, 8, 3), noise="pni", weight_noise=False, act_noise_b=True)
    names = [w.name for w in model.get_layer("conv1").weights]
    assert "weight_noise_alpha" not in names and "output_noise_alpha" in names
