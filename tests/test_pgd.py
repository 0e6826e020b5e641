"""Tests of PGD and its presets (FGSM, BIM, MI-FGSM), optimizers and Restarts."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfrobust import threats
from tfrobust.attacks import BIM
from tfrobust.attacks import FGSM
from tfrobust.attacks import MIFGSM
from tfrobust.attacks import PGD
from tfrobust.attacks import Attack
from tfrobust.attacks import Momentum
from tfrobust.attacks import Restarts
from tfrobust.attacks import SteepestAscent
from tfrobust.testing import accuracy
from tfrobust.testing import assert_inside_threat
from tfrobust.testing import run_attack_test
from tfrobust.testing import small_trained_mnist_model

INF = np.inf
# Budgets on the 8x8 digits (64 pixels in [0, 1]).
EPS = {INF: 0.2, 2: 2.0, 1: 10.0}


def _ball(p, eps):
    return threats.LpBall(p, eps)


# One table, the same assertions for every case: (factory(eps, seed), p,
# max accuracy ratio, min targeted hit rate).
CASES = {
    "fgsm_linf": (lambda e, s: FGSM(e, INF), INF, 0.5, 0.3),
    "fgsm_l2": (lambda e, s: FGSM(e, 2), 2, 0.5, 0.3),
    # One sparse L1 step moves a single pixel of 64: a small but real drop.
    "fgsm_l1": (lambda e, s: FGSM(e, 1), 1, 0.95, None),
    "bim_linf": (lambda e, s: BIM(_ball(INF, e)), INF, 0.5, 0.3),
    "bim_l2": (lambda e, s: BIM(_ball(2, e), steps=10), 2, 0.5, 0.3),
    "bim_l1": (lambda e, s: BIM(_ball(1, e), steps=10), 1, 0.5, 0.3),
    "pgd_linf": (lambda e, s: PGD(_ball(INF, e), steps=10, seed=s), INF, 0.5, 0.3),
    "pgd_l2": (lambda e, s: PGD(_ball(2, e), steps=10, seed=s), 2, 0.5, 0.3),
    "pgd_l1": (lambda e, s: PGD(_ball(1, e), steps=10, seed=s), 1, 0.5, 0.3),
    "mifgsm_linf": (lambda e, s: MIFGSM(_ball(INF, e)), INF, 0.5, 0.3),
    "pgd_margin_linf": (lambda e, s: PGD(_ball(INF, e), steps=10, loss="margin", seed=s), INF, 0.5, 0.3),
    "pgd_dlr_linf": (lambda e, s: PGD(_ball(INF, e), steps=10, loss="dlr", seed=s), INF, 0.5, 0.3),
    "pgd_restarts_early_stop": (
        lambda e, s: PGD(_ball(INF, e), steps=10, restarts=2, early_stop=True, seed=s), INF, 0.5, 0.3,
    ),
}


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.mark.parametrize("name", sorted(CASES))
def test_attack_table(trained, name):
    factory, p, max_ratio, min_rate = CASES[name]
    x, y = trained.x[:32], trained.y[:32]
    run_attack_test(
        factory, trained.model, x, y, eps=EPS[p],
        max_accuracy_ratio=max_ratio, min_target_rate=min_rate,
    )


def test_pgd_on_real_mnist(data_dir):
    trained = small_trained_mnist_model(data_dir)
    x, y = trained.x[:32], trained.y[:32]
    attack = PGD(_ball(INF, 0.15), steps=10, seed=0)
    x_adv = attack(trained.model, x, y)
    assert_inside_threat(x, x_adv, attack.threat)
    assert accuracy(trained.model, x_adv, y) <= 0.5 * accuracy(trained.model, x, y)


# ---------------------------------------------------------------------------
# Properties and closed forms.


class _LinearModel:
    """logits = flatten(x) @ W + b, with W and b swapped in by the test."""

    def __init__(self, dim, classes):
        self.w = tf.Variable(tf.zeros([dim, classes]))
        self.b = tf.Variable(tf.zeros([classes]))

    def __call__(self, x):
        return tf.reshape(x, [tf.shape(x)[0], -1]) @ self.w + self.b


_SHAPE = (3, 2, 2, 2)
_PROPERTY_MODEL = _LinearModel(8, 3)
_PROPERTY_ATTACKS = {}


def _property_attack(p):
    # Cached so that hypothesis examples reuse compiled loops instead of
    # tracing anew. The random start is the likeliest way out of the box;
    # the budgets reach past the box faces from any x.
    if p not in _PROPERTY_ATTACKS:
        eps = {INF: 0.6, 2: 1.5, 1: 4.0}[p]
        _PROPERTY_ATTACKS[p] = PGD(_ball(p, eps), steps=3, random_start=True, seed=0)
    return _PROPERTY_ATTACKS[p]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=hnp.arrays(np.float32, _SHAPE, elements=st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1, width=32, allow_subnormal=False)),
    w=hnp.arrays(np.float32, (8, 3), elements=st.floats(-10, 10, width=32, allow_subnormal=False)),
    p=st.sampled_from([1, 2, INF]),
    targeted=st.booleans(),
)
def test_output_always_inside_threat_and_box(x, w, p, targeted):
    _PROPERTY_MODEL.w.assign(w)
    y = np.arange(_SHAPE[0]) % 3
    attack = _property_attack(p)
    x_adv = attack(_PROPERTY_MODEL, x, y, targeted=targeted)
    assert_inside_threat(x, x_adv, attack.threat)


@pytest.mark.parametrize("factor, flips", [(1.02, True), (0.98, False)])
def test_linear_binary_closed_form(rng, factor, flips):
    """PGD-L2 flips a linear classifier iff eps exceeds |w.x + b| / ||w||."""
    dim, batch, dist = 16, 8, 0.2
    w = rng.normal(size=(dim,)).astype("float32")
    # Inputs mid-box, so the box never binds within the budget (steps along
    # w / ||w|| move a coordinate by at most dist).
    x = rng.uniform(0.4, 0.6, size=(batch, dim)).astype("float32")
    side = np.where(np.arange(batch) % 2 == 0, 1.0, -1.0).astype("float32")
    # Per-example offsets put every example at distance `dist` from its hyperplane.
    b = tf.constant(side * dist * np.linalg.norm(w) - x @ w)

    def model(z):
        score = tf.reduce_sum(z * w, axis=1) + b
        return tf.stack([tf.zeros_like(score), score], axis=1)

    y = (side > 0).astype("int64")
    np.testing.assert_allclose(np.abs(model(x).numpy()[:, 1]) / np.linalg.norm(w), dist, rtol=1e-4)
    attack = PGD(_ball(2, factor * dist), steps=50, random_start=False, loss="margin")
    x_adv = attack(model, x, y).numpy()
    flipped = np.argmax(model(x_adv).numpy(), -1) != y
    np.testing.assert_array_equal(flipped, np.full(batch, flips))


# ---------------------------------------------------------------------------
# Steps, optimizers, restarts.


def test_fgsm_linf_is_one_sign_step(trained):
    x, y = trained.x[:8], trained.y[:8]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, trained.model(xt))
    expected = np.clip(x + 0.1 * np.sign(tape.gradient(loss, xt).numpy()), 0, 1)
    np.testing.assert_allclose(FGSM(0.1)(trained.model, x, y).numpy(), expected, atol=1e-6)


def test_targeted_moves_toward_target(trained):
    x, y = trained.x[:16], trained.y[:16]
    y_target = (y + 3) % 10
    attack = PGD(_ball(INF, 0.1), steps=10, seed=0)
    untargeted = attack(trained.model, x, y)
    targeted = attack(trained.model, x, y_target, targeted=True)
    ce = lambda z: tf.nn.sparse_softmax_cross_entropy_with_logits(y_target, trained.model(z)).numpy()
    assert ce(targeted).mean() < ce(x).mean()
    assert ce(targeted).mean() < ce(untargeted).mean()


def test_no_retrace_across_calls(trained):
    attack = PGD(_ball(2, 1.0), steps=5, seed=0)
    for i in range(3):
        attack(trained.model, trained.x[:8] * (1 - 0.1 * i), trained.y[:8])
    assert attack._compiled.experimental_get_tracing_count() == 1


def test_seeded_attacks_are_reproducible_and_unseeded_vary(trained):
    x, y = trained.x[:8], trained.y[:8]
    make = lambda seed: PGD(_ball(INF, 0.1), steps=1, step_size=0.0, seed=seed)
    a, b = make(3)(trained.model, x, y).numpy(), make(3)(trained.model, x, y).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make(4)(trained.model, x, y).numpy())


def test_momentum_accumulates_l1_normalized_gradients():
    ball = _ball(INF, 1.0)
    opt = Momentum(decay=0.5)
    g1 = tf.constant([[1.0, -3.0], [0.0, 0.0]])
    g2 = tf.constant([[-4.0, 0.0], [2.0, 2.0]])
    x = tf.zeros([2, 2])
    state = opt.init(x)
    _, state = opt.update(g1, state, ball, x, (0.0, 1.0))
    direction, state = opt.update(g2, state, ball, x, (0.0, 1.0))
    expected = 0.5 * np.array([[0.25, -0.75], [0.0, 0.0]]) + np.array([[-1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(state.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(direction.numpy(), np.sign(expected))
    d, _ = SteepestAscent().update(g2, SteepestAscent().init(x), _ball(2, 1.0), x, (0.0, 1.0))
    np.testing.assert_allclose(np.linalg.norm(d.numpy(), axis=1), [1.0, 1.0], rtol=1e-6)


def test_early_stop_ends_the_loop_once_all_are_adversarial(rng):
    w = rng.normal(size=(8, 3)).astype("float32")
    x = rng.uniform(size=(4, 8)).astype("float32")
    calls = tf.Variable(0)

    def model(z):
        calls.assign_add(1)  # a stateful op: counts executions, also in the loop
        return z @ w

    y = (np.argmax(x @ w, -1) + 1) % 3  # every point is already "adversarial"
    counts = {}
    for early_stop in (False, True):
        calls.assign(0)
        PGD(_ball(INF, 0.01), steps=20, early_stop=early_stop, seed=0)(model, x, y)
        counts[early_stop] = int(calls.numpy())
    # One eager check of the inputs, then one forward per step and a final one.
    assert counts[False] == 1 + 20 + 1
    assert counts[True] == 1 + 2 + 1  # the first iterate is adversarial: stop after it


class _Scripted(Attack):
    """Returns a scripted sequence of outputs, one per run."""

    def __init__(self, outputs, threat=None):
        super().__init__(threat)
        self.outputs = outputs
        self.calls = 0

    def _run(self, model, x, y, targeted):
        out = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return tf.constant(out)


def test_restarts_keep_best_per_example():
    # Two classes; class 1 wins when the first pixel exceeds 0.5.
    model = lambda z: tf.stack([0.5 - z[:, 0], z[:, 0] - 0.5], axis=1)
    x = np.full((3, 2), 0.2, np.float32)
    y = np.zeros(3, np.int64)
    runs = [
        np.array([[0.9, 0.0], [0.3, 0.0], [0.2, 0.0]], np.float32),  # ex 0 adversarial
        np.array([[0.95, 0.0], [0.4, 0.0], [0.6, 0.0]], np.float32),  # ex 2 adversarial, ex 1 higher loss
        np.array([[0.1, 0.0], [0.35, 0.0], [0.1, 0.0]], np.float32),
    ]
    scripted = _Scripted(runs)
    out = Restarts(scripted, 3)(model, x, y).numpy()
    assert scripted.calls == 3
    # First success kept for ex 0, highest loss for ex 1, the success for ex 2.
    np.testing.assert_allclose(out[:, 0], [0.9, 0.4, 0.6])


def test_pgd_restarts_do_not_lose_successes(trained):
    x, y = trained.x[:32], trained.y[:32]
    single = PGD(_ball(INF, 0.08), steps=5, seed=0)
    multi = PGD(_ball(INF, 0.08), steps=5, restarts=4, seed=0)
    # The first restart of `multi` is the run of `single` (same seed stream).
    fooled_single = np.argmax(trained.model(single(trained.model, x, y)).numpy(), -1) != y
    fooled_multi = np.argmax(trained.model(multi(trained.model, x, y)).numpy(), -1) != y
    assert np.all(fooled_multi[fooled_single])


# ---------------------------------------------------------------------------
# Bad arguments.


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PGD(_ball(INF, 0.1), steps=0), "steps"),
        (lambda: PGD(_ball(INF, 0.1), steps=2.5), "steps"),
        (lambda: PGD(_ball(INF, 0.1), step_size=-0.1), "step_size"),
        (lambda: PGD(_ball(INF, 0.1), step_size=np.nan), "step_size"),
        (lambda: PGD(_ball(INF, 0.1), restarts=0), "restarts"),
        (lambda: PGD(_ball(INF, 0.1), loss="hinge"), "loss"),
        (lambda: PGD(_ball(INF, 0.1), optimizer="adam"), "optimizer"),
        (lambda: PGD(_ball(INF, 0.1), seed=-1), "seed"),
        (lambda: PGD(None), "threat"),
        (lambda: PGD(threats.Box()), "threat"),
        (lambda: FGSM(-0.1), "eps"),
        (lambda: FGSM(0.1, p=3), "`p` to be one of"),
        (lambda: FGSM(0.1, p="l0"), "`p` to be one of"),
        (lambda: MIFGSM(_ball(INF, 0.1), decay=-1.0), "decay"),
        (lambda: MIFGSM(_ball(INF, 0.1), steps=0), "steps"),
        (lambda: Restarts("pgd", 2), "attack"),
        (lambda: Restarts(FGSM(0.1), 0), "n"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_defaults_follow_the_papers():
    assert PGD(_ball(INF, 0.3)).step_size == pytest.approx(2.5 * 0.3 / 40)
    assert PGD(_ball(INF, 0.3)).steps == 40 and PGD(_ball(INF, 0.3)).random_start
    fgsm = FGSM(0.1)
    assert (fgsm.steps, fgsm.step_size, fgsm.random_start) == (1, 0.1, False)
    bim = BIM(_ball(INF, 8 / 255))  # Kurakin et al.: min(eps + 4, 1.25 eps) steps of one level
    assert bim.steps == 10 and bim.step_size == pytest.approx(1 / 255) and not bim.random_start
    mi = MIFGSM(_ball(INF, 0.3))
    assert (mi.steps, mi.step_size, mi.optimizer.decay, mi.random_start) == (10, pytest.approx(0.03), 1.0, False)
    assert PGD(_ball(2, 1.0)).get_config()["threat"] == {"p": 2, "eps": 1.0, "l1_sparsity": 0.99}
