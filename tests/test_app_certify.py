"""End-to-end tests of apps/certify.py and `experiments.certify.certify_dataset`:
a .keras model on real MNIST, a SavedModel and an RBF-CNN on the digits, bad flags."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfrobust import rbf
from tfrobust.defenses.rbf_cnn import RBFCNN
from tfrobust.experiments.certify import TSV_COLUMNS, certify_dataset, read_tsv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "apps", "certify.py")


def _dense(shape, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(10)])


def _start(args, data_dir):
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, APP] + args, env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _check_outputs(out_dir, n_rows, skip, y):
    rows = read_tsv(os.path.join(out_dir, "certify.tsv"))
    assert len(rows["idx"]) == n_rows
    np.testing.assert_array_equal(rows["idx"], np.arange(n_rows) * skip)
    np.testing.assert_array_equal(rows["label"], y[rows["idx"]])
    np.testing.assert_array_equal(rows["correct"], rows["predict"] == rows["label"])
    assert np.all(rows["radius"] >= 0) and np.all(rows["radius"][rows["predict"] == -1] == 0)
    assert np.all(rows["time"] > 0)
    summary = json.loads(open(os.path.join(out_dir, "summary.json")).read())
    exact = np.load(os.path.join(out_dir, "certificate.npz"))
    np.testing.assert_array_equal(exact["pred"], rows["predict"])
    assert np.all(rows["radius"] <= exact["radius"]) and np.all(exact["radius"] - rows["radius"] < 1e-6)
    for r, acc in summary["certified_accuracy"].items():
        certified = (exact["pred"] == exact["y"]) & (exact["radius"] >= float(r))
        assert acc == pytest.approx(certified.mean())
    assert os.path.getsize(os.path.join(out_dir, "certified_accuracy.png")) > 0
    return rows, summary


def test_app_certifies_a_keras_model_on_mnist_and_reports_bad_flags(data_dir, tmp_path):
    from tfrobust import data

    model = _dense((28, 28, 1))
    path = str(tmp_path / "model.keras")
    model.save(path)
    out = tmp_path / "out"
    good = _start([f"--model={path}", "--dataset=mnist", "--sigma=0.25", "--n0=20", "--n=200",
                   "--batch_size=400", "--n_examples=6", "--skip=3", "--share_noise", f"--out_dir={out}"], data_dir)
    # One bad command line (the others are checked in-process below): a
    # message and status 1, no traceback.
    bad = [(["--model=" + path, "--knobs=samples", f"--out_dir={tmp_path / 'b'}"], "--knobs")]
    procs = [(_start(args, data_dir), message) for args, message in bad]
    for proc, message in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 1 and message in err and "Traceback" not in err, err[-2000:]
    stdout, stderr = good.communicate(timeout=600)
    assert good.returncode == 0, stderr[-3000:]
    x_test, y_test = data.load("mnist", "test", data_dir=data_dir)
    rows, summary = _check_outputs(str(out), 6, 3, y_test)
    assert summary["n"] == 200 and summary["sigma"] == 0.25 and summary["share_noise"] is True
    assert tuple(open(out / "certify.tsv").readline().split()) == TSV_COLUMNS
    for kwargs, name in [({"n0": 300, "n": 200}, "`n0`"), ({"sigma": 0.0}, "`sigma`"),
                         ({"model": str(tmp_path / "none.keras")}, "`model`"), ({"skip": 0}, "`skip`"),
                         ({"out_dir": path}, "`out_dir`")]:
        args = {"model": path, "dataset": "mnist", "data_dir": data_dir, "n0": 5, "n": 10,
                "out_dir": str(tmp_path / "e"), "verbose": 0, **kwargs}
        with pytest.raises((ValueError, FileNotFoundError), match=name):
            certify_dataset(**args)


def test_savedmodel_and_rbf_cnn_certify_on_digits(tmp_path):
    from tfrobust import data

    _, y = data.load("digits", "test")
    model = _dense((8, 8, 1))
    saved = str(tmp_path / "saved")
    model.export(saved, verbose=False)
    summary = certify_dataset(model=saved, dataset="digits", sigma=0.3, n0=10, n=100, batch_size=200,
                              n_examples=4, out_dir=str(tmp_path / "sm"), verbose=0)
    _check_outputs(str(tmp_path / "sm"), 4, 1, y)
    assert summary["noisy_passes_per_second"] > 0
    # Under a strategy the samples are dealt to its replicas: the same certificates.
    certify_dataset(model=saved, dataset="digits", sigma=0.3, n0=10, n=100, batch_size=200,
                    n_examples=4, out_dir=str(tmp_path / "sm1"), strategy="one_device", verbose=0)
    plain, spread = (np.load(str(tmp_path / d / "certificate.npz")) for d in ("sm", "sm1"))
    np.testing.assert_array_equal(plain["pred"], spread["pred"])
    np.testing.assert_array_equal(plain["counts"], spread["counts"])
    rng = np.random.default_rng(0)
    templates = rbf.Templates(rng.uniform(size=(5, 3, 3, 1)).astype("float32"),
                              rng.uniform(0.2, 1.0, size=5).astype("float32"))
    defense = RBFCNN.from_templates(templates, _dense((8, 8, 1)), beta1=10.0, beta2=1.0, samples=4, seed=0)
    path = str(tmp_path / "rcnn.keras")
    defense(np.zeros((1, 8, 8, 1), "float32"))
    defense.save(path)
    summary = certify_dataset(model=path, dataset="digits", sigma=0.3, n0=10, n=60, batch_size=120,
                              n_examples=3, skip=2, knobs={"samples": 1}, out_dir=str(tmp_path / "rc"),
                              verbose=0)
    _check_outputs(str(tmp_path / "rc"), 3, 2, y)
    assert summary["knobs"] == {"samples": 1}
    with pytest.raises(ValueError, match="`knobs`"):
        certify_dataset(model=_dense((8, 8, 1)), dataset="digits", knobs={"samples": 1},
                        out_dir=str(tmp_path / "k"), verbose=0)
    with pytest.raises(ValueError, match="scores"):
        certify_dataset(model=keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                                keras.layers.Dense(3)]),
                        dataset="digits", n0=5, n=10, out_dir=str(tmp_path / "w"), verbose=0)
