"""Generator training for the Robust Manifold Defense (`apps/train_generator.py`).

Two MNIST generators of the original code (`tfrobust.models.manifold`):

- "vae": the adv-mnist VAE (20-d latent, 500-500 decoder, sigmoid output),
  trained on the negative ELBO (Bernoulli likelihood). The original ships
  only the trained checkpoint, not its optimiser; Adam 1e-3, batch 128 (the
  PyTorch VAE example it follows) are used here.
- "wgan_gp": the DefenseGAN-break WGAN-GP (128-d latent): Adam 1e-4 with
  beta = (0.5, 0.9), 5 critic updates per generator update, gradient penalty
  10, batch 50 (`defense-gan-break/break/training/train_gan.py`). One epoch
  is one pass of the critic over the training images, i.e.
  `N / (batch * n_critic)` generator updates (the original counts 200k
  generator updates instead).

Each epoch ends with a checkpoint (a killed run resumes where it stopped,
with the same shuffling and noise from `(seed, epoch)`), TensorBoard
scalars, `history.json` and a PNG grid of samples from fixed latents. The
generator is written as `generator.keras` and as a SavedModel
(`generator_savedmodel/`); the VAE also as `vae.keras`.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate

__all__ = ["GeneratorConfig", "build_generator", "save_grid", "train_generator"]

_DEFAULTS = {"vae": {"batch_size": 128, "learning_rate": 1e-3, "latent_dim": 20},
             "wgan_gp": {"batch_size": 50, "learning_rate": 1e-4, "latent_dim": 128}}


@dataclasses.dataclass
class GeneratorConfig:
    model: str = "vae"
    dataset: str = "mnist"
    data_dir: str = None
    out_dir: str = "runs/generator"
    epochs: int = 20
    batch_size: int = None           # default per model (see _DEFAULTS)
    learning_rate: float = None
    latent_dim: int = None
    n_train: int = None
    n_eval: int = 1000
    n_critic: int = 5
    gp_weight: float = 10.0
    seed: int = 0
    strategy: str = "default"
    verbose: int = 1


class _Noise:
    """Holds the GAN's seed generator and declares it for per-epoch reseeding."""

    def __init__(self, seed):
        self.seed_generator = keras.random.SeedGenerator(seed)

    def random_generators(self):
        return [self.seed_generator]


def build_generator(model, latent_dim, seed=0):
    """`(trainable, generator, critic)` for "vae" or "wgan_gp" (critic None for the VAE)."""
    from tfrobust import models

    if model == "vae":
        vae = models.mnist_vae(latent_dim=latent_dim, seed=seed)
        return vae, vae.decoder, None
    generator = models.wgan_gp_mnist_generator(latent_dim)
    return generator, generator, models.wgan_gp_mnist_critic((28, 28, 1))


def save_grid(images, path, cols=8):
    """Writes images `[N, H, W, C]` in [0, 1] as one PNG grid."""
    from PIL import Image

    images = np.clip(np.asarray(images), 0.0, 1.0)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    grid = np.ones((rows * (h + 2), cols * (w + 2), c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, q * (w + 2) + 1:q * (w + 2) + 1 + w] = img
    pixels = (grid * 255).round().astype(np.uint8)
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)


def _check(config):
    model = _validate.check_choice(config.model, name="model", choices=tuple(_DEFAULTS))
    if config.dataset != "mnist":
        raise _validate.error("dataset", "'mnist' (the generators are MNIST architectures)",
                              config.dataset)
    d = _DEFAULTS[model]
    return dataclasses.replace(
        config, model=model,
        epochs=_validate.check_int(config.epochs, name="epochs", minimum=1),
        batch_size=_validate.check_int(config.batch_size or d["batch_size"], name="batch_size", minimum=1),
        learning_rate=_validate.check_float(config.learning_rate or d["learning_rate"], name="learning_rate",
                                            minimum=0.0, exclusive_minimum=True),
        latent_dim=_validate.check_int(config.latent_dim or d["latent_dim"], name="latent_dim", minimum=1),
        n_train=_validate.check_int(config.n_train, name="n_train", minimum=1, allow_none=True),
        n_eval=_validate.check_int(config.n_eval, name="n_eval", minimum=0),
        n_critic=_validate.check_int(config.n_critic, name="n_critic", minimum=1),
        gp_weight=_validate.check_float(config.gp_weight, name="gp_weight", minimum=0.0),
        seed=_random.check_seed(config.seed))


