"""Tests of the box-constrained linear step and the minimal-L2 attack.

The boxed-linear training transform is tested in test_transforms.py.
"""

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tfrobust import models
from tfrobust.attacks.boxed_linear import BoxedLinearL2
from tfrobust.attacks.boxed_linear import boxed_linear_step
from tfrobust.testing import linear_two_class_model


def reference_step(x, v, c, lo=0.0, hi=1.0):
    """Slow float64 reference: bisection on the KKT multiplier λ."""
    x, v = np.asarray(x, np.float64), np.asarray(v, np.float64)

    def delta(lam):
        return np.clip(-lam * v, lo - x, hi - x)

    g_min = float(v @ delta(1e300)) if np.any(v) else 0.0
    if c >= 0 or not np.any(v) or c < g_min:
        return np.zeros_like(x), False
    lam_lo, lam_hi = 0.0, 1.0
    while v @ delta(lam_hi) > c:
        lam_hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lam_lo + lam_hi)
        if v @ delta(mid) > c:
            lam_lo = mid
        else:
            lam_hi = mid
    return delta(0.5 * (lam_lo + lam_hi)), True


@st.composite
def step_problems(draw):
    d = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=d)
    x[rng.uniform(size=d) < 0.2] = draw(st.sampled_from([0.0, 1.0]))  # on faces
    v = rng.normal(size=d)
    v[rng.uniform(size=d) < 0.2] = 0.0
    g_min = float(v @ np.clip(-1e300 * v, -x, 1.0 - x))
    # c as a fraction of the reachable range, away from the feasibility edge.
    t = draw(st.one_of(st.floats(0.01, 0.98, allow_subnormal=False), st.floats(1.02, 2.0, allow_subnormal=False)))
    c = t * g_min if g_min < 0 else -draw(st.floats(0.01, 2.0, allow_subnormal=False))
    return x, v, c


