"""Tests of InvertAndClassify: projection, restarts, BPDA, save/load, bad inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.defenses import InvertAndClassify

LATENT = 4


def _generator(seed=0):
    # Injective on the sampled region (64 outputs from 4 latents through a
    # random affine map and a sigmoid), so z is identifiable from G(z).
    keras.utils.set_random_seed(seed)
    z = keras.Input((LATENT,))
    h = keras.layers.Dense(64, activation="sigmoid")(z)
    return keras.Model(z, keras.layers.Reshape((8, 8, 1))(h))


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def _defense(**kwargs):
    args = dict(steps=300, learning_rate=0.05, restarts=4, optimizer="adam", seed=0)
    args.update(kwargs)
    return InvertAndClassify(_generator(), _classifier(), **args)


@pytest.fixture
def z_true():
    return np.random.default_rng(0).normal(size=(6, LATENT)).astype("float32") * 0.8


def test_projection_recovers_the_generating_latent(z_true):
    defense = _defense()
    x = defense.generator(z_true).numpy()
    z, x_hat = defense.project(x)
    assert z.shape == (6, LATENT) and x_hat.shape == x.shape
    assert np.mean((x_hat.numpy() - x) ** 2) < 1e-5
    np.testing.assert_allclose(z.numpy(), z_true, atol=0.05)
    logits = defense(x).numpy()
    np.testing.assert_allclose(logits, defense.classifier(x).numpy(), atol=1e-2)


def test_restarts_keep_the_lowest_error_result(z_true):
    defense = _defense(steps=5, learning_rate=0.01)
    x = defense.generator(z_true).numpy()
    rng = np.random.default_rng(1)
    starts = rng.normal(size=(6, 4, LATENT)).astype("float32") * 2.0
    starts[np.arange(6), rng.integers(0, 4, size=6)] = z_true + 0.01      # one good start each
    z, x_hat = defense.project(x, z_init=starts)
    err = np.mean((x_hat.numpy() - x) ** 2, axis=(1, 2, 3))
    # Each restart alone (restarts=1 from that start), then the minimum.
    single = np.stack([np.mean((defense.project(x, restarts=1, z_init=starts[:, r:r + 1])[1].numpy() - x) ** 2,
                               axis=(1, 2, 3)) for r in range(4)], 1)
    np.testing.assert_allclose(err, single.min(1), rtol=1e-4, atol=1e-9)
    # Batched projection of all images equals a loop over single images.
    for i in (0, 3):
        zi, _ = defense.project(x[i:i + 1], z_init=starts[i:i + 1])
        np.testing.assert_allclose(zi.numpy()[0], z.numpy()[i], atol=1e-5)


def _grad(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(fn(x)[:, 0])
    return tape.gradient(out, x)


def test_bpda_gives_nonzero_gradients_and_the_plain_defense_none(z_true):
    defense = _defense(steps=20)
    x = defense.generator(z_true).numpy()
    g = _grad(defense.bpda(), x)
    assert np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0)
    # Without BPDA the projection is a constant to autodiff.
    plain = _grad(defense, x)
    assert plain is None or not np.any(plain.numpy())
    exact = _grad(_defense(steps=20, differentiable=True), x)
    assert np.all(np.isfinite(exact.numpy())) and np.any(exact.numpy() != 0)
    assert defense.randomized and defense.optimizes_at_inference


def test_save_load_and_export_keep_outputs(tmp_path, z_true):
    defense = _defense(steps=30, z_std=0.0)           # starts at z_mean: deterministic
    x = defense.generator(z_true).numpy()
    expected = defense(x).numpy()
    defense.generator.save(tmp_path / "g.keras")
    g = keras.saving.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(g(z_true).numpy(), defense.generator(z_true).numpy(), atol=1e-6)
    defense.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(loaded, InvertAndClassify) and loaded.get_config()["restarts"] == 4
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5)
    defense.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(x).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(served.serve(x[:2]).numpy(), expected[:2], atol=1e-4)
    # Knobs change at run time.
    defense.set_knobs(steps=1, restarts=2)
    assert int(defense.steps.numpy()) == 1 and int(defense.restarts.numpy()) == 2


def test_bad_inputs_name_the_argument(z_true):
    with pytest.raises(ValueError, match="`generator`.*input shape"):
        InvertAndClassify(_generator(), keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                                          keras.layers.Dense(3)]))
    for kwargs, name in [({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"),
                         ({"optimizer": "lbfgs"}, "optimizer"), ({"learning_rate": -1.0}, "learning_rate")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            _defense(**kwargs)
    defense = _defense(steps=2)
    x = defense.generator(z_true).numpy()
    with pytest.raises(ValueError, match="`x` inside bounds"):
        defense(x + 1.5)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` to be finite"):
        defense.project(bad)
    with pytest.raises(ValueError, match="`restarts`"):
        defense.project(x, restarts=0)
    with pytest.raises(ValueError, match="`z_init`"):
        defense.project(x, z_init=np.zeros((6, 4, LATENT + 1), "float32"))
