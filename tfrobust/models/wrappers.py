"""Model wrappers that make defenses attackable: BPDA and EoT.

Example:

```python
import numpy as np
import keras
import tensorflow as tf
from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.models.wrappers import BPDA, EoT

classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10)])
quantize = lambda x: tf.round(x * 4.0) / 4.0       # zero gradient everywhere
defended = lambda x: classifier(BPDA(quantize)(x))  # backward: identity
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
x_adv = PGD(threats.LpBall(np.inf, 0.1), steps=10)(defended, x)
```

Attacks never branch on "is this a defense": a defense that breaks or
randomizes gradients is wrapped on the *model* side, so that every attack
sees an ordinary callable returning logits. `BPDA` replaces the backward pass
of a non-differentiable (or gradient-masking) transform by the gradient of a
differentiable surrogate; `EoT` replaces a randomized model by the average of
its outputs over many draws. Both are Keras layers (usable inside
`keras.Sequential`) and plain callables.

A BPDA surrogate may see the forward pass's result (`surrogate_takes_output`,
`forward_has_aux`), e.g. the latent an inversion found; `EoT` declares
`uses_eot = True` and passes the wrapped model's declared `randomized` and
`optimizes_at_inference` through (`declared_flag`), so the evaluation
engine reads capabilities instead of guessing them. `tfrobust.defenses`
builds both views of a `Defense` from these two layers.
"""

import math

import keras
import tensorflow as tf

from tfrobust import _validate

__all__ = ["BPDA", "EoT", "declared_flag"]

# The flags a model may declare for the evaluation engine (see
# `tfrobust.evaluation`); an undeclared flag means False.
_MODEL_FLAGS = ("randomized", "optimizes_at_inference", "uses_eot")


def declared_flag(model, name):
    """The value of a flag `model` declares (`randomized`,
    `optimizes_at_inference`, `uses_eot`), False when it declares none.

    Models are any callables, so the flag is read as a declared attribute
    with the protocol's default; a declared value must be a real bool.

    Raises:
        ValueError: for an unknown flag name or a declared non-bool value.
    """
    _validate.check_choice(name, name="name", choices=_MODEL_FLAGS)
    value = getattr(model, name, False)
    if callable(value) and not isinstance(value, bool):
        return False  # a method of that name, not a declared flag
    return _validate.check_bool(value, name=f"model.{name}")


def _build_sublayers(input_shape, *fns):
    for fn in fns:
        if isinstance(fn, keras.layers.Layer) and not fn.built:
            fn.build(input_shape)


def _serialize(obj):
    return None if obj is None else keras.saving.serialize_keras_object(obj)


def _deserialize(config):
    return None if config is None else keras.saving.deserialize_keras_object(config)


