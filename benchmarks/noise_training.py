"""Do the noise-injection ResNets train? Accuracy per epoch against the plain ResNet, in one run.

A diagnostic for `tfrobust.models.resnet_cifar(noise=...)`: trains the
CIFAR ResNet (plain SGD, no adversarial training, no input noise) without
noise, with PNI and with CPNI weight noise (optionally CPNI with other
initial factors F, `--cpni_f`, and with the original code's absolute
low-rank units, `--cpni_absolute_f`) on the first `--n_train` images of the
CIFAR-10 training split, and prints each variant's training accuracy per
epoch and its accuracy on `--n_eval` training and test images afterwards
(inference mode: BatchNorm's moving statistics; the noise stays on), next
to the plain model's. It showed that the original's absolute low-rank
factor kept CPNI at chance (docs/results/smoothing.md).

    python benchmarks/noise_training.py --data_dir=PATH --epochs=3 --n_train=2048 \
        [--variants=plain,pni,cpni] [--cpni_f=0] [--cpni_absolute_f=0.01,0.001]
"""

import os
import time

import numpy as np
from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from tfrobust import data, models, training  # noqa: E402
from tfrobust.layers import noise as noise_layers  # noqa: E402

flags.DEFINE_string("data_dir", None, "Folder with cifar10/ (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_integer("epochs", 3, "Training epochs per variant.")
flags.DEFINE_integer("n_train", 2048, "First training images used.")
flags.DEFINE_integer("n_eval", 500, "Images of each split scored after training.")
flags.DEFINE_integer("depth", 20, "ResNet depth (6n + 2).")
flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (batch 128).")
flags.DEFINE_list("variants", ["plain", "pni", "cpni"], "Any of plain, pni, cpni.")
flags.DEFINE_list("cpni_f", [], "Extra CPNI runs with these initial F (CPNIConv2D's f_init).")
flags.DEFINE_list("cpni_absolute_f", [], "Extra CPNI runs with these F in absolute units (f_units='absolute').")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation, the batches and the noise.")
FLAGS = flags.FLAGS


def run(name, noise, cpni_options, x, y, x_test, y_test):
    keras.utils.set_random_seed(FLAGS.seed)
    model = models.resnet_cifar(FLAGS.depth, x.shape[1:], 10, noise=noise, noise_seed=FLAGS.seed,
                                cpni_options=cpni_options)
    start = time.perf_counter()
    history = training.fit(model, (x, y), epochs=FLAGS.epochs, optimizer="sgd",
                           learning_rate=FLAGS.learning_rate, batch_size=128, seed=FLAGS.seed, verbose=0)
    seconds = time.perf_counter() - start

    def accuracy(a, b):
        return float(np.mean(np.argmax(model.predict(a, batch_size=256, verbose=0), -1) == b))

    n = FLAGS.n_eval
    per_epoch = " / ".join(f"{100 * a:.1f}" for a in history.history["accuracy"])
    print(f"| {name} | {per_epoch} | {100 * accuracy(x[:n], y[:n]):.1f} / "
          f"{100 * accuracy(x_test[:n], y_test[:n]):.1f} | {seconds:.0f} |", flush=True)


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR")
    if not data_dir:
        raise ValueError("Expected --data_dir or $TFROBUST_DATA_DIR (a folder with cifar10/). Received: neither")
    for name in ("epochs", "n_train", "n_eval"):
        if getattr(FLAGS, name) < 1:
            raise ValueError(f"Expected --{name} >= 1. Received: {name}={getattr(FLAGS, name)}")
    bad = [v for v in FLAGS.variants if v not in ("plain", "pni", "cpni")]
    if bad:
        raise ValueError(f"Expected --variants among plain, pni, cpni. Received: variants={FLAGS.variants}")
    x, y = data.load("cifar10", "train", data_dir)
    x_test, y_test = data.load("cifar10", "test", data_dir)
    x, y = x[:FLAGS.n_train].astype(np.float32), y[:FLAGS.n_train]
    print(f"ResNet-{FLAGS.depth}, {len(x)} CIFAR-10 training images, {FLAGS.epochs} epochs of SGD "
          f"{FLAGS.learning_rate:g}, batch 128, seed {FLAGS.seed}; no adversarial training, no input noise.")
    print(f"| variant | train acc. % per epoch (training mode) | inference-mode acc. %, {FLAGS.n_eval} "
          "train / test images | train s |")
    print("|---|---|---|---|")
    for variant in FLAGS.variants:
        label = {"plain": "no noise", "pni": "PNI (weights)",
                 "cpni": f"CPNI (F = {noise_layers.CPNI_F_INIT:g} in std(W) units)"}[variant]
        run(label, None if variant == "plain" else variant, None, x, y, x_test, y_test)
    for f in FLAGS.cpni_f:
        run(f"CPNI (F = {float(f):g} in std(W) units)", "cpni", {"f_init": float(f)}, x, y, x_test, y_test)
    for f in FLAGS.cpni_absolute_f:
        run(f"CPNI (F = {float(f):g} absolute, the original's units)", "cpni",
            {"f_init": float(f), "f_units": "absolute"}, x, y, x_test, y_test)


if __name__ == "__main__":
    app.run(main)
