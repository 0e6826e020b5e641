"""Smoke tests of the benchmark scripts: they run end to end and print their tables.

The numbers themselves are not asserted beyond sanity (speed targets live in
the scripts and docs/benchmarks.md, never in timed unit tests).
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args, env=None):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _row(text, prefix):
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert rows, f"no row starting with {prefix!r} in:\n{text}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_attacks_vs_peers_runs_without_peers(data_dir, tmp_path):
    text = _run(
        "attacks_vs_peers.py", f"--data_dir={data_dir}", f"--cache_dir={tmp_path}", "--epochs=1",
        "--n=40", "--batch_size=20", "--repeats=1", "--peers=", "--only=PGD-40 Linf,FGSM,APGD-CE Linf",
        "--adv_epochs=0",
    )
    pgd = _row(text, "| PGD-40 Linf")
    # tfrobust and the bare loop both ran: seconds, then "seconds (ratio x)".
    assert float(pgd[3]) > 0
    assert re.fullmatch(r"[0-9.]+ \([0-9.]+x\)", pgd[6]), pgd
    # One epoch gives a model PGD at eps 0.3 breaks almost always.
    accuracies = [float(v) for v in pgd[7].split(" / ") if v != "-"]
    assert len(accuracies) == 2 and max(accuracies) <= 20.0, pgd
    assert "| PGD-40 Linf | tfrobust |" in text and "WARNING" not in text
    _row(text, "| FGSM Linf")
    apgd = _row(text, "| APGD-CE Linf (eps 0.3, 100 steps, 1 restart)")
    assert float(apgd[3]) > 0 and float(apgd[7].split(" / ")[0]) <= 20.0, apgd
    assert "PGD-trained" not in text  # --adv_epochs=0: no second model
    # A second run reads the cached weights instead of training.
    again = _run(
        "attacks_vs_peers.py", f"--data_dir={data_dir}", f"--cache_dir={tmp_path}", "--epochs=1",
        "--n=20", "--batch_size=20", "--repeats=1", "--peers=", "--only=FGSM,C&W",
        "--n_slow=4", "--n_art=2", "--slow_batch_size=2", "--search_steps=1", "--iterations=5",
        "--nocw_abort_early", "--adv_epochs=0",
    )
    assert "Loaded cached weights" in again
    cw = _row(again, "| C&W L2 (1 x 5, lr 0.1, c0 0.01, abort early False) |")
    assert cw[1] == "4" and cw[8].startswith("L2: "), cw
    # --models=pgd skips the standard model's rows (and, with --adv_epochs=0, has no second model).
    none = _run("attacks_vs_peers.py", f"--data_dir={data_dir}", f"--cache_dir={tmp_path}", "--epochs=1",
                "--n=20", "--batch_size=20", "--repeats=1", "--peers=", "--only=FGSM", "--adv_epochs=0",
                "--models=pgd", "--attack_seed=3")
    assert "Loaded cached weights" in none and "| FGSM Linf" not in none


@pytest.mark.parametrize("flag, message", [("--n=0", "Expected --n >= 1"),
                                           ("--models=robust", "Expected --models among standard, pgd")])
def test_attacks_vs_peers_rejects_bad_flags(data_dir, flag, message):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "attacks_vs_peers.py"), f"--data_dir={data_dir}", flag],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert out.returncode != 0 and message in out.stderr


def test_cross_lipschitz_benchmark_on_digits():
    env = dict(os.environ)
    env.pop("TFROBUST_DATA_DIR", None)
    text = _run("cross_lipschitz.py", "--repeats=2", "--n_attack=20", "--noresnet", env=env)
    assert "dataset digits" in text
    generic = _row(text, "| mlp1layer | cross_lipschitz (generic)")
    closed = _row(text, "| mlp1layer | cross_lipschitz (closed form)")
    assert float(generic[3]) > 0 and float(closed[3]) > 0
    boxed = _row(text, "| boxed linear + binary search")
    assert float(boxed[3]) >= 0.9, boxed  # success rate of the boxed attack


def test_rbf_benchmark_on_digits():
    env = {k: v for k, v in os.environ.items() if k != "TFROBUST_DATA_DIR"}
    text = _run("rbf.py", "--repeats=1", "--batch_size=32", env=env)
    assert "same assignments: False" not in text and text.count("same assignments: True") == 2
    assert "same statistics: True" in text
    for prefix in ("E-step", "E-step + statistics", "EM pass over", "forward at batch 32", "the same in process CPU",
                   "m=10 samples", "m=10 samples, process CPU time"):
        assert any(line.startswith(prefix) for line in text.splitlines()), text


def test_smoothing_benchmark_runs_tiny(data_dir):
    text = _run("smoothing.py", f"--data_dir={data_dir}", "--n=50", "--n0=10", "--n_images=2",
                "--batch_size=40", "--repeats=1")
    for prefix in ("| raw batched forward", "| Gaussian draw alone", "| draw + forward in one function",
                   "| Smooth.sample_counts", "| Smooth.sample_counts, share_noise=True", "| SmoothedClassifier",
                   "| SmoothedClassifier (soft), share_noise=True",
                   "| tfrobust certify_batch", "| tfrobust certify_batch, share_noise=True"):
        assert any(line.startswith(prefix) for line in text.splitlines()), text
    # ART is optional: either its row and the speed-up, or the row saying it was skipped.
    assert "| speed-up over ART" in text or "| ART certify | skipped" in text, text


def test_pgd_overhead_runs_tiny(data_dir, tmp_path):
    text = _run("pgd_overhead.py", f"--data_dir={data_dir}", f"--cache_dir={tmp_path}", "--epochs=1",
                "--n=8", "--batch_size=8", "--instances=2", "--timed=1", "--norms=inf,2")
    for norm in ("Linf", "L2"):
        assert f"PGD-40 {norm}" in text, text
    for name in ("tfrobust0", "bare0", "tfrobust1", "bare1"):
        row = _row(text, f"| {name} |")
        assert float(row[1].split()[0]) > 0, row
    assert text.count("tfrobust / bare, median CPU over instances") == 2, text


def test_noise_training_runs_tiny(data_dir):
    text = _run("noise_training.py", f"--data_dir={data_dir}", "--epochs=1", "--n_train=64", "--n_eval=16",
                "--depth=8", "--variants=plain,cpni", "--cpni_absolute_f=0.01")
    for prefix in ("| no noise |", "| CPNI (F = 0.01 in std(W) units) |", "| CPNI (F = 0.01 absolute"):
        row = _row(text, prefix)
        assert 0.0 <= float(row[1]) <= 100.0, row  # one epoch: one training accuracy


def test_square_reference_runs_tiny(data_dir, tmp_path):
    # A stand-in for the authors' attack.py with the same signature and
    # seeding line: it returns the images unchanged, so its row must equal
    # the clean accuracy, which checks the NCHW round trip and the scoring.
    fake = tmp_path / "attack.py"
    fake.write_text(
        "import numpy as np\n"
        "def square_attack_l2(model, x, y, corr_classified, eps, n_iters, p_init, metrics_path, targeted,"
        " loss_type):\n"
        "    np.random.seed(0)\n"
        "    assert model.loss(y, model.predict(x)).shape == (len(x),)\n"
        "    return np.ones(int(corr_classified.sum())), x[corr_classified]\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('not run')\n")
    text = _run("square_reference.py", f"--data_dir={data_dir}", f"--cache_dir={tmp_path}", "--epochs=1",
                "--n=8", "--queries=20", "--seeds=0", "--models=standard", f"--reference={fake}")
    clean = float(re.search(r"clean accuracy ([0-9.]+)%", text).group(1))
    assert float(_row(text, "| authors' square_attack_l2 | 0 |")[2]) == clean, text
    assert 0.0 <= float(_row(text, "| tfrobust Square | 0 |")[2]) <= clean, text
