"""The overpowered min-max attack of the Robust Manifold Defense, in latent space.

Example:

```python
import numpy as np
from tfrobust import models
from tfrobust.attacks import OverpoweredAttack

generator = models.manifold.mnist_vae().decoder          # z [B, 20] -> [B, 28, 28, 1]
classifier = models.manifold.madry_mnist_cnn()
op = OverpoweredAttack(generator, eps=1.5, steps=100, seed=0)
result = op(classifier, n=8)            # 8 pairs (G(z1), G(z2)), both latents free
print(result.success_rate)              # pairs within eps whose classes differ
x = np.zeros([8, 28, 28, 1], "float32")
normal = op(classifier, z1=np.zeros([8, 20], "float32"))  # z1 fixed: the non-overpowered variant
```

The attack looks for two points of the generator's range, `G(z1)` and
`G(z2)`, that are close (‖G(z1) − G(z2)‖ ≤ eps) but classified differently:
if none exists, the classifier is robust on the manifold (Jalal et al.,
§3). It maximizes the symmetric cross-entropy between the classifier's
softmaxes on the two images under a Lagrangian constraint,

    min_{z1, z2} max_{λ ≥ 0}  −[CE(p1, p2) + CE(p2, p1)] + λ (d(G(z1), G(z2)) − eps)
                               + z_reg (‖z1‖ + ‖z2‖),

with descent on the latents and projected ascent on the per-pair λ
(`λ ← max(0, λ + lambda_lr (d − eps))`). A pair stops as soon as it
succeeds (classes differ and d ≤ eps), as in the original `opmaxmin`. All
pairs run at once in one compiled `tf.while_loop`.

Defaults follow the MNIST original (`adv-mnist/attacks.py: opmaxmin`,
called with 500 steps by `adv_train.py`): latents ~ U[0, 1)^d, λ = 1,
L2 distance with eps = the training eps (1.5), z penalty 1e-4. The
original's YellowFin optimiser (an auto-tuned momentum SGD) is not
available; Adam with lr 0.05 stands in for it, and λ is updated by plain
projected gradient ascent (lr 0.1) instead of a second YellowFin.
"""

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import optim

__all__ = ["OverpoweredAttack", "OverpoweredResult", "symmetric_cross_entropy"]

_Z_INITS = ("uniform", "normal")
_DISTANCES = ("l2", "mse")


def symmetric_cross_entropy(logits1, logits2):
    """`CE(p1, p2) + CE(p2, p1)` per row, with `p = softmax(logits)`.

    Args:
        logits1, logits2: float tensors `[B, K]`.

    Returns:
        float32 `[B]`; differentiable in both arguments.
    """
    logits1 = tf.cast(logits1, tf.float32)
    logits2 = tf.cast(logits2, tf.float32)
    log_p1 = tf.nn.log_softmax(logits1)
    log_p2 = tf.nn.log_softmax(logits2)
    return -tf.reduce_sum(tf.exp(log_p1) * log_p2 + tf.exp(log_p2) * log_p1, axis=-1)


def pair_distance(x1, x2, kind="l2"):
    """Per-pair distance `[B]`: the L2 norm of `x1 - x2` or its per-pixel MSE."""
    diff = tf.reshape(tf.cast(x1, tf.float32) - tf.cast(x2, tf.float32), [tf.shape(x1)[0], -1])
    if kind == "mse":
        return tf.reduce_mean(tf.square(diff), axis=-1)
    # Gradient of sqrt at 0 is infinite: pairs that start equal need a guard.
    return tf.sqrt(tf.reduce_sum(tf.square(diff), axis=-1) + 1e-12)


class OverpoweredResult(NamedTuple):
    """Result of `OverpoweredAttack`.

    Attributes:
        x1, x2: float32 image batches `G(z1)`, `G(z2)`.
        z1, z2: float32 latents `[B, d]`.
        distance: float32 `[B]`, d(x1, x2) in the attack's distance.
        differ: bool `[B]`, whether the classifier's predictions differ.
        success: bool `[B]`, `differ` and `distance <= eps`.
        lam: float32 `[B]`, the final Lagrange multipliers (all >= 0).
    """

    x1: tf.Tensor
    x2: tf.Tensor
    z1: tf.Tensor
    z2: tf.Tensor
    distance: tf.Tensor
    differ: tf.Tensor
    success: tf.Tensor
    lam: tf.Tensor

    @property
    def success_rate(self):
        """Fraction of the pairs that succeeded (a Python float)."""
        return float(np.mean(np.asarray(self.success)))


