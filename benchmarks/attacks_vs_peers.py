"""Attack speed and strength of tfrobust against ART and Foolbox, in one run.

Trains (or loads from `--cache_dir`) the Carlini-Wagner 4-conv MNIST CNN, then
attacks the same first test images with tfrobust, the Adversarial Robustness
Toolbox and Foolbox 3 under identical settings and batch size, and, for PGD,
with a bare hand-written `tf.function` loop (the physical baseline). Every
implementation runs once untimed on the first batch (tracing, kernel
set-up); the timed pass then goes batch by batch, the implementations
interleaved in alternating order so that the load of other processes falls
on all alike, each call timed with `time.perf_counter` until its result is a
NumPy array. The PGD and MI-FGSM rows repeat the timed pass (`--repeats`)
and keep each implementation's fastest pass.

Printed: one Markdown row per attack (seconds, peer/tfrobust time ratio,
robust accuracy, and for minimization attacks the median perturbation norm
with the success rate), the PGD step rate as model FLOP/s over the float32
matmul rate measured in the same run, and the load average along the way.

C&W and EAD run on the first `--n_slow` images (tfrobust and Foolbox).
ART's C&W, EAD and DeepFool take a gradient per class per iteration and are
far slower than the rest, so they are compared on fewer images of their own
(`--n_art`, `--n_art_deepfool`) where the other libraries run again. SPSA
and NAttack (tfrobust only) run on `--n_gradient_free` images.

    python benchmarks/attacks_vs_peers.py --data_dir=PATH [--cache_dir=DIR]

`--data_dir` defaults to $TFROBUST_DATA_DIR (a folder with mnist/ inside).
Needs the `bench` extra: adversarial-robustness-toolbox and foolbox.
"""

import gc
import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrobust import data, models, training  # noqa: E402
from tfrobust import attacks as tfr  # noqa: E402
from tfrobust.threats import LpBall  # noqa: E402

import _autoattack_rows  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

