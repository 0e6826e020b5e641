"""Tests of tfrobust.models: shapes, exact parameter counts, init, save/load.

Expected parameter counts are derived here from each architecture's layer
list (conv: k*k*c_in*c_out (+ c_out bias); dense: n_in*n_out (+ n_out);
BatchNorm: gamma/beta trainable, moving mean/variance not), independently of
Keras' own counting.
"""

import math

import keras
import numpy as np
import pytest

from tfrobust import models
from tfrobust.layers import ScaledSoftplus


# --- parameter-count formulas ------------------------------------------------

def conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def bn(c, scale=True):
    """(trainable, non-trainable) parameters of a BatchNorm over c channels."""
    return (2 * c if scale else c), 2 * c


def add(*counts):
    """Sums (trainable, non-trainable) pairs; ints count as trainable."""
    t = nt = 0
    for c in counts:
        if isinstance(c, tuple):
            t, nt = t + c[0], nt + c[1]
        else:
            t += c
    return t, nt


def expected_mlp(shape, k, hidden=1024):
    return add(math.prod(shape) * hidden, hidden * k)


def expected_cw(shape, k):
    h, w, c = shape
    return add(
        conv(3, c, 32), conv(3, 32, 32), conv(3, 32, 64), conv(3, 64, 64),
        dense((h // 4) * (w // 4) * 64, 200), dense(200, 200), dense(200, k),
    )


def expected_vgg(shape, k, variant):
    h, w, c = shape
    widths = {"v1": (64, 128, 256, 512, 512), "v2": (96, 192, 384, 512, 640)}
    parts = [bn(c)] if variant == "v2" else []
    c_in = c
    for width, n_convs in zip(widths[variant], (2, 2, 3, 3, 3)):
        for _ in range(n_convs):
            parts += [conv(3, c_in, width), bn(width)]
            c_in = width
    flat = (h // 32) * (w // 32) * c_in
    parts += [dense(flat, 512), bn(512), dense(512, k)]
    return add(*parts)


def expected_preact(shape, k, n):
    parts = [conv(3, shape[-1], 16, bias=False)]
    for c_in, c_out in ((16, 16), (16, 32), (32, 64)):
        for i in range(n):
            first_in = c_in if i == 0 else c_out
            parts += [
                bn(first_in), conv(3, first_in, c_out, bias=False),
                bn(c_out), conv(3, c_out, c_out, bias=False),
            ]
    parts += [bn(64), dense(64, k)]
    return add(*parts)


def expected_resnet(shape, k, n, width=1, bottleneck=False):
    expansion = 4 if bottleneck else 1
    c_in = 16 * width
    parts = [conv(3, shape[-1], c_in, bias=False), bn(c_in)]
    for planes, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            c_out = planes * expansion
            if bottleneck:
                parts += [
                    conv(1, c_in, planes, bias=False), bn(planes),
                    conv(3, planes, planes, bias=False), bn(planes),
                    conv(1, planes, c_out, bias=False), bn(c_out),
                ]
            else:
                parts += [
                    conv(3, c_in, planes, bias=False), bn(planes),
                    conv(3, planes, planes, bias=False), bn(planes),
                ]
            if s != 1 or c_in != c_out:
                parts += [conv(1, c_in, c_out, bias=False), bn(c_out)]
            c_in = c_out
    parts.append(dense(c_in, k))
    return add(*parts)


def expected_madry(shape, k):
    h, w, c = shape
    return add(
        conv(5, c, 32), conv(5, 32, 64),
        dense((h // 4) * (w // 4) * 64, 1024), dense(1024, k),
    )


def expected_defensegan(shape, k):
    h, w, c = shape
    flat = ((h - 5) // 2 + 1) * ((w - 5) // 2 + 1) * 64
    return add(
        conv(5, c, 64), conv(5, 64, 64), dense(flat, 128), dense(128, k)
    )


def expected_celeba(shape, k):
    h, w, c = shape
    quarter = lambda n: math.ceil(math.ceil(n / 2) / 2)  # noqa: E731
    flat = quarter(h) * quarter(w) * 64
    return add(
        conv(5, c, 64), conv(5, 64, 64),
        dense(flat, 384), dense(384, 192), dense(192, k),
    )


def count(model):
    t = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    nt = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return t, nt


# --- classifiers: output shape and exact counts ------------------------------

CLASSIFIER_CASES = [
    ("mlp_mnist", lambda: models.mlp1layer((28, 28, 1), 10),
     (28, 28, 1), 10, expected_mlp((28, 28, 1), 10)),
    ("mlp_small", lambda: models.mlp1layer(
        (24, 20, 3), 43, hidden_units=64, input_dropout=0.1,
        hidden_dropout=0.5),
     (24, 20, 3), 43, expected_mlp((24, 20, 3), 43, hidden=64)),
    ("cw_mnist", lambda: models.cw_mnist_cnn(),
     (28, 28, 1), 10, expected_cw((28, 28, 1), 10)),
    ("cw_rgb", lambda: models.cw_mnist_cnn((30, 26, 3), 4, dropout=0.0),
     (30, 26, 3), 4, expected_cw((30, 26, 3), 4)),
    ("vgg_v1", lambda: models.vgg16_cifar(),
     (32, 32, 3), 10, expected_vgg((32, 32, 3), 10, "v1")),
    ("vgg_v2", lambda: models.vgg16_cifar((64, 40, 1), 7, variant="v2"),
     (64, 40, 1), 7, expected_vgg((64, 40, 1), 7, "v2")),
    ("preact32_mnist", lambda: models.preact_resnet32((28, 28, 1), 10),
     (28, 28, 1), 10, expected_preact((28, 28, 1), 10, 5)),
    ("preact_cifar", lambda: models.preact_resnet32(
        (32, 32, 3), 43, n_units=2, dropout=0.3, activation="relu"),
     (32, 32, 3), 43, expected_preact((32, 32, 3), 43, 2)),
    ("resnet20", lambda: models.resnet_cifar(20),
     (32, 32, 3), 10, expected_resnet((32, 32, 3), 10, 3)),
    ("resnet8_wide", lambda: models.resnet_cifar(
        8, input_shape=(24, 24, 1), num_classes=5, width=2),
     (24, 24, 1), 5, expected_resnet((24, 24, 1), 5, 1, width=2)),
    ("resnet11_bottleneck", lambda: models.resnet_cifar(
        11, input_shape=(16, 16, 3), num_classes=3, block="bottleneck"),
     (16, 16, 3), 3, expected_resnet((16, 16, 3), 3, 1, bottleneck=True)),
    ("madry", lambda: models.madry_mnist_cnn(),
     (28, 28, 1), 10, expected_madry((28, 28, 1), 10)),
    ("madry_odd", lambda: models.madry_mnist_cnn((31, 17, 2), 3),
     (31, 17, 2), 3, expected_madry((31, 17, 2), 3)),
    ("defensegan", lambda: models.defensegan_mnist_classifier(),
     (28, 28, 1), 10, expected_defensegan((28, 28, 1), 10)),
    ("defensegan_odd", lambda: models.defensegan_mnist_classifier(
        (33, 20, 3), 6),
     (33, 20, 3), 6, expected_defensegan((33, 20, 3), 6)),
    ("celeba", lambda: models.celeba_classifier(),
     (64, 64, 3), 2, expected_celeba((64, 64, 3), 2)),
    ("celeba_odd", lambda: models.celeba_classifier((45, 37, 1), 5),
     (45, 37, 1), 5, expected_celeba((45, 37, 1), 5)),
]


@pytest.mark.parametrize(
    "build, shape, k, expected",
    [case[1:] for case in CLASSIFIER_CASES],
    ids=[case[0] for case in CLASSIFIER_CASES],
)
def test_classifier_shape_and_parameter_count(build, shape, k, expected):
    model = build()
    x = np.random.default_rng(0).uniform(size=(3,) + shape).astype(np.float32)
    logits = model(x, training=False)
    assert tuple(logits.shape) == (3, k)
    assert np.all(np.isfinite(logits.numpy()))
    assert count(model) == expected


def test_known_totals():
    # Published sizes: ResNet-20 has 0.27M parameters (He et al., Table 6).
    assert round(sum(expected_resnet((32, 32, 3), 10, 3)) / 1e6, 2) == 0.27
    # The DefenseGAN classifier's FC layer reads 9216 = 12 * 12 * 64 inputs.
    model = models.defensegan_mnist_classifier()
    assert model.get_layer("fc1").kernel.shape == (9216, 128)


def test_get_model_matches_builders():
    model = models.get_model("resnet_cifar", (32, 32, 3), 10, depth=8)
    assert count(model) == expected_resnet((32, 32, 3), 10, 1)
    model = models.get_model("preact_resnet32", (28, 28, 1), 10, n_units=1)
    assert count(model) == expected_preact((28, 28, 1), 10, 1)
    assert "mlp1layer" in models.MODELS and "preact_resnet32" in models.MODELS


def test_get_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"mlp1layer.*Received: name='nope'"):
        models.get_model("nope", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="dcgan_celeba_generator"):
        models.get_generator("nope")


@pytest.mark.parametrize("variant, rates", [
    # geifmany VGG: 0.3 then 0.4 after every non-final conv of a block, 0.5
    # after the last pool and in the head.
    ("v1", [0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.5]),
    # RBF_CNN-v2: 0.35 everywhere, including after the last pool; no head
    # dropout.
    ("v2", [0.35] * 9),
])
def test_vgg_dropout_layout(variant, rates):
    model = models.vgg16_cifar((32, 32, 3), 10, variant=variant)
    dropouts = [l for l in model.layers
                if isinstance(l, keras.layers.Dropout)]
    assert [l.rate for l in dropouts] == rates
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 13
    assert all(l.kernel_regularizer is not None for l in convs)
    assert model.get_layer("logits").kernel_regularizer is None


# --- mlp1layer ---------------------------------------------------------------

def test_mlp_structure_and_init_statistics():
    model = models.mlp1layer((28, 28, 1), 10)
    u = model.get_layer("hidden").kernel.numpy().astype(np.float64)
    w = model.get_layer("logits").kernel.numpy().astype(np.float64)
    assert u.shape == (784, 1024) and w.shape == (1024, 10)
    assert not model.get_layer("hidden").use_bias
    assert not model.get_layer("logits").use_bias
    assert any(isinstance(l, ScaledSoftplus) for l in model.layers)
    for kernel, fan in ((u, 784 * 1024), (w, 10 * 1024)):
        target = math.sqrt(1.0 / fan)
        n = kernel.size
        # Sample std has relative standard error 1/sqrt(2n): allow 6 of them.
        assert abs(kernel.std() / target - 1) < 6 / math.sqrt(2 * n)
        assert abs(kernel.mean()) < 6 * target / math.sqrt(n)
        # Gaussian, not uniform: excess kurtosis ~ 0 (uniform gives -1.2).
        z = (kernel - kernel.mean()) / kernel.std()
        assert abs((z ** 4).mean() - 3.0) < 6 * math.sqrt(24.0 / n)


def test_mlp_is_bias_free_network_formula():
    model = models.mlp1layer((4, 4, 1), 3, hidden_units=8, alpha=5.0)
    x = np.random.default_rng(1).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    u = model.get_layer("hidden").kernel.numpy().astype(np.float64)
    w = model.get_layer("logits").kernel.numpy().astype(np.float64)
    h = x.reshape(2, -1).astype(np.float64) @ u
    expected = (np.logaddexp(0, 5.0 * h) / 5.0) @ w
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5,
                               atol=1e-7)


def test_mlp_dropout_only_in_training():
    model = models.mlp1layer((6, 6, 1), 4, hidden_units=32, input_dropout=0.1,
                             hidden_dropout=0.5)
    x = np.ones((2, 6, 6, 1), np.float32)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x).numpy())


# --- ResNets -----------------------------------------------------------------

def test_preact_resnet_init_and_mnist_channels():
    model = models.preact_resnet32((28, 28, 1), 10, n_units=2, dropout=0.2)
    names = [layer.name for layer in model.layers]
    # Dropout sits between the two convolutions, after the activation.
    assert (names.index("unit2_1_act2") < names.index("unit2_1_dropout")
            < names.index("unit2_1_conv2"))
    assert model.get_layer("init_conv").kernel.shape == (3, 3, 1, 16)
    kernel = model.get_layer("unit3_1_conv1").kernel.numpy()
    target = math.sqrt(2.0 / (9 * 64))
    assert abs(kernel.std() / target - 1) < 6 / math.sqrt(2 * kernel.size)
    bn_layer = model.get_layer("unit1_0_bn1")
    assert bn_layer.momentum == 0.9 and bn_layer.epsilon == 1e-3
    # Stage 3 sees 7x7 maps; the shortcut pads 32 -> 64 channels.
    assert tuple(model.get_layer("unit3_0_pad").output.shape) == (
        None, 7, 7, 64)
    assert isinstance(model.get_layer("final_act"), ScaledSoftplus)


def test_resnet_projection_only_where_shape_changes():
    model = models.resnet_cifar(20)
    names = {layer.name for layer in model.layers}
    assert {"stage2_block0_proj", "stage3_block0_proj"} <= names
    assert not any(n.startswith("stage1") and "proj" in n for n in names)
    assert not any(n.endswith("block1_proj") for n in names)


# --- generators --------------------------------------------------------------

GENERATOR_CASES = [
    ("wgan128", lambda: models.wgan_gp_mnist_generator(), 128, (28, 28, 1),
     add(dense(128, 8192), 25 * 512 * 256 + 256, 25 * 256 * 128 + 128,
         64 * 128 + 1)),
    ("wgan32", lambda: models.wgan_gp_mnist_generator(32), 32, (28, 28, 1),
     add(dense(32, 8192), 25 * 512 * 256 + 256, 25 * 256 * 128 + 128,
         64 * 128 + 1)),
    ("dcgan100", lambda: models.dcgan_celeba_generator(), 100, (64, 64, 3),
     add(dense(100, 16384), bn(1024, scale=False),
         25 * 1024 * 512, bn(512, scale=False),
         25 * 512 * 256, bn(256, scale=False),
         25 * 256 * 128, bn(128, scale=False), 25 * 128 * 3 + 3)),
    ("dcgan16", lambda: models.dcgan_celeba_generator(16), 16, (64, 64, 3),
     add(dense(16, 16384), bn(1024, scale=False),
         25 * 1024 * 512, bn(512, scale=False),
         25 * 512 * 256, bn(256, scale=False),
         25 * 256 * 128, bn(128, scale=False), 25 * 128 * 3 + 3)),
    ("vae20", lambda: models.mnist_vae().decoder, 20, (28, 28, 1),
     add(dense(20, 500), dense(500, 500), dense(500, 784))),
    ("vae8", lambda: models.mnist_vae(8).decoder, 8, (28, 28, 1),
     add(dense(8, 500), dense(500, 500), dense(500, 784))),
]


@pytest.mark.parametrize(
    "build, latent_dim, shape, expected",
    [case[1:] for case in GENERATOR_CASES],
    ids=[case[0] for case in GENERATOR_CASES],
)
def test_generator_range_shape_and_count(build, latent_dim, shape, expected):
    generator = build()
    rng = np.random.default_rng(0)
    # Include huge latents, which saturate the output non-linearity.
    z = np.concatenate([
        rng.normal(size=(3, latent_dim)),
        [np.full(latent_dim, 1e4), np.full(latent_dim, -1e4)],
    ]).astype(np.float32)
    x = generator(z, training=False).numpy()
    assert x.shape == (5,) + shape
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0
    assert count(generator) == expected


def test_get_generator():
    generator = models.get_generator("wgan_gp_mnist_generator", latent_dim=16)
    assert tuple(generator.output.shape) == (None, 28, 28, 1)


def test_wgan_critic():
    critic = models.wgan_gp_mnist_critic()
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1))
    assert tuple(critic(x.astype(np.float32)).shape) == (2, 1)
    assert count(critic) == add(
        conv(5, 1, 128), conv(5, 128, 256), conv(5, 256, 512),
        dense(4 * 4 * 512, 1),
    )


