"""Tests of the minimization attacks: Carlini-Wagner L2, EAD and DeepFool."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
from tfrobust.attacks.deepfool import DeepFool
from tfrobust.attacks.ead import EAD
from tfrobust.attacks.ead import shrink
from tfrobust.testing import run_attack_test
from tfrobust.testing import small_trained_mnist_model

# ----------------------------------------------------------------------
# Closed form: a linear two-class classifier z = x W + b.
#
# With w = w_1 - w_0 and f(x) = w.x + b_1 - b_0 < 0 (class 0 predicted), the
# smallest perturbation that makes class 1 win is |f| / ||w||_q for the norm
# p with dual q: L2 -> |f| / ||w||_2, L∞ -> |f| / ||w||_1, L1 -> |f| /
# ||w||_∞ (Hölder's inequality is tight for delta along w, along sign(w),
# and on the single largest |w_i|). The points are built well inside the box
# so that none of these perturbations touches a face.

_SIDE = 4  # Inputs are 4x4x1 images (16 features).


class LinearModel:
    """Two-class linear classifier on flattened NHWC inputs."""

    def __init__(self, w, b):
        dim = w.shape[0]
        self.kernel = tf.constant(np.stack([np.zeros(dim), w], axis=1), tf.float32)
        self.bias = tf.constant([0.0, b], tf.float32)

    def __call__(self, x):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), self.kernel) + self.bias


def _linear_problem(w, l2_distances, seed=0):
    """Points at the given L2 distances on the class-0 side of w.x + b = 0."""
    rng = np.random.default_rng(seed)
    b = -0.5 * w.sum()  # The boundary passes through the center of the box.
    u = rng.uniform(0.45, 0.55, size=(len(l2_distances), w.size))
    offset = (u @ w + b + np.asarray(l2_distances) * np.linalg.norm(w)) / (w @ w)
    x = u - offset[:, None] * w[None]
    f = x @ w + b
    x = x.reshape(-1, _SIDE, _SIDE, 1).astype(np.float32)
    return LinearModel(w, b), x, np.abs(f)


@pytest.fixture(scope="module")
def dense_linear():
    """A generic w: the minimal L2 and L∞ perturbations are dense."""
    w = np.random.default_rng(1).normal(size=_SIDE * _SIDE)
    model, x, abs_f = _linear_problem(w, [0.1, 0.15, 0.2, 0.25])
    assert 0.2 < x.min() and x.max() < 0.8
    return model, x, abs_f, w


@pytest.fixture(scope="module")
def sparse_linear():
    """One dominant weight: the minimal L1 perturbation moves one pixel.

    Its L1 norm is less than half that of the minimal L2 perturbation, so an
    attack that does not seek sparsity fails the L1 bound below.
    """
    rng = np.random.default_rng(2)
    w = 0.3 * rng.choice([-1.0, 1.0], size=_SIDE * _SIDE)
    w[5] = 1.0
    model, x, abs_f = _linear_problem(w, [0.05, 0.08, 0.1])
    l1_min = abs_f / np.abs(w).max()
    l1_of_l2_min = abs_f * np.abs(w).sum() / (w @ w)
    assert np.all(l1_of_l2_min > 2.0 * l1_min)
    assert np.all(x[:, 1, 1, 0] + l1_min < 0.9)  # Pixel 5 stays off the face.
    return model, x, abs_f, w


def _measured(result, x, p):
    delta = (np.asarray(result.x_adv) - x).reshape(len(x), -1)
    return np.linalg.norm(delta, ord=p, axis=1)


@pytest.mark.parametrize("p", [2, np.inf])
def test_deepfool_linear_closed_form(dense_linear, p):
    model, x, abs_f, w = dense_linear
    exact = abs_f / np.linalg.norm(w, ord={2: 2, np.inf: 1}[p])
    result = DeepFool(p=p, overshoot=0.0).minimize(model, x)
    assert np.all(np.asarray(result.success))
    np.testing.assert_allclose(result.norm, exact, rtol=1e-2)
    np.testing.assert_allclose(_measured(result, x, p), result.norm, rtol=1e-5)
    # One exact linear step of length dist + 1e-4, scaled by 1 + overshoot.
    overshot = DeepFool(p=p).minimize(model, x)
    np.testing.assert_allclose(overshot.norm, 1.02 * (exact + 1e-4), rtol=1e-3)


def test_carlini_wagner_linear_closed_form(dense_linear):
    model, x, abs_f, w = dense_linear
    exact = abs_f / np.linalg.norm(w)
    result = CarliniWagnerL2(steps=300).minimize(model, x)
    assert np.all(np.asarray(result.success))
    np.testing.assert_allclose(result.norm, exact, rtol=1e-2)
    assert np.all(np.asarray(result.norm) >= exact * (1 - 1e-4))


def test_carlini_wagner_confidence_closed_form(dense_linear):
    # With confidence kappa the goal is z_1 - z_0 > kappa: the boundary moves
    # to w.x + b = kappa, at L2 distance (|f| + kappa) / ||w||_2.
    model, x, abs_f, w = dense_linear
    kappa = 0.5
    exact = (abs_f + kappa) / np.linalg.norm(w)
    result = CarliniWagnerL2(steps=300, confidence=kappa).minimize(model, x)
    np.testing.assert_allclose(result.norm, exact, rtol=1e-2)
    logits = np.asarray(model(result.x_adv))
    assert np.all(logits[:, 1] - logits[:, 0] >= kappa * (1 - 1e-3))


def test_ead_l1_rule_finds_sparse_minimum(sparse_linear):
    model, x, abs_f, w = sparse_linear
    l1_min = abs_f / np.abs(w).max()
    result = EAD(decision_rule="L1", steps=300).minimize(model, x)
    assert np.all(np.asarray(result.success))
    assert np.all(np.asarray(result.norm) <= 1.05 * l1_min), (result.norm, l1_min)
    assert np.all(np.asarray(result.norm) >= l1_min * (1 - 1e-4))
    np.testing.assert_allclose(_measured(result, x, 1), result.norm, rtol=1e-5)


def test_ead_without_l1_weight_is_an_l2_attack(dense_linear):
    # beta = 0 leaves ||delta||_2^2 + c f: EAD then finds the L2 minimum too.
    model, x, abs_f, w = dense_linear
    result = EAD(beta=0.0, steps=500).minimize(model, x)
    assert np.all(np.asarray(result.success))
    np.testing.assert_allclose(_measured(result, x, 2), abs_f / np.linalg.norm(w), rtol=1e-2)


def test_shrink_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 50)).astype(np.float32)
    z = x + rng.normal(scale=0.3, size=x.shape).astype(np.float32)
    beta = 0.1
    diff = z - x
    expected = np.where(diff > beta, np.minimum(z - beta, 1.0),
                        np.where(diff < -beta, np.maximum(z + beta, 0.0), x))
    np.testing.assert_allclose(shrink(tf.constant(z), tf.constant(x), beta, 0.0, 1.0),
                               expected, atol=1e-6)


# ----------------------------------------------------------------------
# A small trained MNIST model (real data).

_CW = dict(steps=300, binary_search_steps=6, initial_const=1e-1, learning_rate=1e-1)
_EAD = dict(steps=100, binary_search_steps=5, initial_const=1e-1)
_NUM = 32


@pytest.fixture(scope="module")
def mnist(data_dir):
    trained = small_trained_mnist_model(data_dir)
    return trained.model, trained.x[:_NUM], trained.y[:_NUM]


_NAMES = ["cw", "ead", "deepfool_l2", "deepfool_linf"]


@pytest.fixture(scope="module")
def attacks():
    # Shared instances: each keeps its compiled loop across tests.
    return {
        "cw": CarliniWagnerL2(**_CW),
        "ead": EAD(**_EAD),
        "deepfool_l2": DeepFool(),
        "deepfool_linf": DeepFool(p=np.inf),
    }


@pytest.fixture(scope="module")
def mnist_results(mnist, attacks):
    model, x, y = mnist
    return {name: attack.minimize(model, x, y) for name, attack in attacks.items()}


@pytest.mark.parametrize("name", _NAMES)
def test_mnist_untargeted_result_is_consistent(mnist, attacks, mnist_results, name):
    model, x, y = mnist
    result = mnist_results[name]
    p = attacks[name].norm_p
    success = np.asarray(result.success)
    x_adv = np.asarray(result.x_adv)
    norm = np.asarray(result.norm)
    assert success.mean() >= 0.95
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    pred = np.argmax(np.asarray(model(x_adv)), axis=-1)
    np.testing.assert_array_equal(pred != y, success)
    np.testing.assert_allclose(norm[success], _measured(result, x, p)[success], rtol=1e-5)
    assert np.all(norm[success] > 0.0)
    assert np.all(np.isinf(norm[~success]))
    np.testing.assert_array_equal(x_adv[~success], x[~success])


def test_carlini_wagner_early_abort_is_per_example(mnist, attacks, mnist_results):
    # The abort test uses each example's own loss and best distance (not the
    # batch's summed loss as the reference), so an example's result does not
    # depend on the rest of its batch, nor on the replica it runs on.
    model, x, y = mnist
    half = attacks["cw"].minimize(model, x[:16], y[:16])
    np.testing.assert_allclose(np.asarray(half.norm), np.asarray(mnist_results["cw"].norm)[:16],
                               rtol=1e-5)


def test_carlini_wagner_not_weaker_than_deepfool(mnist_results):
    cw = np.median(np.asarray(mnist_results["cw"].norm))
    deepfool = np.median(np.asarray(mnist_results["deepfool_l2"].norm))
    assert cw <= 1.1 * deepfool, (cw, deepfool)


@pytest.mark.parametrize("name", _NAMES)
def test_mnist_targeted_reaches_target(mnist, attacks, name):
    model, x, y = mnist
    attack = attacks[name]
    x, y = x[:16], y[:16]
    y_target = (y + 3) % 10
    result = attack.minimize(model, x, y_target, targeted=True)
    success = np.asarray(result.success)
    pred = np.argmax(np.asarray(model(result.x_adv)), axis=-1)
    assert success.mean() >= 0.9
    np.testing.assert_array_equal(pred[success], y_target[success])


def test_budget_reverts_examples_beyond_eps(mnist, mnist_results):
    model, x, y = mnist
    result = mnist_results["deepfool_l2"]
    norm = np.asarray(result.norm)
    eps = float(np.median(norm))
    x_adv = np.asarray(DeepFool(threats.LpBall(2, eps))(model, x, y))
    within = norm <= eps
    assert 0 < within.sum() < len(x)
    np.testing.assert_allclose(x_adv[within], np.asarray(result.x_adv)[within], atol=1e-6)
    np.testing.assert_array_equal(x_adv[~within], x[~within])
    tiny = np.asarray(DeepFool(threats.LpBall(2, 1e-6))(model, x, y))
    np.testing.assert_array_equal(tiny, x)


def test_deepfool_shared_attack_checks(mnist):
    # eps = 0 returns x, output in threat ∩ box, accuracy drops, targeted
    # hits, eager == compiled.
    model, x, y = mnist
    run_attack_test(
        lambda eps, seed: DeepFool(threats.LpBall(np.inf, eps), p=np.inf),
        model, x[:16], y[:16], eps=0.15, max_accuracy_ratio=0.5, min_target_rate=0.5,
    )


def test_ead_eager_matches_compiled(mnist):
    model, x, y = mnist
    attack_kwargs = dict(steps=10, binary_search_steps=2, initial_const=1.0)
    compiled = EAD(**attack_kwargs).minimize(model, x[:4], y[:4]).x_adv
    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        eager = EAD(**attack_kwargs).minimize(model, x[:4], y[:4]).x_adv
    finally:
        tf.config.run_functions_eagerly(previous)
    np.testing.assert_allclose(eager, compiled, atol=1e-5)


# ----------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CarliniWagnerL2(steps=0), "steps"),
        (lambda: CarliniWagnerL2(binary_search_steps=0), "binary_search_steps"),
        (lambda: CarliniWagnerL2(steps=2.5), "steps"),
        (lambda: CarliniWagnerL2(learning_rate=0.0), "learning_rate"),
        (lambda: CarliniWagnerL2(initial_const=-1.0), "initial_const"),
        (lambda: CarliniWagnerL2(confidence=-0.1), "confidence"),
        (lambda: CarliniWagnerL2(confidence=float("nan")), "confidence"),
        (lambda: CarliniWagnerL2(abort_early="yes"), "abort_early"),
        (lambda: CarliniWagnerL2(bounds=(1.0, 0.0)), "bounds"),
        (lambda: EAD(beta=-1e-3), "beta"),
        (lambda: EAD(decision_rule="L2"), "decision_rule"),
        (lambda: EAD(steps=0), "steps"),
        (lambda: EAD(confidence=-1.0), "confidence"),
        (lambda: EAD(fista=1), "fista"),
        (lambda: DeepFool(p=1), "p"),
        (lambda: DeepFool(p="l3"), "p"),
        (lambda: DeepFool(steps=0), "steps"),
        (lambda: DeepFool(overshoot=-0.1), "overshoot"),
        (lambda: DeepFool(candidates=1), "candidates"),
    ],
)
def test_bad_hyper_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "attack", [CarliniWagnerL2(steps=5), EAD(steps=5), DeepFool()], ids=["cw", "ead", "deepfool"]
)
def test_bad_inputs_raise(dense_linear, attack):
    model, x, _, _ = dense_linear
    with pytest.raises(ValueError, match="finite"):
        attack.minimize(model, np.where(x > 0.5, np.nan, x))
    with pytest.raises(ValueError, match="bounds"):
        attack.minimize(model, x + 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        attack(model, x[:0])
    with pytest.raises(ValueError, match="y"):
        attack.minimize(model, x, targeted=True)
    with pytest.raises(ValueError, match="y"):
        attack.minimize(model, x, np.full(len(x), 2))
