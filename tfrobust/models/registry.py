"""Look-up of the architectures by name, for configs and command-line apps."""

from tfrobust import _validate
from tfrobust.models import celeba
from tfrobust.models import cnn
from tfrobust.models import manifold
from tfrobust.models import mlp
from tfrobust.models import resnet


def _resnet(depth):
    def build(input_shape, num_classes, **kwargs):
        return resnet.resnet_cifar(
            depth, input_shape=input_shape, num_classes=num_classes, **kwargs
        )

    build.__doc__ = f"ResNet-{depth} of He et al. (see `resnet_cifar`)."
    return build


def _resnet_any_depth(input_shape, num_classes, depth=20, **kwargs):
    """He et al.'s CIFAR ResNet of any depth (see `resnet_cifar`)."""
    return resnet.resnet_cifar(
        depth, input_shape=input_shape, num_classes=num_classes, **kwargs
    )


def _vgg(variant):
    def build(input_shape, num_classes, **kwargs):
        return cnn.vgg16_cifar(input_shape, num_classes, variant, **kwargs)

    build.__doc__ = f"VGG-16 {variant} of RBF-CNN (see `vgg16_cifar`)."
    return build


def _vae_decoder(**kwargs):
    """The decoder of a fresh `mnist_vae` (see `manifold.VAE`)."""
    return manifold.mnist_vae(**kwargs).decoder


# Classifiers: builder(input_shape, num_classes, **kwargs) -> logits model.
_CLASSIFIERS = {
    "mlp1layer": mlp.mlp1layer,
    "cw_mnist_cnn": cnn.cw_mnist_cnn,
    "vgg16_cifar": cnn.vgg16_cifar,
    "vgg16_cifar_v1": _vgg("v1"),
    "vgg16_cifar_v2": _vgg("v2"),
    "preact_resnet32": resnet.preact_resnet32,
    "resnet_cifar": _resnet_any_depth,
    "resnet20": _resnet(20),
    "resnet32": _resnet(32),
    "resnet44": _resnet(44),
    "resnet56": _resnet(56),
    "madry_mnist_cnn": manifold.madry_mnist_cnn,
    "defensegan_mnist_classifier": manifold.defensegan_mnist_classifier,
    "celeba_classifier": celeba.celeba_classifier,
}

# Generators: builder(latent_dim=..., **kwargs) -> model from z to images.
_GENERATORS = {
    "wgan_gp_mnist_generator": manifold.wgan_gp_mnist_generator,
    "dcgan_celeba_generator": celeba.dcgan_celeba_generator,
    "mnist_vae_decoder": _vae_decoder,
}

MODELS = tuple(sorted(_CLASSIFIERS))
GENERATORS = tuple(sorted(_GENERATORS))


def get_model(name, input_shape, num_classes, **kwargs):
    """Builds a classifier (a model returning logits) by name.

    Args:
        name: One of `MODELS`.
        input_shape: Image shape `(height, width, channels)`.
        num_classes: Number of classes.
        **kwargs: Further arguments of the builder (e.g. `alpha`, `width`).

    Returns:
        A `keras.Model` mapping images to logits [B, num_classes].

    Raises:
        ValueError: If `name` is unknown or an argument is invalid.
    """
    _validate.check_choice(name, name="name", choices=MODELS)
    return _CLASSIFIERS[name](input_shape, num_classes, **kwargs)


def get_generator(name, **kwargs):
    """Builds a generator (latent vectors -> images in [0, 1]) by name.

    Args:
        name: One of `GENERATORS`.
        **kwargs: Further arguments of the builder (e.g. `latent_dim`).

    Returns:
        A `keras.Model` mapping z [B, latent_dim] to images.

    Raises:
        ValueError: If `name` is unknown or an argument is invalid.
    """
    _validate.check_choice(name, name="name", choices=GENERATORS)
    return _GENERATORS[name](**kwargs)
