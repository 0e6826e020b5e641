"""Tests of the Cross-Lipschitz regularizer and weight decay."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import models
from tfrobust import regularizers
from tfrobust.regularizers import cross_lipschitz as cl

RTOL = 1e-4  # float32 model vs float64 reference


def brute_force_omega(model, x, training=False, per_example=True):
    """Ω by its definition: explicit pairs (l, m), float64, exact Jacobians.

    With `per_example=True` each example's gradient is the diagonal block
    ∂f(x_i)/∂x_i of the full Jacobian; otherwise the gradient of the batch
    sum of each logit column (the original's quantity).
    """
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=training)
    jac = tape.jacobian(logits, x).numpy().astype(np.float64)  # [n, K, n, ...]
    n, k = logits.shape
    jac = jac.reshape(n, k, n, -1)
    if per_example:
        grads = np.stack([jac[i, :, i] for i in range(n)])
    else:
        grads = jac.sum(axis=0).transpose(1, 0, 2)  # [n, K, d]
    total = 0.0
    for i in range(n):
        for l in range(k):
            for m in range(k):
                total += np.sum((grads[i, l] - grads[i, m]) ** 2)
    return total / (n * k * k)


def _mlp(seed, hidden=8, classes=4, shape=(4, 4, 1), scale=3.0):
    model = models.mlp1layer(shape, classes, hidden_units=hidden, alpha=10.0)
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    # Larger than the default init so σ' varies across units and examples.
    model.get_layer("hidden").kernel.assign(rng.normal(size=(d, hidden)) * scale / math.sqrt(d))
    model.get_layer("logits").kernel.assign(rng.normal(size=(hidden, classes)))
    return model


def _convnet(classes=3, batchnorm=False):
    layers = [keras.Input((5, 5, 2)), keras.layers.Conv2D(3, 3, activation="softplus")]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
        layers.append(keras.layers.Activation("tanh"))
    layers += [keras.layers.Flatten(), keras.layers.Dense(classes)]
    return keras.Sequential(layers)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_forms_match_brute_force(seed):
    model = _mlp(seed)
    x = np.random.default_rng(seed + 10).uniform(size=(5, 4, 4, 1)).astype("float32")
    ref = brute_force_omega(model, x)
    generic = float(regularizers.cross_lipschitz_penalty(model, x, training=False))
    closed = float(regularizers.cross_lipschitz_mlp1layer(model, x))
    per_ex = float(regularizers.cross_lipschitz_penalty(model, x, per_example=True))
    assert ref > 0
    np.testing.assert_allclose([generic, closed, per_ex], ref, rtol=RTOL)


def test_convnet_generic_matches_brute_force():
    model = _convnet()
    x = np.random.default_rng(3).uniform(size=(4, 5, 5, 2)).astype("float32")
    ref = brute_force_omega(model, x)
    np.testing.assert_allclose(
        float(regularizers.cross_lipschitz_penalty(model, x)), ref, rtol=RTOL
    )
    np.testing.assert_allclose(
        float(regularizers.cross_lipschitz_penalty(model, x, training=False, per_example=True)),
        ref, rtol=RTOL,
    )


def test_batchnorm_coupling_batch_sum_vs_per_example():
    # In training mode BatchNorm mixes the examples: the batch-sum gradient
    # (the original's) and the exact per-example gradient differ, and each
    # form matches its own definition.
    model = _convnet(batchnorm=True)
    x = np.random.default_rng(4).uniform(size=(3, 5, 5, 2)).astype("float32")
    summed = brute_force_omega(model, x, training=True, per_example=False)
    exact = brute_force_omega(model, x, training=True, per_example=True)
    assert abs(summed - exact) > 1e-3 * exact
    np.testing.assert_allclose(
        float(regularizers.cross_lipschitz_penalty(model, x, training=True)), summed, rtol=1e-3
    )
    np.testing.assert_allclose(
        float(regularizers.cross_lipschitz_penalty(model, x, training=True, per_example=True)),
        exact, rtol=1e-3,
    )


@pytest.mark.parametrize("form", ["generic", "mlp1layer"])
def test_gradient_wrt_weights_finite_nonzero_and_forms_agree(form):
    model = _mlp(5)
    x = np.random.default_rng(6).uniform(size=(6, 4, 4, 1)).astype("float32")
    reg = regularizers.CrossLipschitz(0.5, form=form)
    with tf.GradientTape() as tape:
        value = reg(model, x, None, None)
    grads = tape.gradient(value, model.trainable_variables)
    for g in grads:
        assert g is not None
        assert np.all(np.isfinite(g.numpy()))
        assert float(tf.norm(g)) > 0
    with tf.GradientTape() as tape:
        other = regularizers.cross_lipschitz_penalty(model, x, training=False) * 0.5
    ref = tape.gradient(other, model.trainable_variables)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-3, atol=1e-6)


def test_penalty_can_be_minimized_in_tf_function():
    model = _mlp(7)
    x = np.random.default_rng(8).uniform(size=(6, 4, 4, 1)).astype("float32")
    reg = regularizers.CrossLipschitz(1.0, form="generic")
    opt = keras.optimizers.SGD(0.01)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            value = reg(model, x, None, None)
        opt.apply_gradients(zip(tape.gradient(value, model.trainable_variables),
                                model.trainable_variables))
        return value

    first = float(step(x))
    for _ in range(5):
        last = float(step(x))
    assert last < first


@pytest.mark.parametrize("form", ["generic", "mlp1layer"])
def test_zero_when_all_logits_are_the_same_function(form):
    model = _mlp(9)
    w = model.get_layer("logits").kernel
    w.assign(tf.tile(w[:, :1], [1, w.shape[1]]))
    x = np.random.default_rng(1).uniform(size=(4, 4, 4, 1)).astype("float32")
    value = regularizers.CrossLipschitz(1.0, form=form).penalty(model, x)
    assert abs(float(value)) < 1e-9


def test_auto_picks_closed_form_only_for_mlp(monkeypatch):
    calls = []
    real = cl.cross_lipschitz_mlp1layer
    monkeypatch.setattr(cl, "cross_lipschitz_mlp1layer",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    reg = regularizers.CrossLipschitz(1.0)
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype("float32")
    reg(_mlp(0), x, None, None)
    assert calls == [1]
    reg(_convnet(), np.zeros((2, 5, 5, 2), "float32"), None, None)
    assert calls == [1]
    assert models.is_mlp1layer(_mlp(0))
    assert not models.is_mlp1layer(_convnet())
    dropout_mlp = models.mlp1layer((4, 4, 1), 3, hidden_units=5, input_dropout=0.1,
                                   hidden_dropout=0.5)
    assert models.is_mlp1layer(dropout_mlp)


def test_closed_form_ignores_dropout_and_matches_inference_network():
    model = models.mlp1layer((4, 4, 1), 3, hidden_units=6, hidden_dropout=0.5)
    x = np.random.default_rng(2).uniform(size=(4, 4, 4, 1)).astype("float32")
    closed = regularizers.cross_lipschitz_mlp1layer(model, x, training=True)
    ref = brute_force_omega(model, x, training=False)
    np.testing.assert_allclose(float(closed), ref, rtol=RTOL)


def test_config_round_trip_and_name():
    reg = regularizers.CrossLipschitz(1e-4, form="generic", per_example=True)
    again = regularizers.CrossLipschitz.from_config(reg.get_config())
    assert again.get_config() == reg.get_config()
    assert reg.name == reg.__name__ == "cross_lipschitz"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(reg))
    assert isinstance(restored, regularizers.CrossLipschitz)
    assert restored.get_config() == reg.get_config()
    wd = regularizers.WeightDecay(0.3)
    assert regularizers.WeightDecay.from_config(wd.get_config()).lmbd == 0.3
    assert wd.name == "weight_decay"


def test_weight_decay_only_on_kernels():
    model = keras.Sequential([
        keras.Input((3, 3, 1)), keras.layers.Conv2D(2, 2), keras.layers.BatchNormalization(),
        keras.layers.Flatten(), keras.layers.Dense(2),
    ])
    for v in model.trainable_variables:
        v.assign(tf.fill(v.shape, 2.0))
    kernels = [model.layers[0].kernel.numpy(), model.layers[3].kernel.numpy()]
    expected = 0.1 * sum(0.5 * np.sum(k.astype(np.float64) ** 2) for k in kernels)
    np.testing.assert_allclose(float(regularizers.WeightDecay(0.1)(model, None, None, None)),
                               expected, rtol=1e-6)


@pytest.mark.parametrize("lmbd", [-1.0, float("nan"), float("inf"), "0.1", True, None])
def test_bad_lmbd_raises(lmbd):
    with pytest.raises(ValueError, match="lmbd"):
        regularizers.CrossLipschitz(lmbd)
    with pytest.raises(ValueError, match="lmbd"):
        regularizers.WeightDecay(lmbd)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="form"):
        regularizers.CrossLipschitz(0.1, form="analytic")
    with pytest.raises(ValueError, match="one-hidden-layer"):
        regularizers.CrossLipschitz(0.1, form="mlp1layer")(
            _convnet(), np.zeros((2, 5, 5, 2), "float32"), None, None)
    model = _mlp(0)
    with pytest.raises(ValueError, match="floating dtype"):
        regularizers.cross_lipschitz_penalty(model, np.zeros((2, 4, 4, 1), "int32"))
    with pytest.raises(ValueError, match="non-empty"):
        regularizers.cross_lipschitz_penalty(model, np.zeros((0, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match="rank"):
        regularizers.cross_lipschitz_penalty(model, np.zeros((4,), "float32"))
    with pytest.raises(ValueError, match="16 values"):
        regularizers.cross_lipschitz_mlp1layer(model, np.zeros((2, 5), "float32"))
    biased = keras.Sequential([keras.Input((4,)), keras.layers.Flatten(),
                               keras.layers.Dense(3), keras.layers.Dense(2, use_bias=False)])
    with pytest.raises(ValueError, match="one-hidden-layer"):
        models.unpack_mlp1layer(biased)


def test_modules_own_their_pieces():
    from tfrobust.models import mlp
    from tfrobust.regularizers import weight_decay

    assert regularizers.WeightDecay is weight_decay.WeightDecay
    assert models.is_mlp1layer is mlp.is_mlp1layer
    assert models.unpack_mlp1layer is mlp.unpack_mlp1layer
    # Serialized names are unchanged by the move.
    assert keras.saving.get_registered_name(regularizers.WeightDecay) == "tfrobust>WeightDecay"


@pytest.mark.parametrize("per_example", ["no", 1, None])
def test_per_example_must_be_a_bool(per_example):
    with pytest.raises(ValueError, match=r"Expected `per_example` to be a bool"):
        regularizers.CrossLipschitz(0.1, per_example=per_example)


def test_auto_form_follows_the_measured_cost_model():
    # The paper's net (H = 1024, K = 10): the K gradient passes are cheaper
    # at small batches, the closed form (fixed d H^2 cost) at large ones.
    big = models.mlp1layer((28, 28, 1), 10)
    assert cl.auto_form(big, tf.zeros([32, 28, 28, 1])) == "generic"
    assert cl.auto_form(big, tf.zeros([256, 28, 28, 1])) == "mlp1layer"
    assert cl.auto_form(big, tf.TensorSpec([None, 28, 28, 1])) == "mlp1layer"
    assert cl.auto_form(_convnet(), np.zeros((512, 5, 5, 2), "float32")) == "generic"
    # Both forms give the same value, and the explicit choice is kept.
    x = np.random.default_rng(3).uniform(size=(32, 28, 28, 1)).astype("float32")
    auto = regularizers.CrossLipschitz(1.0).penalty(big, x)
    closed = regularizers.CrossLipschitz(1.0, form="mlp1layer").penalty(big, x)
    np.testing.assert_allclose(float(auto), float(closed), rtol=1e-4)
    assert regularizers.CrossLipschitz(1.0, form="mlp1layer").form == "mlp1layer"
