"""tfrobust's Square L2 against the authors' reference `square_attack_l2`, same models, same budget.

Why this exists: on the PGD-trained model of `attacks_vs_peers.py`, ART's
`SquareAttack` (L2) leaves far fewer points robust than tfrobust's Square
(see docs/benchmarks.md). tfrobust follows the authors' code
(max-andr/square-attack), ART deviates from it; this script settles which
side is the algorithm by running the authors' function itself.

The reference is read from a local checkout of
https://github.com/max-andr/square-attack (`--reference=PATH/attack.py`;
nothing of it is shipped with tfrobust): only its function definitions are
executed (the module's `import data, models, utils` lines are dropped, as
`square_attack_l2` needs none of them), with the margin loss of its
`models.Model.loss` (`z_y - max_{j != y} z_j` on the logits) and a model
wrapper taking its NCHW float64 arrays. It seeds NumPy itself
(`np.random.seed(0)`); `--seeds` replaces that seed per run. Without
`--reference`, only tfrobust's rows are printed.

    python benchmarks/square_reference.py --cache_dir=DIR --reference=PATH/attack.py \
        --n=100 --queries=1000 --seeds=0,1,2 [--models=standard,pgd]

The models, data and their flags (`--cache_dir`, `--epochs`, `--adv_epochs`,
`--adv_steps`, `--seed`) are those of `attacks_vs_peers.py`.
"""

import os
import time
import types

import numpy as np
from absl import app, flags

import attacks_vs_peers as peers  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from tfrobust import attacks as tfr
from tfrobust import data
from tfrobust.threats import LpBall

flags.DEFINE_string("reference", None, "attack.py of a max-andr/square-attack checkout (none: tfrobust only).")
flags.DEFINE_integer("queries", 1000, "Query budget of both implementations.")
flags.DEFINE_float("eps", 2.0, "L2 radius.")
flags.DEFINE_float("p_init", 0.8, "Initial fraction of pixels changed (AutoAttack's 0.8).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: tfrobust's `seed` and the reference's np.random.seed.")
# --models (standard and/or pgd) is attacks_vs_peers.py's flag, defined on import.
FLAGS = flags.FLAGS


