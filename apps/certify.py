"""Certifies a saved model by randomized smoothing (Cohen et al.'s certify.py):

    python apps/certify.py --model=runs/cnn/model.keras --dataset=mnist --sigma=0.25 \\
        --n0=100 --n=100000 --alpha=0.001 --batch_size=1000 --n_examples=100 --out_dir=runs/certify

writes `certify.tsv` (idx, label, predict, radius, correct, time), a
certified-accuracy-vs-radius PNG and `summary.json` into `--out_dir`. Any
model `tfrobust.load_model` reads (a `.keras` file, RBF-CNN models
included, or a SavedModel folder) is the base classifier.
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_string("model", None, "Base classifier: a .keras file or a SavedModel folder.", required=True)
flags.DEFINE_string("dataset", "mnist", "Dataset name (mnist, cifar10, gtsrb, digits).")
flags.DEFINE_string("split", "test", "Dataset split.")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_float("sigma", 0.25, "Noise level of the smoothed classifier (> 0).")
flags.DEFINE_integer("n0", 100, "Selection samples per image.")
flags.DEFINE_integer("n", 100_000, "Estimation samples per image.")
flags.DEFINE_float("alpha", 0.001, "Failure probability of each certificate.")
flags.DEFINE_integer("batch_size", 1000, "Noisy examples per forward pass.")
flags.DEFINE_integer("n_examples", None, "Certify at most this many images (after --skip).")
flags.DEFINE_integer("skip", 1, "Certify every skip-th image.")
flags.DEFINE_list("radii", ["0.25", "0.5", "0.75", "1.0"], "Radii of the summary's certified accuracy.")
flags.DEFINE_list("knobs", [], "Run-time knobs of the model, name=value (e.g. samples=1,beta2=1.75 "
                  "for an RBF-CNN), passed to its set_knobs.")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_bool("share_noise", False, "Images certified together share their noise draws (faster; each "
                  "certificate keeps its guarantee, the images' outcomes are no longer independent).")
flags.DEFINE_string("out_dir", "certify", "Output folder.")
define_strategy_flag()
flags.DEFINE_integer("verbose", 1, "1: progress bar and summary; 0: silent.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.certify import certify_dataset

    try:
        radii = [float(r) for r in FLAGS.radii]
    except ValueError:
        raise ValueError(f"Expected `--radii` to be numbers. Received: --radii={','.join(FLAGS.radii)}") from None
    knobs = {}
    for item in FLAGS.knobs:
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(f"Expected `--knobs` as name=number pairs. Received: --knobs={','.join(FLAGS.knobs)}")
        knobs[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    certify_dataset(model=FLAGS.model, dataset=FLAGS.dataset, split=FLAGS.split, data_dir=FLAGS.data_dir,
                    sigma=FLAGS.sigma, n0=FLAGS.n0, n=FLAGS.n, alpha=FLAGS.alpha, batch_size=FLAGS.batch_size,
                    n_examples=FLAGS.n_examples, skip=FLAGS.skip, out_dir=FLAGS.out_dir, radii=radii,
                    knobs=knobs, seed=FLAGS.seed, share_noise=FLAGS.share_noise, strategy=FLAGS.strategy,
                    verbose=FLAGS.verbose)


if __name__ == "__main__":
    run_main(main)