@settings(max_examples=60, deadline=None)
@given(step_problems())
def test_step_matches_reference(problem):
    x, v, c = problem
    ref, ref_ok = reference_step(x, v, c)
    delta, ok = boxed_linear_step(x[None], v[None], np.array([c]))
    delta, ok = delta.numpy()[0], bool(ok.numpy()[0])
    assert ok == ref_ok
    if not ok:
        assert np.all(delta == 0)
        return
    assert abs(v @ delta - c) <= 1e-9 * (1 + abs(c))
    assert np.all(x + delta >= -1e-12) and np.all(x + delta <= 1 + 1e-12)
    np.testing.assert_allclose(np.linalg.norm(delta), np.linalg.norm(ref), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(delta, ref, atol=1e-6)


def test_step_is_the_constrained_minimizer_scipy():
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, v = rng.uniform(size=6), rng.normal(size=6)
        g_min = v @ np.clip(-1e300 * v, -x, 1 - x)
        c = 0.6 * g_min
        delta, ok = boxed_linear_step(x[None], v[None], [c])
        assert bool(ok[0])
        res = scipy.optimize.minimize(
            lambda d: d @ d, np.zeros(6), jac=lambda d: 2 * d, method="SLSQP",
            bounds=list(zip(-x, 1 - x)),
            constraints=[{"type": "eq", "fun": lambda d: v @ d - c, "jac": lambda d: v}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert res.success
        np.testing.assert_allclose(delta.numpy()[0], res.x, atol=1e-5)


def test_step_batched_float32_and_infeasible_cases():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(5, 3, 3, 2)).astype("float32")
    v = rng.normal(size=(5, 3, 3, 2)).astype("float32")
    v[1] = 0.0  # v = 0: infeasible
    c = np.array([-0.5, -0.5, 0.1, -1e6, -0.2], "float32")  # c >= 0 and unreachable
    delta, ok = boxed_linear_step(x, v, c)
    assert delta.shape == x.shape and delta.dtype == tf.float32
    np.testing.assert_array_equal(ok.numpy(), [True, False, False, False, True])
    assert np.all(delta.numpy()[[1, 2, 3]] == 0)
    for i in (0, 4):
        ref, _ = reference_step(x[i].ravel(), v[i].ravel(), float(c[i]))
        np.testing.assert_allclose(delta.numpy()[i].ravel(), ref, atol=2e-5)
        np.testing.assert_allclose(np.sum(v[i] * delta.numpy()[i]), c[i], rtol=1e-4, atol=1e-5)
    # Other bounds: the solution stays in [lo, hi].
    xb = rng.uniform(-1.0, 2.0, size=(3, 7)).astype("float32")
    vb = rng.normal(size=(3, 7)).astype("float32")
    db, okb = boxed_linear_step(xb, vb, [-0.3, -0.3, -0.3], bounds=(-1.0, 2.0))
    assert np.all(okb.numpy())
    assert np.all(xb + db.numpy() >= -1.0 - 1e-6) and np.all(xb + db.numpy() <= 2.0 + 1e-6)


def test_step_bad_inputs():
    x = np.full((2, 4), 0.5, "float32")
    v = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="shaped like x"):
        boxed_linear_step(x, np.ones((2, 3), "float32"), [-1.0, -1.0])
    with pytest.raises(ValueError, match="`c` of shape"):
        boxed_linear_step(x, v, [-1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="`v` to be finite"):
        boxed_linear_step(x, np.full((2, 4), np.nan, "float32"), [-1.0, -1.0])
    with pytest.raises(ValueError, match="inside bounds"):
        boxed_linear_step(x + 1.0, v, [-1.0, -1.0])
    with pytest.raises(ValueError, match="bounds"):
        boxed_linear_step(x, v, [-1.0, -1.0], bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="floating dtype"):
        boxed_linear_step(np.zeros((2, 4), "int32"), v, [-1.0, -1.0])


# ----------------------------------------------------------------------------
# The attack.

D = 16


def _linear_model(seed=0):
    """Two classes with f_0 - f_1 = w·x + b; the boundary is a hyperplane."""
    return linear_two_class_model(seed, (4, 4, 1))


@pytest.fixture(scope="module")
def attack():
    return BoxedLinearL2(mult=1.2)


@pytest.fixture(scope="module")
def mlp():
    keras.utils.set_random_seed(3)
    model = models.mlp1layer((4, 4, 1), 5, hidden_units=24)
    rng = np.random.default_rng(3)
    # Larger weights than the default init make the net clearly nonlinear.
    model.get_layer("hidden").kernel.assign(rng.normal(size=(D, 24)) * 0.8)
    model.get_layer("logits").kernel.assign(rng.normal(size=(24, 5)))
    return model


def test_linear_model_distance_closed_form(attack):
    model, w, b = _linear_model()
    x = np.random.default_rng(5).uniform(0.4, 0.6, size=(6, 4, 4, 1)).astype("float32")
    margin = x.reshape(6, -1) @ w + b
    exact = np.abs(margin) / np.linalg.norm(w)
    # The unconstrained closest boundary point must lie inside the box.
    proj = x.reshape(6, -1) - (margin / np.linalg.norm(w) ** 2)[:, None] * w
    assert np.all((proj > 0) & (proj < 1))
    result = attack.minimize(model, x)
    norm = result.norm.numpy()
    assert np.all(result.success.numpy())
    assert np.all(norm >= exact * (1 - 1e-5))
    assert np.all(norm <= exact * 1.01 + attack.tol)


def test_every_delta_flips_and_batched_equals_single(attack, mlp):
    x = np.random.default_rng(6).uniform(size=(6, 4, 4, 1)).astype("float32")
    pred = np.argmax(mlp(x).numpy(), -1)
    result = attack.minimize(mlp, x)
    assert np.all(result.success.numpy())
    x_adv = result.x_adv.numpy()
    assert np.all((x_adv >= 0) & (x_adv <= 1))
    logits = mlp(x_adv).numpy()
    own = logits[np.arange(6), pred]
    logits[np.arange(6), pred] = -np.inf
    assert np.all(logits.max(-1) > own)
    np.testing.assert_allclose(result.norm.numpy(),
                               np.linalg.norm((x_adv - x).reshape(6, -1), axis=-1), rtol=1e-5)
    singles = np.concatenate([attack.minimize(mlp, x[i:i + 1]).norm.numpy() for i in range(6)])
    np.testing.assert_allclose(result.norm.numpy(), singles, rtol=1e-4, atol=1e-6)
    # Chunking with a padded last chunk gives the same answer.
    # (Same instance: its compiled search is reused, no new trace.)
    attack.batch_size = 4
    try:
        chunked = attack.minimize(mlp, x)
    finally:
        attack.batch_size = 25
    np.testing.assert_allclose(chunked.norm.numpy(), result.norm.numpy(), rtol=1e-4, atol=1e-6)
    # __call__ returns the same points.
    np.testing.assert_allclose(attack(mlp, x).numpy(), x_adv, atol=1e-6)


def test_no_overshoot_along_returned_direction(attack, mlp):
    # The search ends on the boundary within `tol`: shrinking the returned δ
    # by a little more than tol undoes the attack for most points.
    x = np.random.default_rng(6).uniform(size=(6, 4, 4, 1)).astype("float32")
    pred = np.argmax(mlp(x).numpy(), -1)
    result = attack.minimize(mlp, x)
    delta = (result.x_adv.numpy() - x).reshape(6, -1)
    norms = np.linalg.norm(delta, axis=-1)
    shrink = np.maximum(0.0, 1.0 - 3 * attack.tol / norms)[:, None]
    back = np.argmax(mlp((x.reshape(6, -1) + shrink * delta).reshape(x.shape)).numpy(), -1)
    assert np.mean(back == pred) >= 0.5


def test_targeted_and_already_adversarial(attack, mlp):
    x = np.random.default_rng(7).uniform(size=(6, 4, 4, 1)).astype("float32")
    pred = np.argmax(mlp(x).numpy(), -1)
    target = (pred + 1) % 5
    result = attack.minimize(mlp, x, target, targeted=True)
    hit = result.success.numpy()
    assert hit.any()
    np.testing.assert_array_equal(np.argmax(mlp(result.x_adv).numpy(), -1)[hit], target[hit])
    # Labels that the model already gets wrong: norm 0, x returned.
    wrong = (pred + 2) % 5
    res = attack.minimize(mlp, x, wrong)
    np.testing.assert_array_equal(res.norm.numpy(), 0.0)
    np.testing.assert_allclose(res.x_adv.numpy(), x)


def test_attack_bad_arguments(mlp):
    for kwargs, name in [({"mult": 1.0}, "mult"), ({"tol": 0.0}, "tol"),
                         ({"max_iter": 0}, "max_iter"), ({"batch_size": 0}, "batch_size"),
                         ({"give_up_after": -1}, "give_up_after"),
                         ({"flat_mult": float("nan")}, "flat_mult"),
                         ({"bounds": (0.0, 0.0)}, "bounds")]:
        with pytest.raises(ValueError, match=name):
            BoxedLinearL2(**kwargs)
    attack = BoxedLinearL2()
    x = np.full((2, 4, 4, 1), 0.5, "float32")
    with pytest.raises(ValueError, match="finite"):
        attack.minimize(mlp, np.full((2, 4, 4, 1), np.nan, "float32"))
    with pytest.raises(ValueError, match="inside bounds"):
        attack.minimize(mlp, x + 1.0)
    with pytest.raises(ValueError, match="y"):
        attack.minimize(mlp, x, np.array([0, 7]))
    with pytest.raises(ValueError, match="non-empty"):
        attack.minimize(mlp, x[:0])

