"""Tests of the certified lower bounds (Theorem 2.1, one hidden layer)."""

import gzip
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import bounds
from tfrobust import models
from tfrobust.attacks.boxed_linear import BoxedLinearL2

N_SAMPLES = 200  # random points per example in each validity check


def _train(model, x, y, epochs, seed=0):
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int64")
    return x[:1500], y[:1500], x[1500:1540], y[1500:1540]


@pytest.fixture(scope="module")
def trained(digits):
    x_train, y_train, _, _ = digits
    keras.utils.set_random_seed(0)
    model = models.mlp1layer((8, 8, 1), 10, hidden_units=32)
    return _train(model, x_train, y_train, epochs=4)


@pytest.fixture(scope="module")
def random_mlp():
    keras.utils.set_random_seed(1)
    model = models.mlp1layer((8, 8, 1), 10, hidden_units=32)
    rng = np.random.default_rng(1)
    # Scaled-up weights: a clearly nonlinear net where the bound is not trivial.
    model.get_layer("hidden").kernel.assign(rng.normal(size=(64, 32)) * 0.6)
    model.get_layer("logits").kernel.assign(rng.normal(size=(32, 10)))
    return model


def _margin_grads(model, x):
    """Predicted class, margins f_c - f_j and their input gradients [B, K, d]."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x)
    jac = tape.batch_jacobian(logits, x).numpy().reshape(len(x), logits.shape[1], -1)
    logits = logits.numpy()
    pred = logits.argmax(-1)
    idx = np.arange(len(x))
    margins = logits[idx, pred][:, None] - logits
    grads = jac[idx, pred][:, None, :] - jac
    return pred, margins, grads


def _check_certificate(model, x, radius, p, extra_dirs=None, seed=0):
    """No sampled point within `radius` (in the p-norm) changes the class."""
    rng = np.random.default_rng(seed)
    b = len(x)
    d = int(np.prod(x.shape[1:]))
    pred, _, grads = _margin_grads(model, x)
    dirs = []
    if p == 2:
        g = rng.normal(size=(b, N_SAMPLES, d))
        g /= np.linalg.norm(g, axis=-1, keepdims=True)
        dirs.append(g)  # on the sphere
        dirs.append(g * rng.uniform(size=(b, N_SAMPLES, 1)) ** (1.0 / d))  # inside
        unit = grads / np.maximum(np.linalg.norm(grads, axis=-1, keepdims=True), 1e-30)
        dirs += [unit, -unit]  # along ±∇(f_c - f_j), the steepest directions
    else:
        dirs.append(rng.choice([-1.0, 1.0], size=(b, N_SAMPLES, d)))  # corners
        dirs += [np.sign(grads), -np.sign(grads)]  # worst linear corners
    if extra_dirs is not None:
        dirs.append(extra_dirs[:, None, :])
    dirs = np.concatenate(dirs, axis=1)
    points = x.reshape(b, 1, d) + radius.reshape(b, 1, 1) * dirs
    logits = model(points.reshape((-1,) + x.shape[1:]).astype("float32")).numpy()
    new_pred = logits.argmax(-1).reshape(b, -1)
    assert np.all(new_pred == pred[:, None])


@pytest.fixture(scope="module")
def attack():
    return BoxedLinearL2(mult=1.2)


@pytest.mark.parametrize("which", ["trained", "random_mlp"])
def test_lower_below_upper_and_certificate_holds(which, request, digits, attack):
    model = request.getfixturevalue(which)
    x = digits[2]
    r2 = bounds.mlp1layer_lower_bound(model, x, p=2).numpy()
    r_inf = bounds.mlp1layer_lower_bound(model, x, p=np.inf).numpy()
    assert r2.dtype == np.float32 and r2.shape == (len(x),)
    assert np.all(r2 >= 0) and np.all(r_inf >= 0)
    assert np.mean(r2 > 0) > 0.5  # the test is not vacuous
    # Upper bound: the attack's adversarial examples provably flip the class.
    result = attack.minimize(model, x)
    found = result.success.numpy()
    assert found.mean() > 0.5
    delta = (result.x_adv.numpy() - x).reshape(len(x), -1)
    assert np.all(r2[found] <= result.norm.numpy()[found])
    assert np.all(r_inf[found] <= np.abs(delta[found]).max(-1))
    # At most the linearized distance min_j margin_j / ‖∇ margin_j‖ at x.
    _, margins, grads = _margin_grads(model, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        lin2 = np.where(margins > 0, margins / np.linalg.norm(grads, axis=-1), np.inf).min(-1)
        lin_inf = np.where(margins > 0, margins / np.abs(grads).sum(-1), np.inf).min(-1)
    assert np.all(r2 <= lin2 * (1 + 1e-5))
    assert np.all(r_inf <= lin_inf * (1 + 1e-5))
    # Brute force: nothing within the radius changes the class, including the
    # direction of the adversarial example the attack found.
    unit_adv = delta / np.maximum(np.linalg.norm(delta, axis=-1, keepdims=True), 1e-30)
    _check_certificate(model, x, r2, 2, extra_dirs=unit_adv)
    _check_certificate(model, x, r_inf, np.inf, extra_dirs=np.sign(delta))


def test_output_scaling_invariance_and_flatter_net_stays_valid(digits, random_mlp):
    x = digits[2][:16]
    model = keras.models.clone_model(random_mlp)
    model.set_weights(random_mlp.get_weights())
    r = bounds.mlp1layer_lower_bound(model, x).numpy()
    # Scaling W scales margins and gradient differences alike: same radius.
    model.get_layer("logits").kernel.assign(0.3 * model.get_layer("logits").kernel)
    np.testing.assert_allclose(bounds.mlp1layer_lower_bound(model, x).numpy(), r, rtol=1e-5)
    # A flatter hidden layer changes the radius but the certificate holds.
    model.get_layer("hidden").kernel.assign(0.5 * model.get_layer("hidden").kernel)
    r_flat = bounds.mlp1layer_lower_bound(model, x).numpy()
    assert np.mean(r_flat > 0) > 0.5
    _check_certificate(model, x, r_flat, 2, seed=1)
    r_flat_inf = bounds.mlp1layer_lower_bound(model, x, p="linf").numpy()
    _check_certificate(model, x, r_flat_inf, np.inf, seed=2)


def test_misclassified_points_get_zero(digits, trained):
    x = digits[2][:10]
    pred = np.argmax(trained(x).numpy(), -1)
    y = pred.copy()
    y[::2] = (pred[::2] + 1) % 10
    r = bounds.mlp1layer_lower_bound(trained, x, y=y).numpy()
    r_pred = bounds.mlp1layer_lower_bound(trained, x).numpy()
    np.testing.assert_array_equal(r[::2], 0.0)
    np.testing.assert_array_equal(r[1::2], r_pred[1::2])


def test_tied_logits_give_zero():
    model = models.mlp1layer((2, 2, 1), 3, hidden_units=4)
    w = model.get_layer("logits").kernel
    w.assign(tf.concat([w[:, :1], w[:, :1], w[:, 2:] - 10.0], axis=1))  # f_0 == f_1
    x = np.random.default_rng(0).uniform(size=(3, 2, 2, 1)).astype("float32")
    np.testing.assert_array_equal(bounds.mlp1layer_lower_bound(model, x).numpy(), 0.0)


def test_unsupported_models_are_refused(digits, trained):
    x = digits[2][:4]
    conv = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                             keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="one-hidden-layer"):
        bounds.mlp1layer_lower_bound(conv, x)
    biased = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(5, use_bias=False),
                               keras.layers.Activation("relu"),
                               keras.layers.Dense(10, use_bias=False)])
    with pytest.raises(ValueError, match="one-hidden-layer"):
        bounds.mlp1layer_lower_bound(biased, x)
    # The one entry point is named after the one model it certifies.
    assert bounds.__all__ == ["mlp1layer_lower_bound"]


def test_inputs_outside_the_box_are_refused(digits, trained):
    # Issue 9 item 4: pixels in [0, 255] were certified without a word.
    x = digits[2][:4]
    with pytest.raises(ValueError, match=r"inside bounds=\(0, 1\)"):
        bounds.mlp1layer_lower_bound(trained, x * 255.0)
    with pytest.raises(ValueError, match="bounds"):
        bounds.mlp1layer_lower_bound(trained, x - 0.5)
    # Another declared domain, or no domain at all, is accepted.
    shifted = bounds.mlp1layer_lower_bound(trained, x - 0.5, bounds=(-0.5, 0.5)).numpy()
    free = bounds.mlp1layer_lower_bound(trained, x - 0.5, bounds=None).numpy()
    np.testing.assert_array_equal(shifted, free)
    with pytest.raises(ValueError, match="bounds"):
        bounds.mlp1layer_lower_bound(trained, x, bounds=(1.0, 0.0))


def test_bad_inputs(digits, trained):
    x = digits[2][:4]
    for p in (1, 3, "l1", None, True):
        with pytest.raises(ValueError, match="`p`"):
            bounds.mlp1layer_lower_bound(trained, x, p=p)
    for steps in (0, -1, 2.5):
        with pytest.raises(ValueError, match="bisection_steps"):
            bounds.mlp1layer_lower_bound(trained, x, bisection_steps=steps)
    with pytest.raises(ValueError, match="64 values"):
        bounds.mlp1layer_lower_bound(trained, np.zeros((2, 7, 7, 1), "float32"))
    with pytest.raises(ValueError, match="non-empty"):
        bounds.mlp1layer_lower_bound(trained, x[:0])
    with pytest.raises(ValueError, match="finite"):
        bounds.mlp1layer_lower_bound(trained, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="floating"):
        bounds.mlp1layer_lower_bound(trained, x.astype("int32"))
    with pytest.raises(ValueError, match="`y`"):
        bounds.mlp1layer_lower_bound(trained, x, y=np.zeros(3, "int64"))
    with pytest.raises(ValueError, match="`y`"):
        bounds.mlp1layer_lower_bound(trained, x, y=np.full(4, 10))


def _read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def test_mnist_trained_net(data_dir, attack):
    root = os.path.join(data_dir, "mnist")
    x = _read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"), 16)
    y = _read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"), 8).astype("int64")
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    x_train, y_train, x_test = x[:2000], y[:2000], x[-20:]
    keras.utils.set_random_seed(0)
    model = _train(models.mlp1layer((28, 28, 1), 10, hidden_units=64), x_train, y_train, 2)
    r2 = bounds.mlp1layer_lower_bound(model, x_test, p=2).numpy()
    r_inf = bounds.mlp1layer_lower_bound(model, x_test, p=np.inf).numpy()
    assert np.mean(r2 > 0) > 0.5
    result = attack.minimize(model, x_test)
    found = result.success.numpy()
    delta = (result.x_adv.numpy() - x_test).reshape(len(x_test), -1)
    assert found.mean() > 0.5
    assert np.all(r2[found] <= result.norm.numpy()[found])
    assert np.all(r_inf[found] <= np.abs(delta[found]).max(-1))
    _check_certificate(model, x_test, r2, 2)
    _check_certificate(model, x_test, r_inf, np.inf)


def test_float32_rounding_allowance_is_sound_and_small(digits, trained, attack):
    from tfrobust.bounds.cross_lipschitz import float32_logit_error

    x = digits[2]
    r32 = bounds.mlp1layer_lower_bound(trained, x).numpy()
    r64 = bounds.mlp1layer_lower_bound(trained, x, unit_roundoff=None).numpy()
    certified = r64 > 0
    assert certified.mean() > 0.5
    # The allowance only ever shrinks the radius, and only by a little.
    assert np.all(r32 <= r64)
    shrink = (r64 - r32)[certified] / r64[certified]
    assert np.all(shrink > 0) and np.max(shrink) < 1e-2
    # A coarser arithmetic (TF32's 2^-11) needs a visibly larger allowance.
    r_tf32 = bounds.mlp1layer_lower_bound(trained, x, unit_roundoff=2.0**-11).numpy()
    assert np.all(r_tf32 <= r32) and np.median((r64 - r_tf32)[certified]) > 10 * np.median(
        (r64 - r32)[certified])
    # lower <= upper still holds with the allowance.
    result = attack.minimize(trained, x)
    found = result.success.numpy()
    assert np.all(r32[found] <= result.norm.numpy()[found])
    # ε bounds the float32 model's actual logit error on points of the ball.
    eps = float32_logit_error(trained, x, r64).numpy()
    rng = np.random.default_rng(3)
    d = int(np.prod(x.shape[1:]))
    g = rng.normal(size=(len(x), 20, d))
    g *= (r64[:, None, None] / np.linalg.norm(g, axis=-1, keepdims=True))
    points = (x.reshape(len(x), 1, d) + g).reshape(-1, d)
    u = trained.get_layer("hidden").kernel.numpy().astype(np.float64)
    w = trained.get_layer("logits").kernel.numpy().astype(np.float64)
    exact = np.logaddexp(0.0, 10.0 * points.astype(np.float64) @ u) / 10.0 @ w
    f32 = trained(points.reshape((-1,) + x.shape[1:]).astype("float32")).numpy()
    err = np.abs(f32 - exact).reshape(len(x), 20, -1).max(axis=1)
    assert np.all(err <= eps) and np.all(eps < 1e-3)
    with pytest.raises(ValueError, match="unit_roundoff"):
        bounds.mlp1layer_lower_bound(trained, x, unit_roundoff=-1.0)
    with pytest.raises(ValueError, match="radius"):
        float32_logit_error(trained, x, -1.0)
