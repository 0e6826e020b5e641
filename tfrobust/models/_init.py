"""Initialisers that reproduce the defaults of the frameworks the papers used.

The manifold-defense and SIAM models come from PyTorch code, whose default
`nn.Linear` / `nn.Conv2d` initialisation differs from Keras' Glorot default:
weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming-uniform with
a=sqrt(5)) and so are the biases. Matching it keeps the starting point, and
hence training behaviour, close to the original.
"""

import math

import keras


def torch_default(fan_in):
    """Keyword arguments for a Dense/Conv layer with PyTorch's default init.

    Args:
        fan_in: The layer's fan-in (inputs per output unit). For a
            `Conv2DTranspose` PyTorch uses `out_channels * kh * kw`, which is
            also what Keras' VarianceScaling computes from its kernel layout.

    Returns:
        A dict with `kernel_initializer` and `bias_initializer`.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return {
        # VarianceScaling(1/3, fan_in, uniform) has limit sqrt(1 / fan_in).
        "kernel_initializer": keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
        ),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


def he_normal_fan_out():
    """N(0, 2 / (k*k*out_channels)): the He et al. init of CIFAR ResNets."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )
