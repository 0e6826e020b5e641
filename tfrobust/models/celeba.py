"""CelebA models of the Robust Manifold Defense (TF1 code of the submission).

The generator is DCGAN-style (tf.contrib layers) and the gender classifier
follows the TensorFlow CIFAR-10 tutorial net (tensorlayer layers); the
initialisers and BatchNorm settings are those libraries' defaults as used
there. The LRN layer lives in `tfrobust.layers.normalization`.
"""

import keras

from tfrobust import _validate
from tfrobust.layers.normalization import LocalResponseNormalization
from tfrobust.models import _checks


def dcgan_celeba_generator(latent_dim=100):
    """Builds the DCGAN CelebA generator of the manifold-defense code.

    z -> Dense 4*4*1024 -> BN -> ReLU -> reshape 4x4x1024 -> three 5x5
    stride-2 'same' deconvolutions to 512, 256, 128 channels, each with
    BN -> ReLU -> deconv5 stride 2 to 3 channels -> tanh -> x * 0.5 + 0.5.
    Output 64x64x3 in [0, 1].

    As in the original (tf.contrib defaults): the BatchNorms have a shift but
    no scale (`scale=False`), decay 0.999 and epsilon 1e-3; deconvolutions
    followed by BN have no bias; deconvolution kernels are N(0, 0.02); the
    Dense layer is Glorot-uniform with a bias.

    Args:
        latent_dim: Size of z (100 in the original).

    Returns:
        A `keras.Model` mapping z [B, latent_dim] to images [B, 64, 64, 3]
        in [0, 1].

    Raises:
        ValueError: If `latent_dim` is not a positive int.

    References:
        Radford, Metz & Chintala, "Unsupervised Representation Learning with
        Deep Convolutional GANs", ICLR 2016; Jalal et al., "The Robust
        Manifold Defense", 2019.
    """
    latent_dim = _validate.check_int(latent_dim, name="latent_dim", minimum=1)

    def bn(name):
        return keras.layers.BatchNormalization(
            momentum=0.999, epsilon=1e-3, scale=False, name=name
        )

    z = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(4 * 4 * 1024, name="fc")(z)
    h = keras.layers.Reshape((4, 4, 1024), name="reshape")(h)
    h = keras.layers.ReLU(name="fc_relu")(bn("fc_bn")(h))
    for i, filters in enumerate((512, 256, 128)):
        h = keras.layers.Conv2DTranspose(
            filters,
            5,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            name=f"deconv{i + 1}",
        )(h)
        h = keras.layers.ReLU(name=f"deconv{i + 1}_relu")(
            bn(f"deconv{i + 1}_bn")(h)
        )
    h = keras.layers.Conv2DTranspose(
        3,
        5,
        strides=2,
        padding="same",
        activation="tanh",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        name="deconv_out",
    )(h)
    x = keras.layers.Rescaling(0.5, offset=0.5, name="to_unit_range")(h)
    return keras.Model(z, x, name="dcgan_celeba_generator")


def celeba_classifier(input_shape=(64, 64, 3), num_classes=2):
    """Builds the CelebA gender classifier of the manifold-defense code.

    Two blocks of [conv5x5 64 'same' -> ReLU -> maxpool 3x3 stride 2 'same'
    -> LRN(4, 1.0, 0.001/9, 0.75)], then Dense 384 -> ReLU -> Dense 192 ->
    ReLU -> Dense K (logits). Kernels are truncated-normal with std 0.02
    (convs) and 0.1 (dense), biases zero, as in tensorlayer's defaults.

    Args:
        input_shape: Image shape; height and width must be >= 4.
        num_classes: Number of classes K (2 in the original).

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Jalal et al., "The Robust Manifold Defense", 2019.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=4)
    num_classes = _checks.check_num_classes(num_classes)

    inputs = keras.Input(shape=input_shape, name="x")
    h = inputs
    for i in range(2):
        h = keras.layers.Conv2D(
            64,
            5,
            padding="same",
            activation="relu",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name=f"conv{i + 1}",
        )(h)
        h = keras.layers.MaxPooling2D(
            3, strides=2, padding="same", name=f"pool{i + 1}"
        )(h)
        h = LocalResponseNormalization(name=f"lrn{i + 1}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    dense_init = keras.initializers.TruncatedNormal(stddev=0.1)
    h = keras.layers.Dense(
        384, activation="relu", kernel_initializer=dense_init, name="fc1"
    )(h)
    h = keras.layers.Dense(
        192, activation="relu", kernel_initializer=dense_init, name="fc2"
    )(h)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=dense_init, name="logits"
    )(h)
    return keras.Model(inputs, logits, name="celeba_classifier")
