"""Tests of tfrobust.losses against NumPy references and their invariances."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfrobust import losses

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def logits_and_labels(draw, min_classes=4):
    batch, classes = draw(st.integers(1, 5)), draw(st.integers(min_classes, 8))
    logits = draw(hnp.arrays(np.float64, (batch, classes), elements=st.floats(-20, 20, allow_subnormal=False)))
    y = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))
    t = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))
    return logits, y, t


def np_reference(logits, y, t):
    rows = np.arange(len(y))
    z_y, z_t = logits[rows, y], logits[rows, t]
    other = logits.copy()
    other[rows, y] = -np.inf
    srt = -np.sort(-logits, axis=1)
    shifted = logits - logits.max(1, keepdims=True)
    return {
        "ce": np.log(np.exp(shifted).sum(1)) - shifted[rows, y],
        "margin": other.max(1) - z_y,
        "dlr": -(z_y - other.max(1)) / (srt[:, 0] - srt[:, 2] + 1e-12),
        "dlr_t": -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12),
    }


@PROPERTY
@given(logits_and_labels())
def test_losses_match_numpy(case):
    logits, y, t = case
    ref = np_reference(logits, y, t)
    np.testing.assert_allclose(losses.cross_entropy(logits, y).numpy(), ref["ce"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(losses.margin(logits, y).numpy(), ref["margin"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(losses.dlr(logits, y).numpy(), ref["dlr"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(losses.dlr_targeted(logits, y, t).numpy(), ref["dlr_t"], rtol=1e-9, atol=1e-9)
    kappa = 0.5
    np.testing.assert_allclose(losses.margin(logits, y, kappa=kappa).numpy(), np.minimum(ref["margin"], kappa))


@PROPERTY
@given(logits_and_labels(), st.floats(-5, 5, allow_subnormal=False), st.floats(0.1, 10, allow_subnormal=False))
def test_margin_sign_and_dlr_invariances(case, shift, scale):
    logits, y, t = case
    # Distinct logits make "misclassified" unambiguous.
    logits = logits + 1e-3 * np.arange(logits.shape[1])
    misclassified = np.argmax(logits, 1) != y
    np.testing.assert_array_equal(losses.margin(logits, y).numpy() > 0, misclassified)
    np.testing.assert_array_equal(losses.dlr(logits, y).numpy() > 0, misclassified)
    moved = scale * logits + shift
    for fn, args in [(losses.dlr, (y,)), (losses.dlr_targeted, (y, t))]:
        np.testing.assert_allclose(fn(moved, *args).numpy(), fn(logits, *args).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(losses.margin(moved, y).numpy(), scale * losses.margin(logits, y).numpy(),
                               rtol=1e-9, atol=1e-9)


def test_targeted_dlr_grows_with_the_target_logit():
    logits = np.array([[3.0, 1.0, 0.5, 0.0, -1.0]])
    base = losses.dlr_targeted(logits, [0], [2]).numpy()
    logits[0, 2] += 1.0
    assert losses.dlr_targeted(logits, [0], [2]).numpy() > base


def test_graph_mode_float32_and_gradients():
    logits = tf.random.normal([6, 10])
    y = tf.constant([0, 1, 2, 3, 4, 5])
    spec = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)]
    for fn in (losses.cross_entropy, losses.margin, losses.dlr):
        graph = tf.function(fn, input_signature=spec)
        out = graph(logits, y)
        assert out.dtype == tf.float32 and out.shape == (6,)
        np.testing.assert_allclose(out.numpy(), fn(logits, y).numpy(), rtol=1e-6)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = tf.reduce_sum(fn(logits, y))
        assert np.all(np.isfinite(tape.gradient(value, logits).numpy()))
    # Equal logits: DLR's denominator is only its 1e-12 guard, the loss 0.
    np.testing.assert_array_equal(losses.dlr(tf.zeros([2, 4]), [0, 1]).numpy(), 0.0)


def test_get_resolves_names_and_callables():
    assert losses.get("ce") is losses.cross_entropy and losses.get("CW") is losses.margin
    assert losses.get("dlr") is losses.dlr and losses.get(len) is len
    with pytest.raises(ValueError, match=r"Expected a callable or one of .* Received: identifier='hinge'"):
        losses.get("hinge")


@pytest.mark.parametrize("call, match", [
    (lambda: losses.cross_entropy(np.zeros((2, 3, 1)), [0, 1]), r"logits of shape \[B, K\]"),
    (lambda: losses.cross_entropy(np.zeros((2, 3), np.int32), [0, 1]), r"logits to have a floating dtype"),
    (lambda: losses.cross_entropy(np.zeros((2, 3)), [0.0, 1.0]), r"y to have an integer dtype"),
    (lambda: losses.margin(np.zeros((2, 3)), [[0], [1]]), r"y of shape \[B\]"),
    (lambda: losses.margin(np.zeros((2, 3)), [0, 1, 2]), r"one label per row.*y.shape=\(3,\)"),
    (lambda: losses.margin(np.zeros((2, 3)), [0, 3]), r"Expected y in \[0, 3\)"),
    (lambda: losses.margin(np.zeros((2, 3)), [-1, 0]), r"Expected y in"),
    (lambda: losses.margin(np.zeros((2, 1)), [0, 0]), r"at least 2 classes"),
    (lambda: losses.margin(np.zeros((2, 3)), [0, 1], kappa=-1.0), r"kappa.*Received: kappa=-1.0"),
    (lambda: losses.margin(np.zeros((2, 3)), [0, 1], kappa=float("nan")), r"kappa"),
    (lambda: losses.dlr(np.zeros((2, 2)), [0, 1]), r"at least 3 classes"),
    (lambda: losses.dlr_targeted(np.zeros((2, 3)), [0, 1], [1, 2]), r"at least 4 classes"),
    (lambda: losses.dlr_targeted(np.zeros((2, 5)), [0, 1], [1, 5]), r"Expected y_target in \[0, 5\)"),
])
def test_losses_reject_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
