"""Deep Image Prior defense (Jalal et al. §5, Ulyanov et al. 2018): classify
the output of an untrained CNN fitted to the input, stopped early.

Example:

```python
from tfrobust import models
from tfrobust.defenses import DeepImagePrior

defense = DeepImagePrior(classifier, steps=500)   # classifier: images -> logits
x_rec = defense.reconstruct(x)                    # the net's output after 500 Adam steps
logits = defense(x)                               # classifier(x_rec)
curve = defense.reconstruct_at(x, [50, 100, 200]) # one fit, read at 3 step counts
x_adv = PGD(threats.LpBall(np.inf, 8 / 255), steps=10)(defense.eot(4, bpda=True), x, y)
```

Each image gets its own copy of the network, fitted from the same random
initialisation and the same fixed random input (both drawn once per call):
all weights carry a leading batch dimension `[B, ...]`, convolutions are
patch extraction followed by a batched matmul (`einsum`), and one
`tfrobust.defenses.minimize` loop fits the whole batch. Adam's update is
element-wise and the loss a sum of per-image losses, so image `i`'s
reconstruction does not depend on the other images of the batch.

The network is Ulyanov et al.'s "skip" encoder-decoder reduced for 32x32
inputs: 3 scales (not 5) of `channels` = 32 filters (not 128), 4 skip
channels, reflection padding, LeakyReLU 0.2, bilinear upsampling, sigmoid
output, input depth 32 drawn from U(0, 0.1). Batch normalisation (of a
batch of one image in the original) is replaced by parameter-free instance
normalisation, and the input is not re-perturbed at every step (the
original's `reg_noise_std`), so that a fit is a deterministic function of
the call's seed.
"""

import keras
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import optim
from tfrobust.defenses import _checks
from tfrobust.defenses.base import Defense
from tfrobust.defenses.inner import minimize

__all__ = ["DeepImagePrior"]

_SKIP = 4


