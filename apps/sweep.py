"""Trains and evaluates a grid of runs from a config file (its `experiment` names the kind).

    python apps/sweep.py --config=configs/cross_lipschitz_mnist.py \
        --exp_dir=exps --out_dir=docs/results/cl_mnist --data_dir=PATH
    python apps/sweep.py --config=configs/cross_lipschitz_mnist.py --quick

Killed sweeps resume: finished runs are skipped, interrupted ones continue
from their last checkpoint.
"""

from absl import app, flags, logging

from tfrobust.experiments import sweep
from tfrobust.experiments._cli import run_main

flags.DEFINE_string("config", None, "Python file with get_config(quick=False).", required=True)
flags.DEFINE_bool("quick", False, "The config's shrunk variant (smoke test).")
flags.DEFINE_string("exp_dir", "exps", "Root folder of experiments.")
flags.DEFINE_string("out_dir", None, "Where the report goes.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_string("strategy", "default", "tf.distribute strategy name.")
flags.DEFINE_bool("report", True, "Report after training (--noreport: train only).")
flags.DEFINE_multi_string("only", [], "Train only runs with this setting, e.g. --only=nn_type=resnet (repeatable).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    config = sweep.load_config_file(FLAGS.config, quick=FLAGS.quick)
    only = {}
    for item in FLAGS.only:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Expected --only=key=value. Received: --only={item!r}")
        only[key] = value
    sweep.run_sweep(
        config, exp_dir=FLAGS.exp_dir, data_dir=FLAGS.data_dir,
        strategy=FLAGS.strategy, out_dir=FLAGS.out_dir, only=only, report=FLAGS.report,
    )


if __name__ == "__main__":
    run_main(main)
