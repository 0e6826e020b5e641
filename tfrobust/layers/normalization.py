"""Normalisation layers used by the architectures of the papers."""

import keras
import tensorflow as tf

from tfrobust import _validate

__all__ = ["LocalResponseNormalization"]


# Registered as "tfrobust>LocalResponseNormalization", the name it had when it
# lived in tfrobust/models/celeba.py, so `.keras` files saved then still load.
@keras.saving.register_keras_serializable(package="tfrobust")
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel local response normalisation (AlexNet LRN).

    Computes `x / (bias + alpha * sum_{|c'-c| <= depth_radius} x_c'^2)**beta`
    with `tf.nn.local_response_normalization`. The defaults are those of the
    CelebA classifier of the Robust Manifold Defense (and of the TF CIFAR-10
    tutorial).

    Args:
        depth_radius: Half-width of the channel window (int >= 0).
        bias: Offset (float > 0).
        alpha: Scale of the sum of squares (float >= 0).
        beta: Exponent (float >= 0).
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: Tensor of shape [B, H, W, C].
        training: Unused.

    Returns:
        A tensor of the same shape as `inputs`.

    Raises:
        ValueError: If an argument is out of range.

    References:
        Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
        Convolutional Neural Networks", NIPS 2012.
    """

    def __init__(
        self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, **kwargs
    ):
        super().__init__(**kwargs)
        self.depth_radius = _validate.check_int(
            depth_radius, name="depth_radius", minimum=0
        )
        self.bias = _validate.check_float(
            bias, name="bias", minimum=0.0, exclusive_minimum=True
        )
        self.alpha = _validate.check_float(alpha, name="alpha", minimum=0.0)
        self.beta = _validate.check_float(beta, name="beta", minimum=0.0)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs, training=False):
        return tf.nn.local_response_normalization(
            inputs,
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
            }
        )
        return config
