"""Speed of randomized-smoothing certification and smoothed inference, as ratios in one run.

1. Certification throughput (noisy forward passes per second of
   `Smooth.sample_counts`: noise drawn and classes counted on the device in
   one compiled loop) as a fraction of the raw batched forward throughput of
   the same base model at the same batch size (target >= 0.9).
2. The same for `SmoothedClassifier` (n passes folded into the batch, the
   soft vote), at the same batch size (target >= 0.9).
3. Wall time to certify `--n_images` MNIST test images at `--n` samples:
   `Smooth.certify_batch` against ART's `TensorFlowV2RandomizedSmoothing.
   certify` on the same model (ART draws the noise on the host and loops per
   image; target: >= 5x faster). Skipped, and said so, without ART.
   Rows 1-3 are repeated with `share_noise=True` (the images
   sampled together share their draws; each certificate keeps its
   guarantee).

    python benchmarks/smoothing.py --data_dir=PATH --n=100000 --n_images=100
    python benchmarks/smoothing.py --model=runs/cnn/model.keras --n=10000
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from tfrobust import data
from tfrobust.smoothing import Smooth, SmoothedClassifier
from _timing import median_seconds  # noqa: E402  (benchmarks/ is on sys.path as a script)

flags.DEFINE_string("data_dir", None, "Local MNIST files (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_string("model", None, "Base classifier (.keras); default: a fresh small MNIST CNN.")
flags.DEFINE_integer("batch_size", 1000, "Noisy examples per forward pass (all rows).")
flags.DEFINE_integer("n", 100_000, "Estimation samples per image of the certification row.")
flags.DEFINE_integer("n0", 100, "Selection samples per image.")
flags.DEFINE_integer("n_images", 100, "Images of the certification row.")
flags.DEFINE_integer("art_images", None, "Images ART certifies (default: n_images); its time is "
                     "scaled to n_images when fewer (ART's loop is per image).")
flags.DEFINE_float("sigma", 0.25, "Noise level.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions of the throughput rows.")
FLAGS = flags.FLAGS


def small_mnist_cnn():
    """The small CNN of docs/results/smoothing_certification.md (conv 16/32 stride 2, dense 100)."""
    import keras

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 5, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10),
    ], name="small_mnist_cnn")


def main(argv):
    del argv
    import keras

    x, y = data.load("mnist", "test", data_dir=FLAGS.data_dir)
    base = keras.saving.load_model(FLAGS.model, compile=False) if FLAGS.model else small_mnist_cnn()
    bs = FLAGS.batch_size
    print(f"model: {FLAGS.model or 'small_mnist_cnn (fresh)'}; batch {bs}; sigma {FLAGS.sigma}; "
          f"{os.cpu_count()} CPUs, {len(tf.config.list_physical_devices('GPU'))} GPUs")

    # 1. Raw forward of one batch of bs images, its argmax back on the host.
    batch = tf.constant(np.resize(x, (bs,) + x.shape[1:]))
    forward = tf.function(lambda t: tf.argmax(base(t, training=False), axis=-1))
    t_raw = median_seconds(lambda: forward(batch).numpy(), FLAGS.repeats)
    raw = bs / t_raw
    # Certification counts: G images x (bs / G) passes per call, 20 calls.
    group = 10
    per_image = 20 * bs // group
    smooth = Smooth(base, 10, FLAGS.sigma, seed=0)
    t_cert = median_seconds(lambda: smooth.sample_counts(x[:group], per_image, bs), FLAGS.repeats)
    cert = group * per_image / t_cert
    # The Gaussian draw alone (what certification adds to each pass), and the
    # forward on noisy inputs drawn in the same function: the ceiling of the
    # sampling loop on this device.
    draw = tf.function(lambda s: tf.random.stateless_normal(tf.shape(batch), s) * FLAGS.sigma)
    noisy = tf.function(lambda s: tf.argmax(base(batch + tf.random.stateless_normal(tf.shape(batch), s)
                                                 * FLAGS.sigma, training=False), axis=-1))
    seed = tf.constant([0, 1])
    t_draw = median_seconds(lambda: draw(seed).numpy(), FLAGS.repeats)
    t_noisy = median_seconds(lambda: noisy(seed).numpy(), FLAGS.repeats)
    print(f"| raw batched forward (argmax) | {raw:,.0f} passes/s | 1.00 |")
    print(f"| Gaussian draw alone, {bs} x {int(np.prod(x.shape[1:]))} values | {bs / t_draw:,.0f} draws/s | "
          f"{t_draw / t_raw:.2f} forwards' time |")
    print(f"| draw + forward in one function (the loop's ceiling) | {bs / t_noisy:,.0f} passes/s | "
          f"{t_raw / t_noisy:.2f} |")
    print(f"| Smooth.sample_counts, {group} images x {per_image} samples | {cert:,.0f} passes/s | "
          f"{cert / raw:.2f} (target >= 0.9); {t_noisy * cert / bs:.2f} of the ceiling |")
    # The same with the group's images sharing their draws (one draw per pass
    # for all G images): the draw's cost divided by G.
    shared = Smooth(base, 10, FLAGS.sigma, seed=0, share_noise=True)
    t_shared = median_seconds(lambda: shared.sample_counts(x[:group], per_image, bs), FLAGS.repeats)
    cert_shared = group * per_image / t_shared
    print(f"| Smooth.sample_counts, share_noise=True, same work | {cert_shared:,.0f} passes/s | "
          f"{cert_shared / raw:.2f} (target >= 0.9) |")
    # 2. SmoothedClassifier: n = 20 bs / G passes on G images, chunks of bs / G passes.
    smoothed = SmoothedClassifier(base, sigma=FLAGS.sigma, n=per_image, vote="soft",
                                  chunk_size=bs // group, seed=0)
    call = tf.function(lambda t: smoothed(t))
    xg = tf.constant(x[:group])
    t_sc = median_seconds(lambda: call(xg).numpy(), FLAGS.repeats)
    sc = group * per_image / t_sc
    print(f"| SmoothedClassifier (soft), {group} images x n={per_image} | {sc:,.0f} passes/s | "
          f"{sc / raw:.2f} (target >= 0.9) |")
    smoothed_shared = SmoothedClassifier(base, sigma=FLAGS.sigma, n=per_image, vote="soft",
                                         chunk_size=bs // group, seed=0, share_noise=True)
    call_shared = tf.function(lambda t: smoothed_shared(t))
    t_scs = median_seconds(lambda: call_shared(xg).numpy(), FLAGS.repeats)
    print(f"| SmoothedClassifier (soft), share_noise=True, same work | {group * per_image / t_scs:,.0f} passes/s | "
          f"{group * per_image / t_scs / raw:.2f} (target >= 0.9) |")

    # 3. Certify n_images at n samples: ours vs ART.
    xs, ys = x[:FLAGS.n_images], y[:FLAGS.n_images]
    start = time.perf_counter()
    ours = smooth.certify_batch(xs, n0=FLAGS.n0, n=FLAGS.n, alpha=0.001, batch_size=bs)
    t_ours = time.perf_counter() - start
    acc_ours = float(np.mean(ours.pred == ys))
    print(f"| tfrobust certify_batch, {len(xs)} images, n0={FLAGS.n0}, n={FLAGS.n} | {t_ours:.1f} s | "
          f"smoothed acc {acc_ours:.3f}, mean radius {np.mean(ours.radius):.3f} |")
    start = time.perf_counter()
    ours_shared = shared.certify_batch(xs, n0=FLAGS.n0, n=FLAGS.n, alpha=0.001, batch_size=bs)
    t_shared_cert = time.perf_counter() - start
    print(f"| tfrobust certify_batch, share_noise=True, same images | {t_shared_cert:.1f} s | "
          f"smoothed acc {np.mean(ours_shared.pred == ys):.3f}, mean radius {np.mean(ours_shared.radius):.3f} |")
    try:
        from art.estimators.certification.randomized_smoothing import TensorFlowV2RandomizedSmoothing
    except ImportError as err:
        print(f"| ART certify | skipped: ART is not installed ({err}) | |")
        return
    m = FLAGS.art_images or len(xs)
    art_model = TensorFlowV2RandomizedSmoothing(base, nb_classes=10, input_shape=x.shape[1:],
                                                sample_size=FLAGS.n0, scale=FLAGS.sigma, alpha=0.001,
                                                clip_values=(0.0, 1.0))
    start = time.perf_counter()
    art_pred, art_radius = art_model.certify(xs[:m], n=FLAGS.n, batch_size=bs)
    t_art = (time.perf_counter() - start) * len(xs) / m
    scaled = f" (measured on {m} images, scaled x{len(xs) / m:g})" if m < len(xs) else ""
    print(f"| ART TensorFlowV2RandomizedSmoothing.certify, same images and n | {t_art:.1f} s{scaled} | "
          f"smoothed acc {np.mean(art_pred == ys[:m]):.3f}, mean radius {np.mean(art_radius):.3f} |")
    print(f"| speed-up over ART | {t_art / t_ours:.1f}x (target >= 5x); share_noise=True: "
          f"{t_art / t_shared_cert:.1f}x | |")


if __name__ == "__main__":
    app.run(main)
