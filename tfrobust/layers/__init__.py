"""Keras layers of tfrobust (all registered under the package "tfrobust").

This package sits at the bottom of tfrobust: it imports nothing of tfrobust
but the argument checks (`tfrobust._validate`), so any model, defense or
attack may use its layers.
"""

from tfrobust.layers.activations import ScaledSoftplus
from tfrobust.layers.noise import CPNIConv2D
from tfrobust.layers.noise import GaussianInputNoise
from tfrobust.layers.noise import PNIConv2D
from tfrobust.layers.noise import PNIDense
from tfrobust.layers.normalization import LocalResponseNormalization
from tfrobust.layers.padding import ChannelZeroPad
from tfrobust.layers.rbf import RBFLayer
from tfrobust.layers.rbf import ReconstructionLayer

__all__ = [
    "CPNIConv2D",
    "ChannelZeroPad",
    "GaussianInputNoise",
    "LocalResponseNormalization",
    "PNIConv2D",
    "PNIDense",
    "RBFLayer",
    "ReconstructionLayer",
    "ScaledSoftplus",
]
