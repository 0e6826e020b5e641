"""Attacks a smoothed model, mirroring SIAM's `run_attack.py` (+ `run_attack_transfer.py`, NAttack):

    python apps/eval_smoothing.py --model=runs/cpni/model.keras --out_dir=runs/cpni_eval
    python apps/eval_smoothing.py --model=runs/mnist/model.keras --dataset=mnist --n_test=200 \\
        --transfer=runs/mnist_source/model.keras --m_grid=1,4,16 --sigma_grid=0.12,0.25,0.37

Clean / PGD / EPGD / PGD-on-soft-smoothing accuracy without smoothing and
with each vote rule over a grid of m and sigma (the original's
`--check_hyper_params`), black-box transfer and NAttack rows. Writes
`results.json`, `results.md`, `grid.png` and the engine report (`engine/`).
`--strategy` spreads the engine's white-box attacks over replicas (the grid
and black-box rows run on one device); only the chief writes.
"""

import os

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("model", "runs/smoothing/model.keras", "model.keras of apps/train_smoothing.py (or a base).")
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "mnist"], "Dataset.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/smoothing_eval", "Output folder.")
flags.DEFINE_integer("n_test", 100, "First n test images.", lower_bound=1)
flags.DEFINE_float("eps", None, "L-inf budget in pixels (default 8/255 CIFAR-10, 0.3 MNIST).")
flags.DEFINE_list("attacks", ["pgd", "epgd", "pgd_smoothed"], "Of pgd, epgd, pgd_smoothed, pgd_eot.")
flags.DEFINE_integer("steps", 7, "Attack steps (step eps/4, random start).", lower_bound=1)
flags.DEFINE_integer("m_attack", 8, "Passes of EPGD and the smoothed views (--m_train).", lower_bound=1)
flags.DEFINE_float("sigma", None, "Input-noise std in pixels (default: the model's).")
flags.DEFINE_integer("m_test", None, "Passes of the smoothed prediction (default: the model's).", lower_bound=1)
flags.DEFINE_list("m_grid", ["1", "4", "16"], "Values of m in the grid (the original's --iterations-list).")
flags.DEFINE_list("sigma_grid", None, "Pixel sigmas of the grid (default 0.5, 1, 1.5 x sigma).")
flags.DEFINE_string("transfer", None, "Source model.keras of the transfer attack (--trans).")
flags.DEFINE_integer("n_nattack", 20, "Images attacked by NAttack (0: none).", lower_bound=0)
flags.DEFINE_integer("nattack_steps", 30, "NAttack steps.", lower_bound=1)
flags.DEFINE_integer("nattack_samples", 50, "NAttack population.", lower_bound=2)
flags.DEFINE_integer("nattack_m", 4, "Passes of the vote NAttack queries.", lower_bound=1)
flags.DEFINE_boolean("sanity_checks", True, "Run the engine's sanity checks.")
flags.DEFINE_integer("batch_size", 100, "Images per attack call.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()  # the engine's attacks
FLAGS = flags.FLAGS


def _numbers(values, name, kind):
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise ValueError(f"Expected `--{name}` to be comma-separated numbers. Received: "
                         f"--{name}={','.join(values)}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.smoothing_eval import SmoothingEvalConfig, evaluate_smoothing

    config = SmoothingEvalConfig(
        model=FLAGS.model, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir,
        n_test=FLAGS.n_test, eps=FLAGS.eps, attacks=tuple(FLAGS.attacks), steps=FLAGS.steps,
        m_attack=FLAGS.m_attack, sigma=FLAGS.sigma, m_test=FLAGS.m_test,
        m_grid=_numbers(FLAGS.m_grid, "m_grid", int),
        sigma_grid=None if FLAGS.sigma_grid is None else _numbers(FLAGS.sigma_grid, "sigma_grid", float),
        transfer=FLAGS.transfer, n_nattack=FLAGS.n_nattack, nattack_steps=FLAGS.nattack_steps,
        nattack_samples=FLAGS.nattack_samples, nattack_m=FLAGS.nattack_m, sanity_checks=FLAGS.sanity_checks,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed, strategy=FLAGS.strategy)
    results = evaluate_smoothing(config)
    report = os.path.join(config.out_dir, "results.md")
    if os.path.exists(report):  # a non-chief worker writes nothing there
        print(open(report).read())
    print("seconds:", results["timing_seconds"])


if __name__ == "__main__":
    run_main(main)
