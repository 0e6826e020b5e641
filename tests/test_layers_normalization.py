"""Tests of tfrobust.layers.normalization.LocalResponseNormalization."""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from tfrobust import layers, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reference(x, depth_radius, bias, alpha, beta):
    x64 = x.astype(np.float64)
    out = np.empty_like(x64)
    for c in range(x.shape[-1]):
        window = x64[..., max(0, c - depth_radius):c + depth_radius + 1]
        out[..., c] = x64[..., c] / (bias + alpha * (window ** 2).sum(-1)) ** beta
    return out


def test_numpy_reference_and_config_round_trip():
    layer = layers.LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=0.5, beta=0.75)
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32)
    y = layer(x).numpy()
    np.testing.assert_allclose(y, _reference(x, 2, 2.0, 0.5, 0.75), rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 0
    clone = layers.LocalResponseNormalization.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(x).numpy(), y)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, layers.LocalResponseNormalization)
    assert keras.saving.get_registered_name(type(layer)) == "tfrobust>LocalResponseNormalization"


@pytest.mark.parametrize("kwargs, name", [
    ({"depth_radius": -1}, "depth_radius"),
    ({"depth_radius": 2.0}, "depth_radius"),
    ({"bias": 0.0}, "bias"),
    ({"alpha": -1e-3}, "alpha"),
    ({"beta": float("nan")}, "beta"),
    ({"beta": True}, "beta"),
])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=rf"Expected `{name}` to be .*Received: {name}="):
        layers.LocalResponseNormalization(**kwargs)


def test_file_saved_when_the_layer_lived_in_models_still_loads(tmp_path):
    # A `.keras` file written before the move names the layer's old module
    # (tfrobust.models.celeba); the registered name "tfrobust>..." is the same,
    # so `tfrobust.load_model` in a fresh process must still load it.
    model = models.celeba_classifier((8, 8, 3), 2)
    path = tmp_path / "old.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    config = members["config.json"].decode()
    assert '"module": "tfrobust.layers.normalization"' in config
    members["config.json"] = config.replace(
        '"module": "tfrobust.layers.normalization"', '"module": "tfrobust.models.celeba"'
    ).encode()
    old = tmp_path / "old_module.keras"
    with zipfile.ZipFile(old, "w") as zout:
        for name, blob in members.items():
            zout.writestr(name, blob)
    x = np.random.default_rng(1).uniform(size=(3, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, tfrobust\n"
        "m = tfrobust.load_model(sys.argv[1])\n"
        "np.save(sys.argv[3], m(np.load(sys.argv[2]), training=False).numpy())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(old), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model(x, training=False).numpy())
