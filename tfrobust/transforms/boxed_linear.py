"""Adversarial training with the boxed-linear step (Hein & Andriushchenko).

The original trains on one exact linearized step towards the runner-up
class, scaled by a random fraction U[0, 1) of the way to the linearized
boundary, replacing the first half of each batch (alpha_adv = 0.5) and
keeping the labels. `BoxedLinearAdversarialTransform` is that recipe as an
`input_transform` of `tfrobust.training.fit`.

References:
    Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
    Classifier against Adversarial Manipulation", NIPS 2017.
"""

import math

import keras
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.boxed_linear import boxed_linear_step
from tfrobust.transforms.adversarial import mixed_count
from tfrobust.transforms.base import InputTransform

__all__ = ["BoxedLinearAdversarialTransform", "boxed_linear_training_step"]


def _draw_uniform(shape, seed, dtype):
    if seed is None:
        return tf.random.uniform(shape, dtype=dtype)
    if isinstance(seed, keras.random.SeedGenerator):
        return keras.random.uniform(shape, dtype=dtype, seed=seed)
    return tf.random.stateless_uniform(shape, seed=[int(seed), 0], dtype=dtype)


@tf.autograph.experimental.do_not_convert
def boxed_linear_training_step(model, x, y=None, *, bounds=(0.0, 1.0), seed=None):
    """One random partial boxed-linear step towards the runner-up class.

    The adversarial-training variant of the original: for each example the
    target is the runner-up class, c = (f_target − f_orig) · U[0, 1) (a
    random fraction of the way to the linearized boundary), and one exact
    `boxed_linear_step` is taken, with no search. Works inside `tf.function`.

    Args:
        model: callable returning logits [B, K]; gradients are taken in
            inference mode (`training=False`), as in the original.
        x: float tensor [B, ...] in `bounds`.
        y: optional int labels [B]. `None` (the original) moves away from the
            predicted class towards the runner-up; with labels, it moves away
            from y towards the highest-scoring other class.
        bounds: `(lo, hi)`, the valid input domain.
        seed: `None`, an int (stateless draw) or a `keras.random.SeedGenerator`.

    Returns:
        `x_adv` shaped like `x` (gradient-stopped), equal to x where the step
        is infeasible.

    Raises:
        ValueError: on a non-float `x` of rank < 2 or bad `bounds`.
    """
    lo, hi = _validate.check_pair(bounds, name="bounds")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating or x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(
            "Expected `x` to be a float batch of rank >= 2. "
            f"Received: x.dtype={x.dtype.name}, x.shape={tuple(x.shape)}"
        )
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        num_classes = logits.shape[-1]
        if y is None:
            top2 = tf.math.top_k(logits, k=2).indices
            orig, target = top2[:, 0], top2[:, 1]
        else:
            orig = tf.cast(y, tf.int32)
            masked = tf.where(tf.one_hot(orig, num_classes) > 0,
                              tf.constant(-math.inf, logits.dtype), logits)
            target = tf.argmax(masked, axis=-1, output_type=tf.int32)
        gap = tf.gather(logits, orig, batch_dims=1) - tf.gather(logits, target, batch_dims=1)
    # One backward pass: v_i = ∇(f_orig − f_target)(x_i), per example in
    # inference mode.
    v = tape.gradient(gap, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    c = -gap * _draw_uniform(tf.shape(gap), seed, gap.dtype)
    delta, _ = boxed_linear_step(x, v, c, (lo, hi))
    return tf.stop_gradient(tf.clip_by_value(x + delta, lo, hi))


@keras.saving.register_keras_serializable(package="tfrobust")
class BoxedLinearAdversarialTransform(InputTransform):
    """Input transform for the paper's adversarial training.

    `transform(model, batch) -> (x', y)`: the first round(alpha_adv · B)
    examples of each batch are replaced by `boxed_linear_training_step`
    adversarial versions and the labels are kept, as in the original
    (alpha_adv = 0.5). Works inside the compiled train step of
    `tfrobust.training.fit`; `apply(model, x, y)` is the same on `(x, y)`.
    Its seed generator is declared (`random_generators()`), so `fit`
    reseeds it per epoch and a resumed run is exact.

    Args:
        alpha_adv: fraction of each batch replaced, in [0, 1].
        bounds: `(lo, hi)`, the valid input domain.
        use_labels: if True, steps move away from the true label; the
            original (False) moves away from the predicted class.
        seed: int seed of the random step fractions.

    Raises:
        ValueError: on `alpha_adv` outside [0, 1] or bad `bounds`.
    """

    name = "boxed_linear_adversarial"
    __name__ = "boxed_linear_adversarial"

    def __init__(self, alpha_adv=0.5, bounds=(0.0, 1.0), use_labels=False, seed=None):
        self.alpha_adv = _validate.check_float(alpha_adv, name="alpha_adv", minimum=0.0,
                                               maximum=1.0)
        self.bounds = _validate.check_pair(bounds, name="bounds")
        self.use_labels = _validate.check_bool(use_labels, name="use_labels")
        self.seed = seed
        self._seed_gen = keras.random.SeedGenerator(seed)

    @tf.autograph.experimental.do_not_convert
    def apply(self, model, x, y):
        x = tf.convert_to_tensor(x)
        n_adv = mixed_count(self.alpha_adv, tf.shape(x)[0])
        x_head = x[:n_adv]
        y_head = tf.cast(y[:n_adv], tf.int32) if self.use_labels else None
        x_adv = boxed_linear_training_step(
            model, x_head, y_head, bounds=self.bounds, seed=self._seed_gen
        )
        return tf.concat([tf.cast(x_adv, x.dtype), x[n_adv:]], axis=0), y

    def random_generators(self):
        return [self._seed_gen]

    def get_config(self):
        return {"alpha_adv": self.alpha_adv, "bounds": list(self.bounds),
                "use_labels": self.use_labels, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
