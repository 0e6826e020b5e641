"""SPSA: a gradient-free PGD whose gradient is a finite-difference estimate.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks.spsa import SPSA

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
attack = SPSA(threats.LpBall(np.inf, 0.1), steps=10, samples=512, seed=0)
x_adv = attack(model, x)            # queries model outputs only
```

Only the gradient source differs from `PGD`: `SPSA.value_and_grad` replaces
the backward pass by the simultaneous-perturbation estimate of Uesato et
al. (2018), and the update rule is `tfrobust.optim.Adam` (through
`optimizers.OptimStep`). Everything else (projection into
threat ∩ box after every step, best-iterate bookkeeping, early stopping,
restarts, seeding) is PGD's own loop.

The estimate at `x` with `n = samples / 2` Rademacher directions
`v_i ∈ {-1, +1}^d` (each used with both signs, `samples` evaluations) is

    g = 1/n Σ_i (f(x + δ v_i) - f(x - δ v_i)) / (2 δ) · v_i,

with `f` the per-example objective (the Carlini-Wagner margin by default,
negated when targeted). The evaluations are vectorized: `chunk_size` copies
of the batch go through the model per call (`tf.vectorized_map`, so any
per-example loss function works), and the chunks are accumulated in a
`tf.while_loop`.
"""

import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import optim
from tfrobust.attacks.optimizers import OptimStep
from tfrobust.attacks.pgd import PGD

__all__ = ["SPSA"]

# Offset of the perturbation stream's seed from the random-start stream's.
_NOISE_SEED_OFFSET = 104729


