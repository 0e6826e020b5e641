"""Tests of RBFLayer and ReconstructionLayer against NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.layers.rbf import RBFLayer, ReconstructionLayer
from tfrobust.testing.layer_test import run_layer_test

K, C = 5, 2


def _templates(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(K, 3, 3, C)), rng.uniform(0.1, 1.0, size=K)


def _np_scores(x, means, var):
    b, h, w, _ = x.shape
    out = np.zeros((b, h - 2, w - 2, len(means)))
    for i in range(h - 2):
        for j in range(w - 2):
            z = x[:, i:i + 3, j:j + 3, :][:, None]
            out[:, i, j] = -np.sum((z - means[None]) ** 2, axis=(2, 3, 4)) / (2 * var) - 0.5 * np.log(var)
    return out


def _np_reconstruction(x, means, var, beta1, base=2.0):
    v = 1 / (1 + np.exp(-_np_scores(x, means, var)))
    wt = base ** (beta1 * v)
    wt /= wt.sum(-1, keepdims=True)
    num, cov = np.zeros(x.shape), np.zeros(x.shape[:3] + (1,))
    for i in range(x.shape[1] - 2):
        for j in range(x.shape[2] - 2):
            num[:, i:i + 3, j:j + 3] += np.tensordot(wt[:, i, j], means, axes=(1, 0))
            cov[:, i:i + 3, j:j + 3] += 1
    return np.clip(num / cov, 0, 1), cov


def test_scores_match_numpy_including_borders():
    means, var = _templates()
    x = np.random.default_rng(1).uniform(size=(3, 6, 7, C)).astype("float32")
    scores = RBFLayer.from_templates(means, var)(x).numpy()
    assert scores.shape == (3, 4, 5, K)
    np.testing.assert_allclose(scores, _np_scores(x, means, var), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("base, numeric_base", [("2", 2.0), ("e", np.e)])
def test_reconstruction_matches_numpy_and_averages_overlaps(base, numeric_base):
    means, var = _templates()
    x = np.random.default_rng(2).uniform(size=(2, 6, 7, C)).astype("float32")
    layer = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=5.0, base=base)
    expected, coverage = _np_reconstruction(x, means, var, 5.0, numeric_base)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)
    # Corners are covered once, edges 2-3 times, the interior 9 times.
    assert coverage[0, 0, 0, 0] == 1 and coverage[0, 0, 1, 0] == 2 and coverage[0, 3, 3, 0] == 9


@pytest.mark.parametrize("beta1", [25.0, 114.0, 125.0, 400.0])
def test_weights_match_numpy_on_both_sides_of_the_shifted_path(beta1):
    # Below scale 80 the weights skip the softmax's max-subtraction; above,
    # the full softmax. Both equal the reference, also where every template
    # scores low (v near 0: the shifted exponents are at their smallest).
    means, var = _templates()
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(size=(2, 5, 5, C)), np.full((1, 5, 5, C), 40.0)]).astype("float32")
    layer = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=beta1)
    v = 1 / (1 + np.exp(-_np_scores(x.astype(np.float64), means, var)))
    logits = beta1 * np.log(2.0) * v
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    got = layer.weights_map(x).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_constant_templates_reproduce_a_matching_image():
    # An image made of one template's constant value is rebuilt exactly when
    # beta1 makes that template dominate.
    means = np.stack([np.full((3, 3, 1), 0.2), np.full((3, 3, 1), 0.8)])
    layer = ReconstructionLayer(RBFLayer.from_templates(means, np.array([0.05, 0.05])), beta1=200.0)
    x = np.full((1, 5, 5, 1), 0.8, "float32")
    np.testing.assert_allclose(layer(x).numpy(), x, atol=1e-5)


def test_beta2_knob_noise_per_example_and_deterministic_at_zero():
    means, var = _templates()
    layer = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=25.0, seed=3)
    x = np.repeat(np.random.default_rng(4).uniform(size=(1, 6, 6, C)).astype("float32"), 4, axis=0)
    clean = layer(x).numpy()
    np.testing.assert_array_equal(clean, layer(x).numpy())
    layer.set_knobs(beta2=1.0)
    noisy = layer(x).numpy()
    assert not np.allclose(noisy[0], noisy[1])          # each example draws its own noise
    assert not np.allclose(noisy, layer(x).numpy())     # and each call
    np.testing.assert_allclose(layer(x, beta2=0.0).numpy(), clean)  # call-time override
    # A Python number as override inside tf.function (no cond on a Python bool).
    layer.set_knobs(beta2=0.0)
    compiled = tf.function(lambda t, b: layer(t, beta2=b))
    assert not np.allclose(compiled(x, 1.5).numpy(), clean)
    np.testing.assert_allclose(compiled(x, 0.0).numpy(), clean, rtol=1e-6)  # graph vs eager rounding
    with pytest.raises(ValueError, match="beta2"):
        layer(x, beta2=-1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_noise_placement_matches_numpy(channels):
    # Each example's noisy templates, weighted per position and summed over
    # the overlapping 3x3 patches (the beta2 > 0 path of the reconstruction).
    from tfrobust.layers.rbf import _place_patches

    rng = np.random.default_rng(channels)
    w = rng.uniform(size=(2, 4, 5, 3)).astype(np.float32)          # [B, H-2, W-2, K]
    noise = rng.normal(size=(2, 3, 3, 3, channels)).astype(np.float32)  # [B, K, 3, 3, C]
    expected = np.zeros((2, 6, 7, channels))
    for b in range(2):
        for i in range(4):
            for j in range(5):
                expected[b, i:i + 3, j:j + 3] += np.tensordot(w[b, i, j], noise[b], axes=1)
    np.testing.assert_allclose(_place_patches(tf.constant(w), tf.constant(noise)).numpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_layer_contract_rbf():
    run_layer_test(RBFLayer, {"num_templates": 4}, (2, 6, 6, 1), expected_output_shape=(2, 4, 4, 4),
                   expected_num_trainable_weights=0, expected_num_non_trainable_weights=2)
    run_layer_test(RBFLayer, {"num_templates": 3, "parameterization": "log_variance"}, (2, 5, 5, 3),
                   expected_output_shape=(2, 3, 3, 3), expected_num_trainable_weights=2)


def test_layer_contract_reconstruction_keeps_one_copy_of_the_templates():
    means, var = _templates()
    run_layer_test(ReconstructionLayer, {"rbf_layer": RBFLayer.from_templates(means, var), "beta1": 25.0},
                   (2, 6, 6, C), expected_output_shape=(2, 6, 6, C), expected_num_trainable_weights=0,
                   expected_num_non_trainable_weights=4, shared_weights_check=True)


def test_saved_model_keeps_knob_values(tmp_path):
    means, var = _templates()
    layer = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=10.0)
    inputs = keras.Input((6, 6, C))
    model = keras.Model(inputs, layer(inputs))
    layer.set_knobs(beta1=30.0)
    x = np.random.default_rng(5).uniform(size=(3, 6, 6, C)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert float(loaded.layers[-1].beta1.numpy()) == 30.0


@pytest.mark.parametrize("build, match", [
    (lambda: RBFLayer.from_templates(np.zeros((2, 3, 3, 1)), np.array([1.0, 0.0])), "variances"),
    (lambda: RBFLayer.from_templates(np.zeros((2, 3, 3, 1)), np.array([1.0, np.nan])), "NaN"),
    (lambda: RBFLayer.from_templates(np.zeros((2, 2, 2, 1)), np.ones(2)), "means"),
    (lambda: RBFLayer.from_templates(np.zeros((2, 3, 3, 1)), np.ones(3)), "variances"),
    (lambda: RBFLayer(0), "num_templates"),
    (lambda: ReconstructionLayer(RBFLayer(2), beta1=0.0), "beta1"),
    (lambda: ReconstructionLayer(RBFLayer(2), beta2=-1.0), "beta2"),
    (lambda: ReconstructionLayer(keras.layers.Dense(2)), "rbf_layer"),
])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_template_channels_must_match_inputs():
    layer = RBFLayer.from_templates(*_templates())
    with pytest.raises(ValueError, match="channels"):
        layer(np.zeros((1, 5, 5, 3), "float32"))


def test_samples_share_the_weights_and_draw_their_own_noise():
    # samples=m: m reconstructions per image, sample-major, equal to m calls
    # on copies at beta2 = 0 and each with its own noise at beta2 > 0.
    means, var = _templates()
    layer = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=25.0, seed=3)
    x = np.random.default_rng(5).uniform(size=(3, 6, 6, C)).astype("float32")
    clean = layer(x).numpy()
    np.testing.assert_allclose(layer(x, samples=4).numpy(), np.tile(clean, (4, 1, 1, 1)), rtol=1e-6)
    noisy = layer(x, beta2=1.0, samples=4).numpy().reshape(4, 3, 6, 6, C)
    assert not np.allclose(noisy[0], noisy[1])
    # The same draws as reconstructing the folded copies (same seed): only
    # the weights' computation is shared.
    a = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=25.0, seed=7)
    b = ReconstructionLayer(RBFLayer.from_templates(means, var), beta1=25.0, seed=7)
    np.testing.assert_allclose(a(x, beta2=1.0, samples=4).numpy(),
                               b(np.tile(x, (4, 1, 1, 1)), beta2=1.0).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="samples"):
        layer(x, samples=0)
