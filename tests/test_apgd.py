"""Tests of APGD (CE, DLR; L∞, L2, L1) and APGD-T."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks.apgd import APGD, APGDT, apgd_checkpoints
from tfrobust.attacks import PGD
from tfrobust.testing import accuracy, assert_inside_threat, run_attack_test, small_trained_mnist_model

INF = np.inf
EPS = {INF: 0.2, 2: 2.0, 1: 10.0}

CASES = {
    "apgd_ce_linf": (lambda e, s: APGD(threats.LpBall(INF, e), steps=20, seed=s), INF),
    "apgd_ce_l2": (lambda e, s: APGD(threats.LpBall(2, e), steps=20, seed=s), 2),
    "apgd_ce_l1": (lambda e, s: APGD(threats.LpBall(1, e), steps=20, seed=s), 1),
    "apgd_dlr_linf": (lambda e, s: APGD(threats.LpBall(INF, e), loss="dlr", steps=20, seed=s), INF),
    "apgd_dlr_l2_restarts": (
        lambda e, s: APGD(threats.LpBall(2, e), loss="dlr", steps=10, restarts=2, seed=s), 2),
    "apgdt_linf": (lambda e, s: APGDT(threats.LpBall(INF, e), steps=10, n_target_classes=3, seed=s), INF),
}


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.mark.parametrize("name", sorted(CASES))
def test_attack_table(trained, name):
    factory, p = CASES[name]
    run_attack_test(factory, trained.model, trained.x[:32], trained.y[:32], eps=EPS[p],
                    max_accuracy_ratio=0.5, min_target_rate=0.3)


def test_checkpoints_are_the_papers():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    p, q, expected = 0.0, 0.22, []
    while q <= 1.0:
        expected.append(round(q * 1000))
        p, q = q, q + max(q - p - 0.03, 0.06)
    assert apgd_checkpoints(1000) == expected
    assert apgd_checkpoints(1) == [1]


@pytest.mark.parametrize("p", [INF, 2, 1])
def test_at_least_as_strong_as_pgd_at_equal_gradient_budget(trained, p):
    x, y = trained.x[:48], trained.y[:48]
    eps = {INF: 0.1, 2: 0.8, 1: 4.0}[p]
    pgd = PGD(threats.LpBall(p, eps), steps=40, seed=0)
    apgd = APGD(threats.LpBall(p, eps), steps=40, seed=0)
    x_apgd = apgd(trained.model, x, y)
    assert_inside_threat(x, x_apgd, apgd.threat)
    # Deterministic under the seeds; a small slack for the different start.
    assert accuracy(trained.model, x_apgd, y) <= accuracy(trained.model, pgd(trained.model, x, y), y) + 1 / 48


def test_linear_model_minimal_linf_perturbation():
    # Binary linear classifier: the smallest L∞ change flipping the label is
    # |w·x + b| / ||w||_1; APGD must flip points strictly below eps and no
    # point whose margin needs more than eps.
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 1)).astype("float32")
    w_full = np.concatenate([w, -w], axis=1)

    def model(t):
        return tf.reshape(t, [tf.shape(t)[0], -1]) @ w_full

    x = rng.uniform(0.3, 0.7, size=(64, 4, 4, 1)).astype("float32")
    margin = np.abs(2 * (x.reshape(64, -1) @ w)[:, 0]) / (2 * np.abs(w).sum())
    eps = float(np.median(margin))
    x_adv = APGD(threats.LpBall(INF, eps), steps=30, seed=0)(model, x)
    flipped = np.argmax(model(x_adv), -1) != np.argmax(model(x), -1)
    # Inside the box interior (x in [0.3, 0.7], eps < 0.3) the bound is exact.
    assert eps < 0.3
    np.testing.assert_array_equal(flipped[margin < 0.98 * eps], True)
    np.testing.assert_array_equal(flipped[margin > 1.02 * eps], False)


def test_nan_logits_never_count_as_success():
    w = np.eye(64, 10, dtype="float32")

    def model(t):
        flat = tf.reshape(t, [tf.shape(t)[0], -1])
        logits = flat @ w
        bad = tf.reduce_any(flat > 0.95, axis=-1, keepdims=True)
        return tf.where(bad, tf.fill(tf.shape(logits), np.nan), logits)

    x = np.full((4, 8, 8, 1), 0.5, "float32")
    x[:, 0, 3, 0] = 0.6  # class 3, so that argmax(NaN row) = 0 would count as a success
    attack = APGD(threats.LpBall(INF, 0.5), steps=10, seed=0)
    y = tf.argmax(model(x), -1, output_type=tf.int32)
    x_adv, loss, found = attack._compiled(model, tf.constant(x), y, y, tf.constant(False),
                                          tf.constant([1, 2], tf.int32))
    finite = np.all(np.isfinite(model(x_adv).numpy()), axis=-1)
    # argmax of a NaN row is 0 != y: without the finite check every NaN
    # point would be reported as a success.
    assert not np.any(found.numpy() & ~finite)
    assert np.all(np.isfinite(loss.numpy()) | (loss.numpy() == -np.inf))


def test_eot_samples_average_a_random_model(trained):
    noise = tf.random.Generator.from_seed(0)

    def noisy(t):
        return trained.model(t + 0.01 * noise.normal(tf.shape(t)))

    attack = APGD(threats.LpBall(INF, 0.2), steps=10, eot_samples=4, seed=0)
    assert attack.uses_eot
    x_adv = attack(noisy, trained.x[:16], trained.y[:16])
    assert accuracy(trained.model, x_adv, trained.y[:16]) <= 0.5


def test_apgdt_needs_four_classes():
    def model(t):
        return tf.reshape(t, [tf.shape(t)[0], -1])[:, :3]

    with pytest.raises(ValueError, match="at least 4 classes"):
        APGDT(threats.LpBall(INF, 0.1), steps=2, seed=0)(model, np.full((2, 2, 2, 1), 0.5, "float32"))


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "hinge"}, "loss"), ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"),
    ({"rho": 1.5}, "rho"), ({"eot_samples": 0}, "eot_samples"), ({"seed": -1}, "seed"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        APGD(threats.LpBall(INF, 0.1), **kwargs)


@pytest.mark.parametrize("loss, expected", [("ce", 6), ("dlr", 6)])
def test_cheap_validation_runs_the_model_once_per_step(loss, expected):
    # steps + 1 forward passes (the start and each step) and nothing more:
    # no validation forward, no clean-prediction forward for untargeted runs.
    calls = tf.Variable(0)
    w = tf.constant(np.eye(16, 4, dtype="float32"))

    def model(t):
        calls.assign_add(1)
        return tf.reshape(t, [tf.shape(t)[0], -1]) @ w

    x = np.full((2, 4, 4, 1), 0.5, "float32")
    x[:, 0, 0, 0] = 0.6
    APGD(threats.LpBall(INF, 0.1), loss=loss, steps=5, seed=0, validate="cheap",
         drop_found=False)(model, x, np.array([0, 0]))
    assert int(calls.numpy()) == expected


def _counting_linear_model(calls):
    w = tf.constant(np.eye(16, 4, dtype="float32"))

    def model(t):
        calls.assign_add(1)
        return tf.reshape(t, [tf.shape(t)[0], -1]) @ w

    return model


def test_found_points_leave_the_batch_at_checkpoints():
    # Rows 0, 1 break at the first step (margin 0.1 < 2 eps), rows 2, 3 never
    # (margin 0.5 > 2 eps): with 20 steps the first checkpoint is after step 4, so the
    # model sees 4 rows for the start and steps 1-4, then 2 rows.
    rows = tf.Variable(0)
    w = tf.constant(np.eye(16, 4, dtype="float32"))

    def model(t):
        rows.assign_add(tf.shape(t)[0])
        return tf.reshape(t, [tf.shape(t)[0], -1]) @ w

    x = np.full((4, 4, 4, 1), 0.5, "float32")
    x[:2, 0, 0, 0] = 0.6
    x[2:, 0, 0, 0] = 1.0
    y = np.zeros(4, np.int32)
    threat = threats.LpBall(INF, 0.1)
    x_adv = APGD(threat, steps=20, seed=0, validate="cheap")(model, x, y)
    assert int(rows.numpy()) == 4 + 4 * 4 + 2 * 16
    np.testing.assert_array_equal(np.argmax(model(x_adv), -1) != 0, [True, True, False, False])
    assert_inside_threat(x, x_adv, threat)
    rows.assign(0)
    APGD(threat, steps=20, seed=0, validate="cheap", drop_found=False)(model, x, y)
    assert int(rows.numpy()) == 4 * 21


def test_run_stops_once_every_point_is_adversarial():
    # Margin 0.1 in one pixel, eps 0.3: the first step breaks both points, so
    # the run ends after the start and one step instead of 1 + 20 passes.
    calls = tf.Variable(0)
    model = _counting_linear_model(calls)
    x = np.full((2, 4, 4, 1), 0.5, "float32")
    x[:, 0, 0, 0] = 0.6
    y = np.array([0, 0])
    threat = threats.LpBall(INF, 0.3)
    x_adv = APGD(threat, steps=20, seed=0, validate="cheap")(model, x, y)
    assert int(calls.numpy()) < 21
    assert np.all(np.argmax(model(x_adv), -1) != 0)
    calls.assign(0)
    APGD(threat, steps=20, seed=0, validate="cheap", drop_found=False)(model, x, y)
    assert int(calls.numpy()) == 21
    # With EoT the default keeps iterating: one noisy success is not final.
    assert not APGD(threat, eot_samples=2)._drop_found
    with pytest.raises(ValueError, match="drop_found"):
        APGD(threat, drop_found="yes")


def test_later_restarts_run_only_on_unbroken_points(trained):
    x, y = trained.x[:32], trained.y[:32]
    threat = threats.LpBall(INF, 0.1)
    first = APGD(threat, steps=10, seed=3)(trained.model, x, y)
    broken_first = np.argmax(trained.model(first), -1) != y
    sizes = []
    attack = APGD(threat, steps=10, restarts=3, seed=3)
    compiled = attack._compiled

    def spy(model, xs, *args):
        sizes.append(int(tf.shape(xs)[0]))
        return compiled(model, xs, *args)

    attack._compiled = spy
    x_adv = attack(trained.model, x, y)
    assert sizes[0] == 32 and 0 < broken_first.sum() < 32
    assert sizes[1] == 32 - broken_first.sum() and len(sizes) <= 3
    broken = np.argmax(trained.model(x_adv), -1) != y
    # A success of the first restart is kept; restarts only add successes.
    assert np.all(broken[broken_first]) and broken.sum() >= broken_first.sum()
    assert_inside_threat(x, x_adv, threat)
