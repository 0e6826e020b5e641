"""Speed of the manifold defense's inner optimisations, as ratios measured in one run.

1. Invert-and-classify: projection of `n` MNIST test images x `restarts`
   random starts, batched (one compiled loop over `[n * R, d]`) against a
   loop over the images (the same compiled projection called once per
   image with its R starts), from the same starts: the latents must agree
   (target >= 20x).
2. Deep Image Prior: images per second at a fixed number of fitting steps,
   all images at once (batched per-image weights) against one image at a
   time (target >= 10x).

    python benchmarks/projection.py --data_dir=PATH
    python benchmarks/projection.py --generator=runs/vae/generator.keras --steps=1000
    python benchmarks/projection.py --scaling=1,4,16,64,256 --dip_scaling=1,4,16

`--scaling` / `--dip_scaling` add why the ratio is what it is: seconds
per image of the batched fit at several batch sizes (the loop's ratio at
batch n is t(1) / (t(n) / n), so it is capped where t(n) / n stops
falling; the table's ratio is against its first batch size), with the projection's arithmetic rate in GFLOP/s (an MLP
generator's forward + input-gradient cost, ~4 x its weights per row and
step) next to the rate of one large float32 matmul on this machine. The
table counts CPU seconds (all threads of the process) as well as wall
seconds: on a shared machine the wall time also counts other jobs.
"""

import time

import keras
import numpy as np
from absl import app, flags

from tfrobust import data, models
from tfrobust.defenses import DeepImagePrior, InvertAndClassify

