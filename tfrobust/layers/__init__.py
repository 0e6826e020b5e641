"""Keras layers of tfrobust (all registered under the package "tfrobust")."""

from tfrobust.layers.activations import ScaledSoftplus

__all__ = ["ScaledSoftplus"]
