"""apps/train_classifier.py end to end on real MNIST: plain, pgd (L2 and L∞), pgd_op; resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "apps", "train_classifier.py")
TINY = dict(n_train=60, n_eval=20, batch_size=20, eval_steps=2, verbose=0)


def test_app_pgd_op_end_to_end(data_dir, tmp_path):
    out = tmp_path / "op"
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, APP, "--mode=pgd_op", "--generator=mnist_vae_decoder", "--steps=2", "--op_steps=3",
         "--op_pairs=4", "--op_iter=1", "--epochs=1", "--n_train=60", "--n_eval=20", "--batch_size=20",
         "--eval_steps=2", "--verbose=0", f"--out_dir={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "model.keras").exists()
    assert metrics["config"]["mode"] == "pgd_op" and metrics["n_train"] == 60
    assert 0.0 <= metrics["overpowered_last_success_rate"] <= 1.0
    assert len(metrics["history"]["overpowered"]) == 1


def test_plain_and_resume(data_dir, tmp_path):
    from tfrobust.experiments.classifier import ClassifierConfig, train_classifier

    config = ClassifierConfig(mode="plain", epochs=1, out_dir=str(tmp_path / "plain"), data_dir=data_dir, **TINY)
    first = train_classifier(config)
    second = train_classifier(ClassifierConfig(**{**config.__dict__, "epochs": 2}))
    # The second run resumed after the first's epoch: it trained one more.
    assert len(second["history"]["loss"]) == 2
    assert second["history"]["loss"][0] == pytest.approx(first["history"]["loss"][0])
    assert 0.0 <= second["test_accuracy"] <= 1.0


def test_linf_madry_baseline_config_resolves():
    from tfrobust.experiments.classifier import ClassifierConfig, _resolved

    config = _resolved(ClassifierConfig(mode="pgd", norm="inf", steps=40, step_size=0.01))
    assert (config.norm, config.eps, config.steps, config.step_size) == ("inf", 0.3, 40, 0.01)
    assert _resolved(ClassifierConfig(mode="pgd", norm="2")).eps == 1.5


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "pgd_op"}, "generator"),
    ({"mode": "pgd_op", "generator": "mnist_vae_decoder", "norm": "inf"}, "norm"),
    ({"mode": "fancy"}, "mode"),
    ({"mode": "pgd_op", "generator": "no/such/file.keras"}, "generator"),
])
def test_bad_config(tmp_path, kwargs, message):
    from tfrobust.experiments.classifier import ClassifierConfig, train_classifier

    with pytest.raises(ValueError, match=message):
        train_classifier(ClassifierConfig(out_dir=str(tmp_path), **kwargs))
