"""Attacks a saved classifier on a dataset and writes adversarial examples and a report.

    python apps/attack.py --model=model.keras --dataset=mnist --n_examples=1000 \
        --attacks=fgsm,pgd,cw --norm=2 --eps=0.5,1.0,2.0 --steps=100 --out_dir=out

    # Several norms in one run and one report (each attack on the norms it supports):
    python apps/attack.py --model=model.keras --dataset=mnist --n_examples=1000 \
        --attacks=autoattack,pgd,cw,ead --threats=inf:0.3,2:2.0,1:15 --out_dir=out

Writes `adv_<attack>_<eps>.npz` (x_adv, y, predictions) per attack and eps,
and `report.json`, `report.md`, `results.npz`, `robust_accuracy.png`; each
attack's files are written as soon as it finishes. The
model is a `.keras` file or a SavedModel directory (`model.export(path)`)
returning logits. `--strategy` loads the model under that strategy's scope
and deals the attacks' batches to its replicas (see
`tfrobust.evaluation.app`); only the chief writes. A bad flag, a missing
file or an `--out_dir` that cannot be a folder ends with the message on
stderr and exit status 1.
"""

import os

from absl import app, flags

from tfrobust.evaluation import registry
from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("model", None, "A .keras file or a SavedModel directory (logits).")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10", "gtsrb", "digits"], "Dataset.")
flags.DEFINE_enum("split", "test", ["test", "train"], "Split.")
flags.DEFINE_string("data_dir", None, "Dataset files (default: $TFROBUST_DATA_DIR).")
flags.DEFINE_integer("n_examples", None, "First examples of the split (default: all).", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Examples per attack call.", lower_bound=1)
flags.DEFINE_list("attacks", ["pgd"], f"Comma list of {', '.join(registry.ATTACKS)}, or autoattack.")
flags.DEFINE_enum("norm", "inf", ["inf", "2", "1"], "Threat norm.")
flags.DEFINE_list("eps", [], "Comma list of budgets, one run per eps.")
flags.DEFINE_list("threats", [], "Instead of --norm/--eps: p:eps items of several norms, e.g. inf:0.3,2:2.0,1:15.")
flags.DEFINE_integer("steps", None, "Attack iterations (default: each paper's).", lower_bound=1)
flags.DEFINE_float("step_size", None, "PGD/BIM step length (default: each paper's).", lower_bound=0.0)
flags.DEFINE_integer("restarts", 1, "Random restarts of pgd attacks.", lower_bound=1)
flags.DEFINE_bool("targeted", False, "Targeted attacks (--target_class, else random targets).")
flags.DEFINE_integer("target_class", None, "Target class of --targeted.", lower_bound=0)
flags.DEFINE_integer("eot_samples", 1, "Wrap the model in EoT with this many draws when > 1.", lower_bound=1)
define_strategy_flag()
flags.DEFINE_integer("seed", 0, "Seed of random starts, targets and sanity checks.", lower_bound=0)
flags.DEFINE_bool("sanity_checks", True, "Run the sanity checks against obfuscated gradients.")
flags.DEFINE_string("out_dir", None, "Output folder.")
flags.mark_flags_as_required(["model", "out_dir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Cheap checks first: they need no TensorFlow, so bad flags fail fast.
    if FLAGS.threats:
        if FLAGS["norm"].present or FLAGS.eps:
            raise ValueError("--threats replaces --norm and --eps: give one or the other.")
        try:
            registry.pair_attacks(FLAGS.attacks, registry.parse_threats(FLAGS.threats))
        except ValueError as err:
            raise ValueError(f"--attacks/--threats: {err}") from None
    else:
        try:
            for name in registry.expand_names(FLAGS.attacks, FLAGS.norm):
                registry.attack_norm(name, FLAGS.norm)
        except ValueError as err:
            raise ValueError(f"--attacks/--norm: {err}") from None
        try:
            registry.parse_eps(FLAGS.eps)
        except ValueError as err:
            raise ValueError(f"--eps: {err}") from None
    if not os.path.exists(FLAGS.model):
        raise FileNotFoundError(f"--model: no such file or directory: {FLAGS.model!r}")
    if FLAGS.target_class is not None and not FLAGS.targeted:
        raise ValueError("--target_class requires --targeted.")
    from tfrobust.evaluation import run_attack_app

    run_attack_app(
        FLAGS.model, out_dir=FLAGS.out_dir, dataset=FLAGS.dataset, split=FLAGS.split,
        data_dir=FLAGS.data_dir, n_examples=FLAGS.n_examples, batch_size=FLAGS.batch_size,
        attacks=FLAGS.attacks, norm=FLAGS.norm, eps=FLAGS.eps, threats=FLAGS.threats or None,
        steps=FLAGS.steps,
        step_size=FLAGS.step_size, restarts=FLAGS.restarts, targeted=FLAGS.targeted,
        target_class=FLAGS.target_class, eot_samples=FLAGS.eot_samples,
        strategy=FLAGS.strategy, seed=FLAGS.seed, sanity_checks=FLAGS.sanity_checks,
    )


if __name__ == "__main__":
    run_main(main)
