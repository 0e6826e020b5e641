"""Tests of tfrobust.testing.run_layer_test, and the harness run on tfrobust's layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.layers import ChannelZeroPad
from tfrobust.layers import LocalResponseNormalization
from tfrobust.layers import ScaledSoftplus
from tfrobust.models.wrappers import BPDA
from tfrobust.models.wrappers import EoT
from tfrobust.testing import count_unique_variables
from tfrobust.testing import run_layer_test


# ---------------------------------------------------------------------------
# The harness on the library's layers.


@pytest.mark.parametrize("alpha", [0.5, 10.0])
def test_scaled_softplus(alpha):
    run_layer_test(
        ScaledSoftplus, {"alpha": alpha}, (3, 5), input_range=(-4.0, 4.0),
        expected_output_shape=(3, 5), expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        reference_fn=lambda x: np.logaddexp(0.0, alpha * x.astype(np.float64)) / alpha)


def test_local_response_normalization():
    run_layer_test(LocalResponseNormalization, {}, (2, 4, 4, 6), expected_output_shape=(2, 4, 4, 6),
                   expected_num_trainable_weights=0)


def test_channel_zero_pad():
    run_layer_test(ChannelZeroPad, {"before": 1, "after": 2}, (2, 3, 3, 2),
                   expected_output_shape=(2, 3, 3, 5), expected_num_trainable_weights=0,
                   reference_fn=lambda x: np.pad(x, [(0, 0), (0, 0), (0, 0), (1, 2)]))


def test_bpda_wrapper():
    # Forward: rescale by 0.5; the surrogate only shapes the backward pass.
    run_layer_test(BPDA, {"forward": keras.layers.Rescaling(0.5), "surrogate": keras.layers.Rescaling(2.0)},
                   (2, 6), expected_output_shape=(2, 6), expected_num_trainable_weights=0,
                   reference_fn=lambda x: 0.5 * x)


def test_eot_wrapper():
    # A deterministic inner model: the EoT average equals the model itself.
    w = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(
        3, use_bias=False, kernel_initializer=keras.initializers.Constant(w))])
    run_layer_test(EoT, {"model": inner, "n": 3, "max_batch": 4}, (2, 6),
                   expected_output_shape=(2, 3), expected_num_trainable_weights=1,
                   reference_fn=lambda x: x @ w)


# ---------------------------------------------------------------------------
# The harness catches what it is meant to catch.


@keras.saving.register_keras_serializable(package="tfrobust_test")
class TransposedDense(keras.layers.Layer):
    """Uses the kernel of another Dense layer, transposed (a tied decoder)."""

    def __init__(self, owner, **kwargs):
        super().__init__(**kwargs)
        self.owner = owner

    def call(self, inputs):
        return inputs @ tf.transpose(self.owner.kernel)


@keras.saving.register_keras_serializable(package="tfrobust_test")
class TiedAutoencoder(keras.layers.Layer):
    """Encoder Dense(k) and a decoder sharing its kernel: one variable in all.

    With `duplicate_on_load=True` its config also serializes the encoder
    inside the decoder, and `from_config` builds the decoder from that copy,
    so a loaded model holds two kernels: the defect the harness must catch.
    """

    def __init__(self, units=3, duplicate_on_load=False, decoder_owner=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.duplicate_on_load = duplicate_on_load
        self.encoder = keras.layers.Dense(units, use_bias=False)
        self.decoder = TransposedDense(decoder_owner or self.encoder)

    def build(self, input_shape):
        self.encoder.build(input_shape)
        if not self.decoder.owner.built:
            self.decoder.owner.build(input_shape)

    def call(self, inputs):
        return self.decoder(self.encoder(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = dict(super().get_config(), units=self.units, duplicate_on_load=self.duplicate_on_load)
        if self.duplicate_on_load:
            config["decoder_owner"] = keras.saving.serialize_keras_object(self.encoder)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("decoder_owner") is not None:
            config["decoder_owner"] = keras.saving.deserialize_keras_object(config["decoder_owner"])
        return cls(**config)


def test_shared_weights_stay_one_copy():
    layer = run_layer_test(TiedAutoencoder, {"units": 3}, (2, 5), expected_output_shape=(2, 5),
                           expected_num_trainable_weights=1)
    assert count_unique_variables(layer) == 1


def test_duplicated_shared_weights_fail():
    # The duplicating variant holds one kernel, but its clone holds two.
    with pytest.raises(AssertionError, match="unique variables"):
        run_layer_test(TiedAutoencoder, {"units": 3, "duplicate_on_load": True}, (2, 5))


def test_wrong_expectations_fail():
    with pytest.raises(AssertionError, match="output shape"):
        run_layer_test(ScaledSoftplus, {}, (2, 3), expected_output_shape=(2, 4))
    with pytest.raises(AssertionError, match="trainable weights"):
        run_layer_test(ScaledSoftplus, {}, (2, 3), expected_num_trainable_weights=1)
    with pytest.raises(AssertionError, match="NumPy reference"):
        run_layer_test(ScaledSoftplus, {"alpha": 2.0}, (2, 3), reference_fn=lambda x: np.maximum(x, 0))


@keras.saving.register_keras_serializable(package="tfrobust_test")
class ForgetsConfig(keras.layers.Layer):
    """Scales by `factor` but leaves it out of its config (a common bug)."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {"name": self.name}


def test_config_that_loses_an_argument_fails():
    with pytest.raises(AssertionError, match="from_config"):
        run_layer_test(ForgetsConfig, {"factor": 3.0}, (2, 3))
