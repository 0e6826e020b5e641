"""ResNets of Cross-Lipschitz (pre-activation) and SIAM (He et al.)."""

import keras

from tfrobust import _validate
from tfrobust.layers.activations import ScaledSoftplus
from tfrobust.layers.padding import ChannelZeroPad
from tfrobust.models import _checks
from tfrobust.models import _init


def _activation_layer(activation, alpha, name):
    if activation == "softplus":
        return ScaledSoftplus(alpha, name=name)
    return keras.layers.Activation(activation, name=name)


def preact_resnet32(
    input_shape,
    num_classes,
    n_units=5,
    alpha=10.0,
    dropout=0.0,
    activation="softplus",
):
    """Builds the pre-activation ResNet of the Cross-Lipschitz experiments.

    Initial 3x3 conv with 16 filters, then three stages of `n_units`
    pre-activation units (BN -> act -> conv3x3 -> BN -> act -> [dropout] ->
    conv3x3) with widths 16, 32, 64 and stride 2 in the first unit of stages
    2 and 3; the first unit of stage 1 shares its BN-act with the shortcut.
    Shortcuts that change width average-pool and zero-pad channels (no
    parameters). Head: BN -> act -> global average pool -> Dense K (with
    bias). Convs have no bias and N(0, 2 / (9 * out_channels)) init; the
    output layer uses uniform unit scaling (LeCun uniform). BN: momentum 0.9,
    epsilon 1e-3. Depth is 6 * n_units + 2 (32 for the default).

    Unlike the original, which hard-codes 3 input channels, any channel count
    works (so MNIST can be used). The shortcut's average pool uses 'same'
    padding instead of 'valid': identical for even sizes, and for odd sizes
    it keeps the shortcut the same size as the strided conv branch.

    Args:
        input_shape: Image shape; height and width must be >= 4.
        num_classes: Number of classes K.
        n_units: Residual units per stage (5 -> ResNet-32).
        alpha: Sharpness of the softplus activation.
        dropout: Dropout rate between the two convolutions of each unit
            (`1 - keep_hidden` with the paper's dropout regulariser).
        activation: `"softplus"` (softplus(alpha x)/alpha, the paper's
            choice), `"relu"` or `"sigmoid"`, the original's alternatives.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017; He et al.,
        "Identity Mappings in Deep Residual Networks", ECCV 2016.
    """
    input_shape = _checks.check_input_shape(input_shape, min_spatial=4)
    num_classes = _checks.check_num_classes(num_classes)
    n_units = _validate.check_int(n_units, name="n_units", minimum=1)
    alpha = _validate.check_float(alpha, name="alpha", minimum=0.0, exclusive_minimum=True)
    dropout = _checks.check_rate(dropout, name="dropout")
    _validate.check_choice(
        activation, name="activation", choices=("softplus", "relu", "sigmoid")
    )

    def conv(filters, stride, name):
        return keras.layers.Conv2D(
            filters,
            3,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer=_init.he_normal_fan_out(),
            name=name,
        )

    def bn(name):
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-3, name=name
        )

    def unit(x, in_filters, out_filters, stride, activate_before, name):
        pre = bn(f"{name}_bn1")(x)
        pre = _activation_layer(activation, alpha, f"{name}_act1")(pre)
        shortcut = pre if activate_before else x
        h = conv(out_filters, stride, f"{name}_conv1")(pre)
        h = bn(f"{name}_bn2")(h)
        h = _activation_layer(activation, alpha, f"{name}_act2")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, name=f"{name}_dropout")(h)
        h = conv(out_filters, 1, f"{name}_conv2")(h)
        if in_filters != out_filters:
            shortcut = keras.layers.AveragePooling2D(
                stride, strides=stride, padding="same", name=f"{name}_pool"
            )(shortcut)
            # As in the original, (out - in) // 2 zeros on each side.
            pad = (out_filters - in_filters) // 2
            shortcut = ChannelZeroPad(pad, pad, name=f"{name}_pad")(shortcut)
        return keras.layers.Add(name=f"{name}_add")([h, shortcut])

    inputs = keras.Input(shape=input_shape, name="x")
    h = conv(16, 1, "init_conv")(inputs)
    filters = (16, 16, 32, 64)
    strides = (1, 2, 2)
    for stage in range(3):
        in_f, out_f = filters[stage], filters[stage + 1]
        for i in range(n_units):
            h = unit(
                h,
                in_f if i == 0 else out_f,
                out_f,
                strides[stage] if i == 0 else 1,
                activate_before=(stage == 0 and i == 0),
                name=f"unit{stage + 1}_{i}",
            )
    h = bn("final_bn")(h)
    h = _activation_layer(activation, alpha, "final_act")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.LecunUniform(),
        name="logits",
    )(h)
    return keras.Model(inputs, logits, name=f"preact_resnet{6 * n_units + 2}")