def train_generator(config):
    """Trains a generator as `config` says; resumes from `out_dir/checkpoints`.

    Returns:
        A dict with "history" (per-epoch metrics), "generator" (the `.keras`
        path), "savedmodel", and "samples" (the last sample grid).

    Raises:
        ValueError: for a bad setting, or data that cannot be read.
    """
    from tfrobust import data
    from tfrobust.experiments import generator_steps as steps_lib
    from tfrobust.training import checkpoints, randomness, strategy as strategy_lib
    from tfrobust.training.loop import _write_summaries

    config = _check(config)
    os.makedirs(config.out_dir, exist_ok=True)
    x_train, _ = data.load(config.dataset, "train", config.data_dir)
    x_train = np.asarray(x_train[:config.n_train], np.float32)
    x_eval = np.asarray(data.load(config.dataset, "test", config.data_dir)[0][:config.n_eval], np.float32)
    randomness.set_seed(config.seed)
    strategy = strategy_lib.make_strategy(config.strategy)
    gan = config.model == "wgan_gp"
    per_update = config.batch_size * (config.n_critic if gan else 1)
    updates = len(x_train) // per_update
    if updates < 1:
        raise ValueError(f"Expected at least {per_update} training images for one update. "
                         f"Received: {len(x_train)} images (n_train={config.n_train})")

    with strategy.scope():
        trainable, generator, critic = build_generator(config.model, config.latent_dim, config.seed)
        if gan:
            noise = _Noise(_random.derived_seed(config.seed, 7))
            g_opt = keras.optimizers.Adam(config.learning_rate, beta_1=0.5, beta_2=0.9)
            c_opt = keras.optimizers.Adam(config.learning_rate, beta_1=0.5, beta_2=0.9)
            g_opt.build(generator.trainable_variables)
            c_opt.build(critic.trainable_variables)
            state = {"critic": critic, "critic_optimizer": c_opt, "noise": noise.seed_generator}
            step = steps_lib.make_wgan_gp_step(
                generator, critic, g_opt, c_opt, strategy, latent_dim=config.latent_dim,
                global_batch_size=config.batch_size, n_critic=config.n_critic, gp_weight=config.gp_weight,
                seed_generator=noise.seed_generator)
            others = [noise]
        else:
            g_opt = keras.optimizers.Adam(config.learning_rate)
            g_opt.build(trainable.trainable_variables)
            state = None
            step = steps_lib.make_vae_step(trainable, g_opt, strategy, config.batch_size)
            others = []

    chief = strategy_lib.is_chief(strategy)
    ckpt = checkpoints.TrainingCheckpoint(os.path.join(config.out_dir, "checkpoints"), trainable, g_opt,
                                          strategy, chief, max_to_keep=2, state=state)
    start = ckpt.restore()
    previous = ckpt.load_history(start)
    epochs_done, history = (list(previous[0]), dict(previous[1])) if previous else ([], {})
    if start and config.verbose:
        print(f"Resuming from epoch {start} of {config.epochs}.")
    writer = tf.summary.create_file_writer(os.path.join(config.out_dir, "logs")) if chief else None
    z_fixed = np.random.default_rng(config.seed).standard_normal((64, config.latent_dim)).astype(np.float32)
    samples_dir = os.path.join(config.out_dir, "samples")
    os.makedirs(samples_dir, exist_ok=True)
    total = int(ckpt.step.numpy())

    for epoch in range(start, config.epochs):
        randomness.reseed_for_epoch(trainable, config.seed, epoch, others)
        order = np.random.default_rng(_random.derived_seed(config.seed, epoch)).permutation(len(x_train))
        bar = keras.utils.Progbar(updates, verbose=config.verbose) if config.verbose else None
        sums, t0 = {}, time.time()
        for i in range(updates):
            batch = x_train[order[i * per_update:(i + 1) * per_update]]
            if gan:
                batch = batch.reshape((config.n_critic, config.batch_size) + batch.shape[1:])
            out = step(tf.constant(batch))
            out = {"neg_elbo": out} if not gan else out
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if bar is not None:
                bar.update(i + 1, [(k, float(v)) for k, v in out.items()])
        total += updates
        logs = {k: v / updates for k, v in sums.items()}
        if not gan and len(x_eval):
            logs["eval_neg_elbo"] = float(np.mean([np.mean(trainable.negative_elbo(x_eval[j:j + 500]))
                                                   for j in range(0, len(x_eval), 500)]))
        logs["seconds"] = time.time() - t0
        _write_summaries(writer, logs, epoch + 1)
        save_grid(generator(z_fixed, training=False).numpy(),
                  os.path.join(samples_dir, f"epoch_{epoch + 1:03d}.png"))
        epochs_done.append(epoch)
        for k, v in logs.items():
            history.setdefault(k, [None] * (len(epochs_done) - 1)).append(v)
        ckpt.save(epoch + 1, total)
        ckpt.save_history(epochs_done, history)
        if config.verbose:
            print(f"epoch {epoch + 1}/{config.epochs}: "
                  + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()))
    ckpt.close()

    paths = {"generator": os.path.join(config.out_dir, "generator.keras"),
             "savedmodel": os.path.join(config.out_dir, "generator_savedmodel")}
    if chief:
        generator.save(paths["generator"])
        generator.export(paths["savedmodel"], verbose=False)
        if not gan:
            trainable.save(os.path.join(config.out_dir, "vae.keras"))
        with open(os.path.join(config.out_dir, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(config), f, indent=1)
    paths["samples"] = os.path.join(samples_dir, f"epoch_{config.epochs:03d}.png")
    paths["history"] = {"epoch": epochs_done, **history}
    return paths
