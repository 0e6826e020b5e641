"""Tests of the Deep Image Prior defense: fitting, batching, save/load, bad inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.defenses import DeepImagePrior

SMALL = dict(channels=8, levels=2, input_depth=8, learning_rate=0.01)


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])


@pytest.fixture(scope="module")
def defense():
    # One defense for the module: its compiled fits are traced once.
    return DeepImagePrior(_classifier(), steps=5, **SMALL)


@pytest.fixture
def x():
    # Smooth images (a blurred random field), the kind of signal DIP fits first.
    rng = np.random.default_rng(0)
    coarse = rng.uniform(size=(4, 4, 4, 3)).astype("float32")
    return tf.image.resize(coarse, (16, 16), method="bilinear").numpy()


def _mse(a, b):
    return np.mean((np.asarray(a) - b) ** 2, axis=(1, 2, 3))


def test_fitting_reduces_the_error_on_average(defense, x):
    early, late = defense.reconstruct_at(x, [1, 40], seed=0)
    assert np.mean(_mse(late, x)) < 0.5 * np.mean(_mse(early, x))
    # reconstruct_at reads one fit at several step counts.
    np.testing.assert_allclose(defense.reconstruct(x, steps=40, seed=0).numpy(), late.numpy(), atol=1e-5)
    assert defense(x).shape == (4, 4)


def test_batched_fit_equals_the_one_image_fit(defense, x):
    batched = defense.reconstruct(x, steps=5, seed=3).numpy()
    for i in (0, 2):
        single = defense.reconstruct(x[i:i + 1], steps=5, seed=3).numpy()
        # Equal up to float rounding (a different matmul blocking per batch
        # size), which a few Adam steps amplify only slightly.
        np.testing.assert_allclose(single[0], batched[i], atol=1e-3)
    # Without a seed, calls draw new networks: the defense is random.
    assert not np.allclose(defense.reconstruct(x).numpy(), defense.reconstruct(x).numpy())
    assert defense.randomized and defense.optimizes_at_inference


def test_bpda_gradient_is_nonzero(defense, x):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(defense.bpda()(xt)[:, 0])
    g = tape.gradient(out, xt).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_save_load_round_trip(tmp_path, x):
    defense = DeepImagePrior(_classifier(), steps=4, seed=5, **SMALL)
    defense.set_knobs(steps=2)
    expected = defense.classifier(defense.reconstruct(x[:2], seed=1)).numpy()
    defense.save(tmp_path / "dip.keras")
    loaded = keras.saving.load_model(tmp_path / "dip.keras")
    assert isinstance(loaded, DeepImagePrior)
    assert loaded.get_config()["channels"] == 8 and int(loaded.steps.numpy()) == 2
    np.testing.assert_allclose(loaded.classifier(loaded.reconstruct(x[:2], seed=1)).numpy(), expected, atol=1e-4)


def test_export_serves_the_same_outputs(tmp_path, x):
    # The exported SavedModel starts from the seed generator's state at
    # export time, as the in-memory defense does on its next call.
    defense = DeepImagePrior(_classifier(), steps=3, seed=5, **SMALL)
    defense(x[:2])  # the eager path's compiled fits must not break saving
    defense.export(str(tmp_path / "dip"), verbose=0)
    expected = defense(x[:2]).numpy()
    loaded = tf.saved_model.load(str(tmp_path / "dip"))  # kept: it owns the variables
    served = loaded.serve(tf.constant(x[:2])).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_bad_inputs_name_the_argument(defense, x):
    for kwargs, name in [({"steps": 0}, "steps"), ({"learning_rate": 0.0}, "learning_rate"),
                         ({"channels": 0}, "channels")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            DeepImagePrior(_classifier(), **{**SMALL, **kwargs})
    with pytest.raises(ValueError, match="`x` inside bounds"):
        defense.reconstruct(x - 2.0)
    bad = x.copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="`x` to be finite"):
        defense(bad)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels=4"):
        defense.reconstruct(x[:, :14, :14])
    with pytest.raises(ValueError, match="`x` to be images"):
        defense.reconstruct(x[..., 0])
    with pytest.raises(ValueError, match="`steps`"):
        defense.reconstruct_at(x, [5, 3])
    with pytest.raises(ValueError, match="`steps`"):
        defense.reconstruct(x, steps=0)
