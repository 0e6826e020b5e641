"""Tests of tfrobust.layers.padding.ChannelZeroPad."""

import zipfile

import keras
import numpy as np
import pytest

from tfrobust import layers, models


def test_pads_channels_with_zeros():
    layer = layers.ChannelZeroPad(2, 3)
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
    y = layer(x).numpy()
    assert y.shape == (2, 3, 3, 9) == layer.compute_output_shape(x.shape)
    np.testing.assert_array_equal(y[..., 2:6], x)
    assert not y[..., :2].any() and not y[..., 6:].any()
    assert layer.count_params() == 0
    clone = layers.ChannelZeroPad.from_config(layer.get_config())
    assert (clone.before, clone.after) == (2, 3)
    assert keras.saving.get_registered_name(layers.ChannelZeroPad) == "tfrobust>ChannelZeroPad"


@pytest.mark.parametrize("args, name", [((-1, 2), "before"), ((1, 2.0), "after"),
                                        ((True, 0), "before"), ((0, None), "after")])
def test_bad_arguments_raise(args, name):
    with pytest.raises(ValueError, match=rf"Expected `{name}` to be an integer >= 0.*Received: {name}="):
        layers.ChannelZeroPad(*args)


def test_rank_other_than_four_is_refused():
    with pytest.raises(ValueError, match="ndim=4"):
        layers.ChannelZeroPad(1, 1)(np.zeros((2, 3), np.float32))


def test_file_saved_when_the_layer_lived_in_models_still_loads(tmp_path):
    # Files written before the move name the old module tfrobust.models.resnet;
    # the registered name "tfrobust>ChannelZeroPad" is unchanged.
    model = models.preact_resnet32((8, 8, 1), 3, n_units=1)
    path = tmp_path / "new.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    config = members["config.json"].decode()
    assert '"module": "tfrobust.layers.padding"' in config
    members["config.json"] = config.replace(
        '"module": "tfrobust.layers.padding"', '"module": "tfrobust.models.resnet"').encode()
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(old, "w") as zout:
        for name, blob in members.items():
            zout.writestr(name, blob)
    restored = keras.saving.load_model(old)
    assert isinstance(restored.get_layer("unit2_0_pad"), layers.ChannelZeroPad)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(restored(x, training=False).numpy(),
                                  model(x, training=False).numpy())