NOISE_TYPES = ("pni", "cpni", None)


def noisy_layer_factories(noise=None, *, weight_noise=True, act_noise_a=False,
                          act_noise_b=False, noise_rank=5, noise_seed=None, cpni_options=None):
    """`(conv, dense)` builders of plain, PNI or CPNI layers (SIAM's `--pni`/`--cpni`).

    `conv(filters, kernel, stride, name, **kwargs)` and `dense(units, name,
    **kwargs)`; with `noise=None` they build `keras.layers.Conv2D` /
    `Dense`. With "pni" every conv is a `PNIConv2D`, with "cpni" a
    `CPNIConv2D` (rank `noise_rank`); the Dense layer is a `PNIDense` in
    both, as the original's final `NoisedLinear`. Each noisy layer gets its
    own seed `noise_seed + i` (or None). `cpni_options`: further
    `CPNIConv2D` arguments (e.g. `{"f_init": 0.01, "f_units": "absolute"}`
    for the original's low-rank noise).

    Every layer follows `weight_noise`: the original builds the first conv
    without the flag, whose default is True, so it always has weight noise
    (a bug, fixed here).

    Raises:
        ValueError: on an unknown `noise` or a bad flag.
    """
    from tfrobust.layers import noise as noise_layers

    _validate.check_choice(noise, name="noise", choices=NOISE_TYPES)
    noise_seed = _validate.check_int(noise_seed, name="noise_seed", minimum=0,
                                     allow_none=True)
    flags = dict(weight_noise=weight_noise, act_noise_a=act_noise_a,
                 act_noise_b=act_noise_b)
    counter = [0]

    def seed():
        counter[0] += 1
        return None if noise_seed is None else noise_seed + counter[0] - 1

    def conv(filters, kernel, stride, name, **kwargs):
        kwargs.update(strides=stride, name=name)
        if noise is None:
            return keras.layers.Conv2D(filters, kernel, **kwargs)
        if noise == "pni":
            return noise_layers.PNIConv2D(filters, kernel, **flags, seed=seed(), **kwargs)
        return noise_layers.CPNIConv2D(filters, kernel, **flags, noise_rank=noise_rank,
                                       seed=seed(), **dict(cpni_options or {}), **kwargs)

    def dense(units, name, **kwargs):
        if noise is None:
            return keras.layers.Dense(units, name=name, **kwargs)
        return noise_layers.PNIDense(units, **flags, seed=seed(), name=name, **kwargs)

    return conv, dense


