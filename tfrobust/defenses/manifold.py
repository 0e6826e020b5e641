"""Invert-and-classify (Jalal et al.): classify the projection onto a generator's range.

Example:

```python
import numpy as np
from tfrobust import models, threats
from tfrobust.attacks import PGD
from tfrobust.defenses import InvertAndClassify

vae = models.mnist_vae()                    # trained with apps/train_generator.py
defense = InvertAndClassify(vae.decoder, models.madry_mnist_cnn(),
                            steps=1000, restarts=1)
z, x_hat = defense.project(x)               # z* = argmin ||G(z) - x||^2, G(z*)
logits = defense(x)                         # classifier(G(z*))
# The adaptive attack: BPDA (identity backward pass) + EoT over the restarts.
x_adv = PGD(threats.LpBall(2, 2.0), steps=40)(defense.eot(10, bpda=True), x, y)
# The strongest white-box check: gradients through the unrolled projection.
exact = InvertAndClassify(vae.decoder, classifier, steps=50, differentiable=True)
```

The projection of a whole batch with all its restarts is one optimisation
over latents `[B * R, d]` (each image repeated R times), run by
`tfrobust.defenses.minimize` as a `tf.while_loop`; the restart with the
lowest final error is kept per image. `steps` and `restarts` are run-time
knobs (non-trainable variables, or call arguments), so they survive export.
"""

import keras
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import optim
from tfrobust.defenses import _checks
from tfrobust.defenses.base import Defense
from tfrobust.defenses.inner import minimize

__all__ = ["InvertAndClassify"]

_OPTIMIZERS = ("momentum", "sgd", "adam")


def _make_optimizer(name, learning_rate, momentum):
    if name == "momentum":
        return optim.Momentum(learning_rate, momentum=momentum)
    return optim.get(name, learning_rate)


