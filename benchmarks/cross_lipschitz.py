"""Speed of the Cross-Lipschitz pieces, as ratios measured in one run.

1. A training step with the Cross-Lipschitz penalty against a plain step on
   the same model and batch: the generic form needs K extra input-gradient
   passes (expect about K+1 times a plain step), the one-hidden-layer closed
   form should stay under 2x.
2. The box-constrained attack with binary search (the upper bound on the
   minimal adversarial L2 change) against a 100-step Carlini-Wagner L2 run on
   the same points: seconds per example and median norms.

    python benchmarks/cross_lipschitz.py --data_dir=PATH   # MNIST
    python benchmarks/cross_lipschitz.py                    # embedded digits
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from tfrobust import data, models, regularizers, training
from tfrobust.attacks.boxed_linear import BoxedLinearL2
from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
from tfrobust.training import steps as steps_lib

flags.DEFINE_string("data_dir", None, "Local MNIST files (default: $TFROBUST_DATA_DIR, else digits).")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_integer("repeats", 30, "Timed training steps per variant.")
flags.DEFINE_integer("n_attack", 100, "Test points for the attack comparison.")
flags.DEFINE_boolean("resnet", True, "Also time the ResNet-32 of the paper (slow on a CPU).")
FLAGS = flags.FLAGS


def _dataset_name():
    if FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR"):
        return "mnist"
    return "digits"


def time_steps(model, x, y, extra_losses, repeats):
    """Median seconds of one compiled train step (after two warm-up steps)."""
    strategy = tf.distribute.get_strategy()
    optimizer = training.make_optimizer("sgd", 0.01)
    step = steps_lib.make_train_step(
        model, optimizer, strategy, steps_lib.name_extra_losses(extra_losses), None
    )
    batch = (tf.constant(x), tf.constant(y))
    for _ in range(2):
        _block(step(batch))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(step(batch))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _block(outputs):
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, outputs)


def step_table(name, x, y):
    k = data.num_classes(name)
    rows = []
    builders = {
        "mlp1layer": lambda: models.mlp1layer(x.shape[1:], k),
        "cw_mnist_cnn": lambda: models.cw_mnist_cnn(x.shape[1:], k) if x.shape[1] >= 8 else None,
        "preact_resnet32": lambda: models.preact_resnet32(x.shape[1:], k) if FLAGS.resnet else None,
    }
    for arch, build in builders.items():
        variants = {"plain": [], "cross_lipschitz (generic)": [regularizers.CrossLipschitz(1e-4, form="generic")]}
        if arch == "mlp1layer":
            variants["cross_lipschitz (closed form)"] = [regularizers.CrossLipschitz(1e-4, form="mlp1layer")]
        base = None
        for variant, extra in variants.items():
            model = build()
            if model is None:
                continue
            seconds = time_steps(model, x, y, extra, FLAGS.repeats)
            base = base or seconds
            rows.append((arch, variant, seconds * 1e3, seconds / base))
    print(f"\nTraining step, batch {len(x)}, {name} ({k} classes), median of {FLAGS.repeats} steps")
    print("| model | step | ms/step | ratio to plain |\n|---|---|---|---|")
    for arch, variant, ms, ratio in rows:
        print(f"| {arch} | {variant} | {ms:.1f} | {ratio:.2f} |")


def attack_table(name, x_train, y_train, x_test):
    k = data.num_classes(name)
    model = models.mlp1layer(x_train.shape[1:], k)
    training.fit(model, (x_train, y_train), batch_size=64, epochs=3,
                 learning_rate=0.2, verbose=0)
    x = tf.constant(x_test[: FLAGS.n_attack])
    pred = tf.argmax(model(x), axis=-1)
    rows = []
    for label, attack in (
        ("boxed linear + binary search", BoxedLinearL2(mult=1.2)),
        ("Carlini-Wagner L2, 100 steps x 5 searches", CarliniWagnerL2(steps=100, binary_search_steps=5)),
    ):
        attack.minimize(model, x[:2], pred[:2])  # trace once
        start = time.perf_counter()
        result = attack.minimize(model, x, pred)
        seconds = time.perf_counter() - start
        norms = result.norm.numpy()
        rows.append((label, seconds / len(x), float(np.median(norms[np.isfinite(norms)])), float(np.mean(result.success.numpy()))))
    print(f"\nMinimal-L2 attacks on {len(x)} {name} test points (one-hidden-layer net, 3 epochs)")
    print("| attack | ms/example | median L2 norm | success |\n|---|---|---|---|")
    for label, sec, med, succ in rows:
        print(f"| {label} | {1e3 * sec:.1f} | {med:.3f} | {succ:.2f} |")
    print(f"C&W time / boxed time: {rows[1][1] / rows[0][1]:.1f}x")


def main(argv):
    del argv
    name = _dataset_name()
    x_train, y_train = data.load(name, "train", FLAGS.data_dir)
    x_test, _ = data.load(name, "test", FLAGS.data_dir)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, dataset {name}")
    step_table(name, x_train[: FLAGS.batch_size], y_train[: FLAGS.batch_size])
    attack_table(name, x_train[:5000], y_train[:5000], x_test)


if __name__ == "__main__":
    app.run(main)
