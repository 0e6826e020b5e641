"""Tests of tfrobust.layers.activations.ScaledSoftplus."""

import math

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.layers import ScaledSoftplus


def _reference(x, alpha):
    x = np.asarray(x, np.float64)
    return np.logaddexp(0.0, alpha * x) / alpha


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    alpha=st.floats(0.05, 200.0, allow_subnormal=False),
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
        elements=st.floats(-50.0, 50.0, width=32, allow_subnormal=False),
    ),
)
def test_matches_numpy_reference(alpha, x):
    y = ScaledSoftplus(alpha)(x).numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, _reference(x, alpha), rtol=1e-5, atol=1e-6)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    alpha=st.floats(0.05, 200.0, allow_subnormal=False),
    x=hnp.arrays(np.float32, (7,), elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False)),
)
def test_close_to_relu_from_above(alpha, x):
    # softplus(a x) / a - relu(x) lies in (0, log(2) / a].
    y = ScaledSoftplus(alpha)(x).numpy().astype(np.float64)
    gap = y - np.maximum(x.astype(np.float64), 0.0)
    tol = 1e-6 * np.maximum(1.0, np.abs(x))
    assert np.all(gap >= -tol)
    assert np.all(gap <= math.log(2.0) / alpha + tol)


def test_large_inputs_are_stable():
    x = tf.constant([-3e38, -1e6, -1e4, 1e4, 1e6, 3e37], tf.float32)
    layer = ScaledSoftplus(10.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = tape.gradient(y, x).numpy()
    y = y.numpy()
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(y[:3], 0.0)
    # For large positive x the value is x itself (no overflow to inf).
    np.testing.assert_allclose(y[3:], x.numpy()[3:], rtol=1e-6)
    # The derivative is sigmoid(alpha x): 0 on the left, 1 on the right.
    np.testing.assert_allclose(grad, [0, 0, 0, 1, 1, 1], atol=1e-7)


def test_gradient_is_scaled_sigmoid():
    x = tf.constant(np.linspace(-2.0, 2.0, 41), tf.float32)
    alpha = 3.5
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ScaledSoftplus(alpha)(x)
    grad = tape.gradient(y, x).numpy()
    expected = 1.0 / (1.0 + np.exp(-alpha * x.numpy().astype(np.float64)))
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_config_round_trip():
    layer = ScaledSoftplus(alpha=4.0, name="sp")
    config = layer.get_config()
    assert config["alpha"] == 4.0
    clone = ScaledSoftplus.from_config(config)
    assert clone.alpha == 4.0 and clone.name == "sp"
    # The registered name lets Keras rebuild it from a serialized dict.
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, ScaledSoftplus) and restored.alpha == 4.0
    x = np.linspace(-1.0, 1.0, 9, dtype=np.float32)
    np.testing.assert_array_equal(layer(x).numpy(), restored(x).numpy())


def test_default_alpha_is_ten():
    assert ScaledSoftplus().alpha == 10.0
    np.testing.assert_allclose(
        ScaledSoftplus()(np.zeros(1, np.float32)).numpy(), math.log(2) / 10,
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "alpha", [0.0, -1.0, float("nan"), float("inf"), "10", None, True]
)
def test_bad_alpha_raises(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ScaledSoftplus(alpha)


def test_layers_package_imports_nothing_of_tfrobust_above_it():
    # layers/ sits at the bottom: any model, defense or attack may use it.
    import subprocess
    import sys

    script = (
        "import sys, tfrobust.layers\n"
        "print(sorted(m for m in sys.modules if m.startswith('tfrobust')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = eval(out.stdout.strip().splitlines()[-1])
    allowed = {"tfrobust", "tfrobust._validate"}
    assert [m for m in loaded if m not in allowed and not m.startswith("tfrobust.layers")] == []
