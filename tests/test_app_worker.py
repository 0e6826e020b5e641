"""End-to-end tests of the Cross-Lipschitz worker (`apps/worker.py`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust.experiments import cl_report
from tfrobust import training
from tfrobust.experiments import cross_lipschitz as cl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(tmp_path, **kwargs):
    base = dict(
        dataset="digits", n_epochs=3, lr=0.2, lmbd=1e-3, batch_size=64,
        exp_dir=str(tmp_path), verbose=0, n_eval=40,
    )
    base.update(kwargs)
    return cl.WorkerConfig(**base)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("worker")
    config = _config(tmp_path, reg_type="cross_lipschitz", n_epochs=6)
    metrics = cl.run(config)
    return config, metrics


def test_training_writes_model_metrics_and_export(trained_run):
    config, metrics = trained_run
    run_dir = config.run_dir()
    for name in ("model.keras", "metrics.json", "history.json", "saved_model", "checkpoints", "logs"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    # Three epochs of SGD on digits beat chance (10%) by far.
    assert metrics["test_error"] < 0.5
    final = metrics["robustness_final"]
    assert final["upper_bound_median"] > 0
    assert final["lower_bound_median"] > 0


def test_saved_model_and_keras_file_agree(trained_run):
    import tensorflow as tf

    import tfrobust
    from tfrobust import data

    config, _ = trained_run
    x, _ = data.load("digits", "test")
    reloaded = tfrobust.load_model(os.path.join(config.run_dir(), "model.keras"))
    exported = tf.saved_model.load(os.path.join(config.run_dir(), "saved_model"))
    for n in (1, 7):
        np.testing.assert_allclose(
            reloaded(x[:n]).numpy(), exported.serve(tf.constant(x[:n])).numpy(),
            rtol=1e-5, atol=1e-5,
        )


def test_eval_robustness_lower_never_exceeds_upper(trained_run):
    config, _ = trained_run
    eval_config = cl.WorkerConfig(**{**config.__dict__, "eval_robustness": True})
    summary = cl.run(eval_config)
    saved = np.load(os.path.join(config.run_dir(), "bounds.npz"))
    assert len(saved["y"]) == config.n_eval
    correct = saved["pred"] == saved["y"]
    assert np.all(saved["lower"][correct] <= saved["upper"][correct] + 1e-6)
    assert np.all(saved["lower"] >= 0)
    assert summary["n_points"] == config.n_eval


def test_report_over_runs(trained_run, tmp_path):
    config, _ = trained_run
    rows = cl_report.report(
        os.path.join(config.exp_dir, config.experiment_name), str(tmp_path),
        n_eval=30, verbose=0,
    )
    assert len(rows) == 1
    assert rows[0]["lower_le_upper_violations"] == 0
    for name in ("robustness.md", "robustness.json", "robustness.png", "robustness_grid.md",
                 "robustness_grid.json", "robustness_grid.png"):
        assert (tmp_path / name).exists()
    # λ in the labels (issue 15: two Cross-Lipschitz runs carried one label).
    assert "Cross-Lipschitz λ=0.001" in (tmp_path / "robustness.md").read_text()
    grid = json.loads((tmp_path / "robustness_grid.json").read_text())
    assert [g["n_seeds"] for g in grid] == [1]
    assert grid[0]["upper_median_mean"] == pytest.approx(rows[0]["upper_bound_median"])
    assert grid[0]["test_error_mean"] == pytest.approx(rows[0]["test_error_full"])


def test_existing_checkpoints_need_continue_train(trained_run):
    config, _ = trained_run
    with pytest.raises(ValueError, match="continue_train"):
        cl.run(cl.WorkerConfig(**{**config.__dict__}))


def test_continue_train_resumes_and_extends(tmp_path):
    first = _config(tmp_path, reg_type="no", n_epochs=2)
    cl.run(first)
    ckpt_dir = os.path.join(first.run_dir(), "checkpoints")
    # Same run (same folder) asked to resume: it restores epoch 2 and stops.
    again = cl.WorkerConfig(**{**first.__dict__, "continue_train": True})
    metrics = cl.run(again)
    with open(os.path.join(first.run_dir(), "history.json")) as f:
        history = json.load(f)
    assert os.listdir(ckpt_dir)
    assert metrics["test_error"] < 0.9
    assert all(len(v) <= 2 for v in history.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reg_type="l2"), "reg_type"),
        (dict(nn_type="cnn"), "nn_type"),
        (dict(dataset="svhn"), "dataset"),
        (dict(n_epochs=0), "n_epochs"),
        (dict(lr=-1.0), "lr"),
        (dict(lmbd=float("nan")), "lmbd"),
        (dict(keep_hidden=0.0), "keep_hidden"),
        (dict(batch_size=0), "batch_size"),
        (dict(experiment_name=""), "experiment_name"),
    ],
)
def test_bad_settings_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cl.run(_config(tmp_path, **kwargs))


def test_eval_without_trained_model_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="Train it first"):
        cl.run(_config(tmp_path, eval_robustness=True))


def test_gpu_flags_are_validated():
    with pytest.raises(ValueError, match="gpu_memory"):
        training.configure_devices("0", 1.5)
    with pytest.raises(ValueError, match="gpu_number"):
        training.configure_devices("zero", 0.5)


def test_worker_app_end_to_end(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [
        sys.executable, os.path.join(ROOT, "apps", "worker.py"),
        "--dataset=digits", "--reg_type=cross_lipschitz", "--n_epochs=2",
        "--batch_size=64", "--lmbd=0.001", f"--exp_dir={tmp_path}", "--n_train=512",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "clean test accuracy" in out.stdout
    assert "certified lower bound (Theorem 2.1, float32 allowance): median" in out.stdout
    bad = subprocess.run(cmd + ["--lr=-1"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0
    assert "Expected `lr` to be a finite real number > 0" in bad.stderr


def test_resnet_with_augmentation_and_adversarial_training(tmp_path):
    import tfrobust

    config = _config(
        tmp_path, nn_type="resnet", reg_type="weight_decay", augm_flag=True,
        adv_train_flag=True, n_epochs=1, n_train=128, n_eval=8,
    )
    metrics = cl.run(config)
    model = tfrobust.load_model(metrics["model_path"])
    assert model.input_shape[1:] == (6, 6, 1)  # digits are cropped 8 -> 6
    final = metrics["robustness_final"]
    assert "upper_bound_median" in final
    # Certified lower bounds exist for the one-hidden-layer network only.
    assert "lower_bound_median" not in final


class _KillAtEpoch(Exception):
    pass


def test_killed_run_keeps_monitor_records_and_whole_train_time(tmp_path, monkeypatch):
    # Issue 9, item 6: after a kill and continue_train, metrics.json kept
    # only the resumed part's monitor records and training time.
    import time

    import keras

    real_fit = training.fit
    durations = []

    def fit_killed_at_epoch_2(*args, callbacks=(), **kwargs):
        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 2:  # ckpt-2 is written: a kill between epochs
                    raise _KillAtEpoch()

        start = time.time()
        try:
            return real_fit(*args, callbacks=[*callbacks, Kill()], **kwargs)
        finally:
            durations.append(time.time() - start)

    def fit_timed(*args, **kwargs):
        start = time.time()
        try:
            return real_fit(*args, **kwargs)
        finally:
            durations.append(time.time() - start)

    config = _config(tmp_path, reg_type="no", n_epochs=3, n_train=256)
    monkeypatch.setattr(training, "fit", fit_killed_at_epoch_2)
    with pytest.raises(_KillAtEpoch):
        cl.run(config)
    monkeypatch.setattr(training, "fit", fit_timed)
    metrics = cl.run(cl.WorkerConfig(**{**config.__dict__, "continue_train": True}))
    # Monitored at epoch 1 (before the kill) and at the last epoch.
    assert [r["epoch"] for r in metrics["robustness_monitor"]] == [1, 3]
    with open(os.path.join(config.run_dir(), "metrics.json")) as f:
        assert [r["epoch"] for r in json.load(f)["robustness_monitor"]] == [1, 3]
    killed, resumed = durations
    assert metrics["train_seconds"] >= 0.9 * (killed + resumed), (metrics["train_seconds"], durations)
    # As if killed after the last checkpoint: resuming again keeps the
    # records and the time counted up to that checkpoint (the old code
    # reported an empty monitor and a fraction of a second).
    again = cl.run(cl.WorkerConfig(**{**config.__dict__, "continue_train": True}))
    assert [r["epoch"] for r in again["robustness_monitor"]] == [1, 3]
    assert again["train_seconds"] >= 0.9 * killed


def test_eval_after_train_takes_the_minimum_over_attacks_and_prints_rounded(tmp_path, capsys):
    import re

    from tfrobust.experiments import minimal_l2

    attacks = ("boxed_linear", "deepfool", "ddn")
    config = _config(tmp_path, reg_type="no", n_epochs=2, n_train=512, n_eval=24, monitor_points=0,
                     eval_after_train=True, upper_attacks=attacks, verbose=2)
    metrics = cl.run(config)
    saved = np.load(os.path.join(config.run_dir(), "bounds.npz"))
    per_attack = np.stack([saved[f"upper_{name}"] for name in attacks])
    np.testing.assert_array_equal(saved["upper"], per_attack.min(axis=0))
    correct = saved["pred"] == saved["y"]
    assert np.all(saved["lower"][correct] <= saved["upper"][correct])
    assert np.all(saved["lower"] <= saved["lower_exact"])
    final = metrics["robustness_final"]
    assert final["upper_attacks"] == list(attacks) and final["n_points"] == 24
    assert sum(final[f"upper_{name}_best"] for name in attacks) >= final["n_correct"]
    assert metrics["robustness_monitor"] == []  # monitor_points=0
    # The summary is labelled and rounded (no raw floats like 0.6629573106765747).
    out = capsys.readouterr().out
    summary = out[out.index("test error on 24 points"):]
    assert "upper bound (minimum over boxed_linear, deepfool, ddn): median" in summary
    assert "clean test accuracy" in summary
    assert not re.search(r"\d\.\d{4,}", summary), summary
    # The report reuses this evaluation (same points, same attacks)...
    assert cl_report._cached_summary(config.run_dir(), 24, attacks) is not None
    # ... but not for another attack set or another number of points.
    assert cl_report._cached_summary(config.run_dir(), 24, minimal_l2.UPPER_ATTACKS) is None
    assert cl_report._cached_summary(config.run_dir(), 30, attacks) is None
    with pytest.raises(ValueError, match="upper-bound attacks"):
        cl.run(_config(tmp_path, upper_attacks=("pgd",)))
    with pytest.raises(ValueError, match="monitor_points"):
        cl.run(_config(tmp_path, monitor_points=-1))