flags.DEFINE_string("data_dir", None, "Folder with mnist/ (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_string("cache_dir", None, "Where the trained weights are cached (none: always train).")
flags.DEFINE_integer("n", 500, "Test images attacked by the fixed-budget attacks and DeepFool.")
flags.DEFINE_integer("n_slow", 100, "First test images for the C&W and EAD rows without ART.")
flags.DEFINE_integer("n_gradient_free", 10, "First test images for SPSA and NAttack (one batch, timed with tracing).")
flags.DEFINE_integer("n_art", 10, "First test images for the C&W and EAD rows that include ART.")
flags.DEFINE_integer("n_art_deepfool", 50, "First test images for the DeepFool row that includes ART.")
flags.DEFINE_integer("batch_size", 250, "Attack batch size of the --n rows, the same for every library.")
flags.DEFINE_integer("slow_batch_size", 50, "Attack batch size of the --n_slow and --n_art rows.")
flags.DEFINE_integer("repeats", 2, "Timed passes of the PGD and MI-FGSM rows; the fastest counts.")
flags.DEFINE_integer("epochs", 3, "Training epochs (Adam, learning rate 1e-3, batch 128).")
flags.DEFINE_integer("search_steps", 5, "C&W / EAD binary-search steps (all libraries).")
flags.DEFINE_integer("iterations", 100, "C&W / EAD iterations per search step (all libraries).")
flags.DEFINE_float("initial_const", 1e-2, "C&W / EAD initial constant c (all libraries).")
flags.DEFINE_float("cw_learning_rate", 0.1, "C&W Adam step size (all libraries); EAD keeps the paper's 0.01.")
flags.DEFINE_boolean("cw_abort_early", True, "C&W early abort (tfrobust and Foolbox; ART has none).")
flags.DEFINE_list("peers", ["art", "foolbox"], "Peers to compare with.")
flags.DEFINE_integer("seed", 0, "Seed of training and of the random starts.")
flags.DEFINE_integer("attack_seed", None, "Seed of the attacks' random starts and of NumPy (ART's draws); "
                     "default --seed. Another value reruns the attacks on the same cached models.")
flags.DEFINE_list("only", [], "Run only the attacks whose name contains one of these (case-insensitive).")
flags.DEFINE_integer("square_queries", 5000, "Square's query budget (alone and in the AutoAttack rows).")
flags.DEFINE_integer("adv_epochs", 3, "Epochs of PGD adversarial training of the second model (0: no second model).")
flags.DEFINE_list("models", ["standard", "pgd"], "Models whose rows run: standard, pgd (the PGD-trained one), or both.")
flags.DEFINE_integer("adv_steps", 10, "PGD steps (Linf 0.3, step 2.5 * 0.3 / steps, random start) of that training.")
FLAGS = flags.FLAGS

NUM_CLASSES = 10


# ----------------------------------------------------------------------
# Model, data, machine.


def attack_seed():
    return FLAGS.seed if FLAGS.attack_seed is None else FLAGS.attack_seed


def train_or_load(x_train, y_train, adversarial=False):
    """The CW MNIST CNN, trained for `--epochs` or read from the cache.

    With `adversarial`, Madry et al.'s PGD training (Linf 0.3, `--adv_steps`
    steps of 2.5 * eps / steps, random start) for `--adv_epochs` epochs: the
    model on which the strength of APGD, FAB and Square differs from PGD's.
    A freshly trained model is saved and read back into a new model, and the
    training objects are collected, so that no left-over training state
    (pipelines, optimizer) runs or holds memory during the timings.
    """
    epochs = FLAGS.adv_epochs if adversarial else FLAGS.epochs
    tag = f"_pgd{FLAGS.adv_steps}" if adversarial else ""
    name = f"cw_mnist_cnn_n{len(x_train)}_e{epochs}{tag}_s{FLAGS.seed}.weights.h5"
    folder = FLAGS.cache_dir or tempfile.mkdtemp(prefix="tfrobust-bench-")
    path = os.path.join(folder, name)
    seconds = 0.0
    if os.path.exists(path):
        print(f"Loaded cached weights {name}.")
    else:
        model = models.cw_mnist_cnn((28, 28, 1), NUM_CLASSES)
        start = time.perf_counter()
        transform = None
        if adversarial:
            from tfrobust.transforms import Adversarial

            transform = Adversarial(tfr.PGD(LpBall(np.inf, 0.3), steps=FLAGS.adv_steps,
                                            step_size=2.5 * 0.3 / FLAGS.adv_steps, random_start=True,
                                            seed=FLAGS.seed, validate="cheap"))
        training.fit(model, (x_train, y_train), epochs=epochs, optimizer="adam", input_transform=transform,
                     learning_rate=1e-3, batch_size=128, seed=FLAGS.seed, verbose=2)
        seconds = time.perf_counter() - start
        os.makedirs(folder, exist_ok=True)
        model.save_weights(path)
        del model
        gc.collect()
    model = models.cw_mnist_cnn((28, 28, 1), NUM_CLASSES)
    model.load_weights(path)
    if not FLAGS.cache_dir:
        shutil.rmtree(folder, ignore_errors=True)
    return model, seconds


def forward_flops(model):
    """Analytic forward FLOPs per example: 2 x multiply-adds of Conv2D and Dense layers, plus biases."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += 2 * h * w * c_out * kh * kw * c_in + (h * w * c_out if layer.use_bias else 0)
        elif isinstance(layer, keras.layers.Dense):
            d_in, units = layer.input.shape[-1], layer.units
            total += 2 * d_in * units + (units if layer.use_bias else 0)
    return int(total)


_MATMUL_CODE = """
import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
a = tf.random.stateless_normal(({n}, {n}), seed=[1, 2])
b = tf.random.stateless_normal(({n}, {n}), seed=[3, 4])
mm = tf.function(lambda a, b: tf.matmul(a, b))
mm(a, b).numpy()
times = []
for _ in range({r}):
    start = time.perf_counter()
    mm(a, b).numpy()
    times.append(time.perf_counter() - start)
print(2.0 * {n} ** 3 / float(np.median(times)))
"""


def matmul_rate(size=2048, repeats=10):
    """Median float32 FLOP/s of a compiled `size x size` matmul, in a child process.

    Measured apart because running the large matmul in this process slowed
    the attacks timed after it (tfrobust's PGD by about 30%, the bare loop by
    less: an allocator or kernel-cache effect of the big buffers).
    """
    out = subprocess.run([sys.executable, "-c", _MATMUL_CODE.format(n=size, r=repeats)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def load_text():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------
# The physical baseline: PGD written by hand as one tf.function.


def bare_pgd(model, p, eps, steps, step_size, seed):
    """A minimal PGD (random start, CE, sign / normalized step, clip) compiled once."""

    def per_example(v):
        return tf.reshape(v, [-1, 1, 1, 1])

    @tf.function
    def run(x, y, call_seed):
        if p == np.inf:
            delta = tf.random.stateless_uniform(tf.shape(x), call_seed, -eps, eps)
        else:
            # Uniform in the L2 ball: a Gaussian direction, radius eps * u^(1/d).
            g = tf.random.stateless_normal(tf.shape(x), call_seed)
            dim = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
            u = tf.random.stateless_uniform(tf.shape(x)[:1], call_seed + 1)
            radius = eps * tf.pow(u, 1.0 / dim)
            delta = g / per_example(tf.norm(tf.reshape(g, [tf.shape(x)[0], -1]), axis=1)) * per_example(radius)
        x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv))
            grad = tape.gradient(loss, x_adv)
            if p == np.inf:
                x_adv = x_adv + step_size * tf.sign(grad)
                x_adv = tf.clip_by_value(x_adv, x - eps, x + eps)
            else:
                norm = tf.norm(tf.reshape(grad, [tf.shape(x)[0], -1]), axis=1)
                x_adv = x_adv + step_size * grad / per_example(tf.maximum(norm, 1e-12))
                delta = x_adv - x
                dnorm = tf.norm(tf.reshape(delta, [tf.shape(x)[0], -1]), axis=1)
                x_adv = x + delta * per_example(tf.minimum(1.0, eps / tf.maximum(dnorm, 1e-12)))
            x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)
        return x_adv

    counter = [0]

    def attack(x, y):
        counter[0] += 1
        return run(tf.constant(x), tf.constant(y, tf.int32), tf.constant([seed, counter[0]], tf.int32)).numpy()

    return lambda quick: attack


# ----------------------------------------------------------------------
# Adapters. An implementation is `make(quick) -> fn(x_batch, y_batch) -> x_adv`
# (NumPy). `quick=True` gives the warm-up version: for tfrobust and the bare
# loop the very instance that is timed (their compiled traces belong to it);
# for the eager peers the same attack with one iteration, which sets up the
# same kernels at the same batch shape at a fraction of the cost.


def numpy2_shim():
    """Lets Foolbox 3 run on NumPy 2; returns a note for the output, or None.

    eagerpy 0.30 (Foolbox's tensor layer) mixes dtypes through
    `np.find_common_type`, which NumPy 2.0 removed; every Foolbox attack on a
    TensorFlowModel then fails with AttributeError. `np.result_type` of the
    same array dtypes is its documented replacement.
    """
    if hasattr(np, "find_common_type"):
        return None
    np.find_common_type = lambda array_types, scalar_types: np.result_type(*array_types, *scalar_types)
    return ("foolbox: eagerpy calls np.find_common_type, removed in NumPy 2 (AttributeError); "
            "patched in this process as np.result_type of the same dtypes.")


def make_peers(model):
    """Wraps the model for each requested peer; errors are kept, not raised."""
    peers = {}
    if "art" in FLAGS.peers:
        try:
            from art.attacks import evasion
            from art.estimators.classification import TensorFlowV2Classifier

            clf = TensorFlowV2Classifier(
                model=model, nb_classes=NUM_CLASSES, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
                loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            peers["art"] = (clf, evasion)
        except Exception as e:  # noqa: BLE001 - reported in the output.
            peers["art"] = e
    if "foolbox" in FLAGS.peers:
        try:
            import foolbox

            peers["foolbox"] = (foolbox.TensorFlowModel(model, bounds=(0.0, 1.0)), foolbox.attacks)
        except Exception as e:  # noqa: BLE001
            peers["foolbox"] = e
    return peers


def tfr_impl(model, attack, minimize=False):
    def run(x, y):
        if minimize:
            return attack.minimize(model, x, y).x_adv.numpy()
        return attack(model, x, y).numpy()

    return lambda quick: run


def art_impl(peer, make, bs):
    clf, evasion = peer

    def build(quick):
        attack = make(evasion, clf, bs, quick)
        return lambda x, y: attack.generate(x, y=y)

    return build


def fb_impl(peer, make, eps):
    fmodel, fba = peer

    def build(quick):
        attack = make(fba, quick)

        def run(x, y):
            _, clipped, _ = attack(fmodel, tf.constant(x), tf.constant(y, tf.int32), epsilons=eps)
            return clipped.numpy()

        return run

    return build


def specs(model, peers):
    """The benchmarked attacks: dicts of name, norm p, eps, n, batch, kind and implementations."""
    s, c0, it, seed = FLAGS.search_steps, FLAGS.initial_const, FLAGS.iterations, attack_seed()
    lr = FLAGS.cw_learning_rate
    inf = np.inf
    rows = []

    def row(name, p, eps, n, bs, kind, tfrobust, art=None, foolbox=None, bare=None, with_peers=("art", "foolbox"),
            repeats=1, warmup=True):
        bs = min(bs, n)
        impls = {"tfrobust": tfrobust}
        if bare is not None:
            impls["bare"] = bare
        for peer, make in (("art", art), ("foolbox", foolbox)):
            if make is None or peer not in with_peers or peer not in peers:
                continue
            if isinstance(peers[peer], Exception):
                impls[peer] = peers[peer]
            elif peer == "art":
                impls[peer] = art_impl(peers[peer], make, bs)
            else:
                impls[peer] = fb_impl(peers[peer], make, eps if kind == "budget" else None)
        rows.append(dict(name=name, p=p, eps=eps, n=n, bs=bs, kind=kind, impls=impls, repeats=repeats, warmup=warmup))

    def q(quick, value):
        return 1 if quick else value

    n, bs = FLAGS.n, FLAGS.batch_size
    row("PGD-40 Linf (eps 0.3, step 0.01, random start)", inf, 0.3, n, bs, "budget",
        tfr_impl(model, tfr.PGD(LpBall(inf, 0.3), steps=40, step_size=0.01, random_start=True, seed=seed)),
        art=lambda ev, c, b, k: ev.ProjectedGradientDescent(
            c, norm=inf, eps=0.3, eps_step=0.01, max_iter=q(k, 40), num_random_init=1, batch_size=b, verbose=False),
        foolbox=lambda fba, k: fba.LinfPGD(abs_stepsize=0.01, steps=q(k, 40), random_start=True),
        bare=bare_pgd(model, inf, 0.3, 40, 0.01, seed), repeats=FLAGS.repeats)
    row("PGD-40 L2 (eps 2, step 0.1, random start)", 2, 2.0, n, bs, "budget",
        tfr_impl(model, tfr.PGD(LpBall(2, 2.0), steps=40, step_size=0.1, random_start=True, seed=seed)),
        art=lambda ev, c, b, k: ev.ProjectedGradientDescent(
            c, norm=2, eps=2.0, eps_step=0.1, max_iter=q(k, 40), num_random_init=1, batch_size=b, verbose=False),
        foolbox=lambda fba, k: fba.L2PGD(abs_stepsize=0.1, steps=q(k, 40), random_start=True),
        bare=bare_pgd(model, 2, 2.0, 40, 0.1, seed), repeats=FLAGS.repeats)
    # ART's MomentumIterativeMethod refuses TensorFlow models ("currently
    # disabled for Tensorflow framework", ART issue #2439); it is ART's PGD
    # with `decay`, so ART's NumPy PGD with decay=1 runs the same algorithm.
    row("MI-FGSM Linf (eps 0.3, 10 steps of 0.03, decay 1)", inf, 0.3, n, bs, "budget",
        tfr_impl(model, tfr.MIFGSM(LpBall(inf, 0.3), steps=10, decay=1.0)),
        art=lambda ev, c, b, k: ev.ProjectedGradientDescentNumpy(
            c, norm=inf, eps=0.3, eps_step=0.03, decay=1.0, max_iter=q(k, 10), num_random_init=0,
            batch_size=b, verbose=False),
        foolbox=lambda fba, k: fba.LinfMomentumIterativeFastGradientMethod(
            momentum=1.0, abs_stepsize=0.03, steps=q(k, 10), random_start=False), repeats=FLAGS.repeats)
    deepfool = dict(
        art=lambda ev, c, b, k: ev.DeepFool(c, max_iter=q(k, 50), epsilon=0.02, nb_grads=10, batch_size=b,
                                            verbose=False),
        foolbox=lambda fba, k: fba.L2DeepFoolAttack(steps=q(k, 50), candidates=10, overshoot=0.02))
    name = "DeepFool L2 (50 steps, overshoot 0.02, 10 classes)"
    make = lambda: tfr_impl(model, tfr.DeepFool(p=2, steps=50, overshoot=0.02, candidates=10), True)  # noqa: E731
    row(name, 2, None, n, bs, "minimize", make(), with_peers=("foolbox",), **deepfool)
    row(name + ", ART subset", 2, None, FLAGS.n_art_deepfool, bs, "minimize", make(), **deepfool)

    cw = dict(
        art=lambda ev, c, b, k: ev.CarliniL2Method(
            c, confidence=0.0, learning_rate=lr, binary_search_steps=q(k, s), max_iter=q(k, it),
            initial_const=c0, batch_size=b, verbose=False),
        foolbox=lambda fba, k: fba.L2CarliniWagnerAttack(
            binary_search_steps=q(k, s), steps=q(k, it), stepsize=lr, confidence=0.0, initial_const=c0,
            abort_early=FLAGS.cw_abort_early))
    name = f"C&W L2 ({s} x {it}, lr {lr:g}, c0 {c0:g}, abort early {FLAGS.cw_abort_early})"
    make = lambda: tfr_impl(model, tfr.CarliniWagnerL2(  # noqa: E731
        binary_search_steps=s, steps=it, learning_rate=lr, initial_const=c0, abort_early=FLAGS.cw_abort_early), True)
    row(name, 2, None, FLAGS.n_slow, FLAGS.slow_batch_size, "minimize", make(), with_peers=("foolbox",), **cw)
    row(name + ", ART subset", 2, None, FLAGS.n_art, FLAGS.slow_batch_size, "minimize", make(), **cw)

    ead = dict(
        art=lambda ev, c, b, k: ev.ElasticNet(
            c, confidence=0.0, learning_rate=0.01, binary_search_steps=q(k, s), max_iter=q(k, it), beta=0.01,
            initial_const=c0, batch_size=b, decision_rule="EN", verbose=False),
        # EAD has no early abort in tfrobust or ART; Foolbox's is turned off to match.
        foolbox=lambda fba, k: fba.EADAttack(
            binary_search_steps=q(k, s), steps=q(k, it), initial_stepsize=0.01, confidence=0.0,
            initial_const=c0, regularization=0.01, decision_rule="EN", abort_early=False))
    name = f"EAD ({s} x {it}, lr 0.01, beta 0.01, EN rule, c0 {c0:g})"
    make = lambda: tfr_impl(model, tfr.EAD(  # noqa: E731
        beta=0.01, decision_rule="EN", steps=it, binary_search_steps=s, learning_rate=0.01, initial_const=c0), True)
    row(name, 1, None, FLAGS.n_slow, FLAGS.slow_batch_size, "minimize", make(), with_peers=("foolbox",), **ead)
    row(name + ", ART subset", 1, None, FLAGS.n_art, FLAGS.slow_batch_size, "minimize", make(), **ead)

    _autoattack_rows.add_rows(row, model, n=n, bs=bs, seed=seed, square_queries=FLAGS.square_queries, q=q)

    # tfrobust only.
    row("FGSM Linf (eps 0.3)", inf, 0.3, n, bs, "budget", tfr_impl(model, tfr.FGSM(0.3)))
    row("DAA blob Linf (eps 0.3, 40 steps of 0.01, random start)", inf, 0.3, n, bs, "budget",
        tfr_impl(model, tfr.DAA(LpBall(inf, 0.3), variant="blob", steps=40, step_size=0.01, seed=seed)))
    # Gradient-free attacks stop early once every example of the batch is
    # adversarial. They cost minutes per batch, so they run once, without a
    # warm-up: their time includes tracing (a few seconds).
    ng = FLAGS.n_gradient_free
    row("SPSA Linf (eps 0.3, up to 100 Adam steps, 512 samples, early stop)", inf, 0.3, ng, ng, "budget",
        tfr_impl(model, tfr.SPSA(LpBall(inf, 0.3), steps=100, samples=512, chunk_size=128, seed=seed)),
        warmup=False)
    row("NAttack Linf (eps 0.3, up to 500 steps, 300 samples, early stop)", inf, 0.3, ng, ng, "budget",
        tfr_impl(model, tfr.NAttack(LpBall(inf, 0.3), seed=seed)), warmup=False)
    # The same with face pixels off tanh's flat tails (see NAttack's tanh_shrink).
    row("NAttack Linf, tanh shrink 0.9 (eps 0.3, up to 500 steps, 300 samples, early stop)", inf, 0.3, ng, ng,
        "budget", tfr_impl(model, tfr.NAttack(LpBall(inf, 0.3), seed=seed, tanh_shrink=0.9)), warmup=False)
    return rows


# ----------------------------------------------------------------------
# Timing and metrics.


def predict(model, x, bs):
    return np.concatenate([np.argmax(model(x[i:i + bs], training=False), -1) for i in range(0, len(x), bs)])


def lp_norms(delta, p):
    flat = np.abs(delta.reshape(len(delta), -1).astype(np.float64))
    if p == np.inf:
        return flat.max(1)
    if p == 1:
        return flat.sum(1)
    return np.sqrt((flat**2).sum(1))


def run_row(model, spec, x, y, clean_ok):
    """Warms every implementation up, then times them batch by batch, interleaved.

    Each implementation first runs once, untimed, on the first batch. A
    timed pass goes over the batches in turn and, within each batch, over
    the implementations in an order reversed from one batch to the next, so
    that a change in the machine's load (other processes) falls on all of
    them alike; a pass's time is the sum over its batches. With
    `spec["repeats"] > 1` the pass is repeated and the fastest pass counts
    (the least disturbed by other processes); metrics come from the first.
    """
    bs = spec["bs"]
    results, fns, passes, outs = {}, {}, {}, {}
    for impl, make in spec["impls"].items():
        if isinstance(make, Exception):
            results[impl] = "unavailable"
            continue
        try:
            if spec["warmup"]:
                make(True)(x[:bs], y[:bs])
            fns[impl] = make(False)
            passes[impl], outs[impl] = [], []
        except Exception as e:  # noqa: BLE001 - a peer's failure is a result, not a crash.
            print(f"{spec['name']} / {impl}: error: {type(e).__name__}: {e}")
            results[impl] = "error"
    turn = 0
    for rep in range(spec["repeats"]):
        for impl in fns:
            passes[impl].append(0.0)
        for i in range(0, len(x), bs):
            order = [k for k in fns if k not in results]
            for impl in order if turn % 2 == 0 else order[::-1]:
                try:
                    start = time.perf_counter()
                    out = np.asarray(fns[impl](x[i:i + bs], y[i:i + bs]), np.float32)
                    passes[impl][-1] += time.perf_counter() - start
                    if rep == 0:
                        outs[impl].append(out)
                except Exception as e:  # noqa: BLE001
                    print(f"{spec['name']} / {impl}: error: {type(e).__name__}: {e}")
                    results[impl] = "error"
            turn += 1
    for impl in fns:
        if impl not in results:
            results[impl] = metrics(model, spec, x, y, clean_ok, np.concatenate(outs[impl]), min(passes[impl]))
            results[impl]["passes"] = passes[impl]
    return {k: results[k] for k in spec["impls"]}


def metrics(model, spec, x, y, clean_ok, x_adv, seconds):
    pred = predict(model, x_adv, spec["bs"])
    robust = clean_ok & (pred == y)
    norms = lp_norms(x_adv - x, spec["p"])
    result = dict(seconds=seconds, robust=100.0 * robust.mean(), max_norm=float(norms.max()))
    if spec["kind"] == "minimize":
        # Over the correctly classified points; a failure counts as an infinite norm.
        found = np.where(pred != y, norms, np.inf)[clean_ok]
        result["median_norm"] = float(np.median(found)) if found.size else float("nan")
        result["norms"] = found
        result["success"] = 100.0 * float(np.isfinite(found).mean()) if found.size else float("nan")
    elif result["max_norm"] > spec["eps"] * (1 + 1e-4) + 1e-5:
        result["violation"] = True
    return result


def short(result):
    if not isinstance(result, dict):
        return str(result)
    passes = ", ".join(f"{t:.2f}" for t in result["passes"])
    text = f"{result['seconds']:.2f}s (passes {passes}) robust {result['robust']:.1f}%"
    if "median_norm" in result:
        text += f" median norm {result['median_norm']:.3f} (success {result['success']:.0f}%)"
    return text


def cell_time(result, base):
    if result is None:
        return "-"
    if not isinstance(result, dict):
        return result
    text = f"{result['seconds']:.2f}"
    if isinstance(base, dict) and result is not base:
        text += f" ({result['seconds'] / base['seconds']:.2f}x)"
    return text


def print_tables(table, flops, ceiling):
    impls = ["tfrobust", "art", "foolbox", "bare"]
    print("\n| attack | n | batch | tfrobust s | ART s (x tfrobust) | Foolbox s (x tfrobust) | bare loop s (x tfrobust) "
          "| robust acc % tfrobust / ART / Foolbox / bare | median norm (success %) tfrobust / ART / Foolbox |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec, results in table:
        base = results.get("tfrobust")
        cells = " | ".join(cell_time(results.get(k), base) for k in impls)
        acc = " / ".join(f"{results[k]['robust']:.1f}" if isinstance(results.get(k), dict) else "-"
                         for k in impls if k != "bare" or k in results)
        med = "-"
        if spec["kind"] == "minimize":
            med = f"L{spec['p']}: " + " / ".join(
                f"{results[k]['median_norm']:.3f} ({results[k]['success']:.0f})" if isinstance(results.get(k), dict)
                else "-" for k in impls[:3])
        print(f"| {spec['name']} | {spec['n']} | {spec['bs']} | {cells} | {acc} | {med} |")

    paired = [(spec, results) for spec, results in table if spec["kind"] == "minimize"]
    if paired:
        # A median over ~100 points jumps between neighbouring order statistics
        # (gaps of 1-2% near the middle), so compare the same points instead.
        print("\nPer-point comparison of the minimization attacks (points both found):")
        print("| attack | peer | points | geometric mean of norm ratio tfrobust / peer "
              "| tfrobust smaller / equal / larger % |")
        print("|---|---|---|---|---|")
        for spec, results in paired:
            base = results.get("tfrobust")
            for peer in ("art", "foolbox"):
                other = results.get(peer)
                if not (isinstance(base, dict) and isinstance(other, dict)):
                    continue
                both = np.isfinite(base["norms"]) & np.isfinite(other["norms"])
                if not both.any():
                    continue
                ratio = base["norms"][both] / other["norms"][both]
                tie = np.abs(ratio - 1.0) <= 1e-4
                print(f"| {spec['name']} | {peer} | {int(both.sum())} | {np.exp(np.mean(np.log(ratio))):.4f} "
                      f"| {100 * np.mean(~tie & (ratio < 1)):.0f} / {100 * np.mean(tie):.0f} / "
                      f"{100 * np.mean(~tie & (ratio > 1)):.0f} |")

    print(f"\nPGD step rate. Model forward cost F = {flops / 1e6:.2f} MFLOP per example (Conv2D and Dense "
          f"layers, analytic). A step costs about 3F by the usual convention (forward + backward), but an "
          f"input gradient needs no weight gradients, so about 2F is done. Ceiling: the higher of the two "
          f"measured float32 matmul rates, {ceiling / 1e9:.1f} GFLOP/s.")
    print("| PGD | implementation | example-steps/s | GFLOP/s at 3F (fraction of matmul) "
          "| GFLOP/s at 2F (fraction of matmul) |")
    print("|---|---|---|---|---|")
    for spec, results in [(spec, r) for spec, r in table if spec["name"].startswith("PGD-40")]:
        for impl in ("tfrobust", "bare", "art", "foolbox"):
            r = results.get(impl)
            if isinstance(r, dict):
                rate = spec["n"] * 40 / r["seconds"]
                g3, g2 = rate * 3 * flops, rate * 2 * flops
                print(f"| {spec['name'].split(' (')[0]} | {impl} | {rate:.0f} | {g3 / 1e9:.1f} ({g3 / ceiling:.2f}) "
                      f"| {g2 / 1e9:.1f} ({g2 / ceiling:.2f}) |")


def run_rows(model, rows, x, y, clean_ok):
    """Runs the rows `--only` selects on the first `--n` images; prints each as it ends."""
    table, n = [], len(x)
    for spec in rows:
        if FLAGS.only and not any(part.lower() in spec["name"].lower() for part in FLAGS.only):
            continue
        spec["n"] = m = min(spec["n"], n)
        spec["bs"] = min(spec["bs"], m)
        results = run_row(model, spec, x[:m], y[:m], clean_ok[:m])
        for impl, r in results.items():
            if isinstance(r, dict) and r.get("violation"):
                print(f"  WARNING: {impl} exceeds the budget: max norm {r['max_norm']:.6f} > eps {spec['eps']}")
        table.append((spec, results))
        print(f"[{time.strftime('%H:%M:%S')}] {spec['name']} (n={m}, batch {spec['bs']}): "
              + "; ".join(f"{k} {short(v)}" for k, v in results.items()) + f"; {load_text()}", flush=True)
    return table


def main(argv):
    del argv
    wall = time.perf_counter()
    data_dir = FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR")
    if not data_dir:
        raise ValueError("Expected --data_dir or $TFROBUST_DATA_DIR (a folder with mnist/). Received: neither")
    for name in ("n", "n_slow", "n_gradient_free", "n_art", "n_art_deepfool", "batch_size", "slow_batch_size", "epochs", "repeats",
                 "search_steps", "iterations", "square_queries", "adv_steps"):
        if getattr(FLAGS, name) < 1:
            raise ValueError(f"Expected --{name} >= 1. Received: {name}={getattr(FLAGS, name)}")
    if FLAGS.adv_epochs < 0:
        raise ValueError(f"Expected --adv_epochs >= 0. Received: adv_epochs={FLAGS.adv_epochs}")
    if not FLAGS.models or set(FLAGS.models) - {"standard", "pgd"}:
        raise ValueError(f"Expected --models among standard, pgd. Received: models={','.join(FLAGS.models)}")
    keras.utils.set_random_seed(attack_seed())
    # ART logs every batch at INFO level through absl's handler.
    logging.getLogger("art").setLevel(logging.WARNING)
    print(f"Machine: {platform.machine()}, nproc={os.cpu_count()}, "
          f"GPUs={len(tf.config.list_physical_devices('GPU'))}, {load_text()}")
    print(f"Versions: python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"adversarial-robustness-toolbox {version('adversarial-robustness-toolbox')}, "
          f"foolbox {version('foolbox')}, eagerpy {version('eagerpy')}, numpy {np.__version__}")
    x_train, y_train = data.load("mnist", "train", data_dir)
    x_test, y_test = data.load("mnist", "test", data_dir)
    print(f"MNIST: {len(x_train)} training images, {len(x_test)} test images.")
    model, train_seconds = train_or_load(x_train, y_train)
    if train_seconds:
        print(f"Trained {FLAGS.epochs} epochs in {train_seconds:.1f} s.")
    n = min(FLAGS.n, len(x_test))
    x, y = x_test[:n], y_test[:n].astype(np.int32)
    clean_ok = predict(model, x, FLAGS.batch_size) == y
    test_acc = (predict(model, x_test, 500) == y_test).mean()
    print(f"Clean accuracy: {100 * test_acc:.2f}% on all {len(x_test)} test images, "
          f"{100 * clean_ok.mean():.2f}% on the first {n}.")
    rate_start = matmul_rate()
    print(f"float32 matmul (2048 x 2048, compiled): {rate_start / 1e9:.1f} GFLOP/s; {load_text()}")

    if "foolbox" in FLAGS.peers:
        note = numpy2_shim()
        if note:
            print(note)
    peers = make_peers(model)
    for name, peer in peers.items():
        if isinstance(peer, Exception):
            print(f"{name}: unavailable: {type(peer).__name__}: {peer}")
    table = run_rows(model, specs(model, peers), x, y, clean_ok) if "standard" in FLAGS.models else []
    wanted = [spec["name"] for spec in specs(model, {}) if spec["name"].startswith(_autoattack_rows.ROBUST_MODEL_ROWS)
              and (not FLAGS.only or any(part.lower() in spec["name"].lower() for part in FLAGS.only))]
    if FLAGS.adv_epochs and wanted and "pgd" in FLAGS.models:
        robust, train_seconds = train_or_load(x_train, y_train, adversarial=True)
        if train_seconds:
            print(f"PGD-trained {FLAGS.adv_epochs} epochs in {train_seconds:.1f} s.")
        robust_ok = predict(robust, x, FLAGS.batch_size) == y
        print(f"PGD-trained model: clean accuracy {100 * robust_ok.mean():.2f}% on the first {n}.")
        rows = [spec for spec in specs(robust, make_peers(robust))
                if spec["name"].startswith(_autoattack_rows.ROBUST_MODEL_ROWS)]
        for spec in rows:
            spec["name"] = "[PGD-trained] " + spec["name"]
        table += run_rows(robust, rows, x, y, robust_ok)
    rate_end = matmul_rate()
    print(f"float32 matmul at the end: {rate_end / 1e9:.1f} GFLOP/s; {load_text()}")
    print_tables(table, forward_flops(model), max(rate_start, rate_end))
    print(f"\nTotal wall time {time.perf_counter() - wall:.0f} s; {load_text()}")


if __name__ == "__main__":
    app.run(main)
