"""MNIST models of the Robust Manifold Defense: classifiers and generators.

The originals are PyTorch, so layers use PyTorch's default initialisation
(`_init.torch_default`) and feature maps are NHWC instead of NCHW; a fresh
model is equivalent, but PyTorch checkpoints would need their Flatten-ed
Dense kernels permuted.
"""

import keras
from keras import ops

from tfrobust import _random
from tfrobust import _validate
from tfrobust.models import _checks
from tfrobust.models import _init


def madry_mnist_cnn(input_shape=(28, 28, 1), num_classes=10):
    """Builds the adv-mnist classifier (the Madry et al. MNIST network).

    conv5x5 32 'same' -> ReLU -> maxpool 2 -> conv5x5 64 'same' -> ReLU ->
    maxpool 2 -> Dense 1024 -> ReLU -> Dense K (logits).

    Args:
        input_shape: Image shape; height and width must be >= 4.
        num_classes: Number of classes K.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Jalal, Ilyas, Daskalakis & Dimakis, "The Robust Manifold Defense:
        Adversarial Training using Generative Models", 2019; Madry et al.,
        "Towards Deep Learning Models Resistant to Adversarial Attacks",
        ICLR 2018.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=4)
    num_classes = _checks.check_num_classes(num_classes)
    c = input_shape[-1]
    flat = (input_shape[0] // 4) * (input_shape[1] // 4) * 64

    inputs = keras.Input(shape=input_shape, name="x")
    h = keras.layers.Conv2D(
        32, 5, padding="same", activation="relu", name="conv1",
        **_init.torch_default(25 * c),
    )(inputs)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = keras.layers.Conv2D(
        64, 5, padding="same", activation="relu", name="conv2",
        **_init.torch_default(25 * 32),
    )(h)
    h = keras.layers.MaxPooling2D(2, name="pool2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(
        1024, activation="relu", name="fc1", **_init.torch_default(flat)
    )(h)
    logits = keras.layers.Dense(
        num_classes, name="logits", **_init.torch_default(1024)
    )(h)
    return keras.Model(inputs, logits, name="madry_mnist_cnn")


def defensegan_mnist_classifier(input_shape=(28, 28, 1), num_classes=10):
    """Builds the target classifier of the DefenseGAN break.

    conv5x5 64 'same' -> ReLU -> conv5x5 64 stride 2 'valid' -> ReLU ->
    Dense 128 -> ReLU -> Dense K. On 28x28 inputs the flattened features
    have 12 * 12 * 64 = 9216 entries, as in the original.

    The original's `forward` applies a softmax and is then trained with a
    cross-entropy that applies another one (a double-softmax quirk), while
    its attacks read the logits. This model returns the logits only; train
    it with an ordinary logits cross-entropy.

    Args:
        input_shape: Image shape; height and width must be >= 5.
        num_classes: Number of classes K.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Jalal et al., "The Robust Manifold Defense", 2019; Samangouei,
        Kabkab & Chellappa, "Defense-GAN", ICLR 2018.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=5)
    num_classes = _checks.check_num_classes(num_classes)
    c = input_shape[-1]
    flat = ((input_shape[0] - 5) // 2 + 1) * ((input_shape[1] - 5) // 2 + 1)
    flat *= 64

    inputs = keras.Input(shape=input_shape, name="x")
    h = keras.layers.Conv2D(
        64, 5, padding="same", activation="relu", name="conv1",
        **_init.torch_default(25 * c),
    )(inputs)
    h = keras.layers.Conv2D(
        64, 5, strides=2, padding="valid", activation="relu", name="conv2",
        **_init.torch_default(25 * 64),
    )(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(
        128, activation="relu", name="fc1", **_init.torch_default(flat)
    )(h)
    logits = keras.layers.Dense(
        num_classes, name="logits", **_init.torch_default(128)
    )(h)
    return keras.Model(inputs, logits, name="defensegan_mnist_classifier")


def wgan_gp_mnist_generator(latent_dim=128):
    """Builds the WGAN-GP MNIST generator of the DefenseGAN break.

    z -> Dense 4*4*512 -> ReLU -> reshape 4x4x512 -> deconv5 256 ('valid',
    8x8) -> ReLU -> crop to 7x7 (drop the last row and column) -> deconv5
    128 ('valid', 11x11) -> ReLU -> deconv8 1 stride 2 ('valid', 28x28) ->
    sigmoid.

    Args:
        latent_dim: Size of z (128 in the original).

    Returns:
        A `keras.Model` mapping z [B, latent_dim] to images [B, 28, 28, 1]
        in [0, 1].

    Raises:
        ValueError: If `latent_dim` is not a positive int.

    References:
        Gulrajani et al., "Improved Training of Wasserstein GANs", NIPS
        2017; Jalal et al., "The Robust Manifold Defense", 2019.
    """
    latent_dim = _validate.check_int(latent_dim, name="latent_dim", minimum=1)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(
        4 * 4 * 512, activation="relu", name="fc",
        **_init.torch_default(latent_dim),
    )(z)
    h = keras.layers.Reshape((4, 4, 512), name="reshape")(h)
    h = keras.layers.Conv2DTranspose(
        256, 5, padding="valid", activation="relu", name="deconv1",
        **_init.torch_default(256 * 25),
    )(h)
    # PyTorch's `output[:, :, :7, :7]`.
    h = keras.layers.Cropping2D(((0, 1), (0, 1)), name="crop")(h)
    h = keras.layers.Conv2DTranspose(
        128, 5, padding="valid", activation="relu", name="deconv2",
        **_init.torch_default(128 * 25),
    )(h)
    x = keras.layers.Conv2DTranspose(
        1, 8, strides=2, padding="valid", activation="sigmoid",
        name="deconv_out", **_init.torch_default(1 * 64),
    )(h)
    return keras.Model(z, x, name="wgan_gp_mnist_generator")


def wgan_gp_mnist_critic(input_shape=(28, 28, 1)):
    """Builds the WGAN-GP MNIST critic (discriminator) of the DefenseGAN break.

    conv5x5 stride 2 'same' with 128, 256, 512 filters, each followed by
    ReLU, then Dense 1 (an unbounded critic score, no sigmoid).

    Args:
        input_shape: Image shape; height and width must be >= 8.

    Returns:
        A `keras.Model` mapping images to scores of shape [B, 1].

    Raises:
        ValueError: If `input_shape` is invalid.

    References:
        Gulrajani et al., "Improved Training of Wasserstein GANs", NIPS 2017.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=8)
    x = keras.Input(shape=input_shape, name="x")
    h = x
    in_channels = input_shape[-1]
    for i, filters in enumerate((128, 256, 512)):
        h = keras.layers.Conv2D(
            filters, 5, strides=2, padding="same", activation="relu",
            name=f"conv{i + 1}", **_init.torch_default(25 * in_channels),
        )(h)
        in_channels = filters
    h = keras.layers.Flatten(name="flatten")(h)
    flat = h.shape[-1]
    score = keras.layers.Dense(1, name="score", **_init.torch_default(flat))(h)
    return keras.Model(x, score, name="wgan_gp_mnist_critic")


@keras.saving.register_keras_serializable(package="tfrobust")
class VAE(keras.Model):
    """The adv-mnist VAE: a Bernoulli-likelihood MLP VAE on 28x28x1 images.

    Encoder: Flatten 784 -> Dense 500 -> LeakyReLU(0.1) -> (mu, log_var),
    each Dense `latent_dim`. Decoder (the generator of the defense):
    z -> Dense 500 -> LeakyReLU(0.1) -> Dense 500 -> LeakyReLU(0.1) ->
    Dense 784 -> sigmoid -> reshape 28x28x1. The original ignores its
    constructor argument and hard-codes 20 latents; here `latent_dim` is
    honoured (default 20).

    Training (`compile(optimizer)` then `fit(x)`) minimises the negative
    ELBO per example: the summed binary cross-entropy of the reconstruction
    plus KL(q(z|x) || N(0, I)), averaged over the batch.

    Args:
        latent_dim: Size of z.
        seed: Optional int seed of the reparameterisation noise.
        **kwargs: `keras.Model` keyword arguments (`name`, ...).

    Call arguments:
        inputs: Images [B, 28, 28, 1] in [0, 1].
        training: If True, decode a reparameterised sample of q(z|x);
            otherwise decode its mean.

    Returns:
        Reconstructions [B, 28, 28, 1] in [0, 1].

    Raises:
        ValueError: If `latent_dim` is not a positive int or `seed` is not
            None or an int >= 0.

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
        Jalal et al., "The Robust Manifold Defense", 2019.
    """

    def __init__(self, latent_dim=20, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = _validate.check_int(latent_dim, name="latent_dim", minimum=1)
        self.seed = _random.check_seed(seed, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)

        x = keras.Input(shape=(28, 28, 1), name="x")
        h = keras.layers.Flatten(name="flatten")(x)
        h = keras.layers.Dense(500, name="fc1", **_init.torch_default(784))(h)
        h = keras.layers.LeakyReLU(0.1, name="act1")(h)
        mu = keras.layers.Dense(
            self.latent_dim, name="mu", **_init.torch_default(500)
        )(h)
        log_var = keras.layers.Dense(
            self.latent_dim, name="log_var", **_init.torch_default(500)
        )(h)
        self.encoder = keras.Model(x, [mu, log_var], name="encoder")

        z = keras.Input(shape=(self.latent_dim,), name="z")
        h = keras.layers.Dense(
            500, name="fc3", **_init.torch_default(self.latent_dim)
        )(z)
        h = keras.layers.LeakyReLU(0.1, name="act3")(h)
        h = keras.layers.Dense(500, name="fc4", **_init.torch_default(500))(h)
        h = keras.layers.LeakyReLU(0.1, name="act4")(h)
        h = keras.layers.Dense(
            784, activation="sigmoid", name="fc5", **_init.torch_default(500)
        )(h)
        out = keras.layers.Reshape((28, 28, 1), name="image")(h)
        self.decoder = keras.Model(z, out, name="decoder")
        # Both halves are functional models with their weights already
        # created, so the VAE is usable (and savable) before any call.
        self.built = True

    def encode(self, x):
        """Returns `(mu, log_var)` of q(z|x), each [B, latent_dim]."""
        return self.encoder(x)

    def decode(self, z):
        """Maps latents [B, latent_dim] to images [B, 28, 28, 1]."""
        return self.decoder(z)

    def reparameterize(self, mu, log_var):
        """Draws z = mu + exp(log_var / 2) * eps with eps ~ N(0, I)."""
        eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return mu + ops.exp(0.5 * log_var) * eps

    def call(self, inputs, training=False):
        mu, log_var = self.encoder(inputs)
        z = self.reparameterize(mu, log_var) if training else mu
        return self.decoder(z)

    def negative_elbo(self, x):
        """Per-example negative ELBO [B] (one reparameterised sample)."""
        mu, log_var = self.encoder(x)
        x_rec = self.decoder(self.reparameterize(mu, log_var))
        bce = ops.sum(
            ops.binary_crossentropy(x, x_rec, from_logits=False),
            axis=(1, 2, 3),
        )
        kl = -0.5 * ops.sum(
            1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=-1
        )
        return bce + kl

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        return ops.mean(self.negative_elbo(x))

    def get_config(self):
        config = super().get_config()
        config.update({"latent_dim": self.latent_dim, "seed": self.seed})
        return config


def mnist_vae(latent_dim=20, seed=None):
    """Builds the adv-mnist VAE; its `decoder` is the defense's generator.

    Args:
        latent_dim: Size of z (20 in the original).
        seed: Optional int seed for the reparameterisation noise.

    Returns:
        A `VAE` model with `encoder` (images -> (mu, log_var)) and `decoder`
        (z [B, latent_dim] -> images [B, 28, 28, 1] in [0, 1]) attributes.

    Raises:
        ValueError: If `latent_dim` is not a positive int.
    """
    return VAE(latent_dim=latent_dim, seed=seed, name="mnist_vae")
