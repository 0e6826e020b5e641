"""The Cross-Lipschitz worker's augmentation (crop, mirror, brightness, contrast)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust.data import augmentation


@pytest.mark.parametrize("dataset, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("digits", (8, 8, 1))])
def test_shapes_range_and_determinism(dataset, shape):
    x = tf.random.stateless_uniform((5,) + shape, seed=[1, 2])
    seed = tf.constant([3, 4], tf.int64)
    out = augmentation.augment_batch(x, dataset, seed)
    size = augmentation.CROP_SIZE[dataset]
    assert out.shape == (5, size, size, shape[-1])
    assert augmentation.cropped_shape(dataset, shape) == (size, size, shape[-1])
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    np.testing.assert_array_equal(out.numpy(), augmentation.augment_batch(x, dataset, seed).numpy())
    other = augmentation.augment_batch(x, dataset, seed + 1)
    assert not np.allclose(out.numpy(), other.numpy())
    center = augmentation.center_crop(x, dataset)
    assert center.shape == (5, size, size, shape[-1])
    top = (shape[0] - size) // 2
    np.testing.assert_array_equal(center.numpy(), x.numpy()[:, top:top + size, top:top + size])


def test_only_cifar_is_mirrored():
    assert augmentation.MIRROR["cifar10"]
    assert not augmentation.MIRROR["mnist"] and not augmentation.MIRROR["gtsrb"]


def test_unknown_dataset_raises():
    with pytest.raises(ValueError, match="dataset"):
        augmentation.augment_batch(tf.zeros((1, 8, 8, 1)), "svhn", tf.constant([0, 0]))
