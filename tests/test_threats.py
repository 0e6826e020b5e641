"""Property tests of tfrobust.threats against slow, independent references."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import optimize

from tfrobust import threats
from tfrobust.threats import Box, LpBall

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
P_VALUES = [1, 2, np.inf]
TOL = 1e-9  # float64 inputs: the sweeps are exact up to float64 rounding


# ----------------------------------------------------------------- references


def np_norm(v, p):
    flat = np.abs(v).reshape(len(v), -1)
    scale = flat.max(1)
    if p == np.inf:
        return scale
    # Scaled so that squares of tiny normal values do not become subnormal.
    safe = np.where(scale > 0, scale, 1.0)
    return safe * np.linalg.norm(flat / safe[:, None], ord=p, axis=1)


def ref_project(v, eps, p):
    """One example, float64: clip / rescale / L1 bisection on the multiplier."""
    if p == np.inf:
        return np.clip(v, -eps, eps)
    if p == 2:
        n = np.linalg.norm(v)
        return v if n <= eps else v * eps / n
    a = np.abs(v)
    if a.sum() <= eps:
        return v
    lo, hi = 0.0, a.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(a - mid, 0).sum() > eps else (lo, mid)
    return np.sign(v) * np.maximum(a - hi, 0)


def ref_project_with_box(v, x, eps, p, lo=0.0, hi=1.0):
    """One example, float64: bisection on the KKT multiplier (feasible side)."""
    lo_d, hi_d = lo - x, hi - x
    if p == np.inf:
        return np.clip(v, np.maximum(lo_d, -eps), np.minimum(hi_d, eps))
    norm = (lambda d: np.abs(d).sum()) if p == 1 else np.linalg.norm
    if norm(np.clip(v, lo_d, hi_d)) <= eps:
        return np.clip(v, lo_d, hi_d)
    if p == 2:  # d(t) = clip(t v), norm increasing in t
        d_of = lambda t: np.clip(t * v, lo_d, hi_d)
        a, b = 0.0, 1.0
        for _ in range(200):
            mid = 0.5 * (a + b)
            a, b = (a, mid) if norm(d_of(mid)) > eps else (mid, b)
        return d_of(a)
    d_of = lambda lam: np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0), lo_d, hi_d)
    a, b = 0.0, np.abs(v).max()
    for _ in range(200):
        mid = 0.5 * (a + b)
        a, b = (mid, b) if norm(d_of(mid)) > eps else (a, mid)
    return d_of(b)


# ----------------------------------------------------------------- strategies

shapes = st.tuples(st.integers(1, 4), st.lists(st.integers(1, 6), min_size=1, max_size=3)) \
    .map(lambda t: (t[0],) + tuple(t[1]))
# TensorFlow flushes subnormals to zero on CPU, so they are left out.
values = st.floats(-3, 3, allow_nan=False, allow_infinity=False, allow_subnormal=False)
pixels = st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1, allow_subnormal=False))


@st.composite
def cases(draw, with_x=False):
    shape = draw(shapes)
    delta = draw(hnp.arrays(np.float64, shape, elements=values))
    p = draw(st.sampled_from(P_VALUES))
    eps = draw(st.one_of(st.just(0.0), st.floats(0, 3, allow_subnormal=False)))
    if not with_x:
        return delta, p, eps
    return delta, draw(hnp.arrays(np.float64, shape, elements=pixels)), p, eps


# ---------------------------------------------------------------- projection


@PROPERTY
@given(cases())
def test_project_matches_reference_is_inside_and_idempotent(case):
    delta, p, eps = case
    ball = LpBall(p, eps)
    out = ball.project(tf.constant(delta)).numpy()
    assert out.dtype == np.float64 and out.shape == delta.shape
    for i in range(len(delta)):
        np.testing.assert_allclose(out[i], ref_project(delta[i], eps, p), atol=TOL)
    assert np.all(np.asarray(ball.norm(out)) <= eps * (1 + 1e-12) + TOL)
    np.testing.assert_allclose(ball.project(out).numpy(), out, atol=TOL)


@PROPERTY
@given(cases(), st.floats(0, 1, exclude_max=True, allow_subnormal=False))
def test_project_leaves_interior_points_unchanged(case, shrink):
    delta, p, eps = case
    # Rescale every example strictly inside the ball (tiny examples are
    # first brought to unit max so the factor cannot overflow).
    delta = delta / np.maximum(np.abs(delta).reshape(len(delta), -1).max(1), 1e-3).reshape(
        (-1,) + (1,) * (delta.ndim - 1))
    norms = np_norm(delta, p)
    factor = np.where(norms > 0, eps * shrink / np.where(norms > 0, norms, 1), 0.0)
    inner = delta * factor.reshape((-1,) + (1,) * (delta.ndim - 1))
    # A product of two tiny factors can be subnormal, and TensorFlow's CPU
    # kernels flush subnormals to zero once any op has set the FTZ flag in
    # this worker: that is outside the float semantics TF keeps, so such
    # entries are made exact zeros here.
    inner = np.where(np.abs(inner) < np.finfo(np.float32).tiny, 0.0, inner)
    ball = LpBall(p, eps)
    np.testing.assert_array_equal(ball.project(tf.constant(inner)).numpy(), inner)
    x = np.full_like(inner, 0.5)
    inner = np.clip(inner, -0.5, 0.5)
    np.testing.assert_array_equal(ball.project_with_box(x, inner).numpy(), inner)


@PROPERTY
@given(cases(with_x=True))
def test_project_with_box_matches_reference_is_feasible_and_idempotent(case):
    delta, x, p, eps = case
    ball = LpBall(p, eps)
    out = ball.project_with_box(tf.constant(x), tf.constant(delta)).numpy()
    for i in range(len(delta)):
        np.testing.assert_allclose(out[i], ref_project_with_box(delta[i], x[i], eps, p), atol=TOL)
    assert np.all(np.asarray(ball.norm(out)) <= eps * (1 + 1e-12) + TOL)
    assert np.all(x + out >= -TOL) and np.all(x + out <= 1 + TOL)
    np.testing.assert_allclose(ball.project_with_box(x, out).numpy(), out, atol=TOL)


@PROPERTY
@given(cases(with_x=True), st.integers(0, 2**31 - 1))
def test_project_with_box_is_closest_among_random_feasible_points(case, seed):
    delta, x, p, eps = case
    rng = np.random.default_rng(seed)
    ball = LpBall(p, eps)
    out = ball.project_with_box(x, delta).numpy()
    lo_d, hi_d = -x, 1 - x
    for _ in range(20):
        # Points of the box on d, some near the answer, pulled into the ball
        # by scaling toward 0 (feasible since 0 lies in both sets).
        z = np.where(rng.random() < 0.5, rng.uniform(lo_d, hi_d),
                     np.clip(out + 1e-3 * rng.normal(size=out.shape), lo_d, hi_d))
        norms = np_norm(z, p)
        z = z * np.minimum(1, eps / np.maximum(norms, 1e-300)).reshape((-1,) + (1,) * (z.ndim - 1))
        dist_z = np.linalg.norm((z - delta).reshape(len(z), -1), axis=1)
        dist_out = np.linalg.norm((out - delta).reshape(len(z), -1), axis=1)
        assert np.all(dist_out <= dist_z + 1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_project_with_box_matches_slsqp(p, rng):
    ball = LpBall(p, 0.7)
    for _ in range(5):
        delta, x = rng.normal(size=(1, 6)), rng.uniform(size=(1, 6))
        x[0, :2] = [0.0, 1.0]
        out = ball.project_with_box(x, delta).numpy()[0]
        # Smooth split of the L1 ball for SLSQP: d = u - w with u, w >= 0.
        if p == 2:
            res = optimize.minimize(lambda d: np.sum((d - delta[0]) ** 2), np.zeros(6), method="SLSQP",
                                    bounds=list(zip(-x[0], 1 - x[0])),
                                    constraints=[{"type": "ineq", "fun": lambda d: 0.49 - d @ d}],
                                    options={"ftol": 1e-12, "maxiter": 500})
            expected = res.x
        else:
            def objective(uw):
                return np.sum((uw[:6] - uw[6:] - delta[0]) ** 2)
            box = [(0, max(h, 0)) for h in 1 - x[0]] + [(0, max(l, 0)) for l in x[0]]
            res = optimize.minimize(objective, np.zeros(12), method="SLSQP", bounds=box,
                                    constraints=[{"type": "ineq", "fun": lambda uw: 0.7 - uw.sum()}],
                                    options={"ftol": 1e-12, "maxiter": 500})
            expected = res.x[:6] - res.x[6:]
        assert res.success
        np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("max_steps", [0, 1, 16])
def test_l2_box_active_set_and_its_sorted_fallback_agree(max_steps, rng):
    from tfrobust import threats  # private kernel: both of its paths must be exact
    delta = rng.normal(size=(8, 40)) * rng.uniform(0.1, 3, size=(8, 1))
    x = rng.uniform(size=delta.shape) * (rng.uniform(size=delta.shape) > 0.2)
    cap = np.where(delta >= 0, 1 - x, x)
    got = threats._box_l2_magnitudes(tf.constant(np.abs(delta)), tf.constant(cap), 0.8, max_steps).numpy()
    for i in range(len(delta)):
        if np.linalg.norm(np.minimum(np.abs(delta[i]), cap[i])) > 0.8:
            np.testing.assert_allclose(np.sign(delta[i]) * got[i], ref_project_with_box(delta[i], x[i], 0.8, 2),
                                       atol=TOL)


@pytest.mark.parametrize("p", P_VALUES)
def test_float32_and_graph_mode_agree_with_float64_eager(p, rng):
    delta = rng.normal(size=(3, 5, 4, 2))
    x = rng.uniform(size=delta.shape)
    ball = LpBall(p, 1.3)
    spec = tf.TensorSpec([None, None, None, None], tf.float32)
    graph_project = tf.function(ball.project, input_signature=[spec])
    graph_box = tf.function(ball.project_with_box, input_signature=[spec, spec])
    d32, x32 = delta.astype(np.float32), x.astype(np.float32)
    for got, want in [(graph_project(d32), ball.project(delta)),
                      (graph_box(x32, d32), ball.project_with_box(x, delta))]:
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


# ---------------------------------------------------------------- directions


@PROPERTY
@given(cases())
def test_steepest_direction_attains_dual_norm(case):
    grad, p, _ = case
    ball = LpBall(p, 1.0, l1_sparsity=1.0)  # k = 1: the exact L1 direction
    d = ball.steepest_direction(tf.constant(grad)).numpy()
    nonzero = np.abs(grad).reshape(len(grad), -1).max(1) > 0
    q = {1: np.inf, 2: 2, np.inf: 1}[p]
    inner = np.sum((grad * d).reshape(len(grad), -1), axis=1)
    np.testing.assert_allclose(inner, np_norm(grad, q), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_norm(d, p)[nonzero], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(d[~nonzero], 0.0)
    np.testing.assert_allclose(ball.dual_norm(grad).numpy(), np_norm(grad, q), rtol=1e-12)


@PROPERTY
@given(shapes, st.floats(0, 1, allow_subnormal=False), st.integers(0, 2**31 - 1))
def test_l1_steepest_direction_is_mean_of_top_k(shape, sparsity, seed):
    grad = np.random.default_rng(seed).normal(size=shape)
    ball = LpBall(1, 1.0, l1_sparsity=sparsity)
    d = ball.steepest_direction(grad).numpy().reshape(shape[0], -1)
    flat = grad.reshape(shape[0], -1)
    k = max(1, int(np.ceil(round((1 - sparsity) * flat.shape[1], 9))))
    top = -np.sort(-np.abs(flat), axis=1)[:, :k]
    np.testing.assert_allclose(np.sum(flat * d, axis=1), top.mean(1), rtol=1e-12)
    np.testing.assert_allclose(np.abs(d).sum(1), 1.0, rtol=1e-12)
    assert np.all((d != 0).sum(1) == k)
    assert np.all(top.mean(1) <= np.abs(flat).max(1) + 1e-12)


def test_l1_sparsity_default_keeps_top_one_percent():
    grad = tf.random.normal([2, 28, 28, 1])
    d = LpBall(1, 1.0).steepest_direction(grad)
    assert np.all(np.sum(d.numpy() != 0, axis=(1, 2, 3)) == 8)  # ceil(0.01 * 784)


def test_l1_steepest_direction_skips_saturated_coordinates():
    grad = np.array([[5.0, -4.0, 3.0, -2.0, 1.0]])
    x = np.array([[1.0, 0.0, 0.5, 1.0, 0.0]])  # first two are pushed outward
    ball = LpBall(1, 1.0, l1_sparsity=0.6)    # k = 2
    np.testing.assert_allclose(ball.steepest_direction(grad, x, (0.0, 1.0)).numpy(),
                               [[0.0, 0.0, 0.5, -0.5, 0.0]])
    np.testing.assert_allclose(ball.steepest_direction(grad).numpy(), [[0.5, -0.5, 0.0, 0.0, 0.0]])
    blocked = ball.steepest_direction(np.array([[1.0, -1.0]]), np.array([[1.0, 0.0]]), Box(0.0, 1.0))
    np.testing.assert_array_equal(blocked.numpy(), 0.0)


def test_l2_direction_survives_tiny_gradients():
    d = LpBall(2, 1.0).steepest_direction(tf.constant([[3e-30, 4e-30]], tf.float32))
    np.testing.assert_allclose(d.numpy(), [[0.6, 0.8]], rtol=1e-6)


# -------------------------------------------------------------------- random


@pytest.mark.parametrize("p", P_VALUES)
def test_random_init_is_uniform_in_the_ball(p):
    n, dim, eps = 4000, 5, 2.0
    ball = LpBall(p, eps)
    r = ball.random_init(tf.zeros([n, dim], tf.float64), seed=7).numpy()
    norms = np_norm(r, p)
    assert np.all(norms <= eps * (1 + 1e-12))
    # Under uniformity ||r||_p / eps ~ U^(1/d): mean d/(d+1), var d/(d+2) - mean^2.
    mean = dim / (dim + 1)
    se = np.sqrt((dim / (dim + 2) - mean**2) / n)
    assert abs(np.mean(norms / eps) - mean) < 4 * se
    # Coordinate means vanish by symmetry (|r_i| <= eps bounds the variance).
    assert np.all(np.abs(r.mean(0)) < 4 * eps / np.sqrt(n))
    if p == 1:  # |r| / eps is Dirichlet(1, ..., 1): E|r_i| = eps / (d + 1)
        assert abs(np.abs(r).mean() - eps / (dim + 1)) < 4 * eps / (dim + 1) / np.sqrt(n * dim)
    if p == np.inf:
        assert abs(np.abs(r).mean() - eps / 2) < 4 * eps / np.sqrt(12 * n * dim)


@pytest.mark.parametrize("p", P_VALUES)
def test_random_init_seeds(p):
    ball = LpBall(p, 0.3)
    x = tf.zeros([4, 3, 3, 2])
    eager = ball.random_init(x, seed=11)
    assert eager.shape == x.shape and eager.dtype == tf.float32
    np.testing.assert_array_equal(tf.function(lambda t: ball.random_init(t, seed=11))(x), eager)
    np.testing.assert_array_equal(ball.random_init(x, seed=(11, 3)), ball.random_init(x, seed=(11, 3)))
    assert not np.array_equal(ball.random_init(x, seed=12), eager)
    gen = tf.random.Generator.from_seed(1)
    assert not np.array_equal(ball.random_init(x, seed=gen), ball.random_init(x, seed=gen))
    assert np.all(ball.norm(ball.random_init(x)).numpy() <= 0.3 + 1e-6)
    np.testing.assert_array_equal(LpBall(p, 0.0).random_init(x, seed=1), 0.0)


# ------------------------------------------------------- config and validation


def test_config_round_trip_equality_and_aliases():
    for p, alias in [(1, "L1"), (2, "l2"), (np.inf, "linf"), (np.inf, "inf"), (np.inf, float("inf"))]:
        ball = LpBall(alias, 0.5)
        assert ball.p == p and ball == LpBall(p, 0.5)
        assert LpBall.from_config(ball.get_config()) == ball
        assert hash(LpBall.from_config(ball.get_config())) == hash(ball)
        assert "LpBall(p=" in repr(ball)
    assert LpBall(2, 0.5) != LpBall(2, 0.6) and LpBall(1, 1, l1_sparsity=0.9) != LpBall(1, 1)
    box = Box(-1.0, 2.0)
    assert Box.from_config(box.get_config()) == box and repr(box) == "Box(lo=-1.0, hi=2.0)"
    assert box.contains(np.array([[-1.0, 2.0 + 1e-7]])) and not box.contains(np.array([[2.1]]))
    np.testing.assert_array_equal(box.clip(np.array([[-3.0, 0.5, 3.0]])).numpy(), [[-1.0, 0.5, 2.0]])
    assert Box.coerce((0, 1)) == Box()
    # x in float64 with a float32 delta: the result follows delta.
    mixed = LpBall(2, 0.1).project_with_box(np.full((1, 3), 0.5), tf.ones([1, 3]))
    assert mixed.dtype == tf.float32


@pytest.mark.parametrize("kwargs, match", [
    ({"p": 3, "eps": 1.0}, r"Expected `p` to be one of 1, 2, inf.*Received: p=3"),
    ({"p": "l7", "eps": 1.0}, r"Expected `p` to be one of"),
    ({"p": True, "eps": 1.0}, r"Expected `p` to be one of"),
    ({"p": -np.inf, "eps": 1.0}, r"Expected `p` to be one of"),
    ({"p": 2, "eps": -0.1}, r"eps.*Received: eps=-0.1"),
    ({"p": 2, "eps": float("nan")}, r"eps"),
    ({"p": 2, "eps": float("inf")}, r"eps"),
    ({"p": 2, "eps": "1"}, r"eps"),
    ({"p": 1, "eps": 1.0, "l1_sparsity": 1.5}, r"l1_sparsity"),
])
def test_lpball_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LpBall(**kwargs)


@pytest.mark.parametrize("lo, hi, match", [
    (1.0, 1.0, r"Expected lo < hi"), (2.0, 1.0, r"lo < hi"),
    (float("nan"), 1.0, r"lo"), (0.0, float("inf"), r"hi"), (0.0, "1", r"hi"),
])
def test_box_rejects_bad_bounds(lo, hi, match):
    with pytest.raises(ValueError, match=match):
        Box(lo, hi)


def test_methods_reject_bad_inputs():
    ball = LpBall(2, 1.0)
    with pytest.raises(ValueError, match=r"same shape.*x.shape=\(2, 3\), delta.shape=\(2, 4\)"):
        ball.project_with_box(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"same shape"):
        LpBall(1, 1.0).steepest_direction(np.zeros((2, 3)), x=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"x to be given together with bounds"):
        ball.steepest_direction(np.zeros((2, 3)), bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"floating dtype"):
        ball.project(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"Expected grad to be a float tensor. Received: grad=None"):
        ball.steepest_direction(None)
    with pytest.raises(ValueError, match=r"rank >= 1"):
        ball.norm(1.0)
    with pytest.raises(ValueError, match=r"Box or a pair"):
        ball.project_with_box(np.zeros((1, 2)), np.zeros((1, 2)), bounds=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match=r"Expected seed"):
        ball.random_init(np.zeros((1, 2)), seed="abc")


@pytest.mark.parametrize("p", [1, 2, np.inf])
def test_contains_is_the_one_budget_tolerance(p):
    ball = LpBall(p, 0.5)
    direction = np.zeros((4, 3), np.float32)
    direction[:, 0] = 1.0
    scale = np.array([0.5, 0.5 * (1 + 0.5 * threats.CONTAINS_RTOL), 0.5 * (1 + 3 * threats.CONTAINS_RTOL), 0.0])
    delta = tf.constant(direction * scale[:, None].astype(np.float32))
    np.testing.assert_array_equal(ball.contains(delta).numpy(), [True, True, False, True])
    norms = ball.norm(delta)
    np.testing.assert_array_equal(threats.within_eps(norms.numpy(), 0.5), ball.contains(delta).numpy())
    np.testing.assert_array_equal(threats.within_eps(norms, 0.5).numpy(), ball.contains(delta).numpy())
    # eps = 0: only (numerically) zero perturbations.
    zero = LpBall(p, 0.0)
    np.testing.assert_array_equal(zero.contains(tf.constant([[0.0, 1e-7], [0.0, 1e-3]])).numpy(), [True, False])


@pytest.mark.parametrize("p", [1, 2, np.inf])
def test_projections_refuse_nan(p):
    ball = LpBall(p, 0.5)
    delta = np.array([[0.1, np.nan], [0.2, 0.3]], np.float32)
    with pytest.raises(ValueError, match="Expected `delta` to contain no NaN"):
        ball.project(delta)
    with pytest.raises(ValueError, match="Expected `delta` to contain no NaN"):
        ball.project_with_box(np.full((2, 2), 0.5, np.float32), delta)
    with pytest.raises(ValueError, match="Expected `x` to contain no NaN"):
        ball.project_with_box(np.where(np.isnan(delta), np.nan, 0.5).astype(np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected `delta` to contain no NaN"):
        tf.function(ball.project)(tf.constant(delta))