def test_vae_encoder_and_loss():
    vae = models.mnist_vae(seed=3)
    assert count(vae.encoder) == add(
        dense(784, 500), dense(500, 20), dense(500, 20))
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1))
    x = x.astype(np.float32)
    mu, log_var = vae.encode(x)
    assert mu.shape == (8, 20) and log_var.shape == (8, 20)
    # Inference decodes the posterior mean: deterministic.
    np.testing.assert_array_equal(vae(x).numpy(), vae.decode(mu).numpy())
    loss = vae.negative_elbo(x).numpy()
    # The summed Bernoulli cross-entropy alone exceeds 784 * min-entropy > 0.
    assert loss.shape == (8,) and np.all(np.isfinite(loss)) and np.all(
        loss > 0)
    # Eager mode keeps the test fast; it still runs Keras' train_step, which
    # must pick up the negative-ELBO `compute_loss`.
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    history = vae.fit(x, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- save / load -------------------------------------------------------------

SAVE_CASES = [
    ("mlp", lambda: models.mlp1layer((28, 28, 1), 10, hidden_units=64,
                                     input_dropout=0.1, hidden_dropout=0.5),
     (28, 28, 1)),
    ("cw", lambda: models.cw_mnist_cnn(), (28, 28, 1)),
    ("preact", lambda: models.preact_resnet32((28, 28, 1), 10, n_units=2,
                                              dropout=0.2), (28, 28, 1)),
    ("celeba", lambda: models.celeba_classifier((16, 16, 3), 2), (16, 16, 3)),
    ("vae", lambda: models.mnist_vae(latent_dim=4), (28, 28, 1)),
]


@pytest.mark.parametrize(
    "build, shape", [case[1:] for case in SAVE_CASES],
    ids=[case[0] for case in SAVE_CASES],
)
def test_keras_save_load_round_trip(build, shape, tmp_path):
    model = build()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.uniform(size=(batch,) + shape).astype(np.float32)
        np.testing.assert_array_equal(
            restored(x, training=False).numpy(),
            model(x, training=False).numpy(),
        )


def test_preact_resnet_restored_uses_registered_activation(tmp_path):
    model = models.preact_resnet32((28, 28, 1), 10, n_units=1, alpha=7.0)
    path = str(tmp_path / "preact.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    layer = restored.get_layer("final_act")
    assert isinstance(layer, ScaledSoftplus) and layer.alpha == 7.0


# --- bad arguments -----------------------------------------------------------

BAD_CASES = [
    (models.mlp1layer, ((28, 28, 1), 0), {}, "num_classes"),
    (models.mlp1layer, ((28, 28, 1), 2.5), {}, "num_classes"),
    (models.mlp1layer, ((28, 28, 1), True), {}, "num_classes"),
    (models.mlp1layer, ((784,), 10), {}, "input_shape"),
    (models.mlp1layer, ((28, 0, 1), 10), {}, "input_shape"),
    (models.mlp1layer, ((28, -28, 1), 10), {}, "input_shape"),
    (models.mlp1layer, (None, 10), {}, "input_shape"),
    (models.mlp1layer, ((28.0, 28, 1), 10), {}, "input_shape"),
    (models.mlp1layer, ((28, 28, 1), 10), {"hidden_units": 0},
     "hidden_units"),
    (models.mlp1layer, ((28, 28, 1), 10), {"alpha": 0.0}, "alpha"),
    (models.mlp1layer, ((28, 28, 1), 10), {"alpha": float("nan")}, "alpha"),
    (models.mlp1layer, ((28, 28, 1), 10), {"input_dropout": 1.0},
     "input_dropout"),
    (models.mlp1layer, ((28, 28, 1), 10), {"hidden_dropout": -0.1},
     "hidden_dropout"),
    (models.cw_mnist_cnn, ((3, 3, 1), 10), {}, "input_shape"),
    (models.cw_mnist_cnn, ((28, 28, 1), 10), {"dropout": 1.5}, "dropout"),
    (models.vgg16_cifar, ((16, 16, 3), 10), {}, "input_shape"),
    (models.vgg16_cifar, ((32, 32, 3), 10), {"variant": "v3"}, "variant"),
    (models.vgg16_cifar, ((32, 32, 3), 10), {"weight_decay": -1e-4},
     "weight_decay"),
    (models.preact_resnet32, ((28, 28, 1), 10), {"n_units": 0}, "n_units"),
    (models.preact_resnet32, ((28, 28, 1), 10), {"alpha": -1.0}, "alpha"),
    (models.preact_resnet32, ((28, 28, 1), 10), {"dropout": 1.0}, "dropout"),
    (models.preact_resnet32, ((28, 28, 1), 10), {"activation": "tanh"},
     "activation"),
    (models.preact_resnet32, ((2, 2, 1), 10), {}, "input_shape"),
    (models.resnet_cifar, (21,), {}, "depth"),
    (models.resnet_cifar, (2,), {}, "depth"),
    (models.resnet_cifar, (32,), {"block": "bottleneck"}, "depth"),
    (models.resnet_cifar, (20,), {"block": "wide"}, "block"),
    (models.resnet_cifar, (20,), {"width": 0}, "width"),
    (models.resnet_cifar, (20,), {"num_classes": -3}, "num_classes"),
    (models.madry_mnist_cnn, ((28, 28), 10), {}, "input_shape"),
    (models.defensegan_mnist_classifier, ((4, 28, 1), 10), {},
     "input_shape"),
    (models.celeba_classifier, ((64, 64, 3), 0), {}, "num_classes"),
    (models.wgan_gp_mnist_generator, (0,), {}, "latent_dim"),
    (models.wgan_gp_mnist_critic, ((4, 4, 1),), {}, "input_shape"),
    (models.dcgan_celeba_generator, (-5,), {}, "latent_dim"),
    (models.mnist_vae, (0,), {}, "latent_dim"),
    (models.mnist_vae, (20,), {"seed": -1}, "seed"),
]


@pytest.mark.parametrize("fn, args, kwargs, match", BAD_CASES)
def test_bad_arguments_raise(fn, args, kwargs, match):
    with pytest.raises(ValueError, match=rf"Expected `{match}`.*Received"):
        fn(*args, **kwargs)


@pytest.mark.parametrize("name", [["mlp1layer"], None, 3])
def test_get_model_name_of_the_wrong_type_is_a_value_error(name):
    with pytest.raises(ValueError, match=r"Expected `name` to be one of .*mlp1layer"):
        models.get_model(name, (28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"Expected `name` to be one of .*mnist_vae_decoder"):
        models.get_generator(name)
