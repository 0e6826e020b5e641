"""The Cross-Lipschitz grid (`apps/sweep.py`) and report app (`apps/eval_robustness.py`)."""

import json
import os
import subprocess
import sys

import pytest

from tfrobust.experiments import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "cross_lipschitz_mnist.py")


def test_full_grid_covers_every_regularizer_net_and_adversarial_training():
    config = sweep.load_config_file(CONFIG)
    keys = {(r["nn_type"], r["reg_type"], r["adv_train_flag"]) for r in config["runs"]}
    for net in ("mlp1layer", "resnet"):
        for reg in ("no", "weight_decay", "dropout", "cross_lipschitz"):
            for adv in (False, True):
                assert (net, reg, adv) in keys


def test_quick_sweep_trains_resumes_and_reports(data_dir, tmp_path):
    config = sweep.load_config_file(CONFIG, quick=True)
    rows = sweep.run_sweep(config, exp_dir=str(tmp_path), data_dir=data_dir, verbose=0)
    assert len(rows) == len(config["runs"])
    assert all(row["lower_le_upper_violations"] == 0 for row in rows)
    report_dir = tmp_path / config["experiment_name"] / "report"
    assert (report_dir / "robustness.md").exists()
    # A second call finds every run finished and only re-reports.
    again = sweep.run_sweep(config, exp_dir=str(tmp_path), data_dir=data_dir, verbose=0)
    assert [r["run"] for r in again] == [r["run"] for r in rows]

    # The report app over the same folder, in a fresh process.
    out = tmp_path / "report_app"
    cmd = [
        sys.executable, os.path.join(ROOT, "apps", "eval_robustness.py"),
        f"--exp_dir={tmp_path}", f"--experiment_name={config['experiment_name']}",
        f"--out_dir={out}", "--n_eval=20", "--radii=0.05,0.1", "--upper_attacks=boxed_linear,deepfool",
    ]
    env = dict(os.environ, TFROBUST_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows_app = json.loads((out / "robustness.json").read_text())
    assert len(rows_app) == len(rows)
    assert rows_app[0]["radii"] == [0.05, 0.1]
    assert rows_app[0]["upper_attacks"] == ["boxed_linear", "deepfool"]


def test_bad_config_and_filters(tmp_path):
    with pytest.raises(FileNotFoundError, match="config"):
        sweep.load_config_file(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        sweep.load_config_file(str(bad))
    config = sweep.load_config_file(CONFIG, quick=True)
    with pytest.raises(ValueError, match="only"):
        sweep.run_sweep(config, exp_dir=str(tmp_path), only={"nn_type": "vgg"})


def test_sweep_dispatches_on_the_experiment_named_by_the_config(tmp_path):
    config = sweep.load_config_file(CONFIG, quick=True)
    assert config["experiment"] == "cross_lipschitz" and "cross_lipschitz" in sweep.EXPERIMENTS
    for kind in (None, "rbf_cnn"):
        with pytest.raises(ValueError, match="experiment"):
            sweep.run_sweep({**config, "experiment": kind}, exp_dir=str(tmp_path))
    # Every run is checked before the first one trains.
    bad = {**config, "runs": config["runs"] + [dict(config["runs"][0], n_epochs=0)]}
    with pytest.raises(ValueError, match="n_epochs"):
        sweep.run_sweep(bad, exp_dir=str(tmp_path))
    assert not (tmp_path / config["experiment_name"]).exists()


def test_lambda_grid_and_cpu_resnet_configs():
    # Issue 15: >= 3 strengths per regularizer, 3 seeds, every run evaluated
    # on the same points; the reduced ResNet grid holds every regularizer.
    grid = sweep.load_config_file(os.path.join(ROOT, "configs", "cross_lipschitz_mnist_grid.py"))
    settings = {}
    for run in grid["runs"]:
        strength = run["keep_hidden"] if run["reg_type"] == "dropout" else run["lmbd"]
        settings.setdefault((run["reg_type"], strength), set()).add(run["seed"])
        assert run["eval_after_train"] and run["n_eval"] == grid["evaluation"]["n_eval"]
    for reg in ("weight_decay", "dropout", "cross_lipschitz"):
        assert len({s for r, s in settings if r == reg}) >= 3
    assert ("no", 0.0) in settings and all(len(seeds) == 3 for seeds in settings.values())
    ten = sweep.load_config_file(os.path.join(ROOT, "configs", "cross_lipschitz_mnist_grid_10ep.py"))
    assert {r["n_epochs"] for r in ten["runs"]} == {10} and {r["seed"] for r in ten["runs"]} == {5}
    assert len(ten["runs"]) == len(settings) and ten["experiment_name"] != grid["experiment_name"]
    resnet = sweep.load_config_file(os.path.join(ROOT, "configs", "cross_lipschitz_mnist_resnet_cpu.py"))
    assert {r["reg_type"] for r in resnet["runs"]} == {"no", "weight_decay", "dropout", "cross_lipschitz"}
    assert all(r["nn_type"] == "resnet" for r in resnet["runs"])
    for config in (grid, resnet):
        for run in config["runs"]:
            sweep.EXPERIMENTS["cross_lipschitz"].check_run(run, experiment_name="x", exp_dir=ROOT)
