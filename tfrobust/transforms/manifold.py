"""Manifold adversarial training (Jalal et al.): L2-PGD training plus the overpowered-attack term.

Example:

```python
from tfrobust import training
from tfrobust.transforms.manifold import manifold_adversarial_training

hooks = manifold_adversarial_training(generator, eps=1.5, steps=40, op_weight=1e-2, op_every=5, seed=0)
training.fit(model, (x, y), epochs=20, batch_size=50, optimizer="adam", learning_rate=1e-4,
             checkpoint_dir="ckpt", **hooks)       # input_transform, extra_losses, callbacks
```

The recipe of `adv-mnist/adv_train.py`: every batch is replaced by its
L2-PGD adversarial version (eps 1.5, 40 steps of 2·eps/steps, random start),
and with `--op-attack`, at the start of every `op_iter`-th epoch (epochs 0,
5, 10, ... counted from 0), the overpowered attack runs on the current
classifier (50 pairs, 500 steps) and one optimiser step is taken on
`op_weight · CE(net(b1), net(b2))` over the pairs it found. Here the pairs
are found by a callback at the start of the epoch (on the model in
inference mode) and kept in variables; the term is added to the loss of
the epoch's first batch, so the one extra step is taken together with that
batch's adversarial step rather than separately. The original's masking
does not restrict the loss to the valid pairs (`ce(..., reduction=None)`
returns a sum); as the paper means, only the pairs that are within eps and
classified differently count here (the term is 0 when there are none), and
the cross-entropy is the symmetric one the attack maximizes.
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust import threats
from tfrobust.attacks.overpowered import OverpoweredAttack
from tfrobust.attacks.overpowered import symmetric_cross_entropy
from tfrobust.attacks.pgd import PGD
from tfrobust.transforms.adversarial import Adversarial

__all__ = ["OverpoweredLoss", "manifold_adversarial_training", "pgd_training_attack"]


def pgd_training_attack(eps=1.5, steps=40, *, norm=2, step_size=None, random_start=True, seed=0):
    """The PGD of adversarial training: step `2 eps / steps` (the original's
    `--pgd-lr` default) unless given, random start, cheap validation."""
    eps = _validate.check_float(eps, name="eps", minimum=0.0)
    steps = _validate.check_int(steps, name="steps", minimum=1)
    if step_size is None:
        step_size = 2.0 * eps / steps
    return PGD(threats.LpBall(norm, eps), steps=steps, step_size=step_size, random_start=random_start,
               seed=seed, validate="cheap")


class OverpoweredLoss:
    """Extra loss of `fit`: `weight · mean symCE(model(x1), model(x2))` over the
    overpowered attack's successful pairs, on the first batch of every
    `every`-th epoch (0 otherwise).

    Pass the loss in `extra_losses` and `loss.callback()` in `callbacks`:
    the callback runs the attack at the start of each such epoch and stores
    its pairs in this object's variables.

    Args:
        attack: an `OverpoweredAttack`.
        weight: `op_weight` (1e-2).
        every: `op_iter` (5): the attack runs when `epoch % every == 0`.
        pairs: number of pairs per attack (50).

    Raises:
        ValueError: on a bad attack or hyper-parameters.
    """

    name = "overpowered"

    def __init__(self, attack, *, weight=1e-2, every=5, pairs=50):
        if not isinstance(attack, OverpoweredAttack):
            raise _validate.error("attack", "an OverpoweredAttack", attack)
        self.attack = attack
        self.weight = _validate.check_float(weight, name="weight", minimum=0.0)
        self.every = _validate.check_int(every, name="every", minimum=1)
        self.pairs = _validate.check_int(pairs, name="pairs", minimum=1)
        shape = tuple(attack.generator(tf.zeros([1, attack.latent_dim]), training=False).shape[1:])
        zeros = tf.zeros((self.pairs,) + shape, tf.float32)
        self.x1 = tf.Variable(zeros, trainable=False, name="op_x1")
        self.x2 = tf.Variable(zeros, trainable=False, name="op_x2")
        self.valid = tf.Variable(tf.zeros([self.pairs], tf.bool), trainable=False, name="op_valid")
        self.active = tf.Variable(False, trainable=False, name="op_active")
        self.last_success_rate = None

    def random_generators(self):
        return self.attack.random_generators()

    def refresh(self, model):
        """Runs the attack on `model` and stores its pairs; returns the result."""
        result = self.attack(model, self.pairs)
        self.x1.assign(result.x1)
        self.x2.assign(result.x2)
        self.valid.assign(result.success)
        self.last_success_rate = result.success_rate
        return result

    def __call__(self, model, x, y, logits):
        del x, y, logits

        def term():
            sce = symmetric_cross_entropy(model(self.x1, training=True), model(self.x2, training=True))
            valid = tf.cast(self.valid, tf.float32)
            return self.weight * tf.reduce_sum(sce * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)

        return tf.cond(tf.logical_and(self.active, tf.reduce_any(self.valid)), term, lambda: tf.constant(0.0))

    def callback(self, verbose=0):
        """The `keras.callbacks.Callback` that runs the attack and arms the term."""
        return _OverpoweredCallback(self, verbose)


class _OverpoweredCallback(keras.callbacks.Callback):
    def __init__(self, loss, verbose):
        super().__init__()
        self.loss = loss
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        if epoch % self.loss.every:
            self.loss.active.assign(False)
            return
        result = self.loss.refresh(self.model)
        self.loss.active.assign(True)
        if self.verbose:
            print(f"overpowered attack at epoch {epoch + 1}: {int(np.sum(result.success))}/{self.loss.pairs} "
                  f"pairs within eps={self.loss.attack.eps} and classified differently")

    def on_train_batch_end(self, batch, logs=None):
        self.loss.active.assign(False)


def manifold_adversarial_training(generator=None, *, eps=1.5, steps=40, norm=2, step_size=None, op_weight=1e-2,
                                  op_every=5, op_pairs=50, op_steps=500, op_eps=None, random_start=True, seed=0,
                                  verbose=0,
                                  **op_kwargs):
    """The `fit` hooks of PGD adversarial training, plus the overpowered term when a generator is given.

    Args:
        generator: the generator of the overpowered attack, or None for
            plain PGD adversarial training.
        eps, steps, norm, step_size, random_start: the training PGD (L2,
            1.5, 40, 2·eps/steps, random start).
        op_weight, op_every, op_pairs, op_steps: the overpowered term
            (1e-2, every 5 epochs, 50 pairs, 500 attack steps).
        op_eps: the attack's budget (default `eps`, as `--op-eps`).
        seed: seed of the PGD random starts and of the attack's latents.
        verbose: print the attack's success at each run.
        **op_kwargs: further `OverpoweredAttack` arguments.

    Returns:
        A dict with `input_transform`, `extra_losses` and `callbacks` for
        `tfrobust.training.fit` (the `OverpoweredLoss`, when there is one, is
        `hooks["extra_losses"][0]`).
    """
    transform = Adversarial(pgd_training_attack(eps, steps, norm=norm, step_size=step_size,
                                                     random_start=random_start, seed=seed))
    hooks = {"input_transform": transform, "extra_losses": [], "callbacks": []}
    if generator is not None:
        attack = OverpoweredAttack(generator, eps=eps if op_eps is None else op_eps, steps=op_steps,
                                   seed=seed + 1, **op_kwargs)
        loss = OverpoweredLoss(attack, weight=op_weight, every=op_every, pairs=op_pairs)
        hooks.update(extra_losses=[loss], callbacks=[loss.callback(verbose)])
    return hooks
