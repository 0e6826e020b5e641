"""Tests of the tensor-only optimisers and the tanh change of variables."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import optim

_TARGET = np.array([[3.0, -1.0], [0.5, 2.0]], np.float32)


def _quadratic_grad(z):
    return 2.0 * (z - _TARGET)


def _numpy_adam(z, steps, lr, b1=0.9, b2=0.999, eps=1e-8, folded=True):
    """Slow float64 reference of both bias-correction forms."""
    z = np.asarray(z, np.float64)
    m = np.zeros_like(z)
    v = np.zeros_like(z)
    for t in range(1, steps + 1):
        g = 2.0 * (z - _TARGET)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if folded:
            z = z - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        else:
            z = z - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return z


def _run(opt, steps, z0=None):
    z = tf.zeros([2, 2]) if z0 is None else z0
    state = opt.init(z)
    for _ in range(steps):
        z, state = opt.step(z, _quadratic_grad(z), state)
    return z.numpy()


def test_adam_matches_keras_adam():
    z_keras = keras.Variable(np.zeros((2, 2), np.float32))
    keras_adam = keras.optimizers.Adam(learning_rate=0.1, epsilon=1e-8)
    for _ in range(30):
        keras_adam.apply_gradients([(tf.convert_to_tensor(_quadratic_grad(z_keras.value)), z_keras)])
    ours = _run(optim.Adam(learning_rate=0.1), 30)
    np.testing.assert_allclose(ours, np.asarray(z_keras.value), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("folded", [True, False])
def test_adam_matches_numpy_reference(folded):
    ours = _run(optim.Adam(learning_rate=0.05, folded=folded), 50)
    np.testing.assert_allclose(ours, _numpy_adam(np.zeros((2, 2)), 50, 0.05, folded=folded),
                               rtol=1e-4, atol=1e-5)


def test_sgd_and_momentum_match_keras():
    for ours, theirs in (
        (optim.SGD(0.1), keras.optimizers.SGD(0.1)),
        (optim.Momentum(0.1, momentum=0.9), keras.optimizers.SGD(0.1, momentum=0.9)),
    ):
        z_keras = keras.Variable(np.zeros((2, 2), np.float32))
        for _ in range(20):
            theirs.apply_gradients([(tf.convert_to_tensor(_quadratic_grad(z_keras.value)), z_keras)])
        np.testing.assert_allclose(_run(ours, 20), np.asarray(z_keras.value), rtol=1e-5, atol=1e-6)


def test_mask_freezes_entries_and_their_state():
    adam = optim.Adam(learning_rate=0.1)
    z = tf.zeros([2, 2])
    state = adam.init(z)
    mask = tf.constant([[True], [False]])  # broadcast over the row
    for _ in range(5):
        z, state = adam.step(z, _quadratic_grad(z), state, mask=mask)
    np.testing.assert_array_equal(z.numpy()[1], [0.0, 0.0])
    np.testing.assert_array_equal(state[1].numpy()[1], [0.0, 0.0])  # m
    np.testing.assert_array_equal(state[2].numpy()[1], [0.0, 0.0])  # v
    # The free row moved exactly as without a mask.
    np.testing.assert_allclose(z.numpy()[0], _run(adam, 5)[0], rtol=1e-6)


def test_works_on_nests_inside_tf_function_and_while_loop():
    adam = optim.Adam(learning_rate=0.1)

    @tf.function
    def solve(params):
        def body(i, p, s):
            grads = {"a": _quadratic_grad(p["a"]), "b": 2.0 * (p["b"] + 1.0)}
            p, s = adam.step(p, grads, s)
            return i + 1, p, s

        _, params, _ = tf.while_loop(lambda i, p, s: i < 40, body,
                                     (tf.constant(0), params, adam.init(params)))
        return params

    out = solve({"a": tf.zeros([2, 2]), "b": tf.zeros([3])})
    np.testing.assert_allclose(out["a"].numpy(), _run(adam, 40), rtol=1e-5, atol=1e-6)
    assert out["b"].shape == (3,)
    assert np.all(out["b"].numpy() < 0)


def test_none_gradient_means_zero():
    sgd = optim.SGD(1.0)
    z, _ = sgd.step(tf.ones([2]), None, sgd.init(tf.ones([2])))
    np.testing.assert_array_equal(z.numpy(), [1.0, 1.0])


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_tanh_round_trip_stays_inside_the_box(bounds):
    lo, hi = bounds
    x = tf.constant(np.linspace(lo, hi, 11, dtype=np.float32)[None, :])
    w = optim.to_tanh_space(x, bounds)
    assert np.all(np.isfinite(w.numpy()))  # finite even on the faces
    back = optim.from_tanh_space(w, bounds).numpy()
    np.testing.assert_allclose(back, x.numpy(), atol=1e-5 * (hi - lo))
    far = optim.from_tanh_space(tf.constant([[-50.0, 50.0]]), bounds).numpy()
    assert far.min() >= lo and far.max() <= hi


def test_get_and_bad_arguments():
    assert isinstance(optim.get("adam"), optim.Adam)
    assert optim.get("sgd", learning_rate=0.5).learning_rate == 0.5
    adam = optim.Adam()
    assert optim.get(adam) is adam
    assert optim.Adam(folded=False).get_config()["folded"] is False
    for make, match in (
        (lambda: optim.get("rmsprop"), "optimizer"),
        (lambda: optim.Adam(learning_rate=0.0), "learning_rate"),
        (lambda: optim.Adam(beta_1=1.0), "beta_1"),
        (lambda: optim.Adam(folded="yes"), "folded"),
        (lambda: optim.Momentum(0.1, momentum=-0.1), "momentum"),
        (lambda: optim.to_tanh_space(tf.zeros([1]), (1.0, 0.0)), "bounds"),
    ):
        with pytest.raises(ValueError, match=match):
            make()
