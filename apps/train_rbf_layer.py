"""Learns RBF-CNN's templates (mirrors the original `train_rbfLayer.py`):

    python apps/train_rbf_layer.py --dataset=mnist --out=runs/rbf/mnist.npz

writes the templates (`.npz`), their description and EM history (`.json`)
and a PNG grid of the means. `--method=gradient` trains v2's fixed number of
templates by gradient descent instead of the numba EM.

No `--strategy`: the EM runs in numba on NumPy arrays, outside TensorFlow,
and the gradient variant fits one RBF layer (a few hundred weights on 3x3
patches) whose steps replicas would only slow down with synchronisation.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main

flags.DEFINE_string("dataset", "mnist", "Dataset name (mnist, cifar10, digits, ...).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_integer("n_train", None, "Use the first n training images (default: all).", lower_bound=1)
flags.DEFINE_string("out", "rbf_layer/templates.npz", "Template file to write.")
flags.DEFINE_enum("method", "em", ["em", "gradient"], "v1 numba EM or v2 gradient training.")
flags.DEFINE_integer("total_steps", None, "EM: M-steps (default: the original's 500).", lower_bound=1)
flags.DEFINE_integer("non_param_steps", None, "EM: M-steps before the parametric mode.", lower_bound=0)
flags.DEFINE_float("desired_templates", None, "EM: desired template count of the alpha rule.")
flags.DEFINE_integer("batch_images", 50, "EM: images per E-step batch.", lower_bound=1)
flags.DEFINE_integer("batch_count", 15, "EM: batches per M-step.", lower_bound=1)
flags.DEFINE_float("mem_threshold", 0.001, "EM: share a new template needs.")
flags.DEFINE_integer("count_threshold", 1, "EM: patches a template needs to be kept.", lower_bound=0)
flags.DEFINE_float("alpha", 1.0, "EM: initial alpha.")
flags.DEFINE_integer("num_templates", 64, "Gradient: number of templates.", lower_bound=1)
flags.DEFINE_integer("epochs", 50, "Gradient: epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 250, "Gradient: batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Gradient: seed.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust import rbf
    from tfrobust.experiments.rbf_layer import train_rbf_layer

    base = rbf.EMConfig.cifar10() if FLAGS.dataset == "cifar10" else rbf.EMConfig()
    config = rbf.EMConfig(
        batch_images=FLAGS.batch_images, batch_count=FLAGS.batch_count,
        total_steps=FLAGS.total_steps or base.total_steps,
        non_param_steps=base.non_param_steps if FLAGS.non_param_steps is None else FLAGS.non_param_steps,
        desired_templates=FLAGS.desired_templates or base.desired_templates,
        mem_threshold=FLAGS.mem_threshold, count_threshold=FLAGS.count_threshold, alpha=FLAGS.alpha)
    train_rbf_layer(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, n_train=FLAGS.n_train, out=FLAGS.out,
                    method=FLAGS.method, em_config=config, num_templates=FLAGS.num_templates,
                    epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, seed=FLAGS.seed)


if __name__ == "__main__":
    run_main(main)