class OverpoweredAttack:
    """Two latents, close in image space, classified differently (min-max, batched).

    Args:
        generator: callable (Keras model) mapping latents `[B, d]` to images
            in the classifier's input domain; `d` is read from its input
            shape (or give `latent_dim`).
        eps: distance budget (> 0): L2 norm of `G(z1) - G(z2)` (default 1.5,
            the MNIST training eps), or per-pixel MSE with `distance="mse"`
            (the CelebA code's 0.01).
        steps: maximum number of iterations (500, as `adv_train.py` calls it).
        learning_rate: latent step size (see the module docstring).
        optimizer: "adam", "momentum" or "sgd" (`tfrobust.optim`), or an
            instance (then `learning_rate` is ignored).
        lambda_init: initial multiplier (1.0, MNIST; the CelebA code: 250).
        lambda_lr: step of the projected ascent on λ.
        z_reg: weight of the `‖z1‖ + ‖z2‖` penalty (1e-4).
        z_init: "uniform" (U[0, 1), the MNIST original) or "normal".
        distance: "l2" or "mse".
        early_stop: freeze a pair once it succeeds.
        latent_dim: size of z when the generator does not declare it.
        seed: seed of the latent draws (None: non-deterministic).

    Call arguments:
        model: the classifier, a callable returning logits `[B, K]`.
        n: number of pairs (required unless `z1` is given).
        z1: optional latents `[B, d]` held fixed (the non-overpowered
            variant, `latent_normal`: only z2 moves).

    Returns:
        An `OverpoweredResult`.

    Raises:
        ValueError: on bad hyper-parameters, a generator without a known
            latent size, `n < 1`, or a `z1` of the wrong shape or non-finite.

    References:
        Jalal, Ilyas, Daskalakis & Dimakis, "The Robust Manifold Defense:
        Adversarial Training using Generative Models", arXiv 1712.09196.
    """

    randomized = True
    black_box = False
    uses_eot = False

    def __init__(self, generator, *, eps=1.5, steps=500, learning_rate=0.05, optimizer="adam",
                 lambda_init=1.0, lambda_lr=0.1, z_reg=1e-4, z_init="uniform", distance="l2",
                 early_stop=True, latent_dim=None, seed=None):
        if not callable(generator):
            raise _validate.error("generator", "a callable mapping latents [B, d] to images", generator)
        self.generator = generator
        self.eps = _validate.check_float(eps, name="eps", minimum=0.0, exclusive_minimum=True)
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.optimizer = optim.get(optimizer, learning_rate)
        self.learning_rate = self.optimizer.learning_rate
        self.lambda_init = _validate.check_float(lambda_init, name="lambda_init", minimum=0.0)
        self.lambda_lr = _validate.check_float(lambda_lr, name="lambda_lr", minimum=0.0)
        self.z_reg = _validate.check_float(z_reg, name="z_reg", minimum=0.0)
        self.z_init = _validate.check_choice(z_init, name="z_init", choices=_Z_INITS)
        self.distance = _validate.check_choice(distance, name="distance", choices=_DISTANCES)
        self.early_stop = _validate.check_bool(early_stop, name="early_stop")
        self.latent_dim = _latent_dim(generator, latent_dim)
        self.seed = _random.check_seed(seed, allow_none=True)
        self._rng = None
        self._compiled = tf.function(functools.partial(type(self)._attack, self))

    def get_config(self):
        """JSON-able settings, for reports."""
        return {"name": type(self).__name__, "eps": self.eps, "steps": self.steps,
                "optimizer": self.optimizer.get_config(), "lambda_init": self.lambda_init,
                "lambda_lr": self.lambda_lr, "z_reg": self.z_reg, "z_init": self.z_init,
                "distance": self.distance, "early_stop": self.early_stop, "latent_dim": self.latent_dim,
                "seed": self.seed}

    def random_generators(self):
        """The latent draws' generator (declared for exact training resume)."""
        if self._rng is None:
            self._rng = _random.make_generator(self.seed)
        return [self._rng]

    def _draw(self, n):
        seed = _random.next_seed(self.random_generators()[0])
        shape = tf.stack([n, self.latent_dim])
        if self.z_init == "uniform":
            return tf.random.stateless_uniform(shape, seed)
        return tf.random.stateless_normal(shape, seed)

    def __call__(self, model, n=None, *, z1=None):
        if not callable(model):
            raise _validate.error("model", "a callable mapping images to logits", model)
        fixed = z1 is not None
        if fixed:
            z1 = tf.convert_to_tensor(z1, tf.float32)
            if z1.shape.rank != 2 or z1.shape[-1] != self.latent_dim or z1.shape[0] == 0:
                raise ValueError(f"Expected `z1` of shape [B, {self.latent_dim}] with B >= 1. "
                                 f"Received: z1.shape={tuple(z1.shape)}")
            if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(z1))):
                raise ValueError("Expected `z1` to be finite. Received: z1 containing NaN or Inf")
            if n is not None and _validate.check_int(n, name="n", minimum=1) != int(z1.shape[0]):
                raise ValueError(f"Expected `n` to match z1's batch {z1.shape[0]}. Received: n={n}")
            n = int(z1.shape[0])
            z2 = self._draw(n)
        else:
            n = _validate.check_int(n, name="n", minimum=1)
            z1 = self._draw(n)
            z2 = self._draw(n)
        return OverpoweredResult(*self._compiled(model, z1, z2, tf.constant(fixed)))

    def from_images(self, model, x, projector):
        """The non-overpowered variant on real images: z1 = projector's latent of `x`.

        Args:
            model: the classifier.
            x: images `[B, ...]`.
            projector: an object with `project(x) -> (z, x_hat)` (e.g.
                `tfrobust.defenses.InvertAndClassify`), or a callable
                `x -> z`.

        Returns:
            An `OverpoweredResult` whose `x1` is the projection of `x`.
        """
        if callable(getattr(projector, "project", None)):
            z1 = projector.project(x)[0]
        elif callable(projector):
            z1 = projector(x)
        else:
            raise _validate.error("projector", "an object with project(x) -> (z, x_hat) or a callable x -> z",
                                  projector)
        return self(model, z1=tf.stop_gradient(z1))

    def _attack(self, model, z1, z2, fixed):
        eps = tf.constant(self.eps, tf.float32)
        n = tf.shape(z1)[0]
        lam = tf.fill([n], tf.constant(self.lambda_init, tf.float32))
        params = (z1, z2)
        state = self.optimizer.init(params)
        done = tf.zeros([n], tf.bool)

        def evaluate(params):
            x1 = self.generator(params[0], training=False)
            x2 = self.generator(params[1], training=False)
            l1, l2 = model(x1), model(x2)
            d = pair_distance(x1, x2, self.distance)
            differ = tf.not_equal(tf.argmax(l1, -1), tf.argmax(l2, -1))
            return x1, x2, l1, l2, d, differ

        def cond(i, params, state, lam, done):
            go = i < self.steps
            if self.early_stop:
                go = tf.logical_and(go, tf.logical_not(tf.reduce_all(done)))
            return go

        def body(i, params, state, lam, done):
            with tf.GradientTape() as tape:
                tape.watch(params)
                _, _, l1, l2, d, differ = evaluate(params)
                znorm = tf.norm(params[0], axis=-1) + tf.norm(params[1], axis=-1)
                per_pair = -symmetric_cross_entropy(l1, l2) + lam * (d - eps) + self.z_reg * znorm
                loss = tf.reduce_sum(per_pair)  # pairs are independent: the sum's gradient is per pair
            grads = tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = tuple(tf.where(tf.math.is_finite(g), g, tf.zeros_like(g)) for g in grads)
            success = tf.logical_and(differ, d <= eps)
            if self.early_stop:
                done = tf.logical_or(done, success)
            active = tf.logical_not(done)[:, None]
            # The non-overpowered variant holds z1: zero its gradient and freeze it.
            grads = (tf.where(fixed, tf.zeros_like(grads[0]), grads[0]), grads[1])
            params, state = self.optimizer.step(params, grads, state, mask=active)
            new_lam = tf.maximum(lam + self.lambda_lr * (d - eps), 0.0)
            lam = tf.where(done, lam, new_lam)
            return i + 1, params, state, lam, done

        _, params, _, lam, _ = tf.while_loop(
            cond, body, (tf.constant(0), params, state, lam, done), maximum_iterations=self.steps)
        x1, x2, _, _, d, differ = evaluate(params)
        success = tf.logical_and(differ, d <= eps)
        return x1, x2, params[0], params[1], d, differ, success, lam


def _latent_dim(generator, latent_dim):
    if latent_dim is not None:
        return _validate.check_int(latent_dim, name="latent_dim", minimum=1)
    shape = getattr(generator, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0] if len(shape) == 1 else None
    if shape is None or len(shape) != 2 or shape[-1] is None:
        raise ValueError("Expected a generator with a declared input shape [None, d] or `latent_dim`. "
                         f"Received: generator input_shape={shape!r}")
    return int(shape[-1])
