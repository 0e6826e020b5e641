"""Padding layers used by the architectures of the papers."""

import keras
from keras import ops

from tfrobust import _validate

__all__ = ["ChannelZeroPad"]


# Registered as "tfrobust>ChannelZeroPad", the name it had when it lived in
# tfrobust/models/resnet.py, so `.keras` files saved then still load.
@keras.saving.register_keras_serializable(package="tfrobust")
class ChannelZeroPad(keras.layers.Layer):
    """Appends zero channels: the parameter-free ResNet shortcut ("option A").

    Args:
        before: Number of zero channels put before the input's channels.
        after: Number of zero channels put after them.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: Tensor of shape [B, H, W, C].
        training: Unused.

    Returns:
        A tensor of shape [B, H, W, before + C + after].

    Raises:
        ValueError: If `before` or `after` is not an int >= 0.

    References:
        He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
        CVPR 2016 (shortcut option A).
    """

    def __init__(self, before, after, **kwargs):
        super().__init__(**kwargs)
        self.before = _validate.check_int(before, name="before", minimum=0)
        self.after = _validate.check_int(after, name="after", minimum=0)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs, training=False):
        return ops.pad(
            inputs, [[0, 0], [0, 0], [0, 0], [self.before, self.after]]
        )

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None:
            channels = channels + self.before + self.after
        return tuple(input_shape[:-1]) + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"before": self.before, "after": self.after})
        return config
