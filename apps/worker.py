"""Cross-Lipschitz training and robustness evaluation (the original worker.py).

Flags and defaults mirror Hein & Andriushchenko's `worker.py`; `--data_dir`,
`--exp_dir`, `--strategy`, `--seed`, `--n_train`, `--n_eval`, `--n_epoch_eval`, `--monitor_points`,
`--eval_after_train` and `--upper_attacks` are additions.

    python apps/worker.py --reg_type=cross_lipschitz
    python apps/worker.py --dataset=mnist --nn_type=mlp1layer --n_epochs=50 \
        --lr=0.2 --lmbd=1e-4 --batch_size=64 --data_dir=PATH
    python apps/worker.py ... --eval_robustness      # bounds of a trained run
"""

from absl import app, flags, logging

from tfrobust import training
from tfrobust.experiments import cross_lipschitz as cl
from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

_D = cl.WorkerConfig()
flags.DEFINE_string("gpu_number", "3", "GPU to use (sets CUDA_VISIBLE_DEVICES).")
flags.DEFINE_float("gpu_memory", 0.05, "Fraction of GPU memory to take.")
flags.DEFINE_string("experiment_name", _D.experiment_name, "Name of the experiment folder.")
flags.DEFINE_enum("nn_type", _D.nn_type, cl.NN_TYPES, "Network.")
flags.DEFINE_enum("dataset", _D.dataset, cl.DATASETS, "Dataset (digits: embedded, no download).")
flags.DEFINE_enum("reg_type", _D.reg_type, cl.REG_TYPES, "Regularizer.")
flags.DEFINE_enum("opt_method", _D.opt_method, cl.OPT_METHODS, "Optimizer; momentum means 0.9.")
flags.DEFINE_integer("n_epochs", _D.n_epochs, "Number of epochs.")
flags.DEFINE_float("lr", _D.lr, "Initial learning rate (x0.1 at 72%, x0.01 at 88% of updates).")
flags.DEFINE_float("lmbd", _D.lmbd, "Weight of weight decay or of the Cross-Lipschitz penalty.")
flags.DEFINE_float("keep_hidden", _D.keep_hidden, "Dropout keep probability of hidden units.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Batch size, also the evaluation chunk.")
flags.DEFINE_bool("augm_flag", _D.augm_flag, "Random crop, mirror, brightness, contrast.")
flags.DEFINE_bool("adv_train_flag", _D.adv_train_flag, "Adversarial training (half of each batch).")
flags.DEFINE_bool("continue_train", _D.continue_train, "Resume from the last checkpoint.")
flags.DEFINE_bool("eval_robustness", _D.eval_robustness, "Compute per-example bounds of a trained run.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("exp_dir", _D.exp_dir, "Root folder of experiments.")
define_strategy_flag(_D.strategy)
flags.DEFINE_integer("seed", _D.seed, "Random seed (the original's r_seed=5).")
flags.DEFINE_integer("n_train", None, "Train on the first n training images (default: all).")
flags.DEFINE_integer("n_eval", None, "Test points for --eval_robustness (default: all).")
flags.DEFINE_integer("n_epoch_eval", None, "Test images for the per-epoch accuracy (default: all).")
flags.DEFINE_integer("monitor_points", _D.monitor_points,
                     "Test points of the training-time robustness monitor (0: off).", lower_bound=0)
flags.DEFINE_bool("eval_after_train", _D.eval_after_train,
                  "Run the --eval_robustness evaluation right after training.")
flags.DEFINE_list("upper_attacks", list(_D.upper_attacks),
                  "Attacks whose per-point minimum is the --eval_robustness upper bound.")
FLAGS = flags.FLAGS

_CONFIG_FIELDS = [f.name for f in cl.dataclasses.fields(cl.WorkerConfig) if f.name != "verbose"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # TensorFlow's INFO lines (checkpoint sharding, SavedModel assets) would
    # drown the per-epoch metrics; --verbosity=0 brings them back.
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    training.configure_devices(FLAGS.gpu_number, FLAGS.gpu_memory)
    config = cl.WorkerConfig(**{name: FLAGS[name].value for name in _CONFIG_FIELDS})
    config.upper_attacks = tuple(config.upper_attacks)
    cl.run(config)


if __name__ == "__main__":
    run_main(main)