flags.DEFINE_string("data_dir", None, "Local MNIST / CIFAR-10 files (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_string("generator", None, "A saved MNIST generator (default: a fresh VAE decoder).")
flags.DEFINE_integer("n", 256, "Images projected.", lower_bound=1)
flags.DEFINE_integer("restarts", 10, "Random starts per image.", lower_bound=1)
flags.DEFINE_integer("steps", 100, "Projection steps (the original: 1000).", lower_bound=1)
flags.DEFINE_integer("dip_n", 16, "Images fitted by DIP.", lower_bound=1)
flags.DEFINE_integer("dip_steps", 20, "DIP fitting steps.", lower_bound=1)
flags.DEFINE_integer("dip_channels", 16, "DIP filters per convolution.", lower_bound=1)
flags.DEFINE_list("scaling", [], "Batch sizes of the projection's per-image cost table (e.g. 1,4,16,64,256).")
flags.DEFINE_list("dip_scaling", [], "Batch sizes of DIP's per-image cost table (e.g. 1,4,16).")
FLAGS = flags.FLAGS


def _seconds(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cpu_seconds(fn):
    """`(wall, cpu)` seconds of `fn()`; CPU time (all threads of this process)
    does not count the time other jobs of a shared machine hold the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _matmul_gflops(size=1024, repeats=10):
    """The float32 rate of `repeats` square matmuls in one compiled call (this machine's ceiling)."""
    import tensorflow as tf

    a = tf.random.stateless_normal([size, size], seed=[0, 1])

    @tf.function
    def chain(a):
        b = a
        for _ in range(repeats):
            b = tf.matmul(a, b) * (1.0 / size)
        return b

    chain(a)
    wall, cpu = _cpu_seconds(lambda: chain(a).numpy())
    return 2 * size ** 3 * repeats / wall / 1e9, 2 * size ** 3 * repeats / cpu / 1e9


def _scaling(label, fit, x, sizes, flops_per_image=None):
    """Prints wall and CPU seconds per image of `fit(x[:n])` for each n (best
    of 2 after a compiling call), and the rate per CPU second."""
    t1 = None
    for n in sizes:
        fit(x[:n])
        wall, cpu = min(_cpu_seconds(lambda: fit(x[:n])) for _ in range(2))
        per = cpu / n
        t1 = per if t1 is None else t1
        rate = f", {flops_per_image / per / 1e9:.1f} GFLOP per CPU-s" if flops_per_image else ""
        print(f"  {label} batch {n}: wall {wall / n * 1e3:.1f} ms/image, CPU {per * 1e3:.1f} ms/image{rate}, "
              f"{t1 / per:.1f}x less CPU per image than batch {sizes[0]}")


def main(argv):
    del argv
    x, _ = data.load("mnist", "test", data_dir=FLAGS.data_dir)
    x = np.asarray(x[:FLAGS.n], np.float32)
    generator = (keras.saving.load_model(FLAGS.generator) if FLAGS.generator
                 else models.mnist_vae(seed=0).decoder)
    defense = InvertAndClassify(generator, models.madry_mnist_cnn(), steps=FLAGS.steps, restarts=FLAGS.restarts,
                                optimizer="adam", learning_rate=0.1, seed=0)
    d = defense.latent_dim
    z0 = np.random.default_rng(0).standard_normal((len(x), FLAGS.restarts, d)).astype(np.float32)
    defense.project(x, z_init=z0)                                  # compile (batch shape)
    defense.project(x[:1], z_init=z0[:1])                          # compile (one image)
    t_batch, (z_b, x_b) = _seconds(lambda: defense.project(x, z_init=z0))
    t_loop, z_l = _seconds(lambda: np.concatenate(
        [defense.project(x[i:i + 1], z_init=z0[i:i + 1])[0].numpy() for i in range(len(x))]))
    diff = float(np.max(np.abs(z_b.numpy() - z_l)))
    print(f"projection of {len(x)} images x {FLAGS.restarts} restarts, {FLAGS.steps} Adam steps "
          f"(latent {d}): batched {t_batch:.2f} s, per-image loop {t_loop:.2f} s, ratio {t_loop / t_batch:.1f}x "
          f"(target >= 20x); max |z_batched - z_loop| = {diff:.2e}; "
          f"mean MSE {float(np.mean((x_b.numpy() - x) ** 2)):.4f}")
    if FLAGS.scaling:
        dense = all(len(v.shape) <= 2 for v in generator.trainable_variables)
        flops = 4 * generator.count_params() * FLAGS.restarts * FLAGS.steps if dense else None
        print("one 1024^3 float32 matmul chain: {:.1f} GFLOP/s wall, {:.1f} GFLOP per CPU-s".format(
            *_matmul_gflops()))
        _scaling(f"projection x {FLAGS.restarts} restarts, {FLAGS.steps} steps",
                 lambda xs: defense.project(xs, z_init=z0[:len(xs)])[0].numpy(),
                 x, [int(n) for n in FLAGS.scaling if int(n) <= len(x)], flops)

    xc, _ = data.load("cifar10", "test", data_dir=FLAGS.data_dir)
    xc = np.asarray(xc[:FLAGS.dip_n], np.float32)
    clf = keras.Sequential([keras.Input(xc.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(10)])
    dip = DeepImagePrior(clf, steps=FLAGS.dip_steps, channels=FLAGS.dip_channels)
    dip.reconstruct(xc, seed=0)
    dip.reconstruct(xc[:1], seed=0)
    t_batch, r_b = _seconds(lambda: dip.reconstruct(xc, seed=0).numpy())
    t_loop, r_l = _seconds(lambda: np.concatenate([dip.reconstruct(xc[i:i + 1], seed=0).numpy()
                                                   for i in range(len(xc))]))
    mse_b, mse_l = float(np.mean((r_b - xc) ** 2)), float(np.mean((r_l - xc) ** 2))
    print(f"DIP, {len(xc)} CIFAR images, {FLAGS.dip_steps} steps, {FLAGS.dip_channels} channels: batched "
          f"{len(xc) / t_batch:.2f} images/s, one at a time {len(xc) / t_loop:.2f} images/s, ratio "
          f"{t_loop / t_batch:.1f}x (target >= 10x); MSE batched {mse_b:.5f} vs one at a time {mse_l:.5f}")
    if FLAGS.dip_scaling:
        _scaling(f"DIP {FLAGS.dip_steps} steps", lambda xs: dip.reconstruct(xs, seed=0).numpy(),
                 xc, [int(n) for n in FLAGS.dip_scaling if int(n) <= len(xc)])


if __name__ == "__main__":
    app.run(main)
