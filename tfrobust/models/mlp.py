"""The one-hidden-layer network of the Cross-Lipschitz experiments."""

import math

import keras

from tfrobust.layers.activations import ScaledSoftplus
from tfrobust.models import _checks


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
    hidden_units = _checks.check_positive_int(hidden_units, "hidden_units")
    alpha = _checks.check_positive_float(alpha, "alpha")
    input_dropout = _checks.check_rate(input_dropout, "input_dropout")
    hidden_dropout = _checks.check_rate(hidden_dropout, "hidden_dropout")
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
