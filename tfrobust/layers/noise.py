"""Noise-injection layers of Smoothed Inference (SIAM): Gaussian input noise,
PNI and CPNI (Nemcovsky et al. 2019; He et al. 2019; Zheltonozhskii et al. 2020).

Example:

```python
import keras
from tfrobust.layers import GaussianInputNoise, PNIConv2D, PNIDense

model = keras.Sequential([
    keras.Input((32, 32, 3)),
    GaussianInputNoise(0.05, seed=0),            # on at inference too
    PNIConv2D(16, 3, padding="same", seed=1),    # W + alpha * std(W) * eps
    keras.layers.ReLU(),
    keras.layers.GlobalAveragePooling2D(),
    PNIDense(10, seed=2),
])
model.layers[0].set_sigma(0.1)                   # a run-time knob
```

Every noise here is on in training *and* inference, as in the original
code: the randomness is the defense (and what smoothing averages over), so
`training=False` never switches it off. Noise is drawn from the layer's
`keras.random.SeedGenerator` (its state is a variable: it survives `.keras`
saving and `model.export`, and `fit` reseeds it per epoch).

* `GaussianInputNoise(sigma)`: `x + sigma * N(0, I)`, independently per
  example; `sigma` is a non-trainable variable (change it with `set_sigma`,
  also on a loaded model, without retracing).
* `PNIConv2D` / `PNIDense` (parametric noise injection): each call uses the
  weight `W + alpha ⊙ std(W) ⊙ eps`, `eps ~ N(0, I)` drawn once per call (one
  weight sample for the whole batch), `alpha` learned element-wise (same
  shape as `W`, initial 0.25), `std(W)` the standard deviation of the whole
  tensor, treated as a constant. Optionally the layer input (`act_noise_a`)
  and/or output (`act_noise_b`) get `alpha_act ⊙ std(a) ⊙ eps` per example.
* `CPNIConv2D` (coloured, low-rank noise): the flattened weight of size P
  gets `std(W) (sqrt(|a_d|) ⊙ eps_d + F eps_f)` with `eps_d ~ N(0, I_P)`,
  `eps_f ~ N(0, I_r)`, learned `a_d` (initial 0.25² = 0.0625) and `F` (P x r,
  initial 0.01), rank r = 5; one weight sample per call. The same form, per
  example, applies to the activations with `act_noise_a` / `act_noise_b`.

Fixed with respect to the original `layers.py` / `resnet_*` files (see
`tfrobust.models.resnet_cifar(noise=...)`): the first convolution there
always carries weight noise (it is built without the flag, whose default is
True); here every layer follows `weight_noise`. The PNI train / predict
helpers of `resnet_pni.py` sit on the wrong class (so `--pni` training
crashes as shipped); here the noise lives in the layers, so any model built
from them trains with the one `fit`.
"""

import math

import keras
from keras import ops

from tfrobust import _validate

__all__ = ["CPNIConv2D", "GaussianInputNoise", "PNIConv2D", "PNIDense"]

#: Initial PNI scale (He et al.; the original's `alpha` init).
PNI_ALPHA = 0.25
#: CPNI defaults of the original `NoisedConv2DColored`.
CPNI_RANK = 5
CPNI_A_INIT = PNI_ALPHA ** 2
CPNI_F_INIT = 0.01


def _check_seed(seed):
    return _validate.check_int(seed, name="seed", minimum=0, maximum=2**32 - 1, allow_none=True)


def _std(tensor):
    # The noise scale follows the tensor's spread but is not a path for the
    # gradient: the original reads std(W) as a constant (`.item()` in PNI),
    # so the learned scale alone decides how strong the noise is.
    return ops.stop_gradient(ops.std(tensor))


@keras.saving.register_keras_serializable(package="tfrobust")
class GaussianInputNoise(keras.layers.Layer):
    """Adds `N(0, sigma^2)` noise to every input element, at inference too.

    Unlike `keras.layers.GaussianNoise` (training only), this is the input
    noise of a smoothed classifier (Cohen et al.; SIAM's `x + noise_sd *
    randn` in every forward pass): on whatever `training` says.

    Args:
        sigma: standard deviation (>= 0, in the units of the inputs; 0 is the
            identity). A non-trainable variable after `build`.
        seed: integer seed of the layer's `SeedGenerator`, or None.
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: float tensor `[B, ...]`.
        training: ignored (the noise is always on).

    Returns:
        `inputs + sigma * eps`, `eps ~ N(0, I)` drawn per element.

    Raises:
        ValueError: if `sigma` is negative or not finite, or `seed` is bad.

    References:
        Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
        Randomized Smoothing", ICML 2019. Nemcovsky et al., "Smoothed
        Inference for Improving Adversarial Robustness", 2019.
    """

    def __init__(self, sigma, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._sigma_init = _validate.check_float(sigma, name="sigma", minimum=0.0)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.sigma = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self._sigma_init),
            trainable=False, name="sigma")

    def set_sigma(self, sigma):
        """Sets the noise level (>= 0) without rebuilding or retracing.

        Raises:
            ValueError: if `sigma` is negative or not finite.
        """
        sigma = _validate.check_float(sigma, name="sigma", minimum=0.0)
        self._sigma_init = sigma
        if self.built:
            self.sigma.assign(sigma)

    def call(self, inputs, training=None):
        del training
        noise = keras.random.normal(ops.shape(inputs), dtype=inputs.dtype, seed=self.seed_generator)
        return inputs + ops.cast(self.sigma, inputs.dtype) * noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        sigma = float(ops.convert_to_numpy(self.sigma)) if self.built else self._sigma_init
        config.update(sigma=sigma, seed=self.seed)
        return config


