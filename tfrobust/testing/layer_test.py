"""One harness for the Keras contract of every tfrobust layer.

Example (inside a pytest test):

```python
import numpy as np
from tfrobust.layers import ScaledSoftplus
from tfrobust.testing import run_layer_test

run_layer_test(ScaledSoftplus, {"alpha": 5.0}, (3, 4),
               expected_output_shape=(3, 4), expected_num_trainable_weights=0,
               reference_fn=lambda x: np.logaddexp(0.0, 5.0 * x) / 5.0)
```

`run_layer_test` builds the layer on random inputs and checks, in order:
the output shape and the trainable / non-trainable weight counts; a NumPy
reference within `tol`; that the config is JSON-able and `from_config`
(with the weights copied) gives the same outputs; that a `.keras` save and
load and a SavedModel export (`model.export`, served by
`tf.saved_model.load`) give the same outputs at two batch sizes; and that
weights shared between sublayers (a layer using another layer's weights)
stay one copy after `from_config` and after loading, by counting unique
variables. Failures are `AssertionError`s that say which step failed.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

__all__ = ["count_unique_variables", "run_layer_test"]


def count_unique_variables(layer):
    """The number of distinct variables a layer and its sublayers hold.

    A weight that two sublayers share counts once; a layer that silently
    duplicated a shared weight (e.g. on deserialization) counts it twice.
    """
    seen = set()
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        for variable in sub.weights:
            seen.add(id(variable))
    return len(seen)


def _as_model(layer, input_shape):
    if isinstance(layer, keras.Model):
        return layer
    return keras.Sequential([keras.Input(input_shape[1:]), layer])


def _assert_close(actual, expected, tol, what):
    actual = keras.ops.convert_to_numpy(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: output shape {actual.shape} != expected {expected.shape}")
    try:
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: outputs differ beyond tol={tol:g}.\n{err}") from None


def _outputs(fn, x):
    out = fn(tf.constant(x))
    if isinstance(out, dict):  # a SavedModel endpoint may name its output
        (out,) = out.values()
    return keras.ops.convert_to_numpy(out)


def run_layer_test(layer_cls, init_kwargs, input_shape, *, expected_output_shape=None,
                   expected_num_trainable_weights=None, expected_num_non_trainable_weights=None,
                   reference_fn=None, tol=1e-5, shared_weights_check=True, input_range=(0.0, 1.0),
                   seed=0):
    """Checks the Keras contract of a layer class; returns the built layer.

    Args:
        layer_cls: the layer (or model) class.
        init_kwargs: constructor arguments (a dict). Layers or callables
            among them must be serializable for the config steps.
        input_shape: shape of the test input, batch axis included, e.g.
            `(2, 8, 8, 1)`. The save, load and export checks also run at
            batch `input_shape[0] + 3`.
        expected_output_shape: the output's shape (batch included), or None.
        expected_num_trainable_weights: expected `len(layer.trainable_weights)`,
            or None.
        expected_num_non_trainable_weights: expected
            `len(layer.non_trainable_weights)`, or None.
        reference_fn: NumPy function `x -> expected output`, or None.
        tol: relative and absolute tolerance of every comparison.
        shared_weights_check: compare the number of unique variables after
            `from_config` and after loading with the original's (a weight
            shared by two sublayers must stay one variable).
        input_range: `(lo, hi)` of the uniform random inputs.
        seed: seed of the inputs.

    Returns:
        The built layer.

    Raises:
        AssertionError: naming the step whose check failed.
    """
    rng = np.random.default_rng(seed)
    input_shape = tuple(int(d) for d in input_shape)
    batch = input_shape[0]
    lo, hi = input_range
    x = rng.uniform(lo, hi, size=input_shape).astype("float32")
    x_other = rng.uniform(lo, hi, size=(batch + 3,) + input_shape[1:]).astype("float32")

    # 1. Build, shapes and weight counts.
    layer = layer_cls(**init_kwargs)
    y = keras.ops.convert_to_numpy(layer(x))
    if expected_output_shape is not None and tuple(y.shape) != tuple(expected_output_shape):
        raise AssertionError(f"output shape {tuple(y.shape)} != expected {tuple(expected_output_shape)}")
    for kind, expected in (("trainable", expected_num_trainable_weights),
                           ("non_trainable", expected_num_non_trainable_weights)):
        found = len(getattr(layer, f"{kind}_weights"))
        if expected is not None and found != expected:
            raise AssertionError(f"{found} {kind} weights != expected {expected}")
    if reference_fn is not None:
        _assert_close(y, reference_fn(x), tol, "NumPy reference")
    unique = count_unique_variables(layer)

    # 2. Config round trip: JSON-able, and the clone computes the same.
    serialized = keras.saving.serialize_keras_object(layer)
    try:
        json.dumps(serialized)
    except TypeError as err:
        raise AssertionError(f"the layer's config is not JSON-able: {err}") from None
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    clone(x)
    if shared_weights_check and count_unique_variables(clone) != unique:
        raise AssertionError(
            f"from_config changed the number of unique variables: {count_unique_variables(clone)} "
            f"!= {unique} (a shared weight was duplicated?)")
    clone.set_weights(layer.get_weights())
    _assert_close(clone(x), y, tol, "from_config(get_config()) with the same weights")
    if clone.get_config() != config:
        raise AssertionError(f"get_config of the clone differs: {clone.get_config()} != {config}")

    model = _as_model(layer, input_shape)
    expected = {b: _outputs(model, v) for b, v in ((batch, x), (batch + 3, x_other))}
    with tempfile.TemporaryDirectory() as tmp:
        # 3. .keras save and load.
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, compile=False)
        if shared_weights_check and count_unique_variables(loaded) != count_unique_variables(model):
            raise AssertionError(
                f".keras load changed the number of unique variables: {count_unique_variables(loaded)} "
                f"!= {count_unique_variables(model)} (a shared weight was duplicated?)")
        for b, v in ((batch, x), (batch + 3, x_other)):
            _assert_close(_outputs(loaded, v), expected[b], tol, f".keras save/load at batch {b}")

        # 4. SavedModel export, served without Keras.
        export_dir = os.path.join(tmp, "exported")
        signature = [tf.TensorSpec((None,) + input_shape[1:], tf.float32)]
        model.export(export_dir, format="tf_saved_model", verbose=False, input_signature=signature)
        served = tf.saved_model.load(export_dir)
        for b, v in ((batch, x), (batch + 3, x_other)):
            _assert_close(_outputs(served.serve, v), expected[b], tol, f"SavedModel export at batch {b}")
    return layer
