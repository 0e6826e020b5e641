"""Activation layers used by the architectures of the papers."""

import keras
from keras import ops

from tfrobust import _validate


@keras.saving.register_keras_serializable(package="tfrobust")
class ScaledSoftplus(keras.layers.Layer):
    """Softplus with a sharpness parameter: `softplus(alpha * x) / alpha`.

    As `alpha` grows the function approaches ReLU while staying smooth, which
    is what the Cross-Lipschitz regularizer needs (its penalty involves the
    activation's derivative, `sigmoid(alpha * x)`, that ReLU lacks).

    Args:
        alpha: Positive float, the sharpness. Defaults to 10, the value used
            everywhere in the Cross-Lipschitz experiments.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Float tensor of any shape.
        training: Unused; accepted for a uniform layer signature.

    Returns:
        A tensor of the same shape and dtype as `inputs`.

    Raises:
        ValueError: If `alpha` is not a finite positive number.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """

    def __init__(self, alpha=10.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _validate.check_float(
            alpha, name="alpha", minimum=0.0, exclusive_minimum=True
        )
        self.supports_masking = True

    def call(self, inputs, training=False):
        # ops.softplus evaluates max(z, 0) + log1p(exp(-|z|)), so it neither
        # overflows for large z nor loses the tail for very negative z.
        alpha = ops.cast(self.alpha, inputs.dtype)
        return ops.softplus(alpha * inputs) / alpha

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha})
        return config
