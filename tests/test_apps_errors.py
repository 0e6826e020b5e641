"""Every app reports an anticipated error as a message on stderr and exit status 1,
never as a traceback (issue 9 items 5, 9 and 14)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(app, args, data_dir=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if data_dir is not None:
        env["TFROBUST_DATA_DIR"] = data_dir
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "apps", app)] + args, env=env,
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path_factory.mktemp("model") / "digits.keras")
    model.save(path)
    return path


def _assert_clean_error(result, message):
    rc, out, err = result
    assert rc == 1, (rc, out[-2000:], err[-2000:])
    assert message in err, err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]


def test_every_app_reports_bad_flags_without_traceback(digits_model, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = [
        # --out_dir is a file: refused before any work (nothing was attacked).
        ("attack.py", [f"--model={digits_model}", f"--out_dir={a_file}", "--dataset=digits",
                       "--eps=0.1", "--n_examples=8"], "which is an existing file"),
        ("attack.py", [f"--model={digits_model}", f"--out_dir={tmp_path / 'o'}", "--attacks=nope",
                       "--eps=0.1"], "attack name"),
        ("attack.py", [f"--model={tmp_path / 'none.keras'}", f"--out_dir={tmp_path / 'o'}"], "--model"),
        ("eval_robustness.py", [f"--exp_dir={tmp_path}", "--radii=a,b"], "--radii"),
        ("eval_robustness.py", [f"--exp_dir={tmp_path / 'missing'}"], "Expected a folder of experiments"),
        ("sweep.py", [f"--config={tmp_path / 'missing.py'}"], "config"),
        ("worker.py", ["--gpu_memory=5", f"--exp_dir={tmp_path}"], "gpu_memory"),
        ("eval_manifold_defense.py", ["--adaptive_l2_eps=a", f"--out_dir={tmp_path / 'm'}"], "--adaptive_l2_eps"),
        ("eval_manifold_defense.py", ["--adaptive_attacks=nope", f"--out_dir={tmp_path / 'm'}"],
         "adaptive_attacks"),
        # An unknown --strategy is refused when the flags are parsed (every app
        # defines it with tfrobust.experiments._flags.define_strategy_flag).
        ("eval_dip.py", ["--strategy=bogus", f"--out_dir={tmp_path / 'o'}"],
         "flag --strategy=bogus: Expected --strategy to be one of default"),
    ]
    # The processes share the machine's cores; they run side by side.
    procs = [(_start(app, args), message) for app, args, message in cases]
    for proc, message in procs:
        _assert_clean_error(_finish(proc), message)
    assert not any(p.name.startswith("adv_") for p in tmp_path.iterdir())


def test_attack_app_names_a_model_and_data_shape_mismatch(digits_model, data_dir, tmp_path):
    out_dir = tmp_path / "out"
    result = _finish(_start("attack.py", [f"--model={digits_model}", f"--out_dir={out_dir}",
                                          "--dataset=mnist", "--eps=0.1", "--n_examples=8"], data_dir))
    _assert_clean_error(result, "model input 8x8x1 vs data 28x28x1")


def test_attack_app_keeps_finished_attacks_when_a_later_one_fails(digits_model, tmp_path, monkeypatch):
    # In process: the second attack raises; the first one's files are on disk.
    from tfrobust.evaluation import app as app_lib
    from tfrobust.evaluation import registry

    real = registry.make_attack

    def make_attack(name, **kwargs):
        attack = real(name, **kwargs)
        if name == "bim":
            def broken(*args, **kw):
                raise RuntimeError("simulated crash")
            attack._run = broken
        return attack

    monkeypatch.setattr(registry, "make_attack", make_attack)
    with pytest.raises(RuntimeError, match="simulated crash"):
        app_lib.run_attack_app(digits_model, out_dir=str(tmp_path), dataset="digits", n_examples=8,
                               attacks=("fgsm", "bim"), eps=(0.1,), sanity_checks=False, verbose=0)
    arrays = np.load(tmp_path / "adv_fgsm_0.1.npz")
    assert arrays["x_adv"].shape == (8, 8, 8, 1)
    assert (tmp_path / "partial.json").exists() and not (tmp_path / "report.json").exists()
    assert not (tmp_path / "adv_bim_0.1.npz").exists()


def test_save_names_a_path_that_is_a_file(tmp_path):
    from tfrobust.evaluation.report import ensure_out_dir

    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        ensure_out_dir(str(a_file))
    with pytest.raises(ValueError, match="can be created"):
        ensure_out_dir(str(a_file / "below"))
    assert ensure_out_dir(str(tmp_path / "new" / "dir")) == str(tmp_path / "new" / "dir")
