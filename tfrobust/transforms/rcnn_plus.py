"""rCNN+'s training noise: Gaussian noise and "adversarial noise" inside a
random L∞ box (Nandy, Hsu & Lee 2020, the original `flow_noisy`).

Each batch of `B` clean images gets `n_gaussian` extra copies `x0 +
N(0, sigma)` and `n_adversarial` copies `x0 + d`, where `d` is the
adversarial perturbation (a precomputed BIM copy minus the clean image) of
a *different*, randomly drawn training image, randomly rotated (25°),
shifted (25%) and flipped; every copy is clipped to `[x0 - eps, x0 + eps]
∩ [0, 1]` with one `eps ~ U(eps_range)` drawn when the transform is made,
as the original draws it once per generator. Until the perturbation table
is filled (`AdversarialNoiseTable` at epoch k; the paper uses 25 on MNIST),
the adversarial copies are Gaussian ones too.
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.transforms.base import InputTransform

__all__ = ["RCNNPlusNoise", "AdversarialNoiseTable"]


class RCNNPlusNoise(InputTransform):
    """The rCNN+ batch: clean + Gaussian copies + adversarial-noise copies.

    Args:
        table: `tf.Variable [N, H, W, C]` of perturbations (zeros until
            filled); put it in `fit(state=...)` so that it is checkpointed.
        filled: boolean `tf.Variable` (scalar), True once `table` holds BIM
            perturbations (also in `state`).
        sigma: standard deviation of the Gaussian copies (MNIST: 0.35).
        eps_range: the L∞ box radius is drawn once from U(eps_range)
            (MNIST: (0.15, 0.4); CIFAR-10: (0.005, 0.03)).
        n_gaussian, n_adversarial: copies per batch (original: 30 and 30).
        flip: flip the perturbations horizontally at random (the original
            does for MNIST and CIFAR).
        seed: seed of eps and of the noise generators.
    """

    name = "rcnn_plus_noise"

    def __init__(self, table, filled, *, sigma=0.35, eps_range=(0.15, 0.4), n_gaussian=30, n_adversarial=30,
                 flip=True, seed=0):
        self.table, self.filled = table, filled
        self.sigma = _validate.check_float(sigma, name="sigma", minimum=0.0)
        lo, hi = _validate.check_pair(eps_range, name="eps_range", increasing=False)
        if not 0 <= lo <= hi:
            raise _validate.error("eps_range", "a pair 0 <= lo <= hi", eps_range)
        self.n_gaussian = _validate.check_int(n_gaussian, name="n_gaussian", minimum=0)
        self.n_adversarial = _validate.check_int(n_adversarial, name="n_adversarial", minimum=0)
        seed = _validate.check_int(seed, name="seed", minimum=0)
        self.eps = float(np.random.default_rng(seed).uniform(lo, hi))
        self._noise = keras.random.SeedGenerator(seed + 1)
        self._augment = [keras.layers.RandomRotation(25.0 / 360.0, fill_mode="constant", seed=seed + 2),
                         keras.layers.RandomTranslation(0.25, 0.25, fill_mode="constant", seed=seed + 3)]
        if flip:
            self._augment.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))

    def random_generators(self):
        return [self._noise, *self._augment]

    def _box(self, x0, x):
        return tf.clip_by_value(tf.clip_by_value(x, x0 - self.eps, x0 + self.eps), 0.0, 1.0)

    def _gaussian(self, x0):
        return self._box(x0, x0 + self.sigma * keras.random.normal(tf.shape(x0), seed=self._noise))

    def apply(self, model, x, y):
        del model
        x = tf.convert_to_tensor(x)
        g = tf.minimum(self.n_gaussian, tf.shape(x)[0])
        a = tf.minimum(self.n_adversarial, tf.shape(x)[0])
        x_g, x_a0 = x[:g], x[:a]
        index = keras.random.randint([a], 0, tf.shape(self.table)[0], seed=self._noise)
        diff = tf.gather(self.table, index)
        for layer in self._augment:
            diff = layer(diff, training=True)
        x_a = tf.where(self.filled, self._box(x_a0, x_a0 + diff), self._gaussian(x_a0))
        return tf.concat([x, x_g, x_a], 0), tf.concat([y, y[:g], y[:a]], 0)


class AdversarialNoiseTable(keras.callbacks.Callback):
    """Fills an `RCNNPlusNoise` table with `attack(model, x) - x` at the end
    of epoch `fill_epoch` (1-based, the paper's 25 on MNIST), once.

    Args:
        table, filled: the transform's variables.
        x, y: the training images and labels the table is indexed by.
        attack: e.g. `attacks.BIM(threats.LpBall(inf, 0.3))` (the original's
            `bim_3.npz`), run on the model being trained.
        fill_epoch: the epoch after which the table is made.
        batch_size: examples per attack call.
    """

    def __init__(self, table, filled, x, y, attack, *, fill_epoch=25, batch_size=500, verbose=1):
        super().__init__()
        self.table, self.filled, self.x, self.y, self.attack = table, filled, x, y, attack
        self.fill_epoch = _validate.check_int(fill_epoch, name="fill_epoch", minimum=1)
        self.batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.fill_epoch or bool(self.filled.numpy()):
            return
        parts = []
        for i in range(0, len(self.x), self.batch_size):
            xb = self.x[i:i + self.batch_size]
            parts.append(np.asarray(self.attack(self.model, xb, self.y[i:i + self.batch_size])) - xb)
            if self.verbose:
                print(f"\radversarial noise table: {min(i + self.batch_size, len(self.x))}/{len(self.x)}",
                      end="", flush=True)
        if self.verbose:
            print()
        self.table.assign(np.concatenate(parts).astype(np.float32))
        self.filled.assign(True)
