"""Trains an MNIST generator of the Robust Manifold Defense (VAE or WGAN-GP):

    python apps/train_generator.py --model=vae --epochs=20 --out_dir=runs/vae
    python apps/train_generator.py --model=wgan_gp --epochs=50 --out_dir=runs/wgan_gp

Writes per-epoch checkpoints (a killed run resumes), TensorBoard logs
(`logs/`), `history.json`, sample grids (`samples/epoch_NNN.png`), and the
generator as `generator.keras` and `generator_savedmodel/` (the VAE also as
`vae.keras`). Defaults are the original's (see tfrobust.experiments.generator).
"""

from absl import app, flags

from tfrobust.experiments._cli import run_main
from tfrobust.experiments._flags import define_strategy_flag

flags.DEFINE_enum("model", "vae", ["vae", "wgan_gp"], "Generator to train.")
flags.DEFINE_string("dataset", "mnist", "Dataset name (mnist).")
flags.DEFINE_string("data_dir", None, "Local dataset files (default: $TFROBUST_DATA_DIR, then tfds).")
flags.DEFINE_string("out_dir", "runs/generator", "Output folder.")
flags.DEFINE_integer("epochs", 20, "Epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Batch size (default: VAE 128, WGAN-GP 50).", lower_bound=1)
flags.DEFINE_float("lr", None, "Adam learning rate (default: VAE 1e-3, WGAN-GP 1e-4).")
flags.DEFINE_integer("latent_dim", None, "Latent size (default: VAE 20, WGAN-GP 128).", lower_bound=1)
flags.DEFINE_integer("n_train", None, "Use the first n training images.", lower_bound=1)
flags.DEFINE_integer("n_eval", 1000, "VAE: test images of the held-out ELBO.", lower_bound=0)
flags.DEFINE_integer("n_critic", 5, "WGAN-GP: critic updates per generator update.", lower_bound=1)
flags.DEFINE_float("gp_weight", 10.0, "WGAN-GP: gradient penalty weight.")
flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar.", lower_bound=0)
define_strategy_flag()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tfrobust.experiments.generator import GeneratorConfig, train_generator

    out = train_generator(GeneratorConfig(
        model=FLAGS.model, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, out_dir=FLAGS.out_dir,
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.lr,
        latent_dim=FLAGS.latent_dim, n_train=FLAGS.n_train, n_eval=FLAGS.n_eval, n_critic=FLAGS.n_critic,
        gp_weight=FLAGS.gp_weight, seed=FLAGS.seed, strategy=FLAGS.strategy, verbose=FLAGS.verbose))
    print(f"Generator: {out['generator']} (SavedModel: {out['savedmodel']}); samples: {out['samples']}")


if __name__ == "__main__":
    run_main(main)
