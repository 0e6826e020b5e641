"""Evaluates the Deep Image Prior defense on CIFAR-10 test images:

    python apps/train_classifier.py --dataset=cifar10 --model=resnet20 --epochs=15 \
        --batch_size=128 --out_dir=runs/cifar_resnet20
    python apps/eval_dip.py --classifier=runs/cifar_resnet20/model.keras --n=100 --out_dir=runs/dip_eval

Clean and BIM (crafted on the unprotected classifier) accuracy vs the number
of DIP iterations (the early-stopping curve, `curve.png`), and BIM with
BPDA + EoT through DIP at `--attack_dip_steps`. Writes `results.json`,
`results.md`, `curve.png`, `reconstructions.png`. `--strategy` deals the
batches (BIM crafting, DIP fits, adaptive attack) to replicas; only the
chief writes.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("classifier", "runs/cifar_resnet20/model.keras", "Trained CIFAR-10 classifier (.keras).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/dip_eval", "Output folder.")
flags.DEFINE_integer("n", 100, "First n test images.", lower_bound=1)
flags.DEFINE_integer("batch_size", 100, "Images fitted at once.", lower_bound=1)
flags.DEFINE_float("eps", 8.0 / 255.0, "L-inf budget.")
flags.DEFINE_integer("bim_steps", None, "BIM steps on the classifier (default: Kurakin et al.).", lower_bound=1)
flags.DEFINE_list("curve_steps", ["10", "25", "50", "100", "200", "400"], "DIP iterations of the curve.")
flags.DEFINE_integer("attack_dip_steps", 50, "DIP iterations of the defense under the adaptive attack.",
                     lower_bound=1)
flags.DEFINE_integer("attack_steps", 5, "BIM steps of the BPDA+EoT attack.", lower_bound=1)
flags.DEFINE_integer("n_eot", 2, "EoT draws per attack step.", lower_bound=1)
flags.DEFINE_float("lr", 0.01, "DIP Adam learning rate (Ulyanov et al.: 0.01).")
flags.DEFINE_integer("channels", 32, "DIP filters per convolution (Ulyanov et al.: 128).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.dip_eval import DIPEvalConfig, evaluate_dip

    try:
        curve_steps = tuple(int(s) for s in FLAGS.curve_steps)
    except ValueError:
        raise ValueError("Expected `--curve_steps` to be a list of ints. "
                         f"Received: --curve_steps={','.join(FLAGS.curve_steps)}") from None
    results = evaluate_dip(DIPEvalConfig(
        classifier=FLAGS.classifier, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir, n=FLAGS.n,
        batch_size=FLAGS.batch_size, eps=FLAGS.eps, bim_steps=FLAGS.bim_steps, curve_steps=curve_steps,
        attack_dip_steps=FLAGS.attack_dip_steps, attack_steps=FLAGS.attack_steps, n_eot=FLAGS.n_eot,
        learning_rate=FLAGS.lr, channels=FLAGS.channels, seed=FLAGS.seed, strategy=FLAGS.strategy))
    from tfrobust.experiments.dip_eval import _markdown
    print(_markdown(results))


if __name__ == "__main__":
    run_main(main)
