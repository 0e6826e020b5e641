"""The latent-space (DefenseGAN-break) attack of Jalal et al.: search z, return G(z).

Example:

```python
import numpy as np
from tfrobust import models, threats
from tfrobust.attacks import LatentAttack

generator = models.manifold.mnist_vae().decoder
classifier = models.manifold.madry_mnist_cnn()
x = np.asarray(generator(np.zeros([2, 20], "float32")))
attack = LatentAttack(generator, classifier, threats.LpBall(2, 4.0), copies=2, noise_samples=4, steps=20, seed=0)
x_adv = attack(classifier, x, np.array([1, 2]))    # points of the generator's range near x
```

An invert-and-classify defense classifies (nearly) `G(z)` for any input
`G(z)` of its generator's range, so an attacker may search the latent space
directly (`defense-gan-break/break/make_intermediates.py`): start every
image's `copies` from its latent (the defense's own projection), then run
Adam on z and SGD ascent on a per-copy Lagrange multiplier λ of

    loss = mean_noise[ z_y − max_{j≠y} z_j ](G(z) + n) + λ · dist,
    dist = MSE(G(z), x)   (replaced by −1 once it is ≤ budget / 2),

where the classification term (the C&W margin) is averaged over
`noise_samples` random perturbations `n` of L2 norm 0.5, so that the result
survives the projection's error (EoT). It stops when 90% of the copies are
in budget with margin ≤ −1. The image returned per input is its in-budget
copy of lowest margin (the closest copy when none is in budget).

Original settings: 100 copies, 100 noise vectors of norm 0.5, Adam lr 0.05
on z, SGD lr 10 000 on λ from 1000, MSE budget THR = 0.02 (in pixel L2,
sqrt(0.02 · 784) ≈ 4: the break counts a point in bounds when
‖x_adv − x‖₂ < 4), 10 000 steps. Here the budget is the threat's: with
`mse_budget=None` it is `eps² / D` (D pixels), so `LpBall(2, 4.0)` gives
THR ≈ 0.0204 on MNIST and `LpBall(2, 2.0)` gives 0.0051, Athalye et al.'s
per-pixel figure. λ is clamped at 0 (a multiplier of an inequality).

It is an `Attack` like the transfer attack: it is crafted on the generator
and classifier given to the constructor; the model it is called with (the
defense) is used only for labels when `y` is None.
"""

import functools

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import losses
from tfrobust import optim
from tfrobust.attacks.base import Attack

__all__ = ["LatentAttack"]


