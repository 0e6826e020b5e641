"""Tests of the BPDA and EoT model wrappers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.models.wrappers import BPDA
from tfrobust.models.wrappers import EoT
from tfrobust.testing import accuracy
from tfrobust.testing import small_trained_mnist_model


def _quantize(x):
    return tf.round(x * 4.0) / 4.0


def _grad(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)
    return out, tape.gradient(out, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


# ---------------------------------------------------------------------------
# BPDA.


def test_bpda_forward_is_defense_and_gradient_is_surrogate(rng):
    x = rng.uniform(size=(4, 3, 3, 1)).astype("float32")
    v = rng.normal(size=x.shape).astype("float32")
    # Surrogate x^2: the backward pass of <v, bpda(x)> must be 2 v x.
    bpda = BPDA(_quantize, surrogate=lambda z: z * z)
    out, grad = _grad(lambda z: tf.reduce_sum(v * bpda(z)), x)
    np.testing.assert_allclose(out.numpy(), np.sum(v * _quantize(x).numpy()), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), 2 * v * x, rtol=1e-5, atol=1e-6)
    # Identity surrogate: the gradient passes straight through.
    _, grad = _grad(lambda z: tf.reduce_sum(v * BPDA(_quantize)(z)), x)
    np.testing.assert_allclose(grad.numpy(), v, rtol=1e-6)
    # Without BPDA the quantizer has no gradient at all.
    _, grad = _grad(lambda z: tf.reduce_sum(v * _quantize(z)), x)
    np.testing.assert_array_equal(grad.numpy(), np.zeros_like(x))


def test_bpda_in_tf_function_and_with_variables(rng):
    x = rng.uniform(size=(2, 4)).astype("float32")
    dense = keras.layers.Dense(4)  # a forward pass that owns variables
    bpda = BPDA(dense)

    @tf.function
    def grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = tf.reduce_sum(bpda(z))
        return tape.gradient(out, z)

    np.testing.assert_allclose(grad(tf.constant(x)).numpy(), np.ones_like(x))


def test_bpda_defeats_a_gradient_masking_quantizer():
    """PGD without BPDA is stuck (zero gradient); with BPDA it breaks the defense."""
    trained = small_trained_mnist_model()
    plain = lambda z: trained.model(_quantize(z))
    wrapped = lambda z: trained.model(BPDA(_quantize)(z))
    keep = np.argmax(plain(trained.x).numpy(), -1) == trained.y
    x, y = trained.x[keep][:32], trained.y[keep][:32]
    attack = PGD(threats.LpBall(np.inf, 0.25), steps=10, random_start=False)
    acc_masked = accuracy(plain, attack(plain, x, y), y)
    acc_bpda = accuracy(plain, attack(wrapped, x, y), y)
    assert acc_masked == 1.0  # no gradient: PGD never leaves x
    assert acc_bpda <= 0.5 * acc_masked


def test_bpda_config_round_trip():
    layer = BPDA(keras.layers.Rescaling(0.5), surrogate=keras.layers.Rescaling(0.25), name="b")
    clone = BPDA.from_config(layer.get_config())
    x = tf.ones([2, 3])
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy())
    _, grad = _grad(lambda z: tf.reduce_sum(clone(z)), np.ones((2, 3), np.float32))
    np.testing.assert_allclose(grad.numpy(), 0.25)


def test_bpda_surrogate_sees_the_forward_output(rng):
    x = rng.uniform(size=(3, 4)).astype("float32")
    v = rng.normal(size=x.shape).astype("float32")
    seen = []

    def surrogate(z, y):
        seen.append(y)
        return y * z  # gradient y (a constant: the forward's output)

    bpda = BPDA(_quantize, surrogate=surrogate, surrogate_takes_output=True)
    out, grad = _grad(lambda z: tf.reduce_sum(v * bpda(z)), x)
    np.testing.assert_allclose(out.numpy(), np.sum(v * _quantize(x).numpy()), rtol=1e-5)
    np.testing.assert_allclose(seen[-1].numpy(), _quantize(x).numpy())
    np.testing.assert_allclose(grad.numpy(), v * _quantize(x).numpy(), rtol=1e-5, atol=1e-7)


def test_bpda_forward_with_aux(rng):
    # The forward returns (y, aux), e.g. (G(z*), z*); the layer outputs y and
    # the surrogate gets aux: here aux = 3 x, surrogate aux * x, gradient 3 x v.
    x = rng.uniform(size=(3, 4)).astype("float32")
    v = rng.normal(size=x.shape).astype("float32")
    bpda = BPDA(lambda z: (_quantize(z), {"scale": 3.0 * z}),
                surrogate=lambda z, y, aux: aux["scale"] * z, forward_has_aux=True)

    @tf.function
    def run(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = tf.reduce_sum(v * bpda(z))
        return out, tape.gradient(out, z)

    out, grad = run(tf.constant(x))
    np.testing.assert_allclose(out.numpy(), np.sum(v * _quantize(x).numpy()), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), 3.0 * x * v, rtol=1e-5, atol=1e-6)
    # The identity surrogate still works with an aux forward.
    _, grad = _grad(lambda z: tf.reduce_sum(v * BPDA(lambda t: (_quantize(t), ()), forward_has_aux=True)(z)), x)
    np.testing.assert_allclose(grad.numpy(), v, rtol=1e-6)


def test_bpda_flags_round_trip():
    layer = BPDA(keras.layers.Rescaling(0.5), surrogate_takes_output=True)
    config = layer.get_config()
    assert config["surrogate_takes_output"] is True and config["forward_has_aux"] is False
    assert BPDA.from_config(config).surrogate_takes_output is True


# ---------------------------------------------------------------------------
# EoT.


class _Noisy:
    """logits = flatten(x) @ W + sigma * N(0, I): a randomized model."""

    def __init__(self, w, sigma=1.0):
        self.w = tf.constant(w)
        self.sigma = sigma

    def __call__(self, x):
        logits = tf.reshape(x, [tf.shape(x)[0], -1]) @ self.w
        return logits + self.sigma * tf.random.normal(tf.shape(logits))


def _draw_index_model(batch):
    """Deterministic: row r of the tiled batch gets logits [x_sum + r // batch, 0]."""

    def model(z):
        rows = tf.range(tf.shape(z)[0])
        draw = tf.cast(rows // batch, tf.float32)
        total = tf.reduce_sum(tf.reshape(z, [tf.shape(z)[0], -1]), axis=1)
        return tf.stack([total + draw, tf.zeros_like(total)], axis=1)

    return model


def test_eot_averages_draws_in_order(rng):
    x = rng.uniform(size=(3, 2, 2, 1)).astype("float32")
    n = 5
    out = EoT(_draw_index_model(3), n=n)(x).numpy()
    # Tiling is draw-major and examples never mix: mean of draws 0..n-1.
    np.testing.assert_allclose(out[:, 0], x.sum(axis=(1, 2, 3)) + (n - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], 0.0)


def test_eot_probs_average(rng):
    x = rng.uniform(size=(3, 4)).astype("float32")
    n = 4
    out = EoT(_draw_index_model(3), n=n, average="probs")(x).numpy()
    logits = np.stack(
        [np.stack([x.sum(1) + d, np.zeros(3)], axis=1) for d in range(n)]
    ).astype(np.float64)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.log(probs.mean(0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-5)


def test_eot_chunking_matches_single_call(rng):
    w = rng.normal(size=(4, 3)).astype("float32")
    deterministic = lambda z: z @ w
    x = rng.uniform(size=(6, 4)).astype("float32")
    for average in ("logits", "probs"):
        whole = EoT(deterministic, n=7, average=average, max_batch=None)(x).numpy()
        chunked = EoT(deterministic, n=7, average=average, max_batch=13)(x).numpy()
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
        expected = x @ w if average == "logits" else x @ w - np.log(np.exp(x @ w).sum(-1, keepdims=True))
        np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-5)


def test_eot_variance_decreases_as_one_over_n(rng):
    w = rng.normal(size=(4, 2)).astype("float32")
    model = _Noisy(w, sigma=1.0)
    m = 4000  # identical inputs: the spread across rows is the noise of EoT
    x = np.tile(rng.uniform(size=(1, 4)).astype("float32"), (m, 1))
    clean = x[0] @ w
    samples = 2 * m  # two logits per row, independent
    # Relative s.d. of a variance estimate is sqrt(2 / samples); allow 6 of them.
    rtol = 6 * np.sqrt(2 / samples)
    for n in (1, 4, 16):
        out = EoT(model, n=n)(x).numpy()  # n = 16 goes through the chunked path
        np.testing.assert_allclose(out.var(axis=0).mean(), 1.0 / n, rtol=rtol)
        np.testing.assert_allclose(out.mean(axis=0), clean, atol=6 / np.sqrt(n * m))


def test_eot_gradient_is_mean_gradient(rng):
    w = rng.normal(size=(4, 2)).astype("float32")
    x = rng.uniform(size=(3, 4)).astype("float32")
    _, grad = _grad(lambda z: tf.reduce_sum(EoT(_Noisy(w), n=8)(z)[:, 0]), x)
    np.testing.assert_allclose(grad.numpy(), np.tile(w[:, 0], (3, 1)), rtol=1e-5)


def test_eot_in_keras_model_saves_and_loads(tmp_path, rng):
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model = keras.Sequential([keras.Input((4,)), EoT(inner, n=3, average="probs")])
    x = rng.uniform(size=(5, 4)).astype("float32")
    path = str(tmp_path / "eot.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], EoT) and loaded.layers[0].n == 3
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


class _Declares:
    """A callable model that declares the engine's flags."""

    randomized = True
    optimizes_at_inference = True

    def __call__(self, x):
        return tf.reshape(x, [tf.shape(x)[0], -1])


def test_eot_declares_uses_eot_and_passes_flags_through():
    eot = EoT(_Declares(), n=2)
    assert EoT.uses_eot is True and eot.uses_eot is True
    assert eot.randomized is True and eot.optimizes_at_inference is True
    plain = EoT(lambda z: z, n=2)  # undeclared flags read as False
    assert plain.randomized is False and plain.optimizes_at_inference is False
    # An EoT of an EoT is still random when the inner model is.
    assert EoT(eot, n=2).randomized is True
    bad = _Declares()
    bad.randomized = "yes"
    with pytest.raises(ValueError, match="randomized"):
        EoT(bad, n=2).randomized


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: EoT("model"), "model"),
        (lambda: EoT(lambda z: z, n=0), "`n`"),
        (lambda: EoT(lambda z: z, n=2.0), "`n`"),
        (lambda: EoT(lambda z: z, average="median"), "average"),
        (lambda: EoT(lambda z: z, max_batch=0), "max_batch"),
        (lambda: BPDA(None), "forward"),
        (lambda: BPDA(_quantize, surrogate=3.0), "surrogate"),
        (lambda: BPDA(_quantize, surrogate_takes_output="yes"), "surrogate_takes_output"),
        (lambda: BPDA(_quantize, forward_has_aux=1), "forward_has_aux"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
