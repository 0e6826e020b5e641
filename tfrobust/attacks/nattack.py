"""NAttack: black-box attack that learns a Gaussian distribution of adversarial examples.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks.nattack import NAttack

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
x_adv = NAttack(threats.LpBall(np.inf, 0.1), steps=20, seed=0)(model, x)
```

The search runs in the tanh space of the input (`tfrobust.optim`'s
change of variables): with `w0 = arctanh((2 (x - lo) / (hi - lo) - 1) ·
0.999999)` and `g(w) = lo + (hi - lo) (tanh(w) + 1) / 2`, a candidate for the mean `mu` and a draw `eps ~ N(0, I)` is

    x' = x + proj_ball(g(w0 + mu + sigma eps) - x),

which lies in the box because it is a convex combination of `x` and
`g(...)`. Its loss is the Carlini-Wagner loss on log-probabilities,
`f = max(0, log p_y - max_{j != y} log p_j)` (untargeted; targeted:
`max(0, max_{j != t} log p_j - log p_t)`), zero once x' is adversarial.
With the rewards `R_i = -f_i / 2` standardized over the population,
`A_i = (R_i - mean R) / (std R + 1e-7)`, the NES step is

    mu <- mu + lr / (n sigma) · Σ_i A_i eps_i.

Before every step the mean candidate `proj(g(w0 + mu))` is tested (the
paper's stopping rule); an example also stops as soon as one of its
population samples is adversarial, and that sample is returned. The batch ×
population is evaluated in one model call per step (or in `chunk_size`
slices of the population, regenerating the noise from its seed for the
update instead of storing it).
"""

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust import optim
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import is_adversarial
from tfrobust.attacks.base import nonfinite_rows
from tfrobust.attacks.pgd import _as_bool_tensor
from tfrobust.attacks.pgd import _expand

__all__ = ["NAttack", "nattack_loss"]

# Guard of the reward standardization (the original's 1e-7).
_STD_EPS = 1e-7
# The original clips the loss to [0, 1000].
_LOSS_CAP = 1000.0


def nattack_loss(logits, y, targeted=False):
    """NAttack's loss: the C&W margin on log-probabilities, clipped at 0.

    Untargeted: `max(0, log p_y - max_{j != y} log p_j)`; targeted (`y` the
    targets): `max(0, max_{j != y} log p_j - log p_y)`. It is zero exactly
    when the goal is met (up to ties) and is clipped at 1000 as in the
    original code. Log-probabilities come from `log_softmax`, which equals
    the original's `log(p + 1e-30)` without its underflow.

    Args:
        logits: float tensor `[N, K]`.
        y: int tensor `[N]` (true labels, or targets when `targeted`).
        targeted: Python bool or boolean scalar tensor.

    Returns:
        Float32 tensor `[N]`, to be minimized.

    References:
        Li, Li, Wang, Zhang & Gong, "NATTACK: Learning the Distributions of
        Adversarial Examples for an Improved Black-Box Attack on Deep Neural
        Networks", ICML 2019.
    """
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    mask = tf.one_hot(tf.cast(y, tf.int32), tf.shape(log_p)[-1], on_value=True, off_value=False, dtype=tf.bool)
    label = tf.reduce_sum(tf.where(mask, log_p, 0.0), axis=-1)
    other = tf.reduce_max(tf.where(mask, tf.constant(-np.inf, tf.float32), log_p), axis=-1)
    if isinstance(targeted, (bool, np.bool_)):
        gap = other - label if targeted else label - other
    else:
        gap = tf.where(tf.cast(targeted, tf.bool), other - label, label - other)
    return tf.clip_by_value(gap, 0.0, _LOSS_CAP)


