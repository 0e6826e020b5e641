"""RBF-CNN's front end: Gaussian templates over 3×3 patches and the
reconstruction of a pseudo-clean image from them (Nandy, Hsu & Lee 2020).

Example:

```python
import keras
from tfrobust.layers import RBFLayer, ReconstructionLayer

rbf = RBFLayer.from_templates(means, variances)       # means [K, 3, 3, C]
inputs = keras.Input((28, 28, 1))
clean = ReconstructionLayer(rbf, beta1=25.0, beta2=0.0)(inputs)
logits = classifier(clean)
```

`RBFLayer` scores every 3×3 patch z (stride 1, valid padding) against K
templates: `l_k(z) = -||z - mu_k||^2 / (2 c_k) - ln(c_k) / 2`, with one
scalar `c_k` per template (the EM's total variance, the trace over the 9·C
dimensions), computed with convolutions through the identity
`||z - mu||^2 = ||z||^2 - 2 z·mu + ||mu||^2`.

`ReconstructionLayer` owns its `RBFLayer` (the templates exist once, also
after `.keras` save/load): `v = sigmoid(l)`, weights `2^(beta1 v)`
normalized over templates, each patch rebuilt as `sum_k w_k (mu_k +
eps_k)`, patches placed back by a transposed convolution and divided by
the number of windows covering each pixel, clipped to [0, 1]. `beta1` and
`beta2` are non-trainable variables (run-time knobs: change them with
`set_knobs` or `layer.beta2.assign(...)`, no retraining; they are saved).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate

__all__ = ["RBFLayer", "ReconstructionLayer"]

PATCH = 3
# The EM floors a template's variance at this value (degenerate templates of
# constant patches); the layer keeps the same floor so that scores stay finite.
MIN_VARIANCE = 1e-20
# exp(-80) = 1.8e-35 stays well above the smallest normal float32 (1.2e-38).
_SHIFTED_MAX_SCALE = 80.0


def _check_templates(means, variances, parameterization):
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    if means.ndim != 4 or means.shape[1:3] != (PATCH, PATCH) or means.shape[0] < 1:
        raise _validate.error("means", f"an array [K, {PATCH}, {PATCH}, C] with K >= 1", means,
                              received=f"means.shape={means.shape}")
    if variances.shape != (means.shape[0],):
        raise _validate.error("variances", f"an array [K] = [{means.shape[0]}] (one per template)",
                              variances, received=f"variances.shape={variances.shape}")
    if not np.all(np.isfinite(means)) or not np.all(np.isfinite(variances)):
        raise _validate.error("means", "finite templates (no NaN or Inf in means or variances)", means,
                              received="means or variances containing NaN or Inf")
    if parameterization == "variance" and np.any(variances <= 0):
        raise _validate.error("variances", "positive variances", variances,
                              received=f"variances with min={variances.min()}")
    return means, variances


@keras.saving.register_keras_serializable(package="tfrobust")
class RBFLayer(keras.layers.Layer):
    """Log-likelihood scores of every 3×3 patch under K Gaussian templates.

    Args:
        num_templates: K, the number of templates (the EM's `outChannel`).
        parameterization: "variance" (v1: `c_k` stored as is, learned by the
            EM; frozen by default) or "log_variance" (v2: `log c_k` stored,
            so gradient training keeps `c_k > 0`).
        trainable: whether gradient training updates the templates
            (default: False for "variance", True for "log_variance").
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: float tensor `[B, H, W, C]` with H, W >= 3.

    Returns:
        Scores `[B, H - 2, W - 2, K]`.

    References:
        Nandy, Hsu & Lee, "Approximate Manifold Defense Against Multiple
        Adversarial Perturbations", IJCNN 2020.
    """

    def __init__(self, num_templates, *, parameterization="variance", trainable=None, **kwargs):
        self.num_templates = _validate.check_int(num_templates, name="num_templates", minimum=1)
        self.parameterization = _validate.check_choice(
            parameterization, name="parameterization", choices=("variance", "log_variance"))
        if trainable is None:
            trainable = parameterization == "log_variance"
        super().__init__(trainable=_validate.check_bool(trainable, name="trainable"), **kwargs)
        self._initial = None

    @classmethod
    def from_templates(cls, means, variances, *, parameterization="variance", **kwargs):
        """A layer holding the given templates (the EM trainer's layout).

        Args:
            means: array `[K, 3, 3, C]` (the original `mean0.npy`).
            variances: array `[K]` (`conv0.npy`): `c_k`, or `log c_k` when
                `parameterization="log_variance"`.
        """
        means, variances = _check_templates(means, variances, parameterization)
        layer = cls(means.shape[0], parameterization=parameterization, **kwargs)
        layer._initial = (means.astype(np.float32), variances.astype(np.float32))
        layer.build((None, None, None, means.shape[-1]))
        return layer

    @classmethod
    def load(cls, path, **kwargs):
        """A layer from a template file written by `tfrobust.rbf.save_templates`."""
        from tfrobust.rbf.io import load_templates  # rbf/ sits above layers/: imported on use

        templates = load_templates(path)
        return cls.from_templates(templates.means, templates.variances,
                                  parameterization=templates.parameterization, **kwargs)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("Expected the input's channel axis to be known. "
                             f"Received: input_shape={tuple(input_shape)}")
        if self._initial is not None and self._initial[0].shape[-1] != channels:
            raise ValueError(f"Expected inputs with {self._initial[0].shape[-1]} channels (the templates' "
                             f"C). Received: input_shape={tuple(input_shape)}")
        means0, var0 = self._initial if self._initial is not None else (None, None)

        def init(value, fallback):
            return (lambda shape, dtype=None: tf.constant(value, dtype or "float32")) \
                if value is not None else fallback

        # v2's initialisation: means ~ N(0.5, 0.2), log-variances ~ N(0.5, 0.01).
        self.means = self.add_weight(
            name="means", shape=(self.num_templates, PATCH, PATCH, int(channels)),
            initializer=init(means0, keras.initializers.RandomNormal(0.5, 0.2)), trainable=self.trainable)
        default_var = (keras.initializers.RandomNormal(0.5, 0.01) if self.parameterization == "log_variance"
                       else keras.initializers.Constant(float(PATCH * PATCH * int(channels))))
        self.variances = self.add_weight(
            name="variances", shape=(self.num_templates,), initializer=init(var0, default_var),
            trainable=self.trainable)
        self._initial = None

    def variance(self):
        """`c_k` `[K]`, floored at `MIN_VARIANCE`."""
        c = tf.exp(self.variances) if self.parameterization == "log_variance" else self.variances
        return tf.maximum(c, MIN_VARIANCE)

    def kernel(self):
        """The means in conv-kernel layout `[3, 3, C, K]`."""
        return tf.transpose(self.means, [1, 2, 3, 0])

    def squared_distances(self, inputs):
        """`||z - mu_k||^2` for every patch z and template k: `[B, H-2, W-2, K]`."""
        x = tf.convert_to_tensor(inputs, self.compute_dtype)
        channels = x.shape[-1]
        if x.shape.rank != 4 or channels != self.means.shape[-1]:
            raise ValueError(f"Expected images [B, H, W, {self.means.shape[-1]}] (the templates' channels). "
                             f"Received: inputs.shape={tuple(x.shape)}")
        # One convolution of [x, x^2] computes ||z||^2 - 2 z.mu_k, the bias
        # adds ||mu_k||^2 and the relu clamps the identity's rounding (a
        # distance is never negative): Conv2D + BiasAdd + Relu is one fused
        # kernel on CPU, where two convolutions and four elementwise passes
        # over [B, H-2, W-2, K] cost a quarter of an MNIST CNN's forward.
        kernel = self.kernel()
        kernel = tf.concat([-2.0 * kernel, tf.ones_like(kernel)], axis=2)
        mu2 = tf.reduce_sum(tf.square(self.means), axis=[1, 2, 3])
        cross = tf.nn.conv2d(tf.concat([x, tf.square(x)], axis=-1), kernel, strides=1, padding="VALID")
        return tf.nn.relu(tf.nn.bias_add(cross, mu2))

    def call(self, inputs):
        c = self.variance()
        # Scaling after the distance, not inside the convolution: with the
        # floor c = 1e-20 the scaled terms would be ~1e20 and cancel badly.
        return tf.nn.bias_add(self.squared_distances(inputs) * (-0.5 / c), -0.5 * tf.math.log(c))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        shrink = lambda d: None if d is None else d - PATCH + 1  # noqa: E731
        return (b, shrink(h), shrink(w), self.num_templates)

    def get_config(self):
        config = super().get_config()
        config.update(num_templates=self.num_templates, parameterization=self.parameterization)
        return config


@keras.saving.register_keras_serializable(package="tfrobust")
class ReconstructionLayer(keras.layers.Layer):
    """Rebuilds a pseudo-clean image from an `RBFLayer`'s templates.

    Args:
        rbf_layer: the `RBFLayer` whose templates score and rebuild patches
            (owned by this layer: pass it here and do not use it elsewhere
            in the same model, so the templates exist once).
        beta1: sharpness of the weights (original: 125 in training, 25 at
            test). Must be > 0.
        beta2: noise level (0: deterministic). Must be >= 0. Following the
            original code (which produced the paper's numbers), the template
            noise is `eps_k = beta2 * c_k * N(0, I)` (standard deviation
            beta2 · c_k; the paper writes a variance of sigma_k · beta2).
        base: "2" (the original code: `2^(beta1 v)`) or "e" (the paper's
            text: `exp(beta1 v)`).
        clip: clip the output to [0, 1] (the original's test scripts do).
        seed: int seed of the noise's `keras.random.SeedGenerator`.

    Call arguments:
        inputs: float tensor `[B, H, W, C]` in [0, 1].
        beta2: optional float overriding the layer's `beta2` for this call.

    Returns:
        The reconstruction, shaped like `inputs`.
    """

    def __init__(self, rbf_layer, *, beta1=25.0, beta2=0.0, base="2", clip=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rbf_layer, RBFLayer):
            raise _validate.error("rbf_layer", "a tfrobust.layers.RBFLayer", rbf_layer)
        self.rbf_layer = rbf_layer
        self._beta1 = _validate.check_float(beta1, name="beta1", minimum=0.0, exclusive_minimum=True)
        self._beta2 = _validate.check_float(beta2, name="beta2", minimum=0.0)
        self.base = _validate.check_choice(str(base), name="base", choices=("2", "e"))
        self.clip = _validate.check_bool(clip, name="clip")
        self.seed = _validate.check_int(seed, name="seed", minimum=0, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)

        # The knobs do not depend on the input's shape: made here, so that
        # set_knobs works before the first call.
        self.beta1 = self.add_weight(name="beta1", shape=(), trainable=False,
                                     initializer=keras.initializers.Constant(self._beta1))
        self.beta2 = self.add_weight(name="beta2", shape=(), trainable=False,
                                     initializer=keras.initializers.Constant(self._beta2))

    def build(self, input_shape):
        if not self.rbf_layer.built:
            self.rbf_layer.build(input_shape)

    def set_knobs(self, *, beta1=None, beta2=None):
        """Changes the run-time knobs (validated) without rebuilding."""
        if beta1 is not None:
            self.beta1.assign(_validate.check_float(beta1, name="beta1", minimum=0.0, exclusive_minimum=True))
        if beta2 is not None:
            self.beta2.assign(_validate.check_float(beta2, name="beta2", minimum=0.0))

    def weights_map(self, inputs):
        """The normalized template weights of every patch `[B, H-2, W-2, K]`."""
        v = tf.sigmoid(self.rbf_layer(inputs))
        scale = self.beta1 * (math.log(2.0) if self.base == "2" else 1.0)

        # Normalizing exp(scale * v) over templates (the original's relu +
        # 1e-10 changes nothing but the epsilon). As v <= 1, exp(scale *
        # (v - 1)) never overflows, and while scale < 80 (beta1 < 115 in base
        # 2; the test-time 25 and any sweep) it never leaves the normal
        # floats either, so the softmax's max-reduction and subtraction, a
        # tenth of the front end's time on CPU, are not needed. Above that
        # (the training beta1 of 125) the full softmax.
        def shifted():
            e = tf.exp(scale * (v - 1.0))
            return e / tf.reduce_sum(e, axis=-1, keepdims=True)

        return tf.cond(scale < _SHIFTED_MAX_SCALE, shifted, lambda: tf.nn.softmax(scale * v, axis=-1))

    def call(self, inputs, beta2=None, samples=None):
        """Reconstructs `inputs`; `beta2` overrides the knob for this call.

        `samples=m` returns m stochastic reconstructions of each image,
        sample-major (`[m * B, ...]`: sample j of image i at `j * B + i`),
        with the template weights computed once per image: only the noise
        differs between samples.
        """
        x = tf.convert_to_tensor(inputs, self.compute_dtype)
        w = self.weights_map(x)
        kernel = self.rbf_layer.kernel()                               # [3, 3, C, K]
        total = tf.nn.conv2d_transpose(w, kernel, output_shape=tf.shape(x), strides=1, padding="VALID")
        if isinstance(samples, int):
            samples = _validate.check_int(samples, name="samples", minimum=1)
        if samples is not None:
            def tile(t):
                folded = tf.tile(t[None], tf.stack([samples] + [1] * t.shape.rank))
                return tf.reshape(folded, tf.concat([[-1], tf.shape(t)[1:]], 0))

            w, total = tile(w), tile(total)
        if beta2 is None or not isinstance(beta2, (int, float)):
            beta2 = self.beta2 if beta2 is None else tf.cast(beta2, x.dtype)

        def noisy():
            noise = keras.random.normal((tf.shape(w)[0],) + tuple(self.rbf_layer.means.shape),
                                        seed=self.seed_generator)
            noise = noise * (beta2 * self.rbf_layer.variance())[None, :, None, None, None]
            return total + _place_patches(w, noise)

        # beta2 = 0 (the deterministic reconstruction) skips the sampling; a
        # Python number decides without a cond, so the deterministic path has
        # no seed-generator update and can be vectorized (SPSA's
        # tf.vectorized_map).
        if isinstance(beta2, (int, float)):
            if _validate.check_float(beta2, name="beta2", minimum=0.0) > 0:
                total = noisy()
        else:
            total = tf.cond(beta2 > 0, noisy, lambda: total)
        out = total / _coverage(x)
        return tf.clip_by_value(out, 0.0, 1.0) if self.clip else out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(rbf_layer=keras.saving.serialize_keras_object(self.rbf_layer),
                      beta1=float(self._beta1), beta2=float(self._beta2), base=self.base, clip=self.clip,
                      seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["rbf_layer"] = keras.saving.deserialize_keras_object(config["rbf_layer"])
        return cls(**config)


def _coverage(x):
    """How many patches cover each pixel `[1, H, W, 1]` (the same for every
    image): a constant when the image size is static, else computed."""
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None:
        ones = np.ones((h - PATCH + 1, w - PATCH + 1))
        counts = sum(np.pad(ones, ((i, PATCH - 1 - i), (j, PATCH - 1 - j)))
                     for i in range(PATCH) for j in range(PATCH))
        return tf.constant(counts[None, :, :, None], x.dtype)
    shape = tf.shape(x)
    return tf.nn.conv2d_transpose(tf.ones(tf.stack([1, shape[1] - PATCH + 1, shape[2] - PATCH + 1, 1]), x.dtype),
                                  tf.ones([PATCH, PATCH, 1, 1], x.dtype),
                                  output_shape=tf.stack([1, shape[1], shape[2], 1]), strides=1, padding="VALID")


def _place_patches(w, noise):
    """`sum_k w[b, i, j, k] * noise[b, k]` placed at each patch position and
    summed over overlaps: a transposed convolution with one kernel per
    example (each example draws its own noise). Done as one batched matmul
    (every position's patch, `[B, H-2, W-2, 9C]`) and one fixed col2im
    transposed convolution (channel (di, dj, c) to pixel offset (di, dj),
    channel c): two kernels instead of nine einsums and pads (1.9x faster
    alone on MNIST shapes; the m = 10 inference ratio of benchmarks/rbf.py
    did not change, 13x with 19 templates before and after)."""
    batch, k, c = tf.shape(noise)[0], noise.shape[1], noise.shape[-1]
    depth = PATCH * PATCH * c
    patches = tf.einsum("bhwk,bkp->bhwp", w, tf.reshape(noise, [batch, k, depth]))
    col2im = tf.reshape(tf.eye(depth, dtype=w.dtype), [PATCH, PATCH, c, depth])
    shape = tf.stack([batch, tf.shape(w)[1] + PATCH - 1, tf.shape(w)[2] + PATCH - 1, c])
    return tf.nn.conv2d_transpose(patches, col2im, output_shape=shape, strides=1, padding="VALID")