def _diagonal_scale(std, a_d):
    # a_d is a variance in units of std(W)^2: its initial 0.25^2 makes the
    # diagonal part start at PNI's 0.25 * std(W). The original's
    # sqrt(|std(W) * a_d|) mixes units (for std(W) ~ 0.05 it starts at about
    # 1.1 std(W), noise as large as the weights, 4x PNI's); the variance
    # std(W)^2 * |a_d| is what the initial 0.25^2 means.
    return std * ops.sqrt(ops.abs(a_d))


# The low-rank factor F is in the same units (F eps_f is scaled by std(W)).
# The original adds F eps_f in absolute units with every entry of F at 0.01:
# all P weights of a kernel then move together by one N(0, r * 1e-4) draw
# (std 0.022 at r = 5, a third of a ResNet-20 kernel's std), a shift that
# multiplies the sum of the receptive field's inputs and swamps the signal:
# a CIFAR ResNet-20 with it stayed at chance (10% train accuracy after 3
# epochs on 2,048 images) where PNI and F in std(W) units reached 23%
# (benchmarks/noise_training.py; docs/results/smoothing.md).


class _NoiseInjection:
    """What PNI and CPNI layers share: flags, seeds, weights and sampling.

    Subclasses set `_kind` ("pni" or "cpni") and mix this class in front of
    a Keras layer whose `call` they write around `_noisy_kernel` /
    `_noisy_activation`.
    """

    _kind = "pni"

    def _init_noise(self, weight_noise, act_noise_a, act_noise_b, alpha_init, seed, noise_rank=None,
                    a_init=None, f_init=None, f_units="std"):
        self.weight_noise = _validate.check_bool(weight_noise, name="weight_noise")
        self.act_noise_a = _validate.check_bool(act_noise_a, name="act_noise_a")
        self.act_noise_b = _validate.check_bool(act_noise_b, name="act_noise_b")
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        if self._kind == "pni":
            self.alpha_init = _validate.check_float(alpha_init, name="alpha_init", minimum=0.0)
        else:
            self.noise_rank = _validate.check_int(noise_rank, name="noise_rank", minimum=1)
            self.a_init = _validate.check_float(a_init, name="a_init", minimum=0.0)
            self.f_init = _validate.check_float(f_init, name="f_init", minimum=0.0)
            self.f_units = _validate.check_choice(f_units, name="f_units", choices=("std", "absolute"))

    def _noise_config(self):
        config = dict(weight_noise=self.weight_noise, act_noise_a=self.act_noise_a,
                      act_noise_b=self.act_noise_b, seed=self.seed)
        if self._kind == "pni":
            config.update(alpha_init=self.alpha_init)
        else:
            config.update(noise_rank=self.noise_rank, a_init=self.a_init, f_init=self.f_init,
                          f_units=self.f_units)
        return config

    def get_config(self):
        return {**super().get_config(), **self._noise_config()}

    def _add_scale(self, shape, name):
        """The learned scale(s) of one noisy tensor of per-sample `shape`."""
        shape = tuple(int(d) for d in shape)
        if self._kind == "pni":
            return (self.add_weight(shape=shape, initializer=keras.initializers.Constant(self.alpha_init),
                                    trainable=True, name=f"{name}_noise_alpha"),)
        size = math.prod(shape)
        a_d = self.add_weight(shape=shape, initializer=keras.initializers.Constant(self.a_init),
                              trainable=True, name=f"{name}_noise_a_d")
        factor = self.add_weight(shape=(size, self.noise_rank), initializer=keras.initializers.Constant(self.f_init),
                                 trainable=True, name=f"{name}_noise_f")
        return (a_d, factor)

    def _build_noise(self, input_shape, kernel_shape, output_shape):
        # Only the variables' names are kept: a tuple of variables on an
        # attribute would be saved as a nested container by `.keras` saving.
        def names(flag, shape, kind):
            return tuple(v.path for v in self._add_scale(shape, kind)) if flag else None

        self._scale_paths = {"w": names(self.weight_noise, kernel_shape, "weight"),
                             "a": names(self.act_noise_a, input_shape[1:], "input"),
                             "b": names(self.act_noise_b, output_shape[1:], "output")}

    def _scale(self, kind):
        paths = self._scale_paths[kind]
        if paths is None:
            return None
        by_path = {v.path: v for v in self.trainable_weights + self.non_trainable_weights}
        return tuple(by_path[p] for p in paths)

    # Conv2D and Dense save only their kernel and bias (plus quantization
    # state); the noise scales are saved with every other variable, in order.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def _sample(self, tensor, scale, batch_shape):
        """Noise for `tensor` ([*batch_shape, *scale shape]) from its scale."""
        std = _std(tensor)
        shape = tuple(scale[0].shape)
        eps = keras.random.normal(batch_shape + shape, dtype=tensor.dtype, seed=self.seed_generator)
        if self._kind == "pni":
            return scale[0] * std * eps
        a_d, factor = scale
        eps_f = keras.random.normal(batch_shape + (self.noise_rank,), dtype=tensor.dtype, seed=self.seed_generator)
        low_rank = ops.reshape(ops.matmul(eps_f, ops.transpose(factor)), batch_shape + shape)
        return _diagonal_scale(std, a_d) * eps + self._low_rank_scale(std) * low_rank

    def _noisy_kernel(self, kernel):
        scale = self._scale("w")
        if scale is None:
            return kernel
        # One weight sample per call, shared by the whole batch (as the original).
        return kernel + self._sample(kernel, scale, ())

    def _noisy_activation(self, x, scale):
        if scale is None:
            return x
        batch = ops.shape(x)[0]
        if self._kind == "pni":
            # Per-example eps of x's full shape; alpha broadcasts over the batch.
            eps = keras.random.normal(ops.shape(x), dtype=x.dtype, seed=self.seed_generator)
            return x + scale[0] * _std(x) * eps
        a_d, factor = scale
        shape = tuple(a_d.shape)
        eps = keras.random.normal(ops.shape(x), dtype=x.dtype, seed=self.seed_generator)
        eps_f = keras.random.normal((batch, self.noise_rank), dtype=x.dtype, seed=self.seed_generator)
        low_rank = ops.reshape(ops.matmul(eps_f, ops.transpose(factor)), (-1,) + shape)
        std = _std(x)
        return x + _diagonal_scale(std, a_d) * eps + self._low_rank_scale(std) * low_rank

    def _low_rank_scale(self, std):
        return std if self.f_units == "std" else 1.0


