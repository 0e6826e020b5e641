"""Evaluates a trained rCNN / rCNN+ (mirrors the original `test_script.py`):
clean accuracy with m samples at each beta2 of the sweep (Table VII), the
static attack battery (beta2 = 0, exact gradients) and the adaptive
BPDA+EoT attack on the deployed randomized model, per threat, with the
worst case over attacks:

    python apps/test_rCNN.py --model=runs/rcnn_plus/model.keras --out_dir=runs/rcnn_plus/test
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("model", "runs/rcnn/model.keras", "Trained RBF-CNN (.keras).")
flags.DEFINE_string("dataset", "mnist", "Dataset name.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/rcnn/test", "Where results.json / results.md go.")
flags.DEFINE_integer("n_eval", 1000, "Test images for clean accuracy and static attacks.", lower_bound=1)
flags.DEFINE_integer("n_adaptive", 200, "Test images for the (costly) BPDA+EoT attack.", lower_bound=1)
flags.DEFINE_list("threats", ["linf", "l2", "l1"], "Threats: linf (0.3), l2 (2.0), l1 (15).")
flags.DEFINE_float("beta1", 25.0, "beta1 at test time.")
flags.DEFINE_float("beta2", 1.75, "beta2 of the deployed (randomized) model.")
flags.DEFINE_integer("samples", 10, "m, reconstructions averaged per prediction.", lower_bound=1)
flags.DEFINE_integer("steps", 40, "PGD / MI-FGSM steps.", lower_bound=1)
flags.DEFINE_integer("auto_steps", 100, "APGD / FAB steps.", lower_bound=1)
flags.DEFINE_integer("square_queries", 1000, "Square attack queries.", lower_bound=1)
flags.DEFINE_integer("cw_steps", 200, "C&W / EAD steps per binary-search step.", lower_bound=1)
flags.DEFINE_integer("eot_samples", 50, "EoT draws per adaptive step (paper: 50).", lower_bound=1)
flags.DEFINE_integer("adaptive_steps", 20, "PGD steps of the adaptive attack.", lower_bound=1)
flags.DEFINE_list("beta2_sweep", ["0", "1", "1.75"], "beta2 values of the clean-accuracy sweep.")
flags.DEFINE_integer("batch_size", 250, "Examples per attack call.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()  # the static attacks; the randomized BPDA+EoT view runs on one device
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.rbf_cnn_eval import EvalConfig, evaluate_rcnn

    try:
        sweep = tuple(float(b) for b in FLAGS.beta2_sweep)
    except ValueError:
        raise ValueError("Expected `--beta2_sweep` to be comma-separated numbers. "
                         f"Received: --beta2_sweep={','.join(FLAGS.beta2_sweep)}") from None
    evaluate_rcnn(EvalConfig(
        model=FLAGS.model, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir,
        n_eval=FLAGS.n_eval, n_adaptive=FLAGS.n_adaptive, threats=tuple(FLAGS.threats), beta1=FLAGS.beta1,
        beta2=FLAGS.beta2, samples=FLAGS.samples, steps=FLAGS.steps, auto_steps=FLAGS.auto_steps,
        square_queries=FLAGS.square_queries, cw_steps=FLAGS.cw_steps, eot_samples=FLAGS.eot_samples,
        adaptive_steps=FLAGS.adaptive_steps, beta2_sweep=sweep, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        strategy=FLAGS.strategy))


if __name__ == "__main__":
    run_main(main)
