"""Trains a base model for smoothed inference, mirroring the SIAM `train.py` flags:

    python apps/train_smoothing.py --cpni --adv --attack=pgd --smooth=mcpredict --out_dir=runs/cpni
    python apps/train_smoothing.py --pni --adv --attack=epgd --m_train=8 --out_dir=runs/pni_epgd
    python apps/train_smoothing.py --dataset=mnist --pni --adv --attack=pgd --noise_sd=0.8 --out_dir=runs/mnist

`--noise_sd` is in the original's channel-normalized units (0.2 on CIFAR-10
is 0.0501 in [0, 1] pixels; the pixel value is printed and stored). Writes
checkpoints (a killed run resumes), TensorBoard logs, `model.keras` (the
`SmoothedClassifier`), `base.keras` and `metrics.json`.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "mnist"], "Dataset (the original: cifar10 only).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/smoothing", "Output folder (the original's --save).")
flags.DEFINE_integer("layers", 20, "ResNet depth: 20, 32, 44, 56, 164 (CIFAR-10).", lower_bound=8)
flags.DEFINE_integer("width", 1, "ResNet width multiplier.", lower_bound=1)
flags.DEFINE_boolean("pni", False, "PNI layers (learned element-wise noise scale).")
flags.DEFINE_boolean("cpni", False, "CPNI layers (coloured low-rank weight noise).")
flags.DEFINE_boolean("weight_noise", True, "Noise on the weights of the PNI/CPNI layers (--weight-noise).")
flags.DEFINE_boolean("act_noise_a", False, "Noise on the noisy layers' inputs (--act-noise-a).")
flags.DEFINE_boolean("act_noise_b", False, "Noise on the noisy layers' outputs (--act-noise-b).")
flags.DEFINE_integer("noise_rank", 5, "CPNI rank (--noise-rank).", lower_bound=1)
flags.DEFINE_enum("smooth", "mcpredict", ["mcpredict", "mclogits", "mcepredict", "mceattack", "prediction",
                                          "weighted", "soft"], "Vote rule of the smoothed model.")
flags.DEFINE_float("noise_sd", 0.2, "Input-noise std in channel-normalized units (original default 0.2).")
flags.DEFINE_integer("m_train", 8, "Noisy passes of EPGD (and copies with --smooth_train).", lower_bound=1)
flags.DEFINE_integer("m_test", 8, "Noisy passes of the smoothed prediction.", lower_bound=1)
flags.DEFINE_boolean("smooth_train", False, "Train on m_train noisy copies of each example.")
flags.DEFINE_boolean("adv", False, "Adversarial training: adv_w CE(adv) + (1 - adv_w) CE(clean).")
flags.DEFINE_enum("attack", "fgsm", ["fgsm", "pgd", "epgd"], "Attack of adversarial training.")
flags.DEFINE_float("adv_w", 0.5, "Weight of the adversarial loss (--adv-w).")
flags.DEFINE_float("eps", None, "L-inf budget in pixels (default 8/255 CIFAR-10, 0.3 MNIST).")
flags.DEFINE_integer("attack_steps", 7, "PGD/EPGD steps (step eps/4).", lower_bound=1)
flags.DEFINE_float("grad_clip", 0.05, "Gradient-norm clip of adversarial training (original: 0.05).")
flags.DEFINE_integer("epochs", 400, "Epochs (original: 400).", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size (-b).", lower_bound=1)
flags.DEFINE_float("lr", 0.1, "Learning rate (-lr).")
flags.DEFINE_enum("opt", "nesterov", ["nesterov", "momentum", "sgd", "adam"], "Optimizer (the original's sgd is Nesterov momentum 0.9: nesterov).")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay on kernels (-d).")
flags.DEFINE_list("schedule", None, "Epochs of the x gamma decays (default: the original's 100,200,300).")
flags.DEFINE_float("gamma", 0.1, "LR decay factor.")
flags.DEFINE_boolean("augment", True, "CIFAR-10 pad-4 crop + flip.")
flags.DEFINE_integer("n_train", None, "Use the first n training images.", lower_bound=1)
flags.DEFINE_integer("n_eval", 500, "Test images evaluated (smoothed) after each epoch.", lower_bound=1)
flags.DEFINE_string("resume", None, "base.keras of an earlier run to fine-tune from (the original's --resume).")
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
define_strategy_flag()
flags.DEFINE_integer("verbose", 2, "0 silent, 1 progress bar, 2 one line per epoch.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.smoothing import SmoothingTrainConfig, pixel_sigma, train_smoothing

    try:
        schedule = None if FLAGS.schedule is None else tuple(int(v) for v in FLAGS.schedule)
    except ValueError:
        raise ValueError(f"Expected `--schedule` to be epochs e1,e2,... Received: "
                         f"--schedule={','.join(FLAGS.schedule)}") from None
    config = SmoothingTrainConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir, layers=FLAGS.layers,
        width=FLAGS.width, pni=FLAGS.pni, cpni=FLAGS.cpni, weight_noise=FLAGS.weight_noise,
        act_noise_a=FLAGS.act_noise_a, act_noise_b=FLAGS.act_noise_b, noise_rank=FLAGS.noise_rank,
        smooth=FLAGS.smooth, noise_sd=FLAGS.noise_sd, m_train=FLAGS.m_train, m_test=FLAGS.m_test,
        smooth_train=FLAGS.smooth_train, adv=FLAGS.adv, attack=FLAGS.attack, adv_w=FLAGS.adv_w, eps=FLAGS.eps,
        attack_steps=FLAGS.attack_steps, grad_clip=FLAGS.grad_clip, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, lr=FLAGS.lr, momentum_opt=FLAGS.opt, weight_decay=FLAGS.weight_decay,
        schedule=schedule, gamma=FLAGS.gamma, augment=FLAGS.augment, n_train=FLAGS.n_train,
        n_eval=FLAGS.n_eval, resume=FLAGS.resume, seed=FLAGS.seed, strategy=FLAGS.strategy, verbose=FLAGS.verbose)
    print(f"noise_sd={FLAGS.noise_sd} (normalized) = sigma {pixel_sigma(FLAGS.noise_sd, FLAGS.dataset):.4f} "
          "in [0, 1] pixels")
    metrics = train_smoothing(config)
    print(f"final eval accuracy (smoothed, {metrics['n_eval']} test images): "
          f"{metrics['history'].get('eval_accuracy', [None])[-1]}")


if __name__ == "__main__":
    run_main(main)