def load_reference(path):
    """The reference's `square_attack_l2`, from its attack.py, with a settable seed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected --reference to be the attack.py of a square-attack checkout. "
                                f"Received: reference={path!r} (no such file)")
    source = open(path, encoding="utf-8").read()
    if "def square_attack_l2(" not in source or "np.random.seed(0)" not in source:
        raise ValueError(f"Expected {path!r} to define square_attack_l2 seeded by np.random.seed(0) "
                         "(max-andr/square-attack's attack.py)")
    body = source.split("if __name__ == '__main__':")[0]
    body = "\n".join(line for line in body.splitlines()
                     if line.strip() not in ("import data", "import models", "import utils"))
    body = body.replace("np.random.seed(0)", "np.random.seed(_SEED)")
    namespace = {"log": types.SimpleNamespace(print=lambda *args, **kwargs: None), "_SEED": 0}
    exec(compile(body, path, "exec"), namespace)  # noqa: S102  (the user's own checkout)
    return namespace


class _ReferenceModel:
    """The interface `square_attack_l2` calls: predict(NCHW) and the margin loss."""

    def __init__(self, model):
        self.model = model

    def predict(self, x_nchw):
        x = np.transpose(x_nchw, (0, 2, 3, 1)).astype(np.float32)
        return self.model(x, training=False).numpy().astype(np.float64)

    @staticmethod
    def loss(y_onehot, logits, targeted=False, loss_type="margin_loss"):
        if loss_type != "margin_loss" or targeted:
            raise ValueError(f"Expected the untargeted margin loss. Received: loss_type={loss_type!r}")
        own = np.sum(logits * y_onehot, axis=1, keepdims=True)
        diff = np.where(y_onehot, np.inf, own - logits)
        return diff.min(axis=1)


def measure(label, model, x, y, reference):
    """Robust accuracy (% of all n) and seconds per seed, both implementations."""
    threat = LpBall(2, FLAGS.eps)
    correct = np.argmax(model(x).numpy(), -1) == y
    print(f"\n{label}: clean accuracy {100 * correct.mean():.1f}% on {len(x)} images; L2 eps {FLAGS.eps:g}, "
          f"{FLAGS.queries} queries, p_init {FLAGS.p_init:g}")
    print("| implementation | seed | robust acc. % | seconds |\n|---|---|---|---|")
    results = {"tfrobust": [], "reference": []}
    for seed in (int(s) for s in FLAGS.seeds):
        start = time.perf_counter()
        x_adv = tfr.Square(threat, n_queries=FLAGS.queries, p_init=FLAGS.p_init, seed=seed)(model, x, y)
        seconds = time.perf_counter() - start
        acc = 100 * np.mean(np.argmax(model(x_adv).numpy(), -1) == y)
        results["tfrobust"].append(acc)
        print(f"| tfrobust Square | {seed} | {acc:.1f} | {seconds:.1f} |")
        if reference is None:
            continue
        reference["_SEED"] = seed
        start = time.perf_counter()
        x_nchw = np.transpose(x, (0, 3, 1, 2)).astype(np.float64)
        onehot = np.eye(int(model.output_shape[-1]), dtype=bool)[y]
        _, x_ref = reference["square_attack_l2"](_ReferenceModel(model), x_nchw, onehot, correct, FLAGS.eps,
                                                 FLAGS.queries, FLAGS.p_init, os.devnull, False, "margin_loss")
        seconds = time.perf_counter() - start
        x_ref = np.transpose(x_ref, (0, 2, 3, 1)).astype(np.float32)
        norms = np.sqrt(np.sum((x_ref - x[correct]) ** 2, axis=(1, 2, 3)))
        if norms.size and norms.max() > FLAGS.eps * (1 + 1e-4):
            raise AssertionError(f"reference left the ball: max L2 {norms.max():.5f} > eps {FLAGS.eps}")
        acc = 100 * np.sum(np.argmax(model(x_ref).numpy(), -1) == y[correct]) / len(x)
        results["reference"].append(acc)
        print(f"| authors' square_attack_l2 | {seed} | {acc:.1f} | {seconds:.1f} |")
    for name, values in results.items():
        if values:
            print(f"| {name}, mean over seeds | | {np.mean(values):.1f} | |")


def main(argv):
    del argv
    data_dir = FLAGS.data_dir or os.environ.get("TFROBUST_DATA_DIR")
    if not data_dir:
        raise ValueError("Expected --data_dir or $TFROBUST_DATA_DIR (a folder with mnist/). Received: neither")
    bad = [m for m in FLAGS.models if m not in ("standard", "pgd")]
    if bad or not FLAGS.models:
        raise ValueError(f"Expected --models among standard, pgd. Received: models={FLAGS.models}")
    if FLAGS.queries < 2 or FLAGS.n < 1:
        raise ValueError(f"Expected --queries >= 2 and --n >= 1. Received: queries={FLAGS.queries}, n={FLAGS.n}")
    reference = load_reference(FLAGS.reference) if FLAGS.reference else None
    if reference is None:
        print("reference: not given (--reference), tfrobust rows only")
    # The reference's NumPy code draws its own noise: tfrobust's results do
    # not depend on it, and the reference is reseeded per run.
    x_train, y_train = data.load("mnist", "train", data_dir)
    x_test, y_test = data.load("mnist", "test", data_dir)
    n = min(FLAGS.n, len(x_test))
    x, y = x_test[:n].astype(np.float32), y_test[:n].astype(np.int32)
    for name in FLAGS.models:
        model, _ = peers.train_or_load(x_train, y_train, adversarial=name == "pgd")
        measure("PGD-trained model" if name == "pgd" else "standard model", model, x, y, reference)


if __name__ == "__main__":
    app.run(main)