class NAttack(Attack):
    """Natural-evolution-strategies attack over a Gaussian in tanh space.

    See the module docstring for the equations. Everything is batched: one
    compiled `tf.while_loop` over steps, each step one model call on all
    `B × samples` candidates (or `samples / chunk_size` calls).

    Args:
        threat: `tfrobust.threats.LpBall` with p = inf or 2 (the paper's
            threat models).
        steps: maximal number of NES steps (500).
        samples: population size n (300).
        sigma: standard deviation of the search distribution (0.1).
        learning_rate: NES learning rate (0.02).
        init_std: standard deviation of the random initial mean (0.001).
        chunk_size: population members per model call; `None` evaluates the
            whole population at once. Must divide `samples`.
        bounds: `(lo, hi)` input domain.
        seed: integer seed; two attacks with one seed give the same result.
        early_stop: end the loop once every example has succeeded (each
            example is frozen at its first success regardless).
        tanh_shrink: factor applied before `arctanh` (the original's
            `1 - 1e-6`). With it, a pixel on a box face starts at
            |w0| ≈ 7.25, where tanh' ≈ 2e-6: noise of std `sigma` cannot
            move it and the NES estimate never learns to. On images with
            most pixels at 0 or 1 (MNIST) the search then only touches the
            strokes, which is why NAttack is weak there (docs/benchmarks.md).
            A smaller value (e.g. 0.9: |w0| ≈ 1.47 on the faces) lets every
            pixel move; the candidate stays in threat ∩ box either way.
        validate: `"full"` or `"cheap"` (see `Attack`).

    Raises:
        ValueError: if the threat is not an L2 or L∞ ball, or on bad
            hyper-parameters.

    References:
        Li, Li, Wang, Zhang & Gong, "NATTACK: Learning the Distributions of
        Adversarial Examples for an Improved Black-Box Attack on Deep Neural
        Networks", ICML 2019.
    """

    randomized = True
    black_box = True

    def __init__(
        self,
        threat,
        *,
        steps=500,
        samples=300,
        sigma=0.1,
        learning_rate=0.02,
        init_std=0.001,
        chunk_size=None,
        bounds=(0.0, 1.0),
        seed=None,
        early_stop=True,
        tanh_shrink=optim.TANH_SHRINK,
        validate="full",
    ):
        super().__init__(threat, bounds=bounds, validate=validate)
        p = getattr(threat, "p", None)
        if not (callable(getattr(threat, "project", None)) and p in (2, np.inf)):
            raise ValueError(
                "Expected `threat` to be an L2 or L-inf LpBall (NAttack's threat "
                f"models). Received: threat={threat!r}"
            )
        self.steps = _validate.check_int(steps, name="steps", minimum=1)
        self.samples = _validate.check_int(samples, name="samples", minimum=2)
        chunk_size = self.samples if chunk_size is None else _validate.check_int(
            chunk_size, name="chunk_size", minimum=1)
        chunk_size = min(chunk_size, self.samples)
        if self.samples % chunk_size:
            raise ValueError(
                "Expected `chunk_size` to divide `samples`. "
                f"Received: chunk_size={chunk_size}, samples={self.samples}"
            )
        self.chunk_size = chunk_size
        positive = dict(minimum=0.0, exclusive_minimum=True)
        self.sigma = _validate.check_float(sigma, name="sigma", **positive)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", **positive)
        self.init_std = _validate.check_float(init_std, name="init_std", minimum=0.0)
        self.seed = _random.check_seed(seed, allow_none=True)
        self.early_stop = _validate.check_bool(early_stop, name="early_stop")
        self.tanh_shrink = _validate.check_float(tanh_shrink, name="tanh_shrink", minimum=0.0, maximum=1.0,
                                                 exclusive_minimum=True, exclusive_maximum=True)
        self._rng = None
        self._compiled = tf.function(self._search)

    def get_config(self):
        config = super().get_config()
        config.update(
            steps=self.steps, samples=self.samples, sigma=self.sigma,
            learning_rate=self.learning_rate, init_std=self.init_std,
            chunk_size=self.chunk_size, seed=self.seed, early_stop=self.early_stop,
            tanh_shrink=self.tanh_shrink,
        )
        return config

    def _run(self, model, x, y, targeted):
        # A tensor, so that targeted and untargeted calls share one trace.
        return self._compiled(model, x, y, _as_bool_tensor(targeted), self._next_seed())

    def _search(self, model, x, y, targeted, seed):
        w0 = optim.to_tanh_space(x, self.bounds, shrink=self.tanh_shrink)
        # The NES ascent step on mu, lr / (n sigma) * Σ A_i eps_i, frozen
        # for examples that are done.
        nes = optim.SGD(self.learning_rate / (self.samples * self.sigma))
        batch = tf.shape(x)[0]
        rank = x.shape.rank
        chunk, num_chunks = self.chunk_size, self.samples // self.chunk_size
        noise_shape = tf.concat([[chunk], tf.shape(x)], axis=0)
        flat_shape = tf.concat([[chunk * batch], tf.shape(x)[1:]], axis=0)
        y_tiled = tf.tile(y, [chunk])
        fold = tf.random.experimental.stateless_fold_in

        def candidate(w):
            """Maps tanh-space points [..., B, ...] to the ball around x."""
            image = optim.from_tanh_space(w, self.bounds)
            delta = image - x
            flat = tf.reshape(delta, tf.concat([[-1], tf.shape(x)[1:]], axis=0))
            return x + tf.reshape(self.threat.project(flat), tf.shape(delta))

        def noise(step_seed, k):
            return tf.random.stateless_normal(noise_shape, fold(step_seed, k))

        def population_losses(mu, step_seed):
            """Pass 1: losses [n, B] and each example's first adversarial sample."""

            def body(k, losses, found, pick):
                cand = candidate(w0 + mu + self.sigma * noise(step_seed, k))
                logits = model(tf.reshape(cand, flat_shape))
                # A non-finite loss would make the whole population's
                # standardized rewards NaN: count such samples as the worst.
                loss = nattack_loss(logits, y_tiled, targeted)
                loss = tf.where(nonfinite_rows(logits) | ~tf.math.is_finite(loss), _LOSS_CAP, loss)
                loss = tf.reshape(loss, [chunk, batch])
                succ = tf.reshape(is_adversarial(logits, y_tiled, targeted), [chunk, batch])
                first = tf.argmax(tf.cast(succ, tf.int32), axis=0, output_type=tf.int32)
                chosen = tf.gather_nd(cand, tf.stack([first, tf.range(batch)], axis=1))
                take = tf.logical_and(tf.reduce_any(succ, axis=0), tf.logical_not(found))
                pick = tf.where(_expand(take, x), chosen, pick)
                return k + 1, losses.write(k, loss), tf.logical_or(found, take), pick

            losses = tf.TensorArray(tf.float32, size=num_chunks)
            found = tf.zeros([batch], tf.bool)
            _, losses, found, pick = tf.while_loop(
                lambda k, *_: k < num_chunks, body, (tf.constant(0), losses, found, x)
            )
            return tf.reshape(losses.stack(), [self.samples, batch]), found, pick

        def nes_direction(advantage, step_seed):
            """Pass 2: Σ_i A_i eps_i, regenerating eps chunk by chunk."""
            advantage = tf.reshape(advantage, [num_chunks, chunk, batch])

            def body(k, total):
                weights = tf.reshape(advantage[k], tf.concat([[chunk, batch], tf.ones([rank - 1], tf.int32)], 0))
                return k + 1, total + tf.reduce_sum(weights * noise(step_seed, k), axis=0)

            _, total = tf.while_loop(lambda k, _: k < num_chunks, body, (tf.constant(0), tf.zeros_like(x)))
            return total

        def cond(i, mu, done, x_out):
            go = i < self.steps
            if self.early_stop:
                go = tf.logical_and(go, tf.logical_not(tf.reduce_all(done)))
            return go

        def body(i, mu, done, x_out):
            # The paper's test of the distribution's mean.
            x_mean = candidate(w0 + mu)
            hit = tf.logical_and(is_adversarial(model(x_mean), y, targeted), tf.logical_not(done))
            x_out = tf.where(_expand(hit, x), x_mean, x_out)
            done = tf.logical_or(done, hit)
            step_seed = fold(seed, i + 1)
            losses, found, pick = population_losses(mu, step_seed)
            rewards = -0.5 * losses
            mean, var = tf.nn.moments(rewards, axes=[0])
            advantage = (rewards - mean) / (tf.sqrt(var) + _STD_EPS)
            new = tf.logical_and(found, tf.logical_not(done))
            x_out = tf.where(_expand(new, x), pick, x_out)
            done = tf.logical_or(done, new)
            # SGD descends: the negated NES direction ascends the rewards.
            mu, _ = nes.step(mu, -nes_direction(advantage, step_seed), (), mask=_expand(~done, x))
            return i + 1, mu, done, x_out

        mu0 = self.init_std * tf.random.stateless_normal(tf.shape(x), fold(seed, 0))
        _, mu, done, x_out = tf.while_loop(
            cond, body, (tf.constant(0), mu0, tf.zeros([batch], tf.bool), x),
            maximum_iterations=self.steps,
        )
        # Unsuccessful examples return the final mean's candidate.
        return tf.where(_expand(done, x), x_out, candidate(w0 + mu))
