"""Adversarial training: replace part of each batch by an attack's output."""

import tensorflow as tf

from tfrobust import _validate
from tfrobust.transforms.base import InputTransform

__all__ = ["Adversarial", "mixed_count"]


def mixed_count(mix, batch):
    """round(mix * batch) as an int32 tensor (Python's round, half to even,
    which `tf.round` matches)."""
    return tf.cast(tf.round(mix * tf.cast(batch, tf.float32)), tf.int32)


class Adversarial(InputTransform):
    """Trains on `attack(model, x, y)` for a fraction `mix` of each batch.

    The first `round(mix * B)` examples of every batch are replaced by their
    adversarial versions (labels kept), the rest stay clean: `mix=1` is
    Madry et al.'s adversarial training, `mix=0.5` Goodfellow et al.'s
    half-and-half recipe. The attack runs inside `fit`'s compiled step on
    the model in inference mode; its result is constant input (no gradient
    flows through the attack).

    The attack's random generator (e.g. PGD's random start) is declared to
    `fit` through `random_generators()`, so a resumed run draws exactly
    what an uninterrupted one draws.

    Args:
        attack: A `tfrobust.attacks.Attack` (any callable
            `(model, x, y) -> x_adv`; one with `random_generators()` is
            reseeded by `fit`).
        mix: Fraction of each batch replaced, in [0, 1].

    Raises:
        ValueError: if `attack` is not callable or `mix` is outside [0, 1].
    """

    name = "adversarial"

    def __init__(self, attack, mix=1.0):
        if not callable(attack):
            raise _validate.error("attack", "an attack (model, x, y) -> x_adv",
                                  attack)
        self.attack = attack
        self.mix = _validate.check_float(mix, name="mix", minimum=0.0,
                                         maximum=1.0)

    def apply(self, model, x, y):
        x = tf.convert_to_tensor(x)
        if self.mix == 0.0:
            return x, y
        if self.mix == 1.0:
            return tf.stop_gradient(tf.cast(self.attack(model, x, y),
                                            x.dtype)), y
        n_adv = mixed_count(self.mix, tf.shape(x)[0])
        x_adv = self.attack(model, x[:n_adv], y[:n_adv])
        return tf.concat([tf.stop_gradient(tf.cast(x_adv, x.dtype)),
                          x[n_adv:]], axis=0), y

    def random_generators(self):
        return [self.attack]
