"""Trains rCNN (or rCNN+ with --plus) behind a frozen RBF front end,
mirroring the original `train_rCNN.py` / `train_rCNN+.py`:

    python apps/train_rbf_layer.py --dataset=mnist --out=runs/rbf/mnist.npz
    python apps/train_rCNN.py --templates=runs/rbf/mnist.npz --out_dir=runs/rcnn
    python apps/train_rCNN.py --plus --templates=runs/rbf/mnist.npz --out_dir=runs/rcnn_plus

Writes checkpoints (a killed run resumes), TensorBoard logs, `model.keras`
(beta1 set to the test value) and `metrics.json`.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("dataset", "mnist", "Dataset name.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("templates", "rbf_layer/templates.npz", "Template file from apps/train_rbf_layer.py.")
flags.DEFINE_string("out_dir", "runs/rcnn", "Output folder.")
flags.DEFINE_boolean("plus", False, "rCNN+: Gaussian and adversarial-noise copies in every batch.")
flags.DEFINE_integer("n_train", None, "Use the first n training images.", lower_bound=1)
flags.DEFINE_integer("n_eval", 1000, "Test images evaluated after each epoch.", lower_bound=1)
flags.DEFINE_integer("epochs", 150, "Epochs (original: 150).", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Clean images per batch.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Learning rate.")
flags.DEFINE_string("classifier", "cw_mnist_cnn", "Classifier behind the front end (a name of "
                    "tfrobust.models.MODELS; CIFAR-10: vgg16_cifar).")
flags.DEFINE_string("optimizer", "adam", "Optimizer name of tfrobust.training.fit (adam, nesterov, ...).")
flags.DEFINE_integer("halve_every", None, "Halve the rate every n epochs (default 20, rCNN+ 25).", lower_bound=1)
flags.DEFINE_float("beta1_train", 125.0, "beta1 in training.")
flags.DEFINE_float("beta1_test", 25.0, "beta1 stored in the final model.")
flags.DEFINE_float("sigma", 0.35, "rCNN+: std of the Gaussian copies.")
flags.DEFINE_list("eps_range", ["0.15", "0.4"], "rCNN+: range of the L-inf box radius (drawn once).")
flags.DEFINE_integer("adv_noise_epoch", 25, "rCNN+: epoch after which the BIM noise table is made.",
                     lower_bound=1)
flags.DEFINE_float("adv_noise_eps", 0.3, "rCNN+: L-inf radius of the BIM copy.")
flags.DEFINE_integer("adv_noise_steps", 10, "rCNN+: BIM steps of the copy.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.rbf_cnn import RCNNConfig, train_rcnn

    try:
        eps_range = tuple(float(v) for v in FLAGS.eps_range)
    except ValueError:
        raise ValueError(f"Expected `--eps_range` to be two numbers lo,hi. Received: "
                         f"--eps_range={','.join(FLAGS.eps_range)}") from None
    train_rcnn(RCNNConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, templates=FLAGS.templates, out_dir=FLAGS.out_dir,
        plus=FLAGS.plus, n_train=FLAGS.n_train, n_eval=FLAGS.n_eval, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.lr, halve_every=FLAGS.halve_every,
        beta1_train=FLAGS.beta1_train, beta1_test=FLAGS.beta1_test, sigma=FLAGS.sigma, eps_range=eps_range,
        adv_noise_epoch=FLAGS.adv_noise_epoch, adv_noise_eps=FLAGS.adv_noise_eps,
        adv_noise_steps=FLAGS.adv_noise_steps, seed=FLAGS.seed,
        strategy=FLAGS.strategy, classifier=FLAGS.classifier, optimizer=FLAGS.optimizer))


if __name__ == "__main__":
    run_main(main)
