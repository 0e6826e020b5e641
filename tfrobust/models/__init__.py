"""Architectures of the four papers; every classifier returns logits.

Builders: `mlp1layer`, `preact_resnet32` (Cross-Lipschitz); `cw_mnist_cnn`,
`vgg16_cifar` (RBF-CNN); `resnet_cifar` (Smoothed Inference);
`madry_mnist_cnn`, `defensegan_mnist_classifier`, `celeba_classifier` and the
generators `mnist_vae`, `wgan_gp_mnist_generator`, `wgan_gp_mnist_critic`,
`dcgan_celeba_generator` (Robust Manifold Defense). `get_model(name, ...)`
builds a classifier by name (`MODELS` lists them). `is_mlp1layer` /
`unpack_mlp1layer` recognise the one-hidden-layer network (the closed-form
Cross-Lipschitz penalty and the formal bound need exactly it). Custom layers
(`ScaledSoftplus`, `LocalResponseNormalization`, `ChannelZeroPad`) live in
`tfrobust.layers`.
"""

from tfrobust.models.celeba import celeba_classifier
from tfrobust.models.celeba import dcgan_celeba_generator
from tfrobust.models.cnn import cw_mnist_cnn
from tfrobust.models.cnn import vgg16_cifar
from tfrobust.models.manifold import VAE
from tfrobust.models.manifold import defensegan_mnist_classifier
from tfrobust.models.manifold import madry_mnist_cnn
from tfrobust.models.manifold import mnist_vae
from tfrobust.models.manifold import wgan_gp_mnist_critic
from tfrobust.models.manifold import wgan_gp_mnist_generator
from tfrobust.models.mlp import is_mlp1layer
from tfrobust.models.mlp import mlp1layer
from tfrobust.models.mlp import unpack_mlp1layer
from tfrobust.models.registry import GENERATORS
from tfrobust.models.registry import MODELS
from tfrobust.models.registry import get_generator
from tfrobust.models.registry import get_model
from tfrobust.models.resnet import preact_resnet32
from tfrobust.models.resnet import resnet_cifar
from tfrobust.models.wrappers import BPDA
from tfrobust.models.wrappers import EoT

__all__ = [
    "BPDA",
    "EoT",
    "GENERATORS",
    "MODELS",
    "VAE",
    "celeba_classifier",
    "cw_mnist_cnn",
    "dcgan_celeba_generator",
    "defensegan_mnist_classifier",
    "get_generator",
    "get_model",
    "is_mlp1layer",
    "madry_mnist_cnn",
    "mlp1layer",
    "mnist_vae",
    "preact_resnet32",
    "resnet_cifar",
    "unpack_mlp1layer",
    "vgg16_cifar",
    "wgan_gp_mnist_critic",
    "wgan_gp_mnist_generator",
]