def resnet_cifar(
    depth=20, input_shape=(32, 32, 3), num_classes=10, width=1, block=None,
    noise=None, weight_noise=True, act_noise_a=False, act_noise_b=False,
    noise_rank=5, noise_seed=None, cpni_options=None,
):
    """Builds He et al.'s CIFAR ResNet as used by Smoothed Inference (SIAM).

    conv3x3 (16w) -> BN -> ReLU, three stages of blocks with widths 16w, 32w,
    64w (stride 2 at the start of stages 2 and 3), global average pool (the
    original's AvgPool 8 on 32x32 inputs) and Dense K. Shortcuts are a 1x1
    conv + BN projection whenever the shape changes, identity otherwise.
    Convs have no bias and the He et al. init N(0, 2 / (k*k*out)); BN has
    gamma 1, beta 0, PyTorch's momentum 0.1 (Keras momentum 0.9) and
    epsilon 1e-5; the Dense layer uses PyTorch's default init.

    Basic blocks (two 3x3 convs) give depth 6n + 2 (20, 32, 44, 56, 110);
    bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion) give depth 9n + 2
    (164). The original hard-codes the first BN to 16 channels, so any
    `width != 1` crashes; here the stem is 16 * width throughout, making the
    width multiplier work.

    Args:
        depth: Network depth (see above).
        input_shape: Image shape; height and width must be >= 4.
        num_classes: Number of classes K.
        width: Positive int width multiplier.
        block: `"basic"`, `"bottleneck"`, or None for basic blocks when
            depth < 164 and bottleneck blocks from 164 on (as the original).
        noise: None (plain layers), `"pni"` or `"cpni"`: every conv (and
            the Dense layer) is a noise-injection layer of
            `tfrobust.layers.noise` (see `noisy_layer_factories`; the
            original's `--pni` / `--cpni`).
        weight_noise: noise on the kernels (`--weight-noise`), every layer
            included (the original's first conv ignores the flag).
        act_noise_a: noise on each noisy layer's input (`--act-noise-a`).
        act_noise_b: noise on each noisy layer's output (`--act-noise-b`).
        noise_rank: rank of CPNI's correlated noise (`--noise-rank`, 5).
        cpni_options: further `CPNIConv2D` arguments (see
            `noisy_layer_factories`).
        noise_seed: base seed of the noisy layers' generators, or None.

    Returns:
        A `keras.Model` mapping images to logits of shape [B, K].

    Raises:
        ValueError: If an argument is out of range or `depth` does not fit
            the block type.

    References:
        He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
        CVPR 2016; Nemcovsky et al., "Smoothed Inference for Improving
        Adversarial Robustness", 2019.
    """
    depth = _validate.check_int(depth, name="depth", minimum=8)
    input_shape = _checks.check_input_shape(input_shape, min_spatial=4)
    num_classes = _checks.check_num_classes(num_classes)
    width = _validate.check_int(width, name="width", minimum=1)
    _validate.check_choice(
        block, name="block", choices=("basic", "bottleneck", None)
    )
    if block is None:
        block = "bottleneck" if depth >= 164 else "basic"
    layers_per_block = 2 if block == "basic" else 3
    if (depth - 2) % (3 * layers_per_block) != 0:
        raise ValueError(
            f"Expected `depth` to be {3 * layers_per_block}n + 2 for "
            f"{block} blocks (e.g. "
            f"{'20, 32, 44, 56, 110' if block == 'basic' else '164'}). "
            f"Received: depth={depth}"
        )
    n = (depth - 2) // (3 * layers_per_block)
    expansion = 1 if block == "basic" else 4

    make_conv, make_dense = noisy_layer_factories(
        noise, weight_noise=weight_noise, act_noise_a=act_noise_a,
        act_noise_b=act_noise_b, noise_rank=noise_rank, noise_seed=noise_seed,
        cpni_options=cpni_options)

    def conv(filters, kernel, stride, name):
        return make_conv(
            filters,
            kernel,
            stride,
            name,
            padding="same",
            use_bias=False,
            kernel_initializer=_init.he_normal_fan_out(),
        )

    def bn(name):
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, name=name
        )

    def relu(name):
        return keras.layers.ReLU(name=name)

    def residual_block(x, in_filters, planes, stride, name):
        out_filters = planes * expansion
        if block == "basic":
            h = conv(planes, 3, stride, f"{name}_conv1")(x)
            h = relu(f"{name}_relu1")(bn(f"{name}_bn1")(h))
            h = bn(f"{name}_bn2")(conv(planes, 3, 1, f"{name}_conv2")(h))
        else:
            h = conv(planes, 1, 1, f"{name}_conv1")(x)
            h = relu(f"{name}_relu1")(bn(f"{name}_bn1")(h))
            h = conv(planes, 3, stride, f"{name}_conv2")(h)
            h = relu(f"{name}_relu2")(bn(f"{name}_bn2")(h))
            h = bn(f"{name}_bn3")(conv(out_filters, 1, 1, f"{name}_conv3")(h))
        shortcut = x
        if stride != 1 or in_filters != out_filters:
            shortcut = conv(out_filters, 1, stride, f"{name}_proj")(x)
            shortcut = bn(f"{name}_proj_bn")(shortcut)
        h = keras.layers.Add(name=f"{name}_add")([h, shortcut])
        return relu(f"{name}_out")(h), out_filters

    inputs = keras.Input(shape=input_shape, name="x")
    filters = 16 * width
    h = conv(filters, 3, 1, "conv1")(inputs)
    h = relu("relu1")(bn("bn1")(h))
    for stage, (planes, stride) in enumerate(
        zip((16 * width, 32 * width, 64 * width), (1, 2, 2))
    ):
        for i in range(n):
            h, filters = residual_block(
                h,
                filters,
                planes,
                stride if i == 0 else 1,
                name=f"stage{stage + 1}_block{i}",
            )
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    logits = make_dense(
        num_classes, "logits", **_init.torch_default(filters)
    )(h)
    suffix = "" if noise is None else f"_{noise}"
    return keras.Model(inputs, logits, name=f"resnet{depth}_cifar{suffix}")
