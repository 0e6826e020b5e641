"""Evaluates a trained rCNN / rCNN+ (mirrors the original `test_script.py`):
clean accuracy with m samples at each beta2 of the sweep (Table VII), the
static attack battery (beta2 = 0, exact gradients) and the adaptive
BPDA+EoT attack on the deployed randomized model, per threat, with the
worst case over attacks:

    python apps/test_rCNN.py --model=runs/rcnn_plus/model.keras --out_dir=runs/rcnn_plus/test
    # Table IV's radius, black-box rows from an undefended CNN, Figs. 3 and 5:
    python apps/test_rCNN.py --model=runs/rcnn_plus/model.keras --threats=linf:0.35 \
        --transfer_from=runs/cnn/model.keras --spsa_steps=20 --figures
    # the plain / Madry baselines under the same static battery:
    python apps/test_rCNN.py --model=runs/madry/model.keras --threats=linf
    # Table I's C&W (L-inf: PGD on the C&W margin), DAA and C&W (black-box) rows:
    python apps/test_rCNN.py --model=runs/rcnn/model.keras --threats=linf --transfer_from=runs/cnn/model.keras \
        --attacks="CW,DAA,CW (transfer)"
    # per-point worst cases over runs made separately (each saves points.npz):
    python apps/test_rCNN.py --combine=runs/eval/linf_a,runs/eval/linf_b --out_dir=runs/eval/linf
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("model", "runs/rcnn/model.keras", "Trained RBF-CNN (.keras).")
flags.DEFINE_string("dataset", "mnist", "Dataset name.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/rcnn/test", "Where results.json / results.md go.")
flags.DEFINE_integer("n_eval", 1000, "Test images for clean accuracy and static attacks.", lower_bound=1)
flags.DEFINE_integer("n_adaptive", 200, "Test images for the (costly) BPDA+EoT attack (0: none).", lower_bound=0)
flags.DEFINE_list("threats", ["linf", "l2", "l1"], "Threats: linf (0.3), l2 (2.0), l1 (15), or norm:eps.")
flags.DEFINE_float("beta1", 25.0, "beta1 at test time.")
flags.DEFINE_float("beta2", 1.75, "beta2 of the deployed (randomized) model.")
flags.DEFINE_integer("samples", 10, "m, reconstructions averaged per prediction.", lower_bound=1)
flags.DEFINE_integer("steps", 40, "PGD / MI-FGSM steps.", lower_bound=1)
flags.DEFINE_integer("auto_steps", 100, "APGD / FAB steps.", lower_bound=1)
flags.DEFINE_integer("square_queries", 1000, "Square attack queries.", lower_bound=1)
flags.DEFINE_integer("cw_steps", 200, "C&W L2 / EAD steps per binary-search step (C&W at L-inf: --steps "
                     "PGD steps on the C&W margin).", lower_bound=1)
flags.DEFINE_integer("daa_steps", 200, "DAA steps (L-inf; paper: 200 of eps / 30).", lower_bound=1)
flags.DEFINE_integer("daa_restarts", 1, "DAA restarts (the DAA paper: 50 on MNIST).", lower_bound=1)
flags.DEFINE_integer("eot_samples", 50, "EoT draws per adaptive step (paper: 50).", lower_bound=1)
flags.DEFINE_integer("adaptive_steps", 20, "PGD steps of the adaptive attack.", lower_bound=1)
flags.DEFINE_list("beta2_sweep", ["0", "1", "1.75"], "beta2 values of the clean-accuracy sweep; the static "
                  "examples are judged at each one > 0 too (Table VII).")
flags.DEFINE_list("adaptive_beta2", None, "beta2 values of the adaptive attack (default: --beta2).")
flags.DEFINE_list("adaptive_attacks", ["BPDA+EoT PGD"], "Adaptive attacks on the deployed model: "
                  "BPDA+EoT PGD (the paper's), EoT PGD, BPDA+EoT APGD-CE, EoT APGD-CE (EoT: through the "
                  "randomized model's own gradient).")
flags.DEFINE_integer("eot_batch", 4096, "Reconstructions per model call in the adaptive attacks (images x EoT "
                     "draws x m); lower it when they run out of memory (CIFAR-10 on 24 GB: 512).", lower_bound=1)
flags.DEFINE_list("attacks", None, "Static attacks to run (default: all), e.g. PGD,APGD-CE,PGD (transfer).")
flags.DEFINE_integer("auto_targets", 9, "Target classes of APGD-T and FAB-T.", lower_bound=1)
flags.DEFINE_integer("spsa_steps", 0, "SPSA steps (0: no SPSA; paper: 100).", lower_bound=0)
flags.DEFINE_integer("spsa_samples", 128, "SPSA evaluations per step (paper: 8192).", lower_bound=2)
flags.DEFINE_string("transfer_from", None, "Undefended classifier (.keras) for the black-box transfer rows.")
flags.DEFINE_boolean("figures", False, "Write Fig. 3 (reconstructions) and Fig. 5 (saliency, with "
                     "--transfer_from) PNGs.")
flags.DEFINE_integer("batch_size", 250, "Examples per attack call.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
flags.DEFINE_list("combine", None, "Instead of attacking: folders of earlier runs whose points.npz are "
                  "combined into per-point worst cases (combined.md / .json in --out_dir).")
define_strategy_flag()  # the static attacks; the randomized BPDA+EoT view runs on one device
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.rbf_cnn_eval import EvalConfig, evaluate_rcnn

    if FLAGS.combine:
        from tfrobust.experiments.rbf_cnn_points import write_combined

        write_combined(FLAGS.combine, FLAGS.out_dir)
        return

    sweep = _numbers("beta2_sweep")
    adaptive = _numbers("adaptive_beta2") if FLAGS.adaptive_beta2 else None
    evaluate_rcnn(EvalConfig(
        model=FLAGS.model, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir,
        n_eval=FLAGS.n_eval, n_adaptive=FLAGS.n_adaptive, threats=tuple(FLAGS.threats), beta1=FLAGS.beta1,
        beta2=FLAGS.beta2, samples=FLAGS.samples, steps=FLAGS.steps, auto_steps=FLAGS.auto_steps,
        square_queries=FLAGS.square_queries, cw_steps=FLAGS.cw_steps, daa_steps=FLAGS.daa_steps,
        daa_restarts=FLAGS.daa_restarts, eot_samples=FLAGS.eot_samples,
        adaptive_steps=FLAGS.adaptive_steps, beta2_sweep=sweep, adaptive_beta2=adaptive,
        adaptive_attacks=tuple(FLAGS.adaptive_attacks), eot_batch=FLAGS.eot_batch,
        attacks=tuple(FLAGS.attacks) if FLAGS.attacks is not None else None, auto_targets=FLAGS.auto_targets,
        spsa_steps=FLAGS.spsa_steps, spsa_samples=FLAGS.spsa_samples, transfer_from=FLAGS.transfer_from,
        figures=FLAGS.figures, batch_size=FLAGS.batch_size, seed=FLAGS.seed, strategy=FLAGS.strategy))


def _numbers(name):
    try:
        return tuple(float(b) for b in FLAGS[name].value)
    except ValueError:
        raise ValueError(f"Expected `--{name}` to be comma-separated numbers. "
                         f"Received: --{name}={','.join(FLAGS[name].value)}") from None


if __name__ == "__main__":
    run_main(main)
