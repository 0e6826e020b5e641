"""`Defense`: a classifier behind a purification, declaring how to attack it.

Example:

```python
import keras
import numpy as np
import tensorflow as tf
from tfrobust import defenses, threats
from tfrobust.attacks import PGD

class Quantize(defenses.Defense):
    def purify(self, x, training=False):
        return tf.round(x * 4.0) / 4.0           # zero gradient everywhere

classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10)])
defense = Quantize(classifier)
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
logits = defense(x)                              # classifier(purify(x))
x_adv = PGD(threats.LpBall(np.inf, 0.1), steps=10)(defense.bpda(), x)
```

A defense is a model (`call(x) = classifier(purify(x))`) that also says how
an attacker should differentiate it, so that attacks never branch on "is
this a defense":

- `bpda()`: forward the real defense; backward through `surrogate` (the
  identity by default, `d purify / dx ≈ I`) and then the classifier
  (BPDA, Athalye et al. 2018), built on `tfrobust.models.wrappers.BPDA`.
- `eot(n)`: the average of `n` draws of a random defense
  (`tfrobust.models.wrappers.EoT`); `eot(n, bpda=True)` averages BPDA
  draws, for defenses that are both random and non-differentiable.
- declared flags `randomized` and `optimizes_at_inference`, read by the
  evaluation engine's sanity checks (never guessed from other attributes).

A purification that runs an optimiser (an inversion, Deep Image Prior) is
written functionally, with `tfrobust.defenses.minimize` (steps from
`tfrobust.optim` inside a `tf.while_loop`, models called through
`keras.Model.stateless_call` where they would otherwise create variables),
so that it runs inside the attacker's compiled loop and creates no
`tf.Variable` per call. When its surrogate needs more of the forward pass
than the purified input (e.g. the latent z* an inversion found), it
overrides `purify_with_state` to return `(x_purified, state)` and the
surrogate receives `state`.
"""

import inspect

import keras
import tensorflow as tf

from tfrobust.models.wrappers import BPDA
from tfrobust.models.wrappers import EoT

__all__ = ["Attackable", "Defense"]

_FLAGS = ("randomized", "optimizes_at_inference")


