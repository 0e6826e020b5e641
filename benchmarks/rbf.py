"""Speed of RBF-CNN's pieces, as ratios measured in one run.

1. The EM's E-step in numba against the same E-step in plain NumPy, the
   straightforward one (distances by broadcasting, the issue's baseline)
   and one built on a BLAS product (same assignments checked), and the
   E-step plus the M-step's statistics (NumPy: bincount), on the patches of
   50 images; and the wall time of one EM pass over the training set.
2. The RBF + reconstruction front end: the forward time of the MNIST C&W
   CNN with and without it at batch 256 (target: at most +50%).
3. m = 10 sample inference against one deterministic forward (target: at
   most 10x; the samples are folded into one batch).
4. `--train_steps=N` (the paper's Table II, as a ratio): seconds per epoch
   of rCNN+ training (batch 128 + 30 Gaussian + 30 adversarial-noise
   copies, the table filled) against PGD-40 adversarial training of the
   same C&W CNN (Madry: L-inf 0.3, 40 steps of 0.01, random start, batch
   50), each timed over N warm steps of `tfrobust.training.fit` and scaled
   to one epoch of the training set; plus rCNN+'s one-off cost of its BIM
   table (10 steps over the training set), timed on 500 images.

    python benchmarks/rbf.py --data_dir=PATH     # MNIST (else the embedded digits)
    python benchmarks/rbf.py --templates=runs/rbf/mnist.npz
    python benchmarks/rbf.py --templates=runs/rbf/mnist.npz --train_steps=20 --skip_speed
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from tfrobust import data, models, rbf
from tfrobust.defenses.rbf_cnn import RBFCNN
from _timing import median_cpu_seconds, median_seconds  # noqa: E402  (benchmarks/ is on sys.path as a script)

flags.DEFINE_string("data_dir", None, "Local MNIST files (default: $TFROBUST_DATA_DIR, else digits).")
flags.DEFINE_string("templates", None, "Template file (default: a short EM run here).")
flags.DEFINE_integer("n_pass", None, "Images in the timed EM pass (default: the whole training split).")
flags.DEFINE_integer("batch_size", 256, "Forward batch size.")
flags.DEFINE_integer("repeats", 20, "Timed repetitions.")
flags.DEFINE_integer("train_steps", 0, "Timed training steps of the Table II rows (0: skip them).")
flags.DEFINE_boolean("skip_speed", False, "Only the Table II rows (rows 1-3 skipped).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    name = "mnist" if (FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR")) else "digits"
    x, _ = data.load(name, "train", data_dir=FLAGS.data_dir)
    print(f"data: {name} train, {len(x)} images of {x.shape[1:]}")
    if FLAGS.templates:
        templates = rbf.load_templates(FLAGS.templates)
    else:
        templates = rbf.train_templates(x[:3000], config=rbf.EMConfig(total_steps=60, non_param_steps=50))
    if not FLAGS.skip_speed:
        _speed(x, templates)
    if FLAGS.train_steps:
        _training_ratio(x, templates, FLAGS.train_steps)


def _speed(x, templates):
    k = templates.num_templates
    means = templates.means.reshape(k, -1).astype(np.float64)
    variances = templates.variances.astype(np.float64)
    patches = rbf.extract_patches(x[:50].astype(np.float64))
    numba_step = lambda: rbf.e_step(patches, means, variances, 1.0)  # noqa: E731
    t_numba = median_seconds(numba_step, FLAGS.repeats, warmup=2)
    assignment = numba_step()
    # The straightforward NumPy E-step (the distances as written, the issue's
    # baseline) and a smarter one (one BLAS product); the same assignments.
    for method in ("direct", "matmul"):
        numpy_step = lambda: rbf.e_step_numpy(patches, means, variances, 1.0, method=method)  # noqa: E731
        same = np.array_equal(assignment, numpy_step())
        t_numpy = median_seconds(numpy_step, FLAGS.repeats, warmup=2)
        print(f"E-step, {len(patches)} patches x {k} templates: numba {1e3 * t_numba:.2f} ms, NumPy ({method}) "
              f"{1e3 * t_numpy:.2f} ms, ratio {t_numpy / t_numba:.1f}x, same assignments: {same}")
    # E-step plus the M-step's statistics, as one batch of the EM does them.
    from tfrobust.rbf.em import _accumulate

    def numba_em():
        stats = np.zeros((k + 1, means.shape[1])), np.zeros((k + 1, means.shape[1])), np.zeros(k + 1)
        _accumulate(patches, rbf.e_step(patches, means, variances, 1.0), *stats)
        return stats

    def numpy_em():
        return rbf.accumulate_numpy(patches, rbf.e_step_numpy(patches, means, variances, 1.0, method="direct"),
                                    k + 1)

    same = all(np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(numba_em(), numpy_em()))
    t_numba_em = median_seconds(numba_em, FLAGS.repeats, warmup=2)
    t_numpy_em = median_seconds(numpy_em, FLAGS.repeats, warmup=2)
    print(f"E-step + statistics, 50 images: numba {1e3 * t_numba_em:.2f} ms, NumPy (direct, bincount) "
          f"{1e3 * t_numpy_em:.2f} ms, ratio {t_numpy_em / t_numba_em:.1f}x (target >= 10x), same statistics: {same}")

    # One E-step pass over the training set with the learned templates
    # (patch extraction, assignment, statistics), as the EM does it.
    from tfrobust.rbf.em import _accumulate

    n_pass = FLAGS.n_pass or len(x)
    start = time.perf_counter()
    sums, squares, counts = np.zeros((k + 1, means.shape[1])), np.zeros((k + 1, means.shape[1])), np.zeros(k + 1)
    for i in range(0, n_pass, 50):
        p = rbf.extract_patches(x[i:i + 50].astype(np.float64))
        _accumulate(p, rbf.e_step(p, means, variances, 1.0), sums, squares, counts)
    print(f"EM pass over {n_pass} images with {k} templates: {time.perf_counter() - start:.1f} s "
          "(target < 60 s)")

    classifier = models.cw_mnist_cnn(x.shape[1:], 10)
    defense = RBFCNN.from_templates(templates, classifier, beta1=25.0, beta2=0.0, samples=1)
    batch = tf.constant(x[:FLAGS.batch_size])
    plain = tf.function(lambda t: classifier(t, training=False))
    front = tf.function(lambda t: defense(t))
    t_plain = median_seconds(lambda: plain(batch).numpy(), FLAGS.repeats, warmup=2)
    t_front = median_seconds(lambda: front(batch).numpy(), FLAGS.repeats, warmup=2)
    print(f"forward at batch {FLAGS.batch_size}: CNN {1e3 * t_plain:.1f} ms, RBF-CNN {1e3 * t_front:.1f} ms, "
          f"overhead {100 * (t_front / t_plain - 1):.0f}% (target <= 50%)")
    c_plain = median_cpu_seconds(lambda: plain(batch).numpy(), FLAGS.repeats, warmup=1)
    c_front = median_cpu_seconds(lambda: front(batch).numpy(), FLAGS.repeats, warmup=1)
    print(f"the same in process CPU time: CNN {1e3 * c_plain:.1f} ms, RBF-CNN {1e3 * c_front:.1f} ms, "
          f"overhead {100 * (c_front / c_plain - 1):.0f}% (target <= 50%)")
    defense.set_knobs(beta2=1.75, samples=10)
    sampled = tf.function(lambda t: defense(t))
    t_m = median_seconds(lambda: sampled(batch).numpy(), FLAGS.repeats, warmup=2)
    print(f"m=10 samples (beta2=1.75): {1e3 * t_m:.1f} ms = {t_m / t_front:.1f}x one deterministic forward "
          "(target <= 10x)")
    # The same ratio in process CPU time, which other processes' load moves far less.
    c_m = median_cpu_seconds(lambda: sampled(batch).numpy(), FLAGS.repeats, warmup=1)
    print(f"m=10 samples, process CPU time: {1e3 * c_m:.1f} ms = {c_m / c_front:.1f}x one deterministic "
          f"forward ({1e3 * c_front:.1f} ms) (target <= 10x)")


def _epoch_seconds(model, x, y, batch_size, steps, **hooks):
    """Seconds of one epoch over `x`, from `steps` warm steps of `fit`."""
    from tfrobust import training

    # Two short epochs: the first traces the step, the second is timed.
    history = training.fit(model, (x, y), epochs=2, batch_size=batch_size, optimizer="adam",
                           learning_rate=1e-3, steps_per_epoch=steps, verbose=0, **hooks)
    return history["epoch_time"][-1] * int(np.ceil(len(x) / batch_size)) / steps


def _training_ratio(x, templates, steps):
    from tfrobust import attacks, threats
    from tfrobust.transforms import Adversarial
    from tfrobust.transforms.manifold import pgd_training_attack
    from tfrobust.transforms.rcnn_plus import RCNNPlusNoise

    y = data.load("mnist" if x.shape[1] == 28 else "digits", "train", data_dir=FLAGS.data_dir)[1]
    onehot = np.clip(np.eye(10, dtype=np.float32)[y], 0.1 / 9, 0.9)
    plus = RBFCNN.from_templates(templates, models.cw_mnist_cnn(x.shape[1:], 10), beta1=125.0, beta2=0.0,
                                 samples=1)
    plus.build((None,) + x.shape[1:])
    table = tf.Variable(tf.zeros(x.shape, tf.float32), trainable=False)
    filled = tf.Variable(True, trainable=False)
    t_plus = _epoch_seconds(plus, x, onehot, 128, steps, input_transform=RCNNPlusNoise(table, filled),
                            state={"adv_noise_table": table, "adv_noise_filled": filled})
    madry = models.cw_mnist_cnn(x.shape[1:], 10)
    pgd = Adversarial(pgd_training_attack(0.3, 40, norm=np.inf, step_size=0.01, random_start=True))
    t_madry = _epoch_seconds(madry, x, y, 50, steps, input_transform=pgd)
    bim = attacks.BIM(threats.LpBall(np.inf, 0.3), steps=10)
    n = min(500, len(x))
    t_bim = median_seconds(lambda: np.asarray(bim(plus, x[:n], y[:n])), 1, warmup=1) * len(x) / n
    print(f"Table II, seconds per epoch over {len(x)} images ({steps} timed steps each): rCNN+ {t_plus:.1f} s, "
          f"PGD-40 adversarial training {t_madry:.1f} s, ratio {t_madry / t_plus:.1f}x "
          f"(paper, GTX 1080Ti: 112 / 11 = 10.2x); rCNN+'s one-off BIM table {t_bim:.1f} s "
          f"= {t_bim / t_plus:.1f} epochs")


if __name__ == "__main__":
    app.run(main)
