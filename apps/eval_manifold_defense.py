"""Evaluates the Robust Manifold Defense on MNIST: the plain classifier and
invert-and-classify under static, adaptive (BPDA+EoT, latent) and substitute
attacks; the overpowered attack's success before and after manifold
adversarial training; L2-PGD robust accuracy of the trained classifiers:

    python apps/eval_manifold_defense.py --classifier=runs/clf_plain/model.keras \
        --generator=runs/vae/generator.keras \
        --robust_models=pgd=runs/clf_pgd/model.keras,pgd_op=runs/clf_pgd_op/model.keras \
        --out_dir=runs/manifold_eval

Each part (`--parts=static,adaptive,overpowered,robust,figure`) writes its
reports (JSON, Markdown, PNG) under `--out_dir`; `summary.json` collects
them. `--parts=bpda` (not a default) gives only clean and BPDA+EoT PGD L2 2
accuracy on `--n_adaptive` images, a cheap adaptive row. The defaults are the original settings; every cost knob is a flag.
`--strategy` spreads the plain classifiers' evaluations (`static` on the
plain classifier, `robust`) over replicas; only the chief writes.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag


flags.DEFINE_string("classifier", "runs/clf_plain/model.keras", "The plain classifier (.keras).")
flags.DEFINE_string("generator", "runs/vae/generator.keras", "The generator (.keras / SavedModel / registry name).")
flags.DEFINE_list("robust_models", [], "name=path of adversarially trained classifiers (pgd, pgd_op, ...).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/manifold_eval", "Output folder.")
flags.DEFINE_list("parts", ["static", "adaptive", "overpowered", "robust", "figure"], "Parts to run.")
flags.DEFINE_integer("n_static", 500, "Test images of the static rows.", lower_bound=1)
flags.DEFINE_integer("n_adaptive", 50, "Test images of the adaptive rows.", lower_bound=1)
flags.DEFINE_integer("inc_steps", 1000, "Projection steps of the evaluated defense.", lower_bound=1)
flags.DEFINE_integer("inc_restarts", 1, "Projection restarts of the evaluated defense.", lower_bound=1)
flags.DEFINE_float("inc_lr", 100.0, "Projection learning rate.")
flags.DEFINE_string("inc_optimizer", "momentum", "Projection optimiser: momentum (0.9, the original), sgd, adam.")
flags.DEFINE_integer("attack_inc_steps", 200, "Projection steps of the copy the attacks differentiate.", lower_bound=1)
flags.DEFINE_integer("attack_inc_restarts", 1, "Restarts of that copy.", lower_bound=1)
flags.DEFINE_integer("eot", 4, "EoT draws of the BPDA attack.", lower_bound=1)
flags.DEFINE_integer("pgd_steps", 40, "Steps of the static PGD attacks.", lower_bound=1)
flags.DEFINE_integer("bpda_steps", 40, "Steps of the BPDA+EoT attacks.", lower_bound=1)
flags.DEFINE_list("adaptive_attacks", ["BPDA+EoT PGD", "latent"], "Adaptive attacks: BPDA+EoT PGD, BPDA+EoT "
                  "APGD-CE, BPDA+EoT APGD-DLR, EoT APGD-CE (through the unrolled projection; each at Linf 0.3 "
                  "and L2 2), latent (L2 4).")
flags.DEFINE_integer("cw_steps", 200, "C&W steps per binary-search step.", lower_bound=1)
flags.DEFINE_integer("cw_search", 5, "C&W binary-search steps.", lower_bound=1)
flags.DEFINE_integer("latent_copies", 100, "Latent attack: copies per image (original 100).", lower_bound=1)
flags.DEFINE_integer("latent_noise", 100, "Latent attack: EoT noise vectors (original 100).", lower_bound=1)
flags.DEFINE_integer("latent_steps", 10000, "Latent attack: steps (original 10000).", lower_bound=1)
flags.DEFINE_integer("substitute_seed", 150, "Substitute attack: initial images (Papernot: 150).", lower_bound=1)
flags.DEFINE_integer("substitute_rounds", 6, "Substitute attack: augmentation rounds rho (Papernot: 6).",
                     lower_bound=1)
flags.DEFINE_integer("substitute_epochs", 10, "Substitute attack: epochs per round.", lower_bound=1)
flags.DEFINE_integer("op_pairs", 200, "Overpowered attack: pairs.", lower_bound=1)
flags.DEFINE_integer("op_steps", 500, "Overpowered attack: steps.", lower_bound=1)
flags.DEFINE_float("op_eps", 1.5, "Overpowered attack: L2 budget.")
flags.DEFINE_list("robust_eps", ["1.5", "2.5"], "L2 budgets of the robust-accuracy check.")
flags.DEFINE_integer("robust_steps", 100, "PGD steps of the robust-accuracy check.", lower_bound=1)
flags.DEFINE_integer("batch_size", 100, "Examples per attack call.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
flags.DEFINE_integer("offset", 0, "Index of the first evaluated test image (chunks of a long run).", lower_bound=0)
flags.DEFINE_list("adaptive_l2_eps", ["2"], "L2 budgets of the BPDA+EoT / EoT attacks (besides Linf 0.3).")
flags.DEFINE_list("prior_results", [], "Earlier runs' result folders (a static run's static_inc, another "
                  "adaptive run's adaptive_inc), each folder@first when its example 0 is test image first: the "
                  "adaptive part does not rerun the static attacks and adds the per-image worst case over them.")
define_strategy_flag()  # the plain classifiers' evaluations
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.manifold_eval import ManifoldEvalConfig, run

    try:
        robust_eps = tuple(float(e) for e in FLAGS.robust_eps)
    except ValueError:
        raise ValueError(f"Expected `--robust_eps` to be numbers. Received: --robust_eps={FLAGS.robust_eps}") from None
    try:
        l2_eps = tuple(float(e) for e in FLAGS.adaptive_l2_eps)
    except ValueError:
        raise ValueError("Expected `--adaptive_l2_eps` to be numbers. "
                         f"Received: --adaptive_l2_eps={FLAGS.adaptive_l2_eps}") from None
    run(ManifoldEvalConfig(
        classifier=FLAGS.classifier, generator=FLAGS.generator, robust_models=tuple(FLAGS.robust_models),
        data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir, parts=tuple(FLAGS.parts), n_static=FLAGS.n_static,
        n_adaptive=FLAGS.n_adaptive, inc_steps=FLAGS.inc_steps, inc_restarts=FLAGS.inc_restarts,
        inc_learning_rate=FLAGS.inc_lr, inc_optimizer=FLAGS.inc_optimizer, attack_inc_steps=FLAGS.attack_inc_steps,
        attack_inc_restarts=FLAGS.attack_inc_restarts, eot=FLAGS.eot, pgd_steps=FLAGS.pgd_steps,
        bpda_steps=FLAGS.bpda_steps, cw_steps=FLAGS.cw_steps, cw_search=FLAGS.cw_search,
        latent_copies=FLAGS.latent_copies, latent_noise=FLAGS.latent_noise, latent_steps=FLAGS.latent_steps,
        substitute_seed=FLAGS.substitute_seed, substitute_rounds=FLAGS.substitute_rounds,
        substitute_epochs=FLAGS.substitute_epochs, op_pairs=FLAGS.op_pairs, op_steps=FLAGS.op_steps,
        op_eps=FLAGS.op_eps, robust_eps=robust_eps, robust_steps=FLAGS.robust_steps,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        offset=FLAGS.offset, prior_results=tuple(FLAGS.prior_results),
        adaptive_attacks=tuple(FLAGS.adaptive_attacks), adaptive_l2_eps=l2_eps, strategy=FLAGS.strategy))


if __name__ == "__main__":
    run_main(main)