@keras.saving.register_keras_serializable(package="tfrobust")
class Defense(keras.Model):
    """A classifier behind an input purification: `classifier(purify(x))`.

    Subclasses override `purify` (and, where the identity is a poor
    approximation of its Jacobian, `surrogate`), and declare the class flags
    `randomized` (two calls on the same input may differ) and
    `optimizes_at_inference` (the forward pass runs an optimiser). A flag may
    also be a property when it depends on the constructor's arguments.

    Saving: `Defense` is registered under the package "tfrobust" and its
    config holds the serialized classifier, so it survives `.keras`
    save/load and `model.export`. A subclass registers itself
    (`keras.saving.register_keras_serializable`), adds its own constructor
    arguments to `get_config`, and deserializes any nested model it holds
    in `from_config` before calling `super().from_config(config)`.

    Args:
        classifier: a Keras model (or layer) `x -> logits`.
        **kwargs: base model keyword arguments (`name`, ...).

    Call arguments:
        inputs: float tensor `[B, ...]` in the classifier's input domain.
        training: passed to `purify` and the classifier.

    Returns:
        Logits `[B, K]`.

    Raises:
        ValueError: if `classifier` is not a Keras layer or model.
        TypeError: when a subclass is defined with a flag that is not a
            bool (or property), or overrides `purify_with_state` without
            `purify`.

    References:
        Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense
        of Security", ICML 2018.
    """

    randomized = False
    optimizes_at_inference = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Checked when the class is defined, so the engine can trust them.
        for flag in _FLAGS:
            value = inspect.getattr_static(cls, flag)
            if not isinstance(value, (bool, property)):
                raise TypeError(
                    f"Expected `{cls.__name__}.{flag}` to be a bool (or a property). "
                    f"Received: {flag}={value!r}"
                )
        if cls.purify_with_state is not Defense.purify_with_state and cls.purify is Defense.purify:
            raise TypeError(
                f"Expected `{cls.__name__}` to override `purify` together with `purify_with_state` "
                "(purify returns its first element). Received: only purify_with_state"
            )

    def __init__(self, classifier, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(classifier, keras.layers.Layer):
            raise ValueError(
                f"Expected `classifier` to be a Keras model or layer. Received: classifier={classifier!r}"
            )
        self.classifier = classifier

    def build(self, input_shape):
        # A purification that keeps the input's shape (the usual case) lets
        # the classifier be built here; others build it on the first call.
        if not self.classifier.built:
            self.classifier.build(input_shape)

    def purify(self, x, training=False):
        """The purified input (the identity here; subclasses override).

        Args:
            x: float tensor `[B, ...]`.
            training: whether the call is part of training.

        Returns:
            The tensor the classifier sees.
        """
        del training
        return x

    def purify_with_state(self, x, training=False):
        """`(x_purified, state)`: the purified input and what the surrogate may
        use of the forward pass (any nest of tensors; `()` here).

        Override it (together with `purify`) when the surrogate needs more
        than `x_purified`, e.g. the latent z* an inversion found.
        """
        return self.purify(x, training=training), ()

    def surrogate(self, x, x_purified, state=()):
        """A differentiable stand-in for `purify` in BPDA's backward pass.

        Only its gradient with respect to `x` is used. The default is the
        identity (`d purify / dx ≈ I`). A subclass may build it from the
        forward pass's result, e.g. `G(z* + P (x - stop_gradient(x)))` for a
        linearised inversion with latent `z* = state`.

        Args:
            x: the input tensor (watched by the tape).
            x_purified: the forward's output, a constant.
            state: the second element of `purify_with_state`, constants.

        Returns:
            A tensor of the shape of `x_purified`.
        """
        del x_purified, state
        return x

    def call(self, inputs, training=False):
        return self.classifier(self.purify(inputs, training=training), training=training)

    def bpda(self):
        """The defense for gradient attacks: forward the real defense,
        backward through `surrogate` and the classifier.

        Returns:
            An `Attackable` (a callable returning logits, with the defense's
            declared flags).
        """
        return Attackable(self)

    def eot(self, n, *, bpda=False, average="logits", max_batch=4096):
        """The average of `n` draws of the defense (Expectation over
        Transformation), differentiated through BPDA when `bpda=True`.

        Args:
            n: number of draws (>= 1).
            bpda: average `self.bpda()` instead of the defense itself (for a
                random, non-differentiable purification).
            average: "logits" or "probs" (see `EoT`).
            max_batch: largest number of examples per call (see `EoT`).

        Returns:
            An `EoT` layer (declares `uses_eot = True` and passes the
            defense's flags through).
        """
        model = self.bpda() if bpda else self
        return EoT(model, n=n, average=average, max_batch=max_batch)

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype
        config["classifier"] = keras.saving.serialize_keras_object(self.classifier)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


class Attackable:
    """A defense as gradient attacks see it: BPDA through its surrogate.

    Forward: `classifier(purify(x))`, the real defense (inference mode).
    Backward: the vector-Jacobian product of `surrogate(x, x_purified,
    state)`, then the classifier's. Built by `Defense.bpda()`.

    Args:
        defense: a `Defense`.

    Call arguments:
        x: float tensor `[B, ...]`.
        training: unused (attacks see the inference-mode defense).

    Returns:
        Logits `[B, K]`.
    """

    uses_eot = False

    def __init__(self, defense):
        if not isinstance(defense, Defense):
            raise ValueError(f"Expected `defense` to be a Defense. Received: defense={defense!r}")
        self.defense = defense
        # One BPDA layer for every call: nothing is created per forward pass.
        self._purify = BPDA(self._forward, defense.surrogate, forward_has_aux=True,
                            name=f"{defense.name}_bpda")

    def _forward(self, x):
        return self.defense.purify_with_state(x, training=False)

    @property
    def randomized(self):
        return self.defense.randomized

    @property
    def optimizes_at_inference(self):
        return self.defense.optimizes_at_inference

    def random_generators(self):
        """The defense's generators (its Keras seed generators)."""
        return [self.defense]

    def __call__(self, x, training=False):
        del training
        x = tf.convert_to_tensor(x)
        return self.defense.classifier(self._purify(x), training=False)

    def __repr__(self):
        return f"Attackable(bpda of {self.defense.name})"
