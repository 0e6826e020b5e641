"""Trains a classifier: plain, PGD-adversarial, or PGD + the overpowered-attack term
(the Robust Manifold Defense's manifold adversarial training, `adv-mnist/adv_train.py`):

    python apps/train_classifier.py --mode=plain --out_dir=runs/clf_plain
    python apps/train_classifier.py --mode=pgd --norm=2 --eps=1.5 --steps=40 --out_dir=runs/clf_pgd
    python apps/train_classifier.py --mode=pgd_op --generator=runs/vae/generator.keras \
        --init_from=runs/clf_pgd/model.keras --out_dir=runs/clf_pgd_op
    # the Madry et al. MNIST baseline:
    python apps/train_classifier.py --mode=pgd --norm=inf --eps=0.3 --steps=40 --step_size=0.01 --out_dir=runs/madry

Writes `model.keras`, `metrics.json`, TensorBoard logs and checkpoints (a
killed run resumes when started again with the same flags).
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("dataset", "mnist", "Dataset: mnist or cifar10.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("model", "madry_mnist_cnn", "Classifier name in tfrobust.models.registry.")
flags.DEFINE_enum("mode", "plain", ["plain", "pgd", "pgd_op"], "Training mode.")
flags.DEFINE_string("norm", "2", "PGD norm: 1, 2 or inf.")
flags.DEFINE_float("eps", None, "PGD budget (default 1.5 for L2, 0.3 for L-inf).")
flags.DEFINE_integer("steps", 40, "PGD steps in training.", lower_bound=1)
flags.DEFINE_float("step_size", None, "PGD step (default 2 * eps / steps, the original's --pgd-lr).")
flags.DEFINE_boolean("random_start", True, "PGD random start.")
flags.DEFINE_string("generator", None, "pgd_op: saved generator (.keras / SavedModel) or a registry name.")
flags.DEFINE_float("op_weight", 1e-2, "pgd_op: weight of the overpowered term.")
flags.DEFINE_integer("op_iter", 5, "pgd_op: run the overpowered attack every this many epochs.", lower_bound=1)
flags.DEFINE_integer("op_pairs", 50, "pgd_op: pairs per overpowered attack.", lower_bound=1)
flags.DEFINE_integer("op_steps", 500, "pgd_op: steps of the overpowered attack.", lower_bound=1)
flags.DEFINE_float("op_eps", None, "pgd_op: the attack's L2 budget (default --eps).")
flags.DEFINE_string("init_from", None, "A .keras classifier whose weights start the run.")
flags.DEFINE_integer("epochs", 10, "Epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 50, "Batch size (original: 50).", lower_bound=1)
flags.DEFINE_string("optimizer", "adam", "Optimizer name (adam, sgd, momentum, ...).")
flags.DEFINE_float("lr", 1e-3, "Learning rate.")
flags.DEFINE_integer("n_train", None, "Use the first n training images.", lower_bound=1)
flags.DEFINE_integer("n_eval", 1000, "Test images for the per-epoch and final evaluation.", lower_bound=1)
flags.DEFINE_integer("eval_steps", 100, "PGD steps of the final robust-accuracy check.", lower_bound=1)
flags.DEFINE_string("out_dir", "runs/classifier", "Output folder.")
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()
flags.DEFINE_integer("verbose", 2, "0 silent, 1 progress bar, 2 one line per epoch.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.classifier import ClassifierConfig, train_classifier

    train_classifier(ClassifierConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, model=FLAGS.model, mode=FLAGS.mode, norm=FLAGS.norm,
        eps=FLAGS.eps, steps=FLAGS.steps, step_size=FLAGS.step_size, random_start=FLAGS.random_start,
        generator=FLAGS.generator, op_weight=FLAGS.op_weight, op_every=FLAGS.op_iter, op_pairs=FLAGS.op_pairs,
        op_steps=FLAGS.op_steps, op_eps=FLAGS.op_eps, init_from=FLAGS.init_from, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer, learning_rate=FLAGS.lr, n_train=FLAGS.n_train,
        n_eval=FLAGS.n_eval, eval_steps=FLAGS.eval_steps, out_dir=FLAGS.out_dir, seed=FLAGS.seed,
        strategy=FLAGS.strategy, verbose=FLAGS.verbose))


if __name__ == "__main__":
    run_main(main)
