"""Training-time augmentation of the Cross-Lipschitz worker (Hein & Andriushchenko).

The original `augmentation.py` draws a random crop (24x24 on MNIST, 28x28 on
CIFAR-10 and GTSRB; evaluation uses the centre crop), mirrors CIFAR-10 images,
and jitters brightness by +-0.1 and contrast in [0.6, 1.4], clipping to [0, 1]
after each. Rotations and Gaussian noise are off there, so they are off here.
"""

import tensorflow as tf

from tfrobust import _validate

# Crop side per dataset, from the original code; `digits` (8x8) is ours.
CROP_SIZE = {"mnist": 24, "cifar10": 28, "gtsrb": 28, "digits": 6}
# Mirroring changes the meaning of digits and traffic signs.
MIRROR = {"mnist": False, "cifar10": True, "gtsrb": False, "digits": False}


def _check_dataset(dataset):
    _validate.check_choice(dataset, name="dataset", choices=tuple(sorted(CROP_SIZE)))


def cropped_shape(dataset, image_shape):
    """The model's input shape when augmentation crops `image_shape`."""
    _check_dataset(dataset)
    size = CROP_SIZE[dataset]
    return (size, size, image_shape[-1])


def augment_batch(x, dataset, seed):
    """Random crop, mirror, brightness and contrast for one NHWC batch.

    Args:
        x: float32 images in [0, 1], shape [B, H, W, C].
        dataset: name of the dataset, which fixes crop size and mirroring.
        seed: stateless seed, an int32 tensor of shape [2].

    Returns:
        The augmented batch, shape [B, s, s, C] with s = `CROP_SIZE[dataset]`.
    """
    _check_dataset(dataset)
    size = CROP_SIZE[dataset]
    channels = x.shape[-1]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    batch = tf.shape(x)[0]
    x = tf.image.stateless_random_crop(
        x, tf.stack([batch, size, size, channels]), seed=seeds[0]
    )
    if MIRROR[dataset]:
        flip = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1]) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    delta = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[2], -0.1, 0.1)
    x = tf.clip_by_value(x + delta, 0.0, 1.0)
    factor = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3], 0.6, 1.4)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    x = tf.clip_by_value((x - mean) * factor + mean, 0.0, 1.0)
    return x


def center_crop(x, dataset):
    """The evaluation-time counterpart of `augment_batch`'s random crop."""
    _check_dataset(dataset)
    size = CROP_SIZE[dataset]
    height, width = x.shape[1], x.shape[2]
    top = (height - size) // 2
    left = (width - size) // 2
    return x[:, top : top + size, left : left + size, :]