class SPSA(PGD):
    """Simultaneous perturbation stochastic approximation attack (gradient-free).

    PGD with Adam, whose gradient is the SPSA estimate (see the module
    docstring); it reads only the model's outputs. The result is the first
    adversarial iterate of each example (so each example stops being
    improved once it is adversarial), otherwise the iterate of highest loss.
    With `early_stop` the loop ends as soon as every example is adversarial.

    Args:
        threat: `tfrobust.threats.LpBall`-like threat (L∞ in the paper).
        steps: number of Adam steps (the paper runs 100 or more).
        samples: function evaluations per step, `samples / 2` Rademacher
            directions each evaluated at `x ± delta v` (8192 in the paper).
        chunk_size: evaluations per batched model call (128, as the
            original's `nb_sample`); must divide `samples`.
        delta: perturbation size of the finite differences (0.01).
        learning_rate: Adam's learning rate (0.01).
        loss: the objective; `"margin"` (the paper's logit margin), `"ce"`,
            `"dlr"` or a callable `(logits, y) -> [B]`.
        random_start: start from a uniform point of the ball (the paper
            starts from x).
        restarts: independent runs, the best kept per example.
        bounds: `(lo, hi)` input domain.
        seed: integer seed of the perturbations and random starts; two
            attacks with one seed give the same result. The two streams'
            generators are declared by `random_generators()`.
        early_stop: stop once every example is adversarial.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: on bad hyper-parameters (odd or non-positive `samples`
            or `chunk_size`, `samples` not a multiple of `chunk_size`,
            non-positive `delta` or `learning_rate`), or as `PGD`.

    References:
        Uesato, O'Donoghue, van den Oord & Kohli, "Adversarial Risk and the
        Dangers of Evaluating Against Weak Attacks", ICML 2018.
        Spall, "Multivariate stochastic approximation using a simultaneous
        perturbation gradient approximation", IEEE TAC 1992.
    """

    black_box = True

    def __init__(
        self,
        threat,
        *,
        steps=100,
        samples=8192,
        chunk_size=128,
        delta=0.01,
        learning_rate=0.01,
        loss="margin",
        random_start=False,
        restarts=1,
        bounds=(0.0, 1.0),
        seed=None,
        early_stop=True,
        validate="full",
    ):
        samples = _validate.check_int(samples, name="samples", minimum=2)
        chunk_size = _validate.check_int(chunk_size, name="chunk_size", minimum=2)
        if samples % 2:
            raise ValueError(
                f"Expected `samples` to be even (pairs x ± delta v). Received: samples={samples}"
            )
        chunk_size = min(chunk_size, samples)
        if chunk_size % 2 or samples % chunk_size:
            raise ValueError(
                "Expected an even `chunk_size` dividing `samples`. "
                f"Received: chunk_size={chunk_size}, samples={samples}"
            )
        self.samples = samples
        self.chunk_size = chunk_size
        self.delta = _validate.check_float(delta, name="delta", minimum=0.0, exclusive_minimum=True)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", minimum=0.0,
                                                   exclusive_minimum=True)
        super().__init__(
            threat,
            steps=steps,
            step_size=self.learning_rate,
            random_start=random_start,
            loss=loss,
            optimizer=OptimStep(optim.Adam(folded=False)),  # the reference's form
            restarts=restarts,
            bounds=bounds,
            seed=seed,
            early_stop=early_stop,
            validate=validate,
        )
        # The finite-difference directions are random even from a fixed start.
        self.randomized = True
        self._noise_rng = None

    def get_config(self):
        config = super().get_config()
        config.update(
            samples=self.samples, chunk_size=self.chunk_size, delta=self.delta,
            learning_rate=self.learning_rate,
        )
        return config

    def random_generators(self):
        """Both generators: the random starts' and the perturbations'."""
        return [self._generator(), self._noise_generator()]

    def _noise_generator(self):
        if self._noise_rng is None:
            seed = None if self.seed is None else (self.seed + _NOISE_SEED_OFFSET) % 2**32
            self._noise_rng = _random.make_generator(seed)
        return self._noise_rng

    def _noise_seed(self):
        """A fresh stateless seed `[2]` for one gradient estimate."""
        return _random.next_seed(self._noise_generator())

    def _run(self, model, x, y, targeted):
        # Create the generators eagerly: a variable made while tracing a
        # retraced tf.function would be rejected.
        self.random_generators()
        return super()._run(model, x, y, targeted)

    def value_and_grad(self, loss_fn, x):
        """The loss at `x` and its SPSA gradient estimate (no backward pass).

        Args:
            loss_fn: callable mapping a batch shaped like `x` to per-example
                losses `[B]` (each example's loss depending on that example
                only). It is evaluated on `samples` perturbed copies of `x`.
            x: float tensor `[B, ...]`.

        Returns:
            `(loss [B], grad like x)`, float32.
        """
        x = tf.cast(tf.convert_to_tensor(x), tf.float32)
        seed = self._noise_seed()
        half = self.chunk_size // 2
        num_chunks = self.samples // self.chunk_size
        noise_shape = tf.concat([[half], tf.shape(x)], axis=0)
        delta = tf.constant(self.delta, tf.float32)

        def evaluate(v):
            return tf.cast(loss_fn(x + delta * v), tf.float32)

        def body(k, total):
            bits = tf.random.stateless_uniform(
                noise_shape, tf.random.experimental.stateless_fold_in(seed, k),
                minval=0, maxval=2, dtype=tf.int32,
            )
            v = tf.cast(2 * bits - 1, tf.float32)
            # Antithetic pairs: the first half at x + delta v, the second at x - delta v.
            values = tf.vectorized_map(evaluate, tf.concat([v, -v], axis=0), fallback_to_while_loop=True)
            diff = values[:half] - values[half:]  # [half, B]
            diff = tf.reshape(diff, tf.concat([tf.shape(diff), tf.ones([x.shape.rank - 1], tf.int32)], 0))
            return k + 1, total + tf.reduce_sum(diff * v, axis=0)

        _, total = tf.while_loop(
            lambda k, total: k < num_chunks, body, (tf.constant(0), tf.zeros_like(x)),
        )
        grad = total / (2.0 * delta * float(self.samples // 2))
        return tf.cast(loss_fn(x), tf.float32), grad

