"""End-to-end tests of apps/train_smoothing.py and apps/eval_smoothing.py on real MNIST (tiny config)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "apps", "train_smoothing.py")
EVAL = os.path.join(ROOT, "apps", "eval_smoothing.py")
TINY = ["--dataset=mnist", "--n_train=64", "--n_eval=16", "--batch_size=32", "--m_test=2", "--m_train=2",
        "--verbose=0"]


def _run(app, args, data_dir):
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, app] + args, env=env, cwd=ROOT, text=True, capture_output=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pni_adv")
    args = TINY + ["--pni", "--adv", "--attack=epgd", "--attack_steps=1", "--noise_sd=0.8", "--epochs=1",
                   f"--out_dir={out}"]
    code, log = _run(TRAIN, args, data_dir)
    assert code == 0, log
    return out, args, log


def test_train_app_writes_a_smoothed_model_and_resumes(trained, data_dir):
    import keras

    import tfrobust.layers  # noqa: F401
    from tfrobust.smoothing.classifier import SmoothedClassifier

    out, args, log = trained
    assert "sigma 0.2465 in [0, 1] pixels" in log             # 0.8 x MNIST's std 0.3081
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resolved"]["attack"] == "epgd" and metrics["weight_noise_layers"]
    assert metrics["n_train"] == 64 and len(metrics["history"]["loss"]) == 1
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)
    assert isinstance(model, SmoothedClassifier) and model.vote == "prediction"
    assert abs(float(model.sigma.numpy()) - 0.8 * 0.3081) < 1e-6 and int(model.n.numpy()) == 2
    assert any(type(layer).__name__ == "PNIConv2D" for layer in model.base.layers)
    # A second run with more epochs resumes from the checkpoint: two epochs recorded.
    code, log = _run(TRAIN, [a for a in args if not a.startswith("--epochs")] + ["--epochs=2"], data_dir)
    assert code == 0, log
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2


def test_eval_app_grid_transfer_and_nattack(trained, data_dir, tmp_path):
    out, _, _ = trained
    args = ["--dataset=mnist", f"--model={out / 'model.keras'}", "--n_test=6", "--steps=1", "--m_attack=2",
            "--m_grid=1,2", "--sigma_grid=0.1,0.24648", f"--transfer={out / 'model.keras'}", "--n_nattack=2",
            "--nattack_steps=1", "--nattack_samples=4", "--nattack_m=1", "--nosanity_checks",
            "--strategy=one_device", f"--out_dir={tmp_path}"]  # the engine through tfrobust.distribute
    code, log = _run(EVAL, args, data_dir)
    assert code == 0, log
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["grid"]
    # none + 3 votes x 2 m, at each of the 2 sigmas
    assert len(rows) == 2 * (1 + 3 * 2)
    for row in rows:
        for name in ("pgd", "epgd", "pgd_smoothed", "robust_worst"):
            assert 0.0 <= row[name] <= row["clean"] + 1e-9, row
        assert row["robust_worst"] <= min(row["pgd"], row["epgd"], row["pgd_smoothed"]) + 1e-9
    assert [r["attack"].split(" ")[0] for r in results["black_box"]] == ["transfer", "transfer", "NAttack"]
    assert results["engine"]["per_attack"].keys() == {"pgd", "epgd", "pgd_smoothed"}
    for name in ("results.md", "grid.png", "engine/report.json"):
        assert (tmp_path / name).exists(), name


def test_bad_flags_give_a_message(data_dir, tmp_path):
    code, log = _run(TRAIN, TINY + ["--pni", "--cpni", f"--out_dir={tmp_path}"], data_dir)
    assert code == 1 and "Error: Expected at most one of `pni` and `cpni`" in log
    code, log = _run(EVAL, ["--dataset=mnist", f"--model={tmp_path / 'missing.keras'}"], data_dir)
    assert code == 1 and "Error: Expected `model`" in log
