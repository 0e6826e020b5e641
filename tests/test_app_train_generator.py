"""End-to-end tests of generator training (`apps/train_generator.py`) on real MNIST."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfrobust.experiments.generator import GeneratorConfig, train_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(out_dir, data_dir, **kwargs):
    base = dict(model="vae", data_dir=data_dir, out_dir=str(out_dir), epochs=1, batch_size=32, n_train=128,
                n_eval=64, verbose=0, seed=3)
    base.update(kwargs)
    return GeneratorConfig(**base)


def test_app_trains_a_vae_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path, data_dir):
    resumed = tmp_path / "resumed"
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.join(ROOT, "apps", "train_generator.py"), "--model=vae", "--epochs=1",
           "--batch_size=32", "--n_train=128", "--n_eval=64", "--verbose=0", "--seed=3", f"--out_dir={resumed}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("generator.keras", "generator_savedmodel", "vae.keras", "logs", "samples/epoch_001.png"):
        assert os.path.exists(resumed / name), name
    with open(resumed / "checkpoints" / "history.json") as f:
        first = json.load(f)
    assert first["epoch"] == [0] and np.isfinite(first["history"]["neg_elbo"][0])

    # Resume to 2 epochs, and compare with a 2-epoch run from scratch.
    result = train_generator(_config(resumed, data_dir, epochs=2))
    assert result["history"]["epoch"] == [0, 1]
    straight = train_generator(_config(tmp_path / "straight", data_dir, epochs=2))
    np.testing.assert_allclose(result["history"]["neg_elbo"], straight["history"]["neg_elbo"], rtol=1e-5)
    g1 = keras.saving.load_model(result["generator"])
    g2 = keras.saving.load_model(straight["generator"])
    z = np.random.default_rng(0).standard_normal((4, 20)).astype("float32")
    np.testing.assert_allclose(g1(z).numpy(), g2(z).numpy(), atol=1e-5)
    # The SavedModel serves the same images.
    import tensorflow as tf
    loaded = tf.saved_model.load(result["savedmodel"])
    served = loaded.serve(z).numpy()
    np.testing.assert_allclose(served, g1(z).numpy(), atol=1e-5)


def test_wgan_gp_epoch_runs(tmp_path, data_dir):
    config = _config(tmp_path, data_dir, model="wgan_gp", batch_size=8, n_train=32, n_critic=2, latent_dim=8)
    result = train_generator(config)
    hist = result["history"]
    assert all(np.isfinite(hist[k][0]) for k in ("critic_loss", "wasserstein", "gp", "generator_loss"))
    g = keras.saving.load_model(result["generator"])
    img = g(np.zeros((2, 8), "float32")).numpy()
    assert img.shape == (2, 28, 28, 1) and img.min() >= 0 and img.max() <= 1
    assert os.path.exists(os.path.join(config.out_dir, "checkpoints", "checkpoint"))


def test_bad_settings_are_refused(tmp_path, data_dir):
    with pytest.raises(ValueError, match="`model`"):
        train_generator(_config(tmp_path, data_dir, model="pixelcnn"))
    with pytest.raises(ValueError, match="`dataset`"):
        train_generator(_config(tmp_path, data_dir, dataset="cifar10"))
    with pytest.raises(ValueError, match="training images for one update"):
        train_generator(_config(tmp_path, data_dir, n_train=4))
