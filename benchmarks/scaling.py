"""Throughput of the tf.distribute paths, as ratios measured in one run.

Two workloads, each timed on the plain path and through
`tfrobust.distribute.run_batches` with 1 and with 2 replicas:

1. PGD evaluation: `tfrobust.evaluation.evaluate` with one L-inf PGD
   (random start) on MNIST-sized images and the MNIST C&W CNN.
2. Certification sampling: for every image, `n` Gaussian-noise forward
   passes counted per class (the inner loop of randomized smoothing's
   certification), folded into batches of `batch_size` noisy copies.

Runs: `plain` (strategy=None), `1 replica` (OneDeviceStrategy: the
distributed machinery's overhead; a second MirroredStrategy in one process
could clash with the first over collective keys), `2 replicas`
(MirroredStrategy over two devices: two GPUs when there are two, else two
logical CPU devices made from the one physical CPU, which share its cores,
so no speed-up is expected there: the number is the overhead). Results of
the plain and distributed runs are checked to be identical.

    python benchmarks/scaling.py                    # MNIST from TFROBUST_DATA_DIR, else digits
    python benchmarks/scaling.py --n_eval=512 --steps=20
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from absl import app, flags

flags.DEFINE_string("data_dir", None, "Local MNIST files (default: $TFROBUST_DATA_DIR, else digits).")
flags.DEFINE_integer("n_eval", 256, "Images of the PGD evaluation.")
flags.DEFINE_integer("steps", 10, "PGD steps.")
flags.DEFINE_integer("batch_size", 64, "Images per attack batch (one batch per replica and step).")
flags.DEFINE_integer("n_certify", 32, "Images of the certification sampling.")
flags.DEFINE_integer("n_samples", 512, "Noise draws per image (certification's n, reduced).")
flags.DEFINE_integer("repeats", 2, "Timed repetitions (the median is reported; the first run is warm-up).")
FLAGS = flags.FLAGS


def _devices():
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= 2:
        return ["/gpu:0", "/gpu:1"], f"{len(gpus)} GPUs"
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    cores = os.cpu_count()
    return ["/cpu:0", "/cpu:1"], f"2 logical CPU devices over {cores} cores"


def _data():
    from tfrobust import data

    try:
        x, y = data.load("mnist", "test", data_dir=FLAGS.data_dir)
        name = "MNIST test"
    except (OSError, ValueError):
        x, y = data.load("digits", "test")
        name = "digits (embedded)"
    return x.astype(np.float32), y.astype(np.int64), name


def _median(fn, repeats):
    fn()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def _sampler(model, sigma, n_samples, chunk, num_classes):
    """Replica function: class counts `[B, K]` of `n_samples` noisy copies per image."""

    def counts(x, seeds):
        def one(args):
            xi, seed = args
            total = tf.zeros([num_classes], tf.int32)
            for k in range(n_samples // chunk):
                noise = tf.random.stateless_normal(
                    tf.concat([[chunk], tf.shape(xi)], 0),
                    tf.random.experimental.stateless_fold_in(seed, k), stddev=sigma)
                pred = tf.argmax(model(xi[None] + noise), axis=-1, output_type=tf.int32)
                total += tf.math.bincount(pred, minlength=num_classes, maxlength=num_classes)
            return total

        return tf.map_fn(one, (x, seeds), fn_output_signature=tf.int32)

    return counts


def main(argv):
    del argv
    devices, hardware = _devices()
    from tfrobust import distribute, models, threats
    from tfrobust.attacks.pgd import PGD
    from tfrobust.evaluation import evaluate

    x, y, data_name = _data()
    n = min(FLAGS.n_eval, len(x))
    strategies = {
        "plain": None,
        "1 replica": tf.distribute.OneDeviceStrategy(devices[0]),
        "2 replicas": tf.distribute.MirroredStrategy(devices),
    }
    num_classes = 10
    built = {}
    weights = None
    for name, strategy in strategies.items():
        scope = strategy.scope() if strategy is not None else tf.init_scope()
        with scope:
            tf.keras.utils.set_random_seed(0)
            model = models.cw_mnist_cnn(x.shape[1:], num_classes)
            model.build((None,) + x.shape[1:])
            if weights is None:
                weights = model.get_weights()
            model.set_weights(weights)
        built[name] = model

    rows = []
    reference = {}
    for name, strategy in strategies.items():
        model = built[name]

        def pgd_run():
            # A fresh attack per run: every run traces, on every path (one
            # evaluate call per attack is the common use).
            attack = PGD(threats.LpBall(np.inf, 0.1), steps=FLAGS.steps, seed=0)
            return evaluate(model, (x[:n], y[:n]), {"pgd": attack}, batch_size=FLAGS.batch_size,
                            sanity_checks=False, verbose=0, strategy=strategy)

        seconds, result = _median(pgd_run, FLAGS.repeats)
        pred = result.attacks["pgd"].pred
        reference.setdefault("pgd", pred)
        same = bool(np.array_equal(pred, reference["pgd"]))
        rows.append(("PGD evaluation", name, n / seconds, "images/s", same))

    m = min(FLAGS.n_certify, len(x))
    chunk = min(FLAGS.n_samples, 128)
    seeds = np.stack([np.arange(m), np.zeros(m, np.int64)], axis=1).astype(np.int32)
    per_batch = max(1, FLAGS.batch_size // 8)
    batches = [(x[i:i + per_batch], seeds[i:i + per_batch]) for i in range(0, m, per_batch)]
    for name, strategy in strategies.items():
        fn = _sampler(built[name], 0.25, FLAGS.n_samples, chunk, num_classes)
        if strategy is None:
            def run(fn=fn):
                # Traced afresh per run, as run_batches traces its step per call.
                compiled = tf.function(fn)
                return [(compiled(tf.constant(a), tf.constant(b)).numpy(),) for a, b in batches]
        else:
            def run(strategy=strategy, fn=fn):
                return distribute.run_batches(strategy, fn, batches)

        seconds, out = _median(run, FLAGS.repeats)
        counts = np.concatenate([o[0] for o in out])
        reference.setdefault("certify", counts)
        same = bool(np.array_equal(counts, reference["certify"]))
        rows.append(("certification sampling", name, m * FLAGS.n_samples / seconds, "forward passes/s", same))

    base = {w: r[2] for w in ("PGD evaluation", "certification sampling") for r in rows
            if r[0] == w and r[1] == "plain"}
    print(f"Hardware: {hardware}; data: {data_name}; PGD {FLAGS.steps} steps on {n} images, batch "
          f"{FLAGS.batch_size}; sampling n={FLAGS.n_samples} on {m} images; median of {FLAGS.repeats} runs "
          "after a warm-up.\n")
    print("| workload | run | throughput | vs plain | results identical to plain |")
    print("|---|---|---|---|---|")
    for work, name, value, unit, same in rows:
        print(f"| {work} | {name} | {value:,.0f} {unit} | {value / base[work]:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    app.run(main)
