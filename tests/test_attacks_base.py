"""Tests of the attack base classes: validation, labels, projection, minimization."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import base
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import is_adversarial


class _Linear:
    """A fixed linear classifier on flattened inputs (a plain callable model)."""

    def __init__(self, w, b=None):
        self.w = tf.constant(w, tf.float32)
        self.b = tf.zeros([w.shape[1]]) if b is None else tf.constant(b, tf.float32)

    def __call__(self, x):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        return flat @ self.w + self.b


class _Shift(Attack):
    """Adds a constant to x: leaves the threat on purpose, to test re-projection."""

    def __init__(self, shift, threat=None, bounds=(0.0, 1.0)):
        super().__init__(threat, bounds=bounds)
        self.shift = shift
        self.seen = None

    def _run(self, model, x, y, targeted):
        self.seen = (x, y, targeted)
        return x + self.shift


class _ToClass(MinimizationAttack):
    """'Succeeds' by returning a fixed point, claiming success where asked."""

    norm_p = 2

    def __init__(self, x_target, claim, threat=None):
        super().__init__(threat)
        self.x_target = tf.constant(x_target, tf.float32)
        self.claim = tf.constant(claim)

    def _minimize(self, model, x, y, targeted):
        return self.x_target, self.claim


@pytest.fixture
def setup(rng):
    w = rng.normal(size=(12, 3)).astype("float32")
    x = rng.uniform(size=(5, 2, 2, 3)).astype("float32")
    return _Linear(w), x


def test_y_defaults_to_model_prediction(setup):
    model, x = setup
    attack = _Shift(0.0)
    attack(model, x)
    _, y, targeted = attack.seen
    np.testing.assert_array_equal(y.numpy(), np.argmax(model(x).numpy(), axis=-1))
    assert y.dtype == tf.int32 and targeted is False


def test_output_is_reprojected_into_threat_and_box(setup):
    model, x = setup
    for p, eps in ((np.inf, 0.05), (2, 0.1), (1, 0.2)):
        ball = threats.LpBall(p, eps)
        x_adv = _Shift(0.3, ball)(model, x).numpy()
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert float(tf.reduce_max(ball.norm(x_adv - x))) <= eps * (1 + 1e-5)
    # Without a threat only the box applies.
    x_adv = _Shift(2.0)(model, x).numpy()
    np.testing.assert_array_equal(x_adv, np.ones_like(x))


def test_custom_bounds(setup):
    model, x = setup
    x = 2.0 * x - 1.0
    x_adv = _Shift(-5.0, bounds=(-1.0, 1.0))(model, x).numpy()
    np.testing.assert_array_equal(x_adv, -np.ones_like(x))


def test_probability_outputs_warn_once(setup):
    model, x = setup
    probs = lambda z: tf.nn.softmax(model(z))
    attack = _Shift(0.0)
    with pytest.warns(UserWarning, match="probabilities"):
        attack(probs, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attack(probs, x)  # second call: silent
        _Shift(0.0)(model, x)  # logits: silent


def test_is_adversarial():
    logits = tf.constant([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = tf.constant([0, 0])
    np.testing.assert_array_equal(is_adversarial(logits, y, False).numpy(), [False, True])
    np.testing.assert_array_equal(is_adversarial(logits, y, True).numpy(), [True, False])
    np.testing.assert_array_equal(is_adversarial(logits, y, tf.constant(True)).numpy(), [True, False])


def test_value_and_grad_matches_closed_form(setup, rng):
    model, x = setup
    v = tf.constant(rng.normal(size=x.shape).astype("float32"))
    loss, grad = Attack().value_and_grad(lambda z: tf.reduce_sum(v * z * z, axis=[1, 2, 3]), tf.constant(x))
    np.testing.assert_allclose(loss.numpy(), np.sum(v.numpy() * x * x, axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), 2 * v.numpy() * x, rtol=1e-5, atol=1e-6)
    # A loss that ignores x has a zero (not None) gradient.
    _, grad = Attack().value_and_grad(lambda z: tf.ones([tf.shape(z)[0]]), tf.constant(x))
    np.testing.assert_array_equal(grad.numpy(), np.zeros_like(x))


def test_resolve_loss():
    assert callable(base.resolve_loss("ce")) and callable(base.resolve_loss("DLR"))
    fn = lambda logits, y: logits[:, 0]
    assert base.resolve_loss(fn) is fn
    with pytest.raises(ValueError, match="Expected `loss`"):
        base.resolve_loss("hinge")


# ---------------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize(
    "make_x, make_y, kwargs, match",
    [
        (lambda x: np.where(x > 0.5, np.nan, x), None, {}, "finite"),
        (lambda x: np.where(x > 0.5, np.inf, x), None, {}, "finite"),
        (lambda x: x[:, 0, 0, 0], None, {}, "rank >= 2"),
        (lambda x: x + 1.5, None, {}, "inside bounds"),
        (lambda x: x - x.min() - 1e-3, None, {}, "inside bounds"),
        (lambda x: x[:0], None, {}, "non-empty batch"),
        (lambda x: (x * 255).astype("uint8"), None, {}, "floating dtype"),
        (lambda x: x, None, {"targeted": True}, "targeted=True"),
        (lambda x: x, lambda n: np.full(n, 3), {}, r"y` in \[0, 3\)"),
        (lambda x: x, lambda n: np.full(n, -1), {}, r"y` in \[0, 3\)"),
        (lambda x: x, lambda n: np.zeros(n, "float32"), {}, "integer dtype"),
        (lambda x: x, lambda n: np.zeros(n + 1, "int64"), {}, "shape \\[B\\]"),
        (lambda x: x, lambda n: np.zeros((n, 1), "int64"), {}, "shape \\[B\\]"),
    ],
)
def test_bad_inputs_raise(setup, make_x, make_y, kwargs, match):
    model, x = setup
    y = None if make_y is None else make_y(len(x))
    with pytest.raises(ValueError, match=match):
        _Shift(0.0)(model, make_x(x), y, **kwargs)


def test_bad_model_outputs_raise(setup):
    _, x = setup
    with pytest.raises(ValueError, match="logits of shape"):
        _Shift(0.0)(lambda z: tf.reshape(z, [-1]), x)
    with pytest.raises(ValueError, match="finite logits"):
        _Shift(0.0)(lambda z: tf.fill([tf.shape(z)[0], 3], np.nan), x)
    with pytest.raises(ValueError, match="callable"):
        _Shift(0.0)("model", x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="bounds"):
        _Shift(0.0, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="bounds"):
        _Shift(0.0, bounds=(0.0, np.inf))
    with pytest.raises(ValueError, match="bounds"):
        _Shift(0.0, bounds=0.5)
    with pytest.raises(ValueError, match="threat"):
        _Shift(0.0, threat="linf")
    with pytest.raises(ValueError, match="eps"):
        threats.LpBall(np.inf, -0.1)
    with pytest.raises(ValueError, match="`p` to be one of"):
        threats.LpBall(3, 0.1)


def test_subclass_with_wrong_output_shape_raises(setup):
    model, x = setup

    class Broken(Attack):
        def _run(self, model, x, y, targeted):
            return x[:, :1]

    with pytest.raises(ValueError, match="shape"):
        Broken()(model, x)


def test_call_inside_tf_function(setup):
    """An attack can run inside a caller's tf.function (adversarial training)."""
    model, x = setup
    attack = _Shift(0.5, threats.LpBall(np.inf, 0.1))

    @tf.function
    def step(x):
        return attack(model, x)

    out = step(tf.constant(x)).numpy()
    np.testing.assert_allclose(out, np.minimum(x + 0.1, 1.0), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bounds"):
        step(tf.constant(x + 2.0))


# ---------------------------------------------------------------------------
# Minimization attacks.


def test_minimize_reports_norm_and_masks_failures(setup):
    model, x = setup
    y = np.argmax(model(x).numpy(), axis=-1)
    # Target points: the clean input of another example with a different label.
    partner = np.array([np.flatnonzero(y != y[i])[0] if np.any(y != y[i]) else i for i in range(len(x))])
    x_target = x[partner]
    claim = np.array([True, True, False, True, True])
    result = _ToClass(x_target, claim).minimize(model, x)
    adversarial = (np.argmax(model(x_target).numpy(), -1) != y) & claim
    np.testing.assert_array_equal(result.success.numpy(), adversarial)
    expected = np.where(adversarial, np.sqrt(((x_target - x) ** 2).sum(axis=(1, 2, 3))), np.inf)
    np.testing.assert_allclose(result.norm.numpy(), expected, rtol=1e-5)
    mask = adversarial[:, None, None, None]
    np.testing.assert_array_equal(result.x_adv.numpy(), np.where(mask, x_target, x))


def test_minimization_call_applies_budget(setup):
    model, x = setup
    x_target = np.clip(x + 0.2, 0.0, 1.0)
    y = (np.argmax(model(x_target).numpy(), -1) + 1) % 3  # every example "succeeds"
    result = _ToClass(x_target, np.ones(5, bool)).minimize(model, x, y)
    norms = result.norm.numpy()
    eps = float(np.median(norms))
    out = _ToClass(x_target, np.ones(5, bool), threats.LpBall(2, eps))(model, x, y).numpy()
    within = norms <= eps
    np.testing.assert_allclose(out[within], x_target[within], atol=1e-6)
    np.testing.assert_array_equal(out[~within], x[~within])
    assert within.any() and not within.all()
