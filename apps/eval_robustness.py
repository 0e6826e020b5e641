"""Upper and lower bounds on the minimal adversarial L2 change of trained runs.

Evaluates every `apps/worker.py` run below `--exp_dir/--experiment_name`
(or one `--run_dir`) on the test split and writes, per run, `bounds.npz` and
`robustness.json`, and for all runs together a Markdown table, a JSON file
and a plot of certified / empirical accuracy against the radius:

    python apps/eval_robustness.py --exp_dir=exps --experiment_name=test \
        --out_dir=reports/test --n_eval=1000
    python apps/eval_robustness.py --exp_dir=exps \
        --experiment_name=cl_mnist_grid,cl_mnist_resnet_cpu --out_dir=reports/all
"""

import os

from absl import app, flags

from tfrobust.experiments import cl_report
from tfrobust.experiments._cli import run_main

flags.DEFINE_string("exp_dir", "exps", "Root folder of experiments.")
flags.DEFINE_list("experiment_name", None, "Only runs of these experiments, comma-separated (default: all).")
flags.DEFINE_string("run_dir", None, "One run folder instead of a whole experiment.")
flags.DEFINE_string("out_dir", None, "Where the report goes (default: <root>/report).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: as recorded / $TFROBUST_DATA_DIR).")
flags.DEFINE_integer("n_eval", None, "Number of test points (default: each run's saved evaluation, else its "
                     "recorded --n_eval, else the whole split).", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Evaluation chunk size.", lower_bound=1)
flags.DEFINE_list("radii", ["0.1", "0.2", "0.5", "1.0"], "L2 radii for the accuracy columns.")
flags.DEFINE_list("upper_attacks", None, "Upper-bound attacks for every run (default: as each run recorded).")
FLAGS = flags.FLAGS


def _radii(values):
    try:
        radii = tuple(float(r) for r in values)
    except ValueError:
        radii = None
    if not radii or any(not r >= 0 or r == float("inf") for r in radii):
        raise ValueError(
            "Expected `--radii` to be a comma-separated list of finite radii >= 0. "
            f"Received: --radii={','.join(values)}"
        )
    return radii


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    names = FLAGS.experiment_name or [""]
    roots = [FLAGS.run_dir] if FLAGS.run_dir else [os.path.join(FLAGS.exp_dir, name) for name in names]
    cl_report.report(
        roots,
        FLAGS.out_dir or os.path.join(roots[0], "report"),
        data_dir=FLAGS.data_dir,
        n_eval=FLAGS.n_eval,
        radii=_radii(FLAGS.radii),
        batch_size=FLAGS.batch_size,
        attacks=tuple(FLAGS.upper_attacks) if FLAGS.upper_attacks else None,
    )


if __name__ == "__main__":
    run_main(main)
