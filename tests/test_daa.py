"""Tests of the distributionally adversarial attack (DAA-BLOB and DAA-DGF)."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.attacks.daa import DAA
from tfrobust.attacks.daa import kernel_term
from tfrobust.attacks.daa import median_bandwidth
from tfrobust.testing import accuracy
from tfrobust.testing import run_attack_test
from tfrobust.testing import small_trained_mnist_model

INF = np.inf


def _ball(eps, p=INF):
    return threats.LpBall(p, eps)


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


# ---------------------------------------------------------------------------
# The kernel term against a slow NumPy reference written from the equations.


def _reference_term(x, g, variant):
    n = x.shape[0]
    xf = x.reshape(n, -1).astype(np.float64)
    gf = g.reshape(n, -1).astype(np.float64)
    d2 = np.array([[np.sum((xf[i] - xf[j]) ** 2) for j in range(n)] for i in range(n)])
    m = n if variant == "blob" else n + 1
    h2 = 0.5 * np.median(d2) / math.log(m)
    out = np.zeros_like(xf)
    for i in range(n):
        for j in range(n):
            k = math.exp(-d2[i, j] / (2 * h2))
            if variant == "blob":
                # k(x_i, x_j) grad_j - grad_{x_j} k(x_i, x_j), averaged.
                out[i] += (k * gf[j] - k * (xf[i] - xf[j]) / h2) / n
            else:
                out[i] += (d2[i, j] / (2 * h2) - 1) * k * (xf[i] - xf[j])
    return out.reshape(x.shape)


@pytest.mark.parametrize("variant", ["blob", "dgf"])
@pytest.mark.parametrize("n", [2, 5, 6])
def test_kernel_term_matches_reference(rng, variant, n):
    x = rng.uniform(size=(n, 3, 2, 2)).astype("float32")
    g = rng.normal(size=(n, 3, 2, 2)).astype("float32")
    np.testing.assert_allclose(kernel_term(x, g, variant), _reference_term(x, g, variant), rtol=1e-4, atol=1e-5)


def test_median_bandwidth_uses_all_pairs_and_falls_back():
    d2 = tf.constant([[0.0, 4.0, 8.0], [4.0, 0.0, 2.0], [8.0, 2.0, 0.0]])
    # Median of the nine entries (three zeros on the diagonal) is 2.
    assert float(median_bandwidth(d2, "blob")) == pytest.approx(0.5 * 2.0 / math.log(3))
    assert float(median_bandwidth(d2, "dgf")) == pytest.approx(0.5 * 2.0 / math.log(4))
    # One particle: log 1 = 0, the heuristic is undefined.
    assert float(median_bandwidth(tf.zeros([1, 1]), "blob")) == 1.0


def test_single_particle_blob_term_is_the_gradient():
    x = tf.random.uniform([1, 4, 4, 1])
    g = tf.random.normal([1, 4, 4, 1])
    np.testing.assert_allclose(kernel_term(x, g, "blob"), g, rtol=1e-6)
    np.testing.assert_allclose(kernel_term(x, g, "dgf"), tf.zeros_like(g), atol=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=hnp.arrays(np.float32, (5, 6), elements=st.floats(0, 1, width=32, allow_subnormal=False)),
    g=hnp.arrays(np.float32, (5, 6), elements=st.floats(-5, 5, width=32, allow_subnormal=False)),
    perm=st.permutations(list(range(5))),
    shift=st.floats(-0.5, 0.5, width=32, allow_subnormal=False),
    variant=st.sampled_from(["blob", "dgf"]),
)
def test_kernel_term_is_permutation_equivariant_and_translation_invariant(x, g, perm, shift, variant):
    term = np.asarray(kernel_term(x, g, variant))
    assert np.all(np.isfinite(term))
    permuted = np.asarray(kernel_term(x[perm], g[perm], variant))
    np.testing.assert_allclose(permuted, term[perm], rtol=1e-4, atol=1e-4)
    # The kernel sees only differences; the d2 expansion loses a little.
    shifted = np.asarray(kernel_term(x + np.float32(shift), g, variant))
    scale = 1.0 + np.abs(term).max()
    np.testing.assert_allclose(shifted, term, atol=2e-3 * scale)


# ---------------------------------------------------------------------------
# The attack.


@pytest.mark.parametrize("variant", ["blob", "dgf"])
def test_attack_table(trained, variant):
    run_attack_test(
        lambda e, s: DAA(_ball(e), variant=variant, steps=10, step_size=e / 4, seed=s),
        trained.model, trained.x[:32], trained.y[:32], eps=0.2,
        max_accuracy_ratio=0.5, min_target_rate=0.3, check_determinism=(variant == "blob"),
    )


def test_c_zero_is_exactly_pgd(trained):
    x, y = trained.x, trained.y
    for variant in ("blob", "dgf"):
        daa = DAA(_ball(0.1), variant=variant, c=0.0, steps=8, step_size=0.025, seed=3)(trained.model, x, y)
        pgd = PGD(_ball(0.1), steps=8, step_size=0.025, seed=3)(trained.model, x, y)
        np.testing.assert_array_equal(np.asarray(daa), np.asarray(pgd))


def test_daa_at_least_as_strong_as_pgd(trained):
    """Same steps, step size and random start: DAA is no weaker (a few examples of slack)."""
    x, y = trained.x, trained.y
    eps, steps, step = 0.1, 10, 0.025
    pgd = accuracy(trained.model, PGD(_ball(eps), steps=steps, step_size=step, seed=0)(trained.model, x, y), y)
    slack = 3.0 / len(x)
    for variant in ("blob", "dgf"):
        daa = DAA(_ball(eps), variant=variant, steps=steps, step_size=step, seed=0)
        adv = accuracy(trained.model, daa(trained.model, x, y), y)
        assert adv <= pgd + slack, (variant, adv, pgd)
        assert adv < accuracy(trained.model, x, y)


def test_kernel_term_changes_the_iterates(trained):
    """With the paper's c the particles interact: the result differs from PGD's."""
    x, y = trained.x[:32], trained.y[:32]
    daa = DAA(_ball(0.1), variant="blob", c=50.0, steps=5, step_size=0.025, seed=0)
    pgd = PGD(_ball(0.1), steps=5, step_size=0.025, seed=0)
    assert np.abs(np.asarray(daa(trained.model, x, y)) - np.asarray(pgd(trained.model, x, y))).max() > 0


def test_defaults_follow_the_paper():
    blob = DAA(_ball(0.3))
    assert (blob.variant, blob.c, blob.steps, blob.random_start) == ("blob", 1.1, 200, True)
    assert blob.step_size == pytest.approx(0.01)
    assert DAA(_ball(0.3), loss="margin").c == 10.0
    assert DAA(_ball(0.3), variant="dgf").c == -0.001
    assert DAA(_ball(0.3), variant="dgf", loss="cw").c == -0.01
    assert DAA(_ball(0.3), loss="dlr", c=2.0).get_config()["c"] == 2.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DAA(_ball(0.1), variant="svgd"), "variant"),
        (lambda: DAA(_ball(0.1), c=float("nan")), "c"),
        (lambda: DAA(_ball(0.1), c="big"), "c"),
        (lambda: DAA(_ball(0.1), loss="dlr"), "c"),
        (lambda: DAA(_ball(0.1), steps=0), "steps"),
        (lambda: DAA(_ball(0.1), step_size=-1.0), "step_size"),
        (lambda: DAA(None), "threat"),
        (lambda: kernel_term(np.zeros((2, 3)), np.zeros((2, 4))), "same shape"),
        (lambda: kernel_term(np.zeros((2, 3)), np.zeros((2, 3)), "svgd"), "variant"),
        (lambda: median_bandwidth(np.zeros((2, 2)), "x"), "variant"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise(trained):
    attack = DAA(_ball(0.1), steps=1)
    x, y = trained.x[:4], trained.y[:4]
    with pytest.raises(ValueError, match="bounds"):
        attack(trained.model, x - 1.0, y)
    with pytest.raises(ValueError, match="finite"):
        attack(trained.model, np.full_like(x, np.inf), y)
    with pytest.raises(ValueError, match="y"):
        attack(trained.model, x, np.full(4, 10))