@keras.saving.register_keras_serializable(package="tfrobust")
class BPDA(keras.layers.Layer):
    """Backward pass differentiable approximation of a transform.

    The forward pass is the real transform `forward(x)` (for example a
    quantization or a purification step with zero or useless gradient); the
    backward pass is the vector-Jacobian product of `surrogate(x)`, the
    identity by default, i.e. `d forward / dx ≈ I` (Athalye et al. 2018).
    No gradient flows into variables of `forward`.

    The surrogate may see what the forward pass found: with
    `surrogate_takes_output=True` it is called as `surrogate(x, y)` with
    `y = forward(x)` (a constant), and with `forward_has_aux=True` the
    forward returns `(y, aux)` (any nest of tensors, e.g. the latent z* an
    inversion found), the layer outputs `y`, and the surrogate is called as
    `surrogate(x, y, aux)`. Only the surrogate's gradient with respect to
    `x` is used, so a surrogate such as `G(z*) + (x - stop_gradient(x))`
    (value of the forward, identity gradient) or `G(z* + P (x -
    stop_gradient(x)))` (a linearised inversion) is a function of `x` built
    from the forward's result.

    Args:
        forward: callable `x -> y` (or `x -> (y, aux)` with
            `forward_has_aux`), the real transform (may be
            non-differentiable; it must run on TensorFlow tensors).
        surrogate: differentiable callable with the shape of `y`: `x -> y'`,
            `(x, y) -> y'` or `(x, y, aux) -> y'` (see above), or `None` for
            the identity (then `y` must have the shape of `x`).
        surrogate_takes_output: call the surrogate as `surrogate(x, y)`.
        forward_has_aux: the forward returns `(y, aux)`; the surrogate is
            called as `surrogate(x, y, aux)`.
        **kwargs: base layer keyword arguments (`name`, ...).

    Call arguments:
        inputs: float tensor.
        training: unused.

    Returns:
        `forward(inputs)`, whose gradient is the surrogate's.

    Raises:
        ValueError: if `forward` or `surrogate` is not callable, or a flag is
            not a bool.

    References:
        Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense
        of Security", ICML 2018.
    """

    def __init__(self, forward, surrogate=None, *, surrogate_takes_output=False,
                 forward_has_aux=False, **kwargs):
        super().__init__(**kwargs)
        self.surrogate_takes_output = _validate.check_bool(
            surrogate_takes_output, name="surrogate_takes_output")
        self.forward_has_aux = _validate.check_bool(forward_has_aux, name="forward_has_aux")
        if not callable(forward):
            raise ValueError(f"Expected `forward` to be callable. Received: forward={forward!r}")
        if surrogate is not None and not callable(surrogate):
            raise ValueError(
                f"Expected `surrogate` to be callable or None. Received: surrogate={surrogate!r}"
            )
        self.forward = forward
        self.surrogate = surrogate

    def build(self, input_shape):
        _build_sublayers(input_shape, self.forward, self.surrogate)

    def _surrogate_of(self, x, y, aux):
        if self.surrogate is None:
            return x
        if self.forward_has_aux:
            return self.surrogate(x, y, aux)
        if self.surrogate_takes_output:
            return self.surrogate(x, y)
        return self.surrogate(x)

    def call(self, inputs, training=False):
        del training
        forward = self.forward

        @tf.custom_gradient
        def approximated(x):
            out = forward(x)
            if self.forward_has_aux:
                y, aux = out
                aux = tf.nest.map_structure(tf.stop_gradient, aux)
            else:
                y, aux = out, None
            y = tf.convert_to_tensor(y)
            y_const = tf.stop_gradient(y)

            def grad(upstream, variables=None):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y_surrogate = self._surrogate_of(x, y_const, aux)
                dx = tape.gradient(
                    y_surrogate,
                    x,
                    output_gradients=upstream,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                if variables:
                    # BPDA differentiates the input only; the defense's own
                    # parameters are not attacked through this path.
                    return dx, [tf.zeros_like(v) for v in variables]
                return dx

            return y, grad

        return approximated(tf.convert_to_tensor(inputs))

    def get_config(self):
        config = super().get_config()
        config.update(forward=_serialize(self.forward), surrogate=_serialize(self.surrogate),
                      surrogate_takes_output=self.surrogate_takes_output,
                      forward_has_aux=self.forward_has_aux)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["forward"] = _deserialize(config["forward"])
        config["surrogate"] = _deserialize(config.get("surrogate"))
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfrobust")
class EoT(keras.layers.Layer):
    """Expectation over transformation: the average of a random model over `n` draws.

    The batch is tiled `n` times (`[n * B, ...]`, draw-major), passed through
    the model in one call, reshaped to `[n, B, ...]` and averaged, so one
    forward (and one backward) covers every draw. When `n * B` exceeds
    `max_batch`, the draws are split into chunks of at most `max_batch`
    examples (a short, static loop over chunks). The model must draw its
    randomness independently per example of a batch (as noise layers do);
    randomness shared across a batch would correlate the draws.

    With `average="logits"` the result is the mean of the logits. With
    `average="probs"` it is `log(mean(softmax(logits)))`, the log of the
    averaged probabilities, which is still logit-like (its softmax is the
    averaged probabilities), computed stably with `logsumexp`.

    Args:
        model: random callable `x -> logits [B, K]`.
        n: number of draws (>= 1).
        average: `"logits"` or `"probs"`.
        max_batch: largest number of examples per model call, or `None` for
            no limit.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: float tensor `[B, ...]`.
        training: unused (the wrapped model must be random at inference).

    Returns:
        Float tensor `[B, K]`.

    Declared flags: `uses_eot = True`; `randomized` and
    `optimizes_at_inference` are those the wrapped model declares (an
    average of n random draws is still random).

    Raises:
        ValueError: on a non-callable model, `n < 1`, an unknown `average`
            or `max_batch < 1`.

    References:
        Athalye, Engstrom, Ilyas & Kwok, "Synthesizing Robust Adversarial
        Examples", ICML 2018. Athalye, Carlini & Wagner, "Obfuscated
        Gradients Give a False Sense of Security", ICML 2018.
    """

    uses_eot = True

    def __init__(self, model, n=10, average="logits", max_batch=4096, **kwargs):
        super().__init__(**kwargs)
        if not callable(model):
            raise ValueError(f"Expected `model` to be callable. Received: model={model!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected `n` to be an integer >= 1. Received: n={n!r}")
        if average not in ("logits", "probs"):
            raise ValueError(f"Expected `average` to be 'logits' or 'probs'. Received: average={average!r}")
        if max_batch is not None and (
            isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1
        ):
            raise ValueError(
                f"Expected `max_batch` to be an integer >= 1 or None. Received: max_batch={max_batch!r}"
            )
        self.model = model
        self.n = n
        self.average = average
        self.max_batch = max_batch

    @property
    def randomized(self):
        return declared_flag(self.model, "randomized")

    @property
    def optimizes_at_inference(self):
        return declared_flag(self.model, "optimizes_at_inference")

    def _draws_per_call(self, batch):
        if self.max_batch is None or batch is None:
            return self.n
        return max(1, min(self.n, self.max_batch // batch))

    def build(self, input_shape):
        # The model sees the per-example shape of the inputs (only B grows).
        _build_sublayers(input_shape, self.model)

    def call(self, inputs, training=False):
        del training
        x = tf.convert_to_tensor(inputs)
        batch = tf.shape(x)[0]
        per_call = self._draws_per_call(x.shape[0])
        multiples = [1] * x.shape.rank
        parts = []
        for start in range(0, self.n, per_call):
            draws = min(per_call, self.n - start)
            multiples[0] = draws
            out = tf.convert_to_tensor(self.model(tf.tile(x, multiples)))
            out = tf.reshape(out, tf.concat([[draws, batch], tf.shape(out)[1:]], axis=0))
            if self.average == "logits":
                parts.append(tf.reduce_sum(out, axis=0))
            else:
                parts.append(tf.reduce_logsumexp(tf.nn.log_softmax(out, axis=-1), axis=0))
        if self.average == "logits":
            return tf.add_n(parts) / float(self.n)
        total = parts[0] if len(parts) == 1 else tf.reduce_logsumexp(tf.stack(parts), axis=0)
        return total - math.log(self.n)

    def get_config(self):
        config = super().get_config()
        config.update(
            model=_serialize(self.model), n=self.n, average=self.average, max_batch=self.max_batch
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = _deserialize(config["model"])
        return cls(**config)
