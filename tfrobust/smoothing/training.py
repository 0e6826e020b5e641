"""The training-time input transform of smoothed-inference training (SIAM `train.py`).

Example:

```python
from tfrobust import training
from tfrobust.smoothing import SmoothedClassifier
from tfrobust.smoothing.attacks import ViewAttack, noisy_pass, original_pgd
from tfrobust.smoothing.training import SmoothingTransform

model = SmoothedClassifier(base, sigma=0.05, n=8, vote="prediction")
attack = ViewAttack(original_pgd(8 / 255, validate="cheap"), noisy_pass(base, 0.05))
training.fit(model, (x, y), epochs=10, batch_size=128, optimizer="nesterov",
             input_transform=SmoothingTransform(attack=attack, adv_w=0.5),
             grad_clip_norm=0.05)
```

A `SmoothedClassifier` trains on one noisy pass (`training=True`), so
fitting it is Gaussian-noise training of its base; this transform adds the
rest of the original recipe around it, per batch and inside `fit`'s
compiled step.
"""

import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust.transforms.base import InputTransform

__all__ = ["SmoothingTransform", "random_crop_flip"]


def random_crop_flip(x, seed, padding=4):
    """The original CIFAR-10 augmentation: zero-pad `padding`, random crop back, random flip.

    Args:
        x: NHWC float batch.
        seed: stateless seed `[2]` int32.
        padding: pixels of zero padding per side (4).

    Returns:
        The augmented batch, shaped like `x`.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seeds[0], 0, 2 * padding + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None]                          # [B, H]
    cols = offsets[:, 1:] + tf.range(width)[None]                           # [B, W]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)                 # [B, H, W+2p, C]
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)                # [B, H, W, C]
    flip = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1]) < 0.5
    return tf.where(flip, tf.reverse(cropped, axis=[2]), cropped)


class SmoothingTransform(InputTransform):
    """Augmentation, noisy copies and clean + adversarial mixing for smoothing training.

    Per batch, in order: the original CIFAR-10 augmentation (`augment`);
    `copies` repetitions of every example (`copies = m_train` trains on the
    Monte-Carlo mean of the loss over the input noise, each copy drawing its
    own noise in the model's noisy pass); with an `attack`, the batch becomes
    `[x_adv; x]` with sample weights `2 adv_w` and `2 (1 - adv_w)`, so that
    `fit`'s mean over the doubled batch is the original's `adv_w *
    CE(x_adv) + (1 - adv_w) * CE(x)` (each clean example is also attacked).
    One forward pass sees both halves, so BatchNorm's batch statistics mix
    them; the original runs two passes.

    Args:
        attack: None, or an attack `(model, x, y) -> x_adv` (usually a
            `tfrobust.smoothing.attacks.ViewAttack` with `validate="cheap"`:
            the check must not run the smoothed model's n passes).
        adv_w: weight of the adversarial loss, in [0, 1] (0.5).
        copies: noisy copies per example (>= 1).
        augment: pad-4 crop and horizontal flip (CIFAR-10).
        seed: seed of the augmentation generator, or None.

    Raises:
        ValueError: on a non-callable attack or a bad setting.
    """

    name = "smoothing"

    def __init__(self, *, attack=None, adv_w=0.5, copies=1, augment=False, seed=None):
        if attack is not None and not callable(attack):
            raise _validate.error("attack", "an attack (model, x, y) -> x_adv or None", attack)
        self.attack = attack
        self.adv_w = _validate.check_float(adv_w, name="adv_w", minimum=0.0, maximum=1.0)
        self.copies = _validate.check_int(copies, name="copies", minimum=1)
        self.augment = _validate.check_bool(augment, name="augment")
        self._generator = _random.make_generator(seed)

    def apply(self, model, x, y):
        x = tf.convert_to_tensor(x)
        if self.augment:
            x = random_crop_flip(x, _random.next_seed(self._generator))
        if self.copies > 1:
            x = tf.tile(x, [self.copies] + [1] * (x.shape.rank - 1))
            y = tf.tile(y, [self.copies] + [1] * (len(y.shape) - 1))
        if self.attack is None:
            return x, y
        x_adv = tf.stop_gradient(tf.cast(self.attack(model, x, y), x.dtype))
        batch = tf.shape(x)[0]
        weights = tf.concat([tf.fill([batch], 2.0 * self.adv_w),
                             tf.fill([batch], 2.0 * (1.0 - self.adv_w))], axis=0)
        return tf.concat([x_adv, x], axis=0), tf.concat([y, y], axis=0), weights

    def random_generators(self):
        return [self._generator] + ([self.attack] if self.attack is not None else [])
