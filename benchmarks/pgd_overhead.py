"""tfrobust's PGD against a bare `tf.function` PGD loop, over several compiled instances.

Why this exists: `attacks_vs_peers.py` times one compiled instance of each
implementation, and on this CPU the speed of a compiled PGD function is a
property of the *instance*: two identical instances traced in the same
process can differ by 20-30% in CPU time, call after call (oneDNN; with
`TF_ENABLE_ONEDNN_OPTS=0` the instances are uniform, and all slower). A
single tfrobust/bare pair therefore measures that lottery as much as
tfrobust's own overhead. Here `--instances` fresh instances of each are
built (tfrobust and bare alternately), every instance is called
`--timed` times in interleaved order, and the process CPU time (user +
system, which other processes' load inflates far less than wall time) and
the wall time of each call are recorded.

Printed: per-instance median CPU seconds, the ratio tfrobust / bare of the
medians over instances (tfrobust's own overhead), and the range of the
ratio over instance pairs (the lottery).

    python benchmarks/pgd_overhead.py --cache_dir=DIR --n=250 --batch_size=250 \
        --instances=4 --timed=4 [--norms=inf,2]

The model, data and flags (`--cache_dir`, `--n`, `--batch_size`, `--seed`,
`--epochs`) are those of `attacks_vs_peers.py`.
"""

import os
import resource
import time

import numpy as np
from absl import app, flags

import attacks_vs_peers as peers  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from tfrobust import attacks as tfr
from tfrobust import data
from tfrobust.threats import LpBall

flags.DEFINE_integer("instances", 4, "Compiled instances of each implementation.")
flags.DEFINE_integer("timed", 4, "Timed calls per instance (interleaved across instances).")
flags.DEFINE_list("norms", ["inf"], "PGD norms to measure: inf and/or 2 (eps 0.3 / 2.0, as attacks_vs_peers).")
FLAGS = flags.FLAGS

_SETTINGS = {"inf": (np.inf, 0.3, 0.01), "2": (2, 2.0, 0.1)}


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def batched(fn, x, y, bs):
    def run():
        for i in range(0, len(x), bs):
            np.asarray(fn(x[i:i + bs], y[i:i + bs]))

    return run


def measure(model, x, y, norm):
    p, eps, step = _SETTINGS[norm]
    bs = min(FLAGS.batch_size, len(x))
    fns = {}
    for k in range(FLAGS.instances):
        attack = tfr.PGD(LpBall(p, eps), steps=40, step_size=step, random_start=True, seed=FLAGS.seed)
        fns[f"tfrobust{k}"] = batched(lambda a, b, attack=attack: attack(model, a, b).numpy(), x, y, bs)
        fns[f"bare{k}"] = batched(peers.bare_pgd(model, p, eps, 40, step, FLAGS.seed)(False), x, y, bs)
        fns[f"tfrobust{k}"]()  # trace and warm up, in creation order
        fns[f"bare{k}"]()
    cpu = {name: [] for name in fns}
    wall = {name: [] for name in fns}
    for rep in range(FLAGS.timed):
        for name in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
            c0, t0 = cpu_seconds(), time.perf_counter()
            fns[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
    med = {name: float(np.median(v)) for name, v in cpu.items()}
    print(f"\nPGD-40 L{norm} (eps {eps:g}, step {step:g}), {len(x)} images, batch {bs}, "
          f"oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')}; {peers.load_text()}")
    print("| instance | CPU s median (min-max) | wall s median |")
    print("|---|---|---|")
    for name in fns:
        print(f"| {name} | {med[name]:.2f} ({min(cpu[name]):.2f}-{max(cpu[name]):.2f}) "
              f"| {np.median(wall[name]):.2f} |")
    tfr_med = np.median([med[f"tfrobust{k}"] for k in range(FLAGS.instances)])
    bare_med = np.median([med[f"bare{k}"] for k in range(FLAGS.instances)])
    pairs = [med[f"tfrobust{i}"] / med[f"bare{j}"] for i in range(FLAGS.instances) for j in range(FLAGS.instances)]
    same_kind = [med[f"{kind}{i}"] / med[f"{kind}{j}"] for kind in ("tfrobust", "bare")
                 for i in range(FLAGS.instances) for j in range(FLAGS.instances) if i != j]
    print(f"tfrobust / bare, median CPU over instances: {tfr_med:.2f} / {bare_med:.2f} = {tfr_med / bare_med:.3f}; "
          f"over all instance pairs {min(pairs):.3f}-{max(pairs):.3f}; "
          f"between instances of the same implementation {min(same_kind):.3f}-{max(same_kind):.3f}")


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR")
    if not data_dir:
        raise ValueError("Expected --data_dir or $TFROBUST_DATA_DIR (a folder with mnist/). Received: neither")
    for name in ("instances", "timed", "n", "batch_size"):
        if getattr(FLAGS, name) < 1:
            raise ValueError(f"Expected --{name} >= 1. Received: {name}={getattr(FLAGS, name)}")
    bad = [n for n in FLAGS.norms if n not in _SETTINGS]
    if bad:
        raise ValueError(f"Expected --norms among inf, 2. Received: norms={FLAGS.norms}")
    x_train, y_train = data.load("mnist", "train", data_dir)
    x_test, y_test = data.load("mnist", "test", data_dir)
    model, _ = peers.train_or_load(x_train, y_train)
    n = min(FLAGS.n, len(x_test))
    x, y = x_test[:n].astype(np.float32), y_test[:n].astype(np.int32)
    for norm in FLAGS.norms:
        measure(model, x, y, norm)


if __name__ == "__main__":
    app.run(main)
