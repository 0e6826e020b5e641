"""Tests of tfrobust.load_model: .keras archives, SavedModels, and clear errors on bad files."""

import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrobust
from tfrobust.evaluation import app
from tfrobust.models.saved_model import SavedModelClassifier


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), tfrobust.layers.ScaledSoftplus(),
                              keras.layers.Dense(3)])
    keras_path = str(folder / "model.keras")
    model.save(keras_path)
    export_dir = str(folder / "exported")
    model.export(export_dir, verbose=False)
    return model, keras_path, export_dir, folder


def _x():
    return np.random.default_rng(0).uniform(size=(5, 4)).astype("float32")


def test_reads_keras_archives_and_savedmodels(saved):
    model, keras_path, export_dir, _ = saved
    x = _x()
    loaded = tfrobust.load_model(keras_path)
    assert isinstance(loaded, keras.Model)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    served = tfrobust.load_model(export_dir)
    assert isinstance(served, SavedModelClassifier)
    np.testing.assert_allclose(np.asarray(served(tf.constant(x))), model(x).numpy(), rtol=1e-5, atol=1e-6)
    # The app's loader is the same function (names its errors after --model).
    assert isinstance(app.load_model(export_dir), SavedModelClassifier)
    assert app.SavedModelClassifier is SavedModelClassifier


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        tfrobust.load_model(str(tmp_path / "absent.keras"))
    with pytest.raises(FileNotFoundError, match="`model`"):
        app.load_model(str(tmp_path / "absent.keras"))


def _unreadable(path, match):
    with pytest.raises(ValueError) as info:
        tfrobust.load_model(str(path))
    message = str(info.value)
    assert "the file exists but is not a readable Keras archive" in message, message
    assert "File not found" not in message and "not found" not in message.lower(), message
    assert match in message, message
    return message


def test_truncated_archive(saved, tmp_path):
    _, keras_path, _, _ = saved
    data = open(keras_path, "rb").read()
    path = tmp_path / "truncated.keras"
    path.write_bytes(data[: len(data) // 2])
    _unreadable(path, "not a zip file")
    with pytest.raises(ValueError, match="`model`.*not a readable Keras archive"):
        app.load_model(str(path))


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.keras"
    path.write_bytes(np.random.default_rng(0).bytes(777))
    _unreadable(path, "777 bytes")


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = change(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def test_missing_config_json(saved, tmp_path):
    _, keras_path, _, _ = saved
    path = tmp_path / "noconfig.keras"
    _rewrite(keras_path, path, lambda name, data: None if name == "config.json" else data)
    _unreadable(path, "config.json is missing")


def test_truncated_weights_inside_the_archive(saved, tmp_path):
    _, keras_path, _, _ = saved
    path = tmp_path / "badweights.keras"
    _rewrite(keras_path, path, lambda name, data: data[: len(data) // 3] if name.endswith(".h5") else data)
    _unreadable(path, "model.weights.h5")


def test_corrupt_member_crc(saved, tmp_path):
    _, keras_path, _, _ = saved
    data = bytearray(open(keras_path, "rb").read())
    with zipfile.ZipFile(keras_path) as archive:
        info = archive.getinfo("model.weights.h5")
    # Flip bytes inside the stored (uncompressed) weights: the zip index
    # still reads, the CRC no longer matches.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    data[start:start + 8] = bytes(255 - b for b in data[start:start + 8])
    path = tmp_path / "crc.keras"
    path.write_bytes(bytes(data))
    _unreadable(path, "model.weights.h5")


def test_directory_that_is_not_a_savedmodel(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="SavedModel directory.*without saved_model.pb"):
        tfrobust.load_model(str(tmp_path))


def test_other_bad_paths(saved, tmp_path):
    _, _, export_dir, _ = saved
    other = tmp_path / "model.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"\.keras or \.h5"):
        tfrobust.load_model(str(other))
    with pytest.raises(ValueError, match="path"):
        tfrobust.load_model(3)
    with pytest.raises(ValueError, match="Keras loading options"):
        tfrobust.load_model(export_dir, custom_objects={})


def test_readable_archive_keeps_keras_error(tmp_path):
    # An intact archive naming an unregistered class is not "unreadable":
    # Keras' own message (which class is missing) must come through.
    @keras.saving.register_keras_serializable(package="tfrobust_test_unregistered")
    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return 2.0 * inputs

    model = keras.Sequential([keras.Input((2,)), Doubler()])
    path = str(tmp_path / "custom.keras")
    model.save(path)
    del keras.saving.get_custom_objects()["tfrobust_test_unregistered>Doubler"]
    with pytest.raises(Exception) as info:
        tfrobust.load_model(path)
    assert "not a readable Keras archive" not in str(info.value)
    assert "Doubler" in str(info.value)


def test_defense_loads_in_a_fresh_process(tmp_path):
    # tfrobust.load_model registers the defenses too (lazy imports otherwise
    # leave the class unknown in a new process).
    import subprocess
    import sys

    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    defense = tfrobust.defenses.Defense(classifier)
    x = _x()
    expected = defense(x).numpy()
    path = str(tmp_path / "defense.keras")
    defense.save(path)
    np.save(str(tmp_path / "x.npy"), x)
    code = ("import sys, numpy as np, tfrobust\n"
            "m = tfrobust.load_model(sys.argv[1])\n"
            "print(type(m).__name__)\n"
            "np.save(sys.argv[3], m(np.load(sys.argv[2])).numpy())\n")
    out = str(tmp_path / "out.npy")
    result = subprocess.run([sys.executable, "-c", code, path, str(tmp_path / "x.npy"), out],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Defense" in result.stdout
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)