def _check_channels_last(data_format):
    if data_format not in (None, "channels_last"):
        raise _validate.error("data_format", "'channels_last' (images are NHWC)", data_format)


class _NoisyConv2D(_NoiseInjection, keras.layers.Conv2D):
    """The `Conv2D` half shared by PNI and CPNI: noisy kernel and activations."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_noise(input_shape, self.kernel.shape, self.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        del training
        x = self._noisy_activation(inputs, self._scale("a"))
        outputs = self.convolution_op(x, self._noisy_kernel(self.kernel))
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1,) * (self.rank + 1) + (self.filters,)))
        outputs = self._noisy_activation(outputs, self._scale("b"))
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="tfrobust")
class PNIConv2D(_NoisyConv2D):
    """`Conv2D` with parametric noise injection on its kernel (and activations).

    Takes every `keras.layers.Conv2D` argument, plus:

    Args:
        weight_noise: noise on the kernel, `W + alpha ⊙ std(W) ⊙ eps` with one
            draw per call and `alpha` of the kernel's shape.
        act_noise_a: noise on the layer's input, per example, with a learned
            `alpha` of the input's per-example shape.
        act_noise_b: noise on the output (before the activation), likewise.
        alpha_init: initial value of every `alpha` (>= 0; 0.25 in PNI).
        seed: seed of the layer's `SeedGenerator`, or None.

    Call arguments:
        inputs: NHWC float tensor.
        training: ignored (the noise is on in training and inference).

    Returns:
        The convolution of the noisy input with the noisy kernel.

    Raises:
        ValueError: on a negative `alpha_init`, a non-bool flag, a bad seed,
            `data_format="channels_first"`, or any `Conv2D` argument error.

    References:
        He, Rakin & Fan, "Parametric Noise Injection: Trainable Randomness to
        Improve Deep Neural Network Robustness against Adversarial Attack",
        CVPR 2019.
    """

    _kind = "pni"

    def __init__(self, filters, kernel_size, *, weight_noise=True, act_noise_a=False, act_noise_b=False,
                 alpha_init=PNI_ALPHA, seed=None, **kwargs):
        _check_channels_last(kwargs.get("data_format"))
        super().__init__(filters, kernel_size, **kwargs)
        self._init_noise(weight_noise, act_noise_a, act_noise_b, alpha_init, seed)


@keras.saving.register_keras_serializable(package="tfrobust")
class CPNIConv2D(_NoisyConv2D):
    """`Conv2D` with coloured low-rank noise injection (CPNI / CNI).

    Each call draws one kernel `W + std(W) (sqrt(|a_d|) ⊙ eps_d + F eps_f)`
    (flattened: `eps_d ~ N(0, I_P)`, `eps_f ~ N(0, I_r)`, `F` of shape
    `[P, r]`), so the noise covariance is `std(W)^2 (diag(|a_d|) + F F^T)`:
    correlated across the weights through the rank-r factor. (The original
    writes the diagonal scale `sqrt(|std(W) a_d|)`, which mixes units, and
    adds `F eps_f` unscaled, which at its F = 0.01 keeps a ResNet-20 from
    training; see `_diagonal_scale`.)

    Takes every `keras.layers.Conv2D` argument, plus:

    Args:
        weight_noise: coloured noise on the kernel.
        act_noise_a: the same form on the input, per example.
        act_noise_b: the same form on the output (before the activation).
        noise_rank: r, the rank of the correlated part (5, the original's
            `--noise-rank`).
        a_init: initial diagonal scale `a_d` (>= 0; 0.25**2).
        f_init: initial value of every entry of `F` (>= 0; 0.01).
        f_units: "std" (default): `F eps_f` is scaled by std(W) like the
            diagonal part; "absolute": unscaled, as the original code (at
            F = 0.01 a CIFAR ResNet-20 then stays at chance; kept to
            reproduce it).
        seed: seed of the layer's `SeedGenerator`, or None.

    Call arguments:
        inputs: NHWC float tensor.
        training: ignored (the noise is on in training and inference).

    Returns:
        The convolution of the noisy input with the noisy kernel.

    Raises:
        ValueError: on negative `a_init` / `f_init`, `noise_rank < 1`, a non-bool
            flag, a bad seed, `data_format="channels_first"`, or any
            `Conv2D` argument error.

    References:
        Zheltonozhskii et al., "Colored Noise Injection for Training
        Adversarially Robust Neural Networks", 2020.
    """

    _kind = "cpni"

    def __init__(self, filters, kernel_size, *, weight_noise=True, act_noise_a=False, act_noise_b=False,
                 noise_rank=CPNI_RANK, a_init=CPNI_A_INIT, f_init=CPNI_F_INIT, f_units="std", seed=None,
                 **kwargs):
        _check_channels_last(kwargs.get("data_format"))
        super().__init__(filters, kernel_size, **kwargs)
        self._init_noise(weight_noise, act_noise_a, act_noise_b, None, seed, noise_rank=noise_rank, a_init=a_init,
                         f_init=f_init, f_units=f_units)


@keras.saving.register_keras_serializable(package="tfrobust")
class PNIDense(_NoiseInjection, keras.layers.Dense):
    """`Dense` with parametric noise injection (the original `NoisedLinear`).

    Takes every `keras.layers.Dense` argument (inputs `[B, features]`),
    plus `weight_noise`, `act_noise_a`, `act_noise_b`, `alpha_init` and
    `seed` as in `PNIConv2D`.

    Call arguments:
        inputs: float tensor `[B, features]`.
        training: ignored (the noise is on in training and inference).

    Returns:
        `activation(noisy_input @ noisy_kernel + bias)`.

    Raises:
        ValueError: as `PNIConv2D`, or for inputs that are not rank 2.

    References:
        He, Rakin & Fan, "Parametric Noise Injection", CVPR 2019.
    """

    _kind = "pni"

    def __init__(self, units, *, weight_noise=True, act_noise_a=False, act_noise_b=False,
                 alpha_init=PNI_ALPHA, seed=None, **kwargs):
        super().__init__(units, **kwargs)
        self._init_noise(weight_noise, act_noise_a, act_noise_b, alpha_init, seed)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise _validate.error("input_shape", "a rank-2 shape [B, features]", input_shape)
        super().build(input_shape)
        self._build_noise(input_shape, self.kernel.shape, (input_shape[0], self.units))

    def call(self, inputs, training=None):
        del training
        x = self._noisy_activation(inputs, self._scale("a"))
        outputs = ops.matmul(x, self._noisy_kernel(self.kernel))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        outputs = self._noisy_activation(outputs, self._scale("b"))
        return self.activation(outputs) if self.activation is not None else outputs