def _conv(h, w, b, k, stride=1):
    """Per-image convolution: `h [B, H, W, Ci]`, `w [B, k*k*Ci, Co]`, `b [B, Co]` or None."""
    if k > 1:
        p = k // 2
        h = tf.pad(h, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        h = tf.image.extract_patches(h, sizes=[1, k, k, 1], strides=[1, stride, stride, 1],
                                     rates=[1, 1, 1, 1], padding="VALID")
    out = tf.einsum("bhwi,bio->bhwo", h, w)
    return out if b is None else out + b[:, None, None, :]


def _norm_act(h):
    mean, var = tf.nn.moments(h, axes=[1, 2], keepdims=True)
    return tf.nn.leaky_relu((h - mean) * tf.math.rsqrt(var + 1e-5), alpha=0.2)


class _CompiledFits:
    """The eager path's compiled fits, by `(segments, seeded)`; never saved."""

    def __init__(self):
        self.by_key = {}


@keras.saving.register_keras_serializable(package="tfrobust")
class DeepImagePrior(Defense):
    """`classifier(f_theta*(z))` with theta* fitted to each input image by
    `steps` Adam steps on `||f_theta(z) - x||^2` from a random theta.

    Args:
        classifier: a Keras model mapping images `[B, H, W, C]` to logits.
        steps: Adam steps of the fit (early stopping is the defense's
            knob: too many and the net reproduces the adversarial noise);
            a run-time knob (`set_knobs`, or the call argument).
        learning_rate: Adam's step size (Ulyanov et al.: 0.01).
        channels: filters per convolution (Ulyanov et al.: 128).
        levels: number of scales; H and W must be divisible by 2**levels.
        input_depth: channels of the fixed random input (Ulyanov et al.: 32).
        input_scale: the input is U(0, input_scale) (Ulyanov et al.: 0.1).
        seed: optional int seed of the initialisation and input.
        **kwargs: `keras.Model` keyword arguments (`name`, ...).

    Call arguments:
        inputs: images `[B, H, W, C]` in [0, 1].
        training: passed to the classifier.
        steps: optional override of the fit's steps for this call.

    Returns:
        Logits `[B, K]` of the classifier on the reconstructions.

    Raises:
        ValueError: for `steps` <= 0 or another bad argument, and (when
            called) images of the wrong rank, sizes not divisible by
            `2**levels`, non-finite values or values outside [0, 1].

    References:
        Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", CVPR 2018;
        Jalal, Ilyas, Daskalakis & Dimakis, "The Robust Manifold Defense",
        2019.
    """

    randomized = True
    optimizes_at_inference = True

    def __init__(self, classifier, *, steps=500, learning_rate=0.01, channels=32, levels=3, input_depth=32,
                 input_scale=0.1, seed=None, **kwargs):
        super().__init__(classifier, **kwargs)
        self._steps = _validate.check_int(steps, name="steps", minimum=1)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", minimum=0.0,
                                                   exclusive_minimum=True)
        self.channels = _validate.check_int(channels, name="channels", minimum=1)
        self.levels = _validate.check_int(levels, name="levels", minimum=1, maximum=8)
        self.input_depth = _validate.check_int(input_depth, name="input_depth", minimum=1)
        self.input_scale = _validate.check_float(input_scale, name="input_scale", minimum=0.0)
        self.seed = _random.check_seed(seed, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.optimizer = optim.Adam(self.learning_rate)
        self.steps = self.add_weight(name="steps", shape=(), dtype="int32", trainable=False,
                                     initializer=keras.initializers.Constant(self._steps))
        # A plain holder, not a dict attribute: Keras/TF would wrap a dict for
        # tracking, and saving or `export()` then refuses its tuple keys.
        self._compiled = _CompiledFits()

    def set_knobs(self, *, steps=None):
        """Changes the fit's number of steps at run time (validated)."""
        if steps is not None:
            self.steps.assign(_validate.check_int(steps, name="steps", minimum=1))

    def _shapes(self, image_channels):
        """`(fan_in_kernel_size, in, out)` of every convolution, in order."""
        shapes, c_in = [], self.input_depth
        for _ in range(self.levels):
            shapes += [(1, c_in, _SKIP), (3, c_in, self.channels), (3, self.channels, self.channels)]
            c_in = self.channels
        for _ in range(self.levels):
            shapes += [(3, self.channels + _SKIP, self.channels), (1, self.channels, self.channels)]
        return shapes + [(1, self.channels, image_channels)]

    def _initial(self, x, seed):
        """The fixed input `[B, H, W, D]` and initial weights (batched copies
        of one draw, PyTorch's default uniform(+-1/sqrt(fan_in)))."""
        batch, h, w, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
        if seed is None:
            base = tf.cast(self.seed_generator.next(), tf.int64)
        else:
            base = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        draws = iter(range(1 << 20))

        def uniform(shape, lo, hi):
            key = tf.random.experimental.stateless_fold_in(base, next(draws))
            return tf.random.stateless_uniform(shape, seed=key, minval=lo, maxval=hi)

        z = uniform(tf.stack([1, h, w, self.input_depth]), 0.0, self.input_scale)
        params = []
        for k, c_in, c_out in self._shapes(c):
            bound = 1.0 / (k * k * c_in) ** 0.5
            params.append(tf.repeat(uniform([1, k * k * c_in, c_out], -bound, bound), batch, axis=0))
        # Only the output convolution has a bias: before an instance norm a
        # bias has zero gradient, and Adam would turn its rounding noise into
        # full-size steps (making a fit depend on the batch it is in).
        params.append(tf.repeat(uniform([1, c], -bound, bound), batch, axis=0))
        return tf.repeat(z, batch, axis=0), params

    def _net(self, params, z):
        it = iter(params)
        skips, h = [], z
        for _ in range(self.levels):
            skips.append(_norm_act(_conv(h, next(it), None, 1)))
            h = _norm_act(_conv(h, next(it), None, 3, stride=2))
            h = _norm_act(_conv(h, next(it), None, 3))
        for skip in reversed(skips):
            h = tf.image.resize(h, tf.shape(skip)[1:3], method="bilinear")
            h = tf.concat([skip, h], axis=-1)
            h = _norm_act(_conv(h, next(it), None, 3))
            h = _norm_act(_conv(h, next(it), None, 1))
        w, b = next(it), next(it)
        return tf.sigmoid(_conv(h, w, b, 1))

    def _fit(self, x, segments, seed):
        x = tf.stop_gradient(x)  # non-differentiable to an attacker; BPDA stands in
        z, params = self._initial(x, seed)

        def loss(p):
            return tf.reduce_mean(tf.square(self._net(p, z) - x), axis=[1, 2, 3])

        outputs, state = [], None
        for steps in segments:
            params, state = minimize(loss, params, optimizer=self.optimizer, steps=steps,
                                     initial_state=state, return_state=True)
            outputs.append(self._net(params, z))
        return outputs

    def _check(self, x):
        x = _checks.check_images(x, name="x")
        if x.shape.rank != 4:
            raise ValueError(f"Expected `x` to be images [B, H, W, C]. Received: x.shape={tuple(x.shape)}")
        m = 2 ** self.levels
        if any(d is not None and d % m for d in x.shape[1:3]):
            raise ValueError(f"Expected `x`'s height and width divisible by 2**levels={m}. "
                             f"Received: x.shape={tuple(x.shape)}")
        return x

    def _run(self, x, segments, seed):
        if not tf.executing_eagerly():
            return self._fit(x, segments, seed)
        key = (len(segments), seed is None)
        if key not in self._compiled.by_key:
            # Eagerly a tf.while_loop is a Python loop: compile it once (the
            # seed is a tensor argument, so a new seed does not retrace).
            if seed is None:
                fn = lambda x_, s_, _: self._fit(x_, s_, None)  # noqa: E731
            else:
                fn = self._fit
            self._compiled.by_key[key] = tf.function(fn, reduce_retracing=True, autograph=False)
        seed = tf.constant(0 if seed is None else seed, tf.int64)
        return self._compiled.by_key[key](x, [tf.convert_to_tensor(s, tf.int32) for s in segments], seed)

    def reconstruct(self, x, *, steps=None, seed=None):
        """The network's output after fitting each image for `steps` steps.

        Args:
            x: images `[B, H, W, C]` in [0, 1].
            steps: override of the knob (an int >= 1 or an int tensor).
            seed: optional int: draw the initialisation and input from it
                (the same for every call) instead of the layer's generator.

        Returns:
            Reconstructions of the shape of `x`, in (0, 1).
        """
        x = self._check(x)
        if steps is None:
            steps = tf.convert_to_tensor(self.steps)
        elif not tf.is_tensor(steps):
            steps = _validate.check_int(steps, name="steps", minimum=1)
        seed = _random.check_seed(seed, allow_none=True)
        return self._run(x, [steps], seed)[0]

    def reconstruct_at(self, x, steps, *, seed=None):
        """Reconstructions after each of the increasing step counts `steps`
        of one fit (an early-stopping curve at the cost of its longest
        point); entry j equals `reconstruct(x, steps=steps[j])` under the
        same seed.

        Returns:
            A list of tensors of the shape of `x`.
        """
        x = self._check(x)
        steps = [_validate.check_int(s, name="steps", minimum=1) for s in steps]
        if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
            raise _validate.error("steps", "a non-empty increasing list of ints >= 1", steps)
        segments = [steps[0]] + [b - a for a, b in zip(steps, steps[1:])]
        return self._run(x, segments, _random.check_seed(seed, allow_none=True))

    def purify(self, x, training=False):
        del training
        return self.reconstruct(x)

    def call(self, inputs, training=False, steps=None):
        return self.classifier(self.reconstruct(inputs, steps=steps), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(steps=self._steps, learning_rate=self.learning_rate, channels=self.channels,
                      levels=self.levels, input_depth=self.input_depth, input_scale=self.input_scale,
                      seed=self.seed)
        return config