@keras.saving.register_keras_serializable(package="tfrobust")
class InvertAndClassify(Defense):
    """`classifier(G(z*))` with `z* = argmin_z ||G(z) - x||^2` (INC).

    The defaults are the original code's MNIST settings
    (`adv_celeba/src/invert_and_classify.py`, `config.json`): one start
    `z ~ N(0, I)`, momentum 0.9 with learning rate 100 on the per-pixel
    mean squared error, 1000 steps. The DefenseGAN re-creation of the same
    code base uses `restarts=10, steps=200, learning_rate=10, momentum=0.7`
    (its 10x step decay after 80% of the steps is not reproduced).

    Args:
        generator: a built Keras model `z [B, d] -> images`, with images in
            the classifier's input domain ([0, 1]).
        classifier: a Keras model `images -> logits`.
        steps: projection steps (>= 1); a run-time knob.
        learning_rate: the optimiser's step size on the per-pixel MSE.
        restarts: random starts per image (>= 1); a run-time knob.
        optimizer: "momentum", "sgd" or "adam".
        momentum: heavy-ball coefficient of "momentum".
        z_mean, z_std: the starts are `z_mean + z_std * N(0, I)`.
        seed: optional int seed of the starts.
        differentiable: if True the attacker's gradient flows through the
            unrolled optimisation (the strongest white-box check; memory
            grows with `steps`); otherwise the projection is a constant to
            autodiff and BPDA's identity surrogate stands in for it.
        **kwargs: `keras.Model` keyword arguments (`name`, ...).

    Call arguments:
        inputs: images `[B, H, W, C]` in [0, 1].
        training: passed to the classifier.
        steps, restarts: optional overrides for this call.

    Returns:
        Logits `[B, K]` of the classifier on the projections.

    Raises:
        ValueError: for a generator whose output shape does not match the
            classifier's input, a generator without a known latent size,
            `steps` <= 0, `restarts` < 1, an unknown optimiser, or (when
            called) images that are not finite or outside [0, 1].

    References:
        Jalal, Ilyas, Daskalakis & Dimakis, "The Robust Manifold Defense:
        Adversarial Training using Generative Models", 2019; Samangouei,
        Kabkab & Chellappa, "Defense-GAN", ICLR 2018.
    """

    randomized = True
    optimizes_at_inference = True

    def __init__(self, generator, classifier, *, steps=1000, learning_rate=100.0, restarts=1,
                 optimizer="momentum", momentum=0.9, z_mean=0.0, z_std=1.0, seed=None,
                 differentiable=False, **kwargs):
        super().__init__(classifier, **kwargs)
        if not isinstance(generator, keras.layers.Layer):
            raise _validate.error("generator", "a Keras model z -> images", generator)
        in_shape = _checks.shape_of(generator, "input_shape")
        if in_shape is None or len(in_shape) != 1 or in_shape[0] is None:
            raise _validate.error("generator", "a built model with inputs [B, latent_dim]", generator,
                                  received=f"generator input shape {in_shape}")
        out_shape = _checks.shape_of(generator, "output_shape")
        cls_shape = _checks.shape_of(classifier, "input_shape")
        if out_shape is not None and cls_shape is not None and not tf.TensorShape(
                out_shape).is_compatible_with(cls_shape):
            raise ValueError(
                "Expected `generator` to output images of the classifier's input shape "
                f"{cls_shape}. Received: generator output shape {out_shape}")
        self.generator = generator
        self.latent_dim = int(in_shape[0])
        self._image_shape = out_shape
        self._steps = _validate.check_int(steps, name="steps", minimum=1)
        self._restarts = _validate.check_int(restarts, name="restarts", minimum=1)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", minimum=0.0,
                                                   exclusive_minimum=True)
        self.optimizer_name = _validate.check_choice(optimizer, name="optimizer", choices=_OPTIMIZERS)
        self.momentum = _validate.check_float(momentum, name="momentum", minimum=0.0, maximum=1.0,
                                              exclusive_maximum=True)
        self.z_mean = _validate.check_float(z_mean, name="z_mean")
        self.z_std = _validate.check_float(z_std, name="z_std", minimum=0.0)
        self.seed = _random.check_seed(seed, allow_none=True)
        self.differentiable = _validate.check_bool(differentiable, name="differentiable")
        self.optimizer = _make_optimizer(self.optimizer_name, self.learning_rate, self.momentum)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.steps = self.add_weight(name="steps", shape=(), dtype="int32", trainable=False,
                                     initializer=keras.initializers.Constant(self._steps))
        self.restarts = self.add_weight(name="restarts", shape=(), dtype="int32", trainable=False,
                                        initializer=keras.initializers.Constant(self._restarts))
        self._compiled = None

    def build(self, input_shape):
        if not self.classifier.built:
            self.classifier.build((None,) + tuple(self._image_shape or input_shape[1:]))
        self.built = True

    def set_knobs(self, *, steps=None, restarts=None):
        """Changes the projection's steps and restarts at run time (validated)."""
        if steps is not None:
            self.steps.assign(_validate.check_int(steps, name="steps", minimum=1))
        if restarts is not None:
            self.restarts.assign(_validate.check_int(restarts, name="restarts", minimum=1))

    def _knob(self, value, variable, name):
        if value is None:
            return tf.convert_to_tensor(variable)
        if tf.is_tensor(value):
            return tf.cast(value, tf.int32)
        return tf.constant(_validate.check_int(value, name=name, minimum=1), tf.int32)

    def _render(self, z):
        weights = ([v.value for v in self.generator.trainable_variables],
                   [v.value for v in self.generator.non_trainable_variables])
        out, _ = self.generator.stateless_call(*weights, z, training=False)
        return tf.cast(out, tf.float32)

    def _project(self, x, steps, restarts, z_init):
        batch = tf.shape(x)[0]
        if not self.differentiable:
            # The projection is non-differentiable to an attacker (BPDA's
            # surrogate stands in); this also keeps autodiff out of the loop.
            x = tf.stop_gradient(x)
        target = tf.repeat(x, restarts, axis=0)                          # [B*R, ...]
        if z_init is None:
            z0 = self.z_mean + self.z_std * keras.random.normal(
                tf.stack([batch * restarts, self.latent_dim]), seed=self.seed_generator)
        else:
            z0 = tf.reshape(tf.cast(z_init, tf.float32), [-1, self.latent_dim])
        axes = list(range(1, len(x.shape)))

        def loss(z):
            # The per-pixel mean, as the original (its lr 100 is set for it).
            return tf.reduce_mean(tf.square(self._render(z) - target), axis=axes)

        z = minimize(loss, z0, optimizer=self.optimizer, steps=steps)
        x_all = self._render(z)
        err = tf.reshape(tf.reduce_mean(tf.square(x_all - target), axis=axes), [batch, restarts])
        best = tf.argmin(err, axis=1, output_type=tf.int32) + tf.range(batch) * restarts
        return tf.gather(z, best), tf.gather(x_all, best)

    def project(self, x, *, steps=None, restarts=None, z_init=None):
        """Projects images onto the generator's range.

        Args:
            x: images `[B, H, W, C]` in [0, 1].
            steps, restarts: overrides of the knobs for this call.
            z_init: optional starts `[B, R, d]` (or `[B * R, d]`) instead of
                random ones (R must equal `restarts`).

        Returns:
            `(z, x_hat)`: the best latent per image `[B, d]` and `G(z)`.

        Raises:
            ValueError: for non-finite images, images outside [0, 1], or a
                bad `steps`, `restarts` or `z_init`.
        """
        x = _checks.check_images(x, name="x")
        steps = self._knob(steps, self.steps, "steps")
        restarts = self._knob(restarts, self.restarts, "restarts")
        if z_init is not None:
            z_init = tf.convert_to_tensor(z_init, tf.float32)
            if z_init.shape[-1] != self.latent_dim:
                raise ValueError(f"Expected `z_init` of shape [B, R, {self.latent_dim}]. "
                                 f"Received: z_init.shape={tuple(z_init.shape)}")
        if tf.executing_eagerly():
            # Eagerly a tf.while_loop is a Python loop: compile it once.
            if self._compiled is None:
                self._compiled = tf.function(self._project, reduce_retracing=True, autograph=False)
            return self._compiled(x, steps, restarts, z_init)
        return self._project(x, steps, restarts, z_init)

    def purify_with_state(self, x, training=False):
        del training
        z, x_hat = self.project(x)
        return x_hat, z

    def purify(self, x, training=False):
        return self.purify_with_state(x, training=training)[0]

    def call(self, inputs, training=False, steps=None, restarts=None):
        _, x_hat = self.project(inputs, steps=steps, restarts=restarts)
        return self.classifier(x_hat, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(generator=keras.saving.serialize_keras_object(self.generator),
                      steps=self._steps, learning_rate=self.learning_rate, restarts=self._restarts,
                      optimizer=self.optimizer_name, momentum=self.momentum, z_mean=self.z_mean,
                      z_std=self.z_std, seed=self.seed, differentiable=self.differentiable)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)
