"""End-to-end runs of the RBF-CNN pipeline on the embedded digits: templates
(EM), rCNN+ training with its adversarial-noise table (and resume), the
test battery; plus the apps' command lines."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfrobust
from tfrobust import rbf
from tfrobust.experiments.rbf_cnn import RCNNConfig, train_rcnn
from tfrobust.experiments.rbf_cnn_eval import EvalConfig, evaluate_rcnn
from tfrobust.experiments.rbf_layer import train_rbf_layer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rbf") / "digits.npz")
    summary = train_rbf_layer(dataset="digits", n_train=400, out=path, verbose=0,
                              em_config=rbf.EMConfig(batch_images=20, total_steps=60, non_param_steps=40,
                                                     desired_templates=6.0))
    assert summary["templates"] >= 1 and all(os.path.exists(f) for f in summary["files"])
    return path


def test_rcnn_plus_trains_fills_its_table_resumes_and_tests(templates, tmp_path):
    out = str(tmp_path / "plus")
    config = RCNNConfig(dataset="digits", templates=templates, out_dir=out, plus=True, n_train=128, n_eval=64,
                        epochs=1, batch_size=64, adv_noise_epoch=1, verbose=0)
    train_rcnn(config)
    # A second call with more epochs resumes from the checkpoint of epoch 1
    # (the table filled there is restored, not recomputed).
    metrics = train_rcnn(RCNNConfig(**{**config.__dict__, "epochs": 2}))
    # Only epoch 2 ran in the second call; epoch 1's record came from the checkpoint.
    assert len(metrics["history"]["loss"]) == 2
    model = tfrobust.load_model(os.path.join(out, "model.keras"))
    assert float(model.reconstruction.beta1.numpy()) == 25.0
    results = evaluate_rcnn(EvalConfig(model=os.path.join(out, "model.keras"), dataset="digits",
                                   out_dir=str(tmp_path / "test"), n_eval=24, n_adaptive=6, threats=("linf",),
                                   steps=2, auto_steps=2, square_queries=5, cw_steps=2, eot_samples=2,
                                   adaptive_steps=1, beta2_sweep=(0.0, 1.0), batch_size=24))
    saved = json.load(open(tmp_path / "test" / "results.json"))
    assert set(saved["clean"]) == {"0.0", "1.0"} and "linf" in saved["static"] and "linf" in saved["adaptive"]
    static = results["static"]["linf"]
    # The worst case is never above any single attack's robust accuracy.
    assert min(static["per_attack"].values()) >= list(static["worst_case"].values())[0] - 1e-9
    assert "BPDA+EoT PGD" in results["adaptive"]["linf"]["per_attack"]
    # Per-example verdicts are saved; the deployed beta2 (1.75) is outside
    # the sweep here, so its per-point worst case is BPDA+EoT's alone.
    points = np.load(tmp_path / "test" / "points.npz")
    assert points["y"].shape == (24,) and points["adaptive/1.75/linf/BPDA+EoT PGD"].shape == (6,)
    assert {k for k in points.files if k.startswith("judged/1.0/linf/")} and points["static/linf/FGSM"].dtype == bool
    deployed = results["deployed"]["1.75"]["linf"]
    assert deployed["static_attacks"] == 0 and deployed["adaptive_attacks"] == 1 and deployed["n"] == 6
    assert deployed["robust"] == pytest.approx(results["adaptive"]["linf"]["per_attack"]["BPDA+EoT PGD"])

    # Table IV's radius, Table VII's judged rows and adaptive beta2, the
    # black-box rows from an (untrained) undefended CNN, Figs. 3 and 5.
    import keras

    from tfrobust import models

    cnn = models.cw_mnist_cnn((8, 8, 1), 10)
    cnn_path = str(tmp_path / "cnn.keras")
    cnn.save(cnn_path)
    more = evaluate_rcnn(EvalConfig(model=os.path.join(out, "model.keras"), dataset="digits",
                                    out_dir=str(tmp_path / "more"), n_eval=16, n_adaptive=4,
                                    threats=("linf:0.35",), steps=2, cw_steps=2, eot_samples=2, adaptive_steps=1,
                                    beta2_sweep=(0.0, 1.0), adaptive_beta2=(0.5, 1.0),
                                    adaptive_attacks=("BPDA+EoT PGD", "EoT APGD-CE"),
                                    attacks=("PGD", "SPSA", "PGD (transfer)", "FGSM (transfer)", "CW", "DAA",
                                             "CW (transfer)"), spsa_steps=2, spsa_samples=4, daa_steps=2,
                                    transfer_from=cnn_path, figures=True, batch_size=16))
    static = more["static"]["linf:0.35"]["per_attack"]
    assert set(static) == {"PGD-2", "SPSA", "PGD-2 (transfer)", "FGSM (transfer)", "CW", "DAA", "CW (transfer)"}
    judged = more["static_judged"]["1.0"]["linf:0.35"]
    assert set(judged["per_attack"]) == set(static)
    assert judged["worst_case"]["all attacks"] <= min(judged["per_attack"].values()) + 1e-9
    assert set(more["adaptive_beta2"]) == {"0.5", "1.0"} and not more["adaptive"]
    # At beta2 = 1.0 (in the sweep) the deployed worst case is per point over
    # both adaptive attacks and the seven judged static examples.
    adaptive = more["adaptive_beta2"]["1.0"]["linf:0.35"]["per_attack"]
    assert set(adaptive) == {"BPDA+EoT PGD", "EoT APGD-CE"}
    deployed = more["deployed"]["1.0"]["linf:0.35"]
    assert (deployed["adaptive_attacks"], deployed["static_attacks"], deployed["n"]) == (2, 7, 4)
    assert deployed["robust"] <= min(min(adaptive.values()), judged["worst_case"]["all attacks"]) + 1e-9
    assert all(os.path.getsize(more["figures"][k]) > 0 for k in ("fig3", "fig5"))
    # A plain classifier gets the static battery only (the baseline rows).
    plain = evaluate_rcnn(EvalConfig(model=cnn_path, dataset="digits", out_dir=str(tmp_path / "plain"), n_eval=8,
                                     threats=("l1",), attacks=("PGD",), steps=1, batch_size=8))
    assert set(plain["clean"]) == {"plain"} and not plain["adaptive"] and plain["n_adaptive"] == 0
    assert keras.saving.load_model(cnn_path) is not None


def test_linf_battery_has_cw_margin_on_raw_logits_and_daa():
    import keras

    from tfrobust import attacks, losses
    from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
    from tfrobust.attacks.daa import DAA
    from tfrobust.defenses.rbf_cnn import RBFCNN
    from tfrobust.experiments.rbf_cnn_eval import _static_attacks

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    templates = rbf.Templates(rng.uniform(size=(4, 3, 3, 1)).astype("float32"), np.full(4, 0.1, "float32"))
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model = RBFCNN.from_templates(templates, classifier, samples=1, seed=0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = np.asarray(np.argmax(model(x), -1))
    config = EvalConfig(steps=3, daa_steps=3, seed=0)
    battery = _static_attacks(model, np.inf, 0.3, config, source=classifier)
    assert {"CW", "DAA", "CW (transfer)"} <= set(battery)
    assert isinstance(battery["DAA"], DAA) and battery["DAA"].steps == 3 and battery["DAA"].c == 1.1
    cw = battery["CW"]
    assert cw.attack.loss == "margin" and not cw.uses_eot and not cw.black_box
    # The view's outputs are the static model's raw logits (not its log of
    # mean softmax): same argmax, but not normalized.
    logits = np.asarray(cw.view(x))
    np.testing.assert_allclose(logits, classifier(model.reconstruction(x, beta2=0.0)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(logits, -1), y)
    assert np.max(np.abs(np.log(np.sum(np.exp(logits), -1)))) > 1e-3
    x_adv = np.asarray(cw(model, x, y))
    assert np.max(np.abs(x_adv - x)) <= 0.3 + 1e-6
    margin = lambda z: float(np.mean(losses.margin(cw.view(z), y)))
    assert margin(x_adv) > margin(x)
    # The L1 / L2 batteries have no DAA and no L∞ C&W; a plain classifier's
    # C&W runs on its own logits.
    assert "DAA" not in _static_attacks(model, 1, 15.0, config) and "CW" not in _static_attacks(model, 1, 15.0, config)
    assert isinstance(_static_attacks(model, 2, 2.0, config)["CW"], CarliniWagnerL2)
    plain = _static_attacks(classifier, np.inf, 0.3, config)["CW"]
    assert isinstance(plain, attacks.PGD) and plain.loss == "margin"


@pytest.mark.parametrize("app, args, message", [
    ("train_rCNN.py", ["--eps_range=a,b"], "--eps_range"),
    ("test_rCNN.py", ["--model=does/not/exist.keras"], "does/not/exist.keras"),
    ("test_rCNN.py", ["--threats=linf:-1"], "threats"),
    ("test_rCNN.py", ["--combine=does/not/exist"], "points.npz"),
    ("test_rCNN.py", ["--adaptive_attacks=BPDA+EoT FGSM", "--dataset=digits"], "adaptive_attacks"),
    ("train_rbf_layer.py", ["--dataset=digits", "--method=em", "--n_train=0"], "n_train"),
])
def test_apps_report_errors_without_traceback(app, args, message, tmp_path):
    if app == "test_rCNN.py":  # its default out_dir is under the working directory
        args = [*args, f"--out_dir={tmp_path}"]
    run = subprocess.run([sys.executable, os.path.join(ROOT, "apps", app), *args], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 1, run.stderr[-2000:]
    assert message in run.stderr and "Traceback" not in run.stderr
