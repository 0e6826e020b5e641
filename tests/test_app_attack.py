"""End-to-end test of apps/attack.py on real MNIST (a .keras file and a SavedModel)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "apps", "attack.py")
N = 16


@pytest.fixture(scope="module")
def saved_models(data_dir, tmp_path_factory):
    import keras

    from tfrobust import data

    x, y = data.load("mnist", "train", data_dir=data_dir)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:3000], y[:3000], batch_size=64, epochs=2, verbose=0)
    folder = tmp_path_factory.mktemp("models")
    keras_path, saved_path = str(folder / "model.keras"), str(folder / "saved_model")
    model.save(keras_path)
    model.export(saved_path, verbose=False)
    return model, keras_path, saved_path


def _run(args, data_dir):
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, APP] + args, env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc):
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _check_report(out_dir):
    report = json.loads((out_dir / "report.json").read_text())
    assert report["n_examples"] == N
    assert report["robust_accuracy"], report
    for label, acc in report["robust_accuracy"].items():
        assert acc <= report["clean_accuracy"], label
    assert (out_dir / "report.md").exists() and (out_dir / "results.npz").exists()
    return report


def test_attack_app_end_to_end(saved_models, data_dir, tmp_path):
    import keras

    from tfrobust import data

    model, keras_path, saved_path = saved_models
    out_keras, out_saved = tmp_path / "keras", tmp_path / "saved"
    common = [f"--n_examples={N}", "--batch_size=16", "--dataset=mnist"]
    # The two runs share the machine's cores; they run side by side.
    procs = [
        _run([f"--model={keras_path}", f"--out_dir={out_keras}", "--attacks=pgd,deepfool",
              "--norm=inf", "--eps=0.05,0.1"] + common, data_dir),
        _run([f"--model={saved_path}", f"--out_dir={out_saved}", "--attacks=pgd_margin",
              "--norm=2", "--eps=1.5", "--targeted", "--restarts=2", "--steps=10",
              "--nosanity_checks"] + common, data_dir),
    ]
    results = [_finish(p) for p in procs]
    for rc, out in results:
        assert rc == 0, out[-3000:]

    x, y = data.load("mnist", "test", data_dir=data_dir)
    x, y = x[:N], y[:N]
    reloaded = keras.saving.load_model(keras_path)

    report = _check_report(out_keras)
    assert report["sanity_checks_run"] is True
    assert set(report["robust_accuracy"]) == {"Linf eps=0.05", "Linf eps=0.1"}
    assert (out_keras / "robust_accuracy.png").exists()
    for attack in ("pgd", "deepfool"):
        for eps in ("0.05", "0.1"):
            arrays = np.load(out_keras / f"adv_{attack}_{eps}.npz")
            x_adv = arrays["x_adv"]
            assert x_adv.shape == x.shape and x_adv.dtype == np.float32
            np.testing.assert_array_equal(arrays["y"], y)
            assert np.abs(x_adv - x).max() <= float(eps) + 1e-6
            assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
            pred = np.argmax(np.asarray(reloaded(x_adv)), axis=-1)
            np.testing.assert_array_equal(arrays["predictions"], pred)

    report = _check_report(out_saved)
    assert report["targeted"] is True and report["sanity_checks_run"] is False
    arrays = np.load(out_saved / "adv_pgd_margin_1.5.npz")
    assert np.all(arrays["y_target"] != arrays["y"])
    norms = np.linalg.norm((arrays["x_adv"] - x).reshape(N, -1), axis=1)
    assert norms.max() <= 1.5 * (1 + 1e-5) + 1e-6
    pred = np.argmax(np.asarray(model(arrays["x_adv"])), axis=-1)
    np.testing.assert_array_equal(arrays["predictions"], pred)


@pytest.mark.parametrize("args, message", [
    (["--attacks=pgd,nope"], "attack name"),
    (["--attacks=cw", "--norm=inf"], "norm"),
    (["--norm=3"], "norm"),
    (["--target_class=3"], "--targeted"),
    (["--eps=-1"], "eps"),
])
def test_attack_app_bad_flags(saved_models, data_dir, tmp_path, args, message):
    _, keras_path, _ = saved_models
    rc, out = _finish(_run([f"--model={keras_path}", f"--out_dir={tmp_path}", "--n_examples=4"] + args,
                           data_dir))
    assert rc != 0
    assert message in out


def test_attack_app_missing_model(data_dir, tmp_path):
    rc, out = _finish(_run([f"--model={tmp_path / 'none.keras'}", f"--out_dir={tmp_path}"], data_dir))
    assert rc != 0 and "--model" in out


def test_attack_app_several_norms_one_report(saved_models, data_dir, tmp_path):
    """--threats pairs each attack with the norms it supports: one report, every threat in it."""
    _, keras_path, _ = saved_models
    rc, out = _finish(_run([f"--model={keras_path}", f"--out_dir={tmp_path}", f"--n_examples={N}",
                            "--batch_size=16", "--attacks=pgd,cw,ead", "--threats=inf:0.1,2:1.0,1:5",
                            "--steps=5", "--nosanity_checks"], data_dir))
    assert rc == 0, out[-3000:]
    report = _check_report(tmp_path)
    assert set(report["robust_accuracy"]) == {"Linf eps=0.1", "L2 eps=1", "L1 eps=5"}
    # PGD in every norm, C&W only in L2, EAD only in L1; files name the norm.
    for name in ("adv_pgd_Linf_0.1", "adv_pgd_L2_1", "adv_pgd_L1_5", "adv_cw_L2_1", "adv_ead_L1_5"):
        assert (tmp_path / f"{name}.npz").exists(), name
    assert not (tmp_path / "adv_cw_Linf_0.1.npz").exists()
    assert (tmp_path / "robust_accuracy.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--threats=inf:0.3", "--eps=0.1"], "--threats replaces"),
    (["--threats=inf:0.3", "--attacks=cw"], "support a norm"),
    (["--threats=inf"], "p:eps"),
    (["--threats=3:0.3"], "threats"),
])
def test_attack_app_bad_threats(saved_models, data_dir, tmp_path, args, message):
    _, keras_path, _ = saved_models
    rc, out = _finish(_run([f"--model={keras_path}", f"--out_dir={tmp_path}", "--n_examples=4"] + args,
                           data_dir))
    assert rc != 0
    assert message in out
