"""Tests of FAB / FAB-T and of the hyperplane ∩ box projections they use."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from tfrobust import threats
from tfrobust.attacks.fab import FAB, FABT, project_onto_hyperplane_box
from tfrobust.testing import run_attack_test, small_trained_mnist_model

INF = np.inf
EPS = {INF: 0.2, 2: 2.0, 1: 10.0}


def _reference(t, w, b, p):
    """min ||d||_p s.t. w·(t + d) = b, 0 <= t + d <= 1, by scipy (LP / SLSQP)."""
    n = len(t)
    bounds = list(zip(-t, 1 - t))
    if p == 2:
        res = optimize.minimize(lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, bounds=bounds,
                                constraints=[{"type": "eq", "fun": lambda d: w @ (t + d) - b}],
                                method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        return np.sqrt(res.fun)
    if p == 1:  # d = u - v, u, v >= 0
        c = np.ones(2 * n)
        res = optimize.linprog(c, A_eq=np.concatenate([w, -w])[None], b_eq=[b - w @ t],
                               bounds=[(0, 1 - ti) for ti in t] + [(0, ti) for ti in t])
        return res.fun
    # p = inf: variables (d, s), minimize s with |d_i| <= s.
    c = np.zeros(n + 1)
    c[-1] = 1
    a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
    res = optimize.linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.append(w, 0)[None],
                           b_eq=[b - w @ t], bounds=bounds + [(0, None)])
    return res.fun


@pytest.mark.parametrize("p", [1, 2, INF])
def test_projection_matches_scipy_where_feasible(p):
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, size=(40, 6))
    w = rng.normal(size=(40, 6))
    w[:5, :2] = 0.0  # coordinates that cannot help
    # Targets both reachable and not reachable inside the box.
    b = (t * w).sum(1) + rng.normal(scale=1.0, size=40)
    d = project_onto_hyperplane_box(t, w, b, p).numpy()
    assert np.all(t + d >= -1e-9) and np.all(t + d <= 1 + 1e-9)
    lo = (w * (w < 0)).sum(1)  # min of w·z over the box
    hi = (w * (w > 0)).sum(1)
    feasible = (b > lo + 1e-6) & (b < hi - 1e-6)
    assert feasible.sum() >= 10 and (~feasible).sum() >= 1
    norm = {1: lambda v: np.abs(v).sum(), 2: np.linalg.norm, INF: lambda v: np.abs(v).max()}[p]
    for i in np.where(feasible)[0]:
        np.testing.assert_allclose((w[i] * (t[i] + d[i])).sum(), b[i], atol=1e-7)
        np.testing.assert_allclose(norm(d[i]), _reference(t[i], w[i], b[i], p), rtol=1e-4, atol=1e-7)
    for i in np.where(~feasible)[0]:
        # As close to the hyperplane as the box allows: the box corner.
        reach = (w[i] * (t[i] + d[i])).sum()
        np.testing.assert_allclose(reach, hi[i] if b[i] > hi[i] else lo[i], atol=1e-7)


@pytest.mark.parametrize("p", [1, 2, INF])
def test_linear_binary_classifier_closed_form(p):
    # The minimal Lp change flipping sign(w·x + b) is |w·x + b| / ||w||_q
    # (q the dual exponent) when the box does not bind: x well inside.
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16,)).astype("float32")
    w_full = np.stack([w, -w], axis=1)

    def model(z):
        return tf.reshape(z, [tf.shape(z)[0], -1]) @ w_full

    x = rng.uniform(0.45, 0.55, size=(32, 4, 4, 1)).astype("float32")
    q = {1: INF, 2: 2, INF: 1}[p]
    dual = {INF: np.abs(w).max(), 2: np.linalg.norm(w), 1: np.abs(w).sum()}[q]
    expected = np.abs(2 * x.reshape(32, -1) @ w) / (2 * dual)
    # L1: the optimum moves the coordinate of largest |w| alone, and the box
    # leaves it at least 0.45 of room.
    keep = expected < 0.4 if p == 1 else np.ones(32, bool)
    result = FAB(threats.LpBall(p, 1.0), steps=30, seed=0).minimize(model, x)
    assert np.all(result.success.numpy()[keep])
    np.testing.assert_allclose(result.norm.numpy()[keep], expected[keep], rtol=0.01)


CASES = {
    "fab_linf": (lambda e, s: FAB(threats.LpBall(INF, e), steps=20, seed=s), INF),
    "fab_l2": (lambda e, s: FAB(threats.LpBall(2, e), steps=20, seed=s), 2),
    "fab_l1": (lambda e, s: FAB(threats.LpBall(1, e), steps=20, seed=s), 1),
    "fabt_linf": (lambda e, s: FABT(threats.LpBall(INF, e), steps=20, n_target_classes=3, seed=s), INF),
    "fab_restarts_l2": (lambda e, s: FAB(threats.LpBall(2, e), steps=10, restarts=2, seed=s), 2),
}


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.mark.parametrize("name", sorted(CASES))
def test_attack_table(trained, name):
    factory, p = CASES[name]
    # Targeted L∞ FAB reaches (y + 1) % K within eps = 0.2 on 28% of these
    # digits (PGD: above 30%): FAB minimizes the norm to the linearized
    # target boundary, it does not maximize a loss inside the ball.
    min_rate = 0.25 if p == INF else 0.3
    run_attack_test(factory, trained.model, trained.x[:32], trained.y[:32], eps=EPS[p],
                    max_accuracy_ratio=0.5, min_target_rate=min_rate)


def test_fabt_norms_no_larger_than_one_target(trained):
    x, y = trained.x[:16], trained.y[:16]
    one = FABT(threats.LpBall(2, 2.0), steps=20, n_target_classes=1, seed=0).minimize(trained.model, x, y)
    three = FABT(threats.LpBall(2, 2.0), steps=20, n_target_classes=3, seed=0).minimize(trained.model, x, y)
    assert np.all(three.norm.numpy() <= one.norm.numpy() + 1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"), ({"alpha_max": 2.0}, "alpha_max"),
    ({"eta": 0.5}, "eta"), ({"beta": 0.0}, "beta"), ({"budgeted": 1}, "budgeted"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FAB(threats.LpBall(INF, 0.1), **kwargs)


def test_budgeted_fabt_skips_points_already_within_eps(trained):
    # AutoAttack's FAB-T: a later target class runs only on the points no
    # earlier target broke within eps; the robust accuracy is the same as the
    # unbudgeted run's, with fewer points attacked.
    x, y = trained.x[:24], trained.y[:24]
    threat = threats.LpBall(INF, 0.15)
    full = FABT(threat, steps=15, n_target_classes=3, seed=0)
    budgeted = FABT(threat, steps=15, n_target_classes=3, seed=0, budgeted=True)
    sizes, compiled = [], budgeted._compiled

    def spy(model, xs, *args):
        sizes.append(int(tf.shape(xs)[0]))
        return compiled(model, xs, *args)

    budgeted._compiled = spy
    a, b = full.minimize(trained.model, x, y), budgeted.minimize(trained.model, x, y)
    within_full = a.success.numpy() & threats.within_eps(a.norm.numpy(), 0.15)
    within_budgeted = b.success.numpy() & threats.within_eps(b.norm.numpy(), 0.15)
    first_target = FABT(threat, steps=15, n_target_classes=1, seed=0).minimize(trained.model, x, y)
    broken_first = (first_target.success.numpy() & threats.within_eps(first_target.norm.numpy(), 0.15)).sum()
    assert 0 < broken_first < 24
    assert sizes[0] == 24 and sizes[1] == 24 - broken_first
    # Same per-point computation on a smaller batch: equal up to float
    # round-off of other batch shapes, which may move one borderline point.
    assert np.sum(within_budgeted != within_full) <= 1
    assert FABT(threat, budgeted=True).get_config()["budgeted"] is True
