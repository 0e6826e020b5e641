"""The one-hidden-layer network of the Cross-Lipschitz experiments.

`mlp1layer` builds it; `unpack_mlp1layer` / `is_mlp1layer` recognise it (by
layer types, not names), which the closed-form Cross-Lipschitz penalty
(`tfrobust.regularizers`) and the formal lower bound (`tfrobust.bounds`)
need, since both hold for exactly this architecture.
"""

import math

import keras

from tfrobust import _validate
from tfrobust.layers.activations import ScaledSoftplus
from tfrobust.models import _checks

__all__ = ["is_mlp1layer", "mlp1layer", "unpack_mlp1layer"]


def mlp1layer(
    input_shape,
    num_classes,
    hidden_units=1024,
    alpha=10.0,
    input_dropout=0.0,
    hidden_dropout=0.0,
):
    """Builds the bias-free one-hidden-layer net `f(x) = W^T s(U^T x)`.

    Layers: Flatten -> Dropout(`input_dropout`) -> Dense "hidden" (kernel U of
    shape [d, H], no bias) -> `ScaledSoftplus(alpha)` -> Dropout
    (`hidden_dropout`) -> Dense "logits" (kernel W of shape [H, K], no bias).
    U and W are drawn from N(0, 1) * sqrt(1 / (d * H)) and
    N(0, 1) * sqrt(1 / (K * H)) as in the original code. The network has no
    biases, which the closed-form Cross-Lipschitz penalty relies on.

    With the paper's dropout regulariser use `input_dropout=0.1` (keep 0.9)
    and `hidden_dropout=1 - keep_hidden` (keep_hidden defaults to 0.5).

    Args:
        input_shape: Image shape `(height, width, channels)`.
        num_classes: Number of classes K.
        hidden_units: Number of hidden units H (1024 in the paper).
        alpha: Sharpness of the softplus activation (10 in the paper).
        input_dropout: Dropout rate on the flattened input.
        hidden_dropout: Dropout rate on the hidden activations.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """
    input_shape = _checks.check_input_shape(input_shape)
    num_classes = _checks.check_num_classes(num_classes)
    hidden_units = _validate.check_int(hidden_units, name="hidden_units", minimum=1)
    alpha = _validate.check_float(alpha, name="alpha", minimum=0.0, exclusive_minimum=True)
    input_dropout = _checks.check_rate(input_dropout, name="input_dropout")
    hidden_dropout = _checks.check_rate(hidden_dropout, name="hidden_dropout")
    d = math.prod(input_shape)

    inputs = keras.Input(shape=input_shape, name="x")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dropout(input_dropout, name="input_dropout")(h)
    h = keras.layers.Dense(
        hidden_units,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=math.sqrt(1.0 / (d * hidden_units))
        ),
        name="hidden",
    )(h)
    h = ScaledSoftplus(alpha, name="activation")(h)
    h = keras.layers.Dropout(hidden_dropout, name="hidden_dropout")(h)
    logits = keras.layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=math.sqrt(1.0 / (num_classes * hidden_units))
        ),
        name="logits",
    )(h)
    return keras.Model(inputs, logits, name="mlp1layer")


def _model_layers(model):
    layers = getattr(model, "layers", None)
    if layers is None:
        return None
    return [l for l in layers if not isinstance(l, keras.layers.InputLayer)]


def unpack_mlp1layer(model):
    """Kernels and sharpness of a `tfrobust.models.mlp1layer` network.

    The closed forms need the exact architecture f(x) = Wᵀ σ(Uᵀ x) with
    σ = `ScaledSoftplus(alpha)` and no biases: in order, a Flatten, a Dense
    without bias or activation, a ScaledSoftplus, a Dense without bias or
    activation, with Dropout layers allowed anywhere (the identity at
    inference). Layer types are checked, not names.

    Args:
        model: a Keras model.

    Returns:
        `(U, W, alpha)`: the hidden kernel [d, H] and output kernel [H, K]
        variables, and the softplus sharpness as a Python float.

    Raises:
        ValueError: if `model` does not have that structure.
    """
    layers = _model_layers(model)
    expected = (keras.layers.Flatten, keras.layers.Dense, ScaledSoftplus, keras.layers.Dense)
    core = None if layers is None else [
        l for l in layers if not isinstance(l, keras.layers.Dropout)
    ]
    ok = core is not None and len(core) == 4 and all(
        isinstance(l, t) for l, t in zip(core, expected)
    )
    if ok:
        for dense in (core[1], core[3]):
            act = getattr(dense.activation, "__name__", None)
            ok = ok and not dense.use_bias and act == "linear"
    if not ok:
        names = None if layers is None else [type(l).__name__ for l in layers]
        raise ValueError(
            "Expected a one-hidden-layer network as built by "
            "tfrobust.models.mlp1layer (Flatten, Dense without bias, "
            "ScaledSoftplus, Dense without bias; Dropout allowed). "
            f"Received: model with layers={names}"
        )
    return core[1].kernel, core[3].kernel, float(core[2].alpha)


def is_mlp1layer(model):
    """Whether `unpack_mlp1layer(model)` succeeds (the closed forms apply)."""
    try:
        unpack_mlp1layer(model)
    except ValueError:
        return False
    return True
