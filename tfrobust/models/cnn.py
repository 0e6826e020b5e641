"""Plain CNN classifiers of the RBF-CNN work (MNIST 4-conv net, VGG-16)."""

import keras

from tfrobust import _validate
from tfrobust.models import _checks

_VGG_WIDTHS = {
    "v1": (64, 128, 256, 512, 512),
    "v2": (96, 192, 384, 512, 640),
}
# Number of convolutions in each of the five VGG-16 blocks.
_VGG_DEPTHS = (2, 2, 3, 3, 3)


def cw_mnist_cnn(input_shape=(28, 28, 1), num_classes=10, dropout=0.5, *,
                 noise=None, weight_noise=True, act_noise_a=False,
                 act_noise_b=False, noise_rank=5, noise_seed=None):
    """Builds the Carlini-Wagner 4-conv MNIST network used by RBF-CNN.

    Conv32-Conv32-MaxPool-Conv64-Conv64-MaxPool-Dense200-Dropout-Dense200-
    Dense K, ReLU activations, 3x3 'same' convolutions, Keras default
    (Glorot-uniform) initialisation. The output is logits.

    Args:
        input_shape: Image shape `(height, width, channels)`; height and
            width must be >= 4 (two 2x2 poolings).
        num_classes: Number of classes K.
        dropout: Dropout rate after the first Dense200 (0.5 in the paper).
        noise: None, `"pni"` or `"cpni"`: noise-injection convs and Dense
            layers (`PNIDense` in both cases), as `resnet_cifar`'s option
            (Smoothed Inference); the other noise arguments are those of
            `tfrobust.models.resnet.noisy_layer_factories`.
        weight_noise, act_noise_a, act_noise_b, noise_rank, noise_seed: see
            `resnet_cifar`.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural
        Networks", IEEE S&P 2017; Nandy, Hsu & Lee, "Approximate Manifold
        Defense Against Multiple Adversarial Perturbations", IJCNN 2020.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=4)
    num_classes = _checks.check_num_classes(num_classes)
    dropout = _checks.check_rate(dropout, name="dropout")

    from tfrobust.models.resnet import noisy_layer_factories

    conv, dense = noisy_layer_factories(
        noise, weight_noise=weight_noise, act_noise_a=act_noise_a,
        act_noise_b=act_noise_b, noise_rank=noise_rank, noise_seed=noise_seed)
    inputs = keras.Input(shape=input_shape, name="x")
    h = inputs
    for i, filters in enumerate((32, 32, 64, 64)):
        h = conv(filters, 3, 1, f"conv{i + 1}", padding="same", activation="relu")(h)
        if i % 2 == 1:
            h = keras.layers.MaxPooling2D(2, name=f"pool{i // 2 + 1}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense(200, "fc1", activation="relu")(h)
    h = keras.layers.Dropout(dropout, name="dropout")(h)
    h = dense(200, "fc2", activation="relu")(h)
    logits = dense(num_classes, "logits")(h)
    suffix = "" if noise is None else f"_{noise}"
    return keras.Model(inputs, logits, name=f"cw_mnist_cnn{suffix}")


def _vgg_dropouts(variant):
    """Dropout rate after each conv (None: no dropout), per block."""
    if variant == "v2":
        # v2 puts dropout after every conv that is not followed by a pool.
        return [[0.35] * (n - 1) + [None] for n in _VGG_DEPTHS]
    # v1 (geifmany/cifar-vgg): 0.3 in the first block, 0.4 elsewhere.
    rates = []
    for b, n in enumerate(_VGG_DEPTHS):
        rates.append([0.3 if b == 0 else 0.4] * (n - 1) + [None])
    return rates


def vgg16_cifar(
    input_shape=(32, 32, 3), num_classes=10, variant="v1", weight_decay=5e-4
):
    """Builds the VGG-16 classifier of RBF-CNN (CIFAR-10).

    Every convolution is 3x3 'same' -> ReLU -> BatchNorm with an L2 penalty
    `weight_decay * sum(w**2)` on its kernel; five blocks of 2, 2, 3, 3, 3
    convolutions end in a 2x2 max-pool.

    * `"v1"` (the geifmany/cifar-vgg net of the IJCNN paper): widths
      [64, 128, 256, 512, 512]; dropout 0.3 after the first conv, 0.4 after
      every other non-final conv of a block, 0.5 after the last pool; head
      Flatten -> Dense512 -> ReLU -> BN -> Dropout 0.5 -> Dense K.
    * `"v2"` (RBF_CNN-v2): widths [96, 192, 384, 512, 640], every dropout
      0.35 (including the one after the last pool), a BatchNorm on the
      classifier's input (it follows the RBF reconstruction in the original),
      head Flatten -> Dense512 -> ReLU -> BN -> Dense K with no dropout. (The
      original v2 code does have the ReLU after Dense512.)

    The Dense512 kernel carries the same L2 penalty; the output layer none,
    as in the original code. The output is logits.

    Args:
        input_shape: Image shape; height and width must be >= 32 (five 2x2
            poolings).
        num_classes: Number of classes K.
        variant: `"v1"` or `"v2"`.
        weight_decay: L2 coefficient (>= 0; 0 disables the penalty).

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range or `variant` is unknown.

    References:
        Nandy, Hsu & Lee, "Approximate Manifold Defense Against Multiple
        Adversarial Perturbations", IJCNN 2020; Simonyan & Zisserman, "Very
        Deep Convolutional Networks for Large-Scale Image Recognition", 2015.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=32)
    num_classes = _checks.check_num_classes(num_classes)
    _validate.check_choice(variant, name="variant", choices=tuple(sorted(_VGG_WIDTHS)))
    weight_decay = _validate.check_float(weight_decay, name="weight_decay", minimum=0.0)

    def regularizer():
        if weight_decay == 0:
            return None
        return keras.regularizers.L2(weight_decay)

    inputs = keras.Input(shape=input_shape, name="x")
    h = inputs
    if variant == "v2":
        h = keras.layers.BatchNormalization(name="input_bn")(h)
    dropouts = _vgg_dropouts(variant)
    for b, (width, rates) in enumerate(zip(_VGG_WIDTHS[variant], dropouts)):
        for c, rate in enumerate(rates):
            name = f"block{b + 1}_conv{c + 1}"
            h = keras.layers.Conv2D(
                width,
                3,
                padding="same",
                activation="relu",
                kernel_regularizer=regularizer(),
                name=name,
            )(h)
            h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
            if rate is not None:
                h = keras.layers.Dropout(rate, name=f"{name}_dropout")(h)
        h = keras.layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(h)
    final_rate = 0.5 if variant == "v1" else 0.35
    h = keras.layers.Dropout(final_rate, name="features_dropout")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(
        512, activation="relu", kernel_regularizer=regularizer(), name="fc"
    )(h)
    h = keras.layers.BatchNormalization(name="fc_bn")(h)
    if variant == "v1":
        h = keras.layers.Dropout(0.5, name="fc_dropout")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, logits, name=f"vgg16_cifar_{variant}")