class LatentAttack(Attack):
    """DefenseGAN-style latent attack with a Lagrange multiplier and EoT over noise.

    Args:
        generator: callable (Keras model) latents `[B, d]` -> images.
        classifier: the defense's classifier, a callable returning logits.
        threat: an L2 `LpBall` (default eps 4.0, the break's in-bounds test).
        projector: how to start: an object with `project(x) -> (z, x_hat)`
            (e.g. `tfrobust.defenses.InvertAndClassify`) or a callable
            `x -> z`; None starts from N(0, I) draws (weaker).
        copies: copies per image (100).
        noise_samples: EoT noise vectors per step (100).
        noise_norm: their L2 norm (0.5).
        steps: maximum iterations (10 000).
        learning_rate: Adam step on z (0.05).
        lambda_init, lambda_lr: the multiplier's start (1000) and ascent
            step (10 000).
        mse_budget: per-pixel MSE budget; None derives it from the threat.
        stop_fraction: stop once this fraction of copies succeed (0.9).
        latent_dim: size of z if the generator does not declare it.
        bounds, validate: as for every `Attack` (validation "cheap" by
            default: the defended model's forward pass is expensive).
        seed: seed of the noise and random starts.

    Raises:
        ValueError: on bad hyper-parameters, a non-L2 threat, or a generator
            without a known latent size.

    References:
        Jalal et al., "The Robust Manifold Defense", arXiv 1712.09196;
        Samangouei et al., "Defense-GAN", ICLR 2018; Athalye, Carlini &
        Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018.
    """

    randomized = True

    def __init__(self, generator, classifier, threat=None, *, projector=None, copies=100, noise_samples=100,
                 noise_norm=0.5, steps=10000, learning_rate=0.05, lambda_init=1000.0, lambda_lr=10000.0,
                 mse_budget=None, stop_fraction=0.9, latent_dim=None, bounds=(0.0, 1.0), validate="cheap",
                 seed=None):
        from tfrobust import threats as threats_lib
        from tfrobust.attacks.overpowered import _latent_dim

        threat = threats_lib.LpBall(2, 4.0) if threat is None else threat
        super().__init__(threat, bounds=bounds, validate=validate)
        if float(getattr(threat, "p", 0)) != 2.0:
            raise _validate.error("threat", "an L2 LpBall (the budget is an MSE)", threat)
        for name, fn in (("generator", generator), ("classifier", classifier)):
            if not callable(fn):
                raise _validate.error(name, "a callable", fn)
        if projector is not None and not callable(projector) and not callable(getattr(projector, "project", None)):
            raise _validate.error("projector", "None, an object with project(x) -> (z, x_hat) or a callable x -> z",
                                  projector)
        self.generator, self.classifier, self.projector = generator, classifier, projector
        self.copies = _validate.check_int(copies, name="copies", minimum=1)
        self.noise_samples = _validate.check_int(noise_samples, name="noise_samples", minimum=1)
        self.noise_norm = _validate.check_float(noise_norm, name="noise_norm", minimum=0.0)
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.optimizer = optim.Adam(learning_rate)
        self.lambda_init = _validate.check_float(lambda_init, name="lambda_init", minimum=0.0)
        self.lambda_lr = _validate.check_float(lambda_lr, name="lambda_lr", minimum=0.0)
        self.mse_budget = (None if mse_budget is None else
                           _validate.check_float(mse_budget, name="mse_budget", minimum=0.0, exclusive_minimum=True))
        self.stop_fraction = _validate.check_float(stop_fraction, name="stop_fraction", minimum=0.0, maximum=1.0)
        self.latent_dim = _latent_dim(generator, latent_dim)
        self.seed = _random.check_seed(seed, allow_none=True)
        self._rng = None
        self._compiled = tf.function(functools.partial(type(self)._attack, self))

    def get_config(self):
        config = super().get_config()
        config.update(copies=self.copies, noise_samples=self.noise_samples, noise_norm=self.noise_norm,
                      steps=self.steps, learning_rate=self.optimizer.learning_rate, lambda_init=self.lambda_init,
                      lambda_lr=self.lambda_lr, mse_budget=self.mse_budget, stop_fraction=self.stop_fraction,
                      seed=self.seed)
        return config

    def _start(self, x):
        if self.projector is None:
            return tf.random.stateless_normal([tf.shape(x)[0], self.latent_dim], self._next_seed())
        if callable(getattr(self.projector, "project", None)):
            return tf.stop_gradient(tf.convert_to_tensor(self.projector.project(x)[0], tf.float32))
        return tf.stop_gradient(tf.convert_to_tensor(self.projector(x), tf.float32))

    def _run(self, model, x, y, targeted):
        del model  # crafted on (generator, classifier); the defense gave the labels
        if targeted is not False:
            raise ValueError("Expected targeted=False: LatentAttack is untargeted. Received: targeted=True")
        dim = int(np.prod(x.shape[1:]))
        budget = self.mse_budget if self.mse_budget is not None else float(self.threat.eps) ** 2 / dim
        z0 = self._start(x)
        return self._compiled(x, tf.cast(y, tf.int32), z0, tf.constant(budget, tf.float32), self._next_seed())

    def _attack(self, x, y, z0, budget, seed):
        b, r = tf.shape(x)[0], self.copies
        xr = tf.repeat(x, r, axis=0)
        yr = tf.repeat(y, r, axis=0)
        z = tf.repeat(z0, r, axis=0)
        lam = tf.fill([b * r], tf.constant(self.lambda_init, tf.float32))
        state = self.optimizer.init(z)
        n = self.noise_samples

        def mse_of(x_gen):
            return tf.reduce_mean(tf.reshape(tf.square(x_gen - xr), [b * r, -1]), axis=-1)

        def mean_margin(x_gen, step_seed):
            # The original's margin, true logit minus the best other: minimized.
            noise = tf.random.stateless_normal(tf.concat([[n], tf.shape(x_gen)], 0), step_seed)
            flat = tf.reshape(noise, [n, b * r, -1])
            noise = noise / tf.reshape(tf.norm(flat, axis=-1) + 1e-12, [n, b * r] + [1] * (x.shape.rank - 1))
            noisy = tf.reshape(x_gen[None] + self.noise_norm * noise, tf.concat([[n * b * r], tf.shape(x_gen)[1:]], 0))
            logits = tf.cast(self.classifier(noisy), tf.float32)
            m = -losses.margin(logits, tf.tile(yr, [n]))
            return tf.reduce_mean(tf.reshape(m, [n, b * r]), axis=0)

        def cond(i, z, state, lam, frac):
            return tf.logical_and(i < self.steps, frac < self.stop_fraction)

        def body(i, z, state, lam, frac):
            step_seed = tf.random.experimental.stateless_fold_in(seed, i)
            with tf.GradientTape() as tape:
                tape.watch(z)
                x_gen = self.generator(z, training=False)
                margin = mean_margin(x_gen, step_seed)
                mse = mse_of(x_gen)
                dist = tf.where(mse <= budget / 2.0, -tf.ones_like(mse), mse)
                loss = tf.reduce_sum(margin + tf.stop_gradient(lam) * dist)
            grad = tape.gradient(loss, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grad = tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))
            z, state = self.optimizer.step(z, grad, state)
            lam = tf.maximum(lam + self.lambda_lr * dist, 0.0)
            ok = tf.logical_and(mse <= budget, margin <= -1.0)
            return i + 1, z, state, lam, tf.reduce_mean(tf.cast(ok, tf.float32))

        _, z, _, _, _ = tf.while_loop(cond, body, (tf.constant(0), z, state, lam, tf.constant(0.0)),
                                      maximum_iterations=self.steps)
        x_gen = self.generator(z, training=False)
        mse = tf.reshape(mse_of(x_gen), [b, r])
        logits = tf.cast(self.classifier(x_gen), tf.float32)
        margin = tf.reshape(-losses.margin(logits, yr), [b, r])
        in_budget = mse <= budget
        score = tf.where(in_budget, margin, np.inf)
        pick = tf.where(tf.reduce_any(in_budget, axis=1), tf.argmin(score, axis=1, output_type=tf.int32),
                        tf.argmin(mse, axis=1, output_type=tf.int32))
        rows = tf.range(b) * r + pick
        return tf.gather(x_gen, rows)
