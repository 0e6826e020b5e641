"""`SmoothedClassifier`: Monte-Carlo voting over Gaussian input noise, as a Keras model.

Example:

```python
import keras
import numpy as np
from tfrobust.smoothing import SmoothedClassifier

base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                         keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
smoothed = SmoothedClassifier(base, sigma=0.25, n=32, vote="prediction", seed=0)
scores = smoothed(x)                       # [4, 10] log vote fractions
smoothed.set_knobs(sigma=0.5, n=128)       # run-time knobs (variables)
scores = smoothed(x, sigma=0.1, n=8)       # per-call overrides
top3 = smoothed.predict_top_k(x, k=3)      # [4, 3] classes, the original's rule
scores = smoothed.predict_dataset(x, batch_size=2)   # batch by batch (strategy=: over replicas)
```

The n noisy passes `base(x + sigma * eps)` are folded into the batch: each
base call sees `d * B` examples (d passes of the B inputs, draw-major), and
the chunks of d passes run in one `tf.while_loop` (no Python loop over
passes), so `n` may be a tensor (an exported model's serving argument).
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust.smoothing._noise import noisy_copies

__all__ = ["SmoothedClassifier", "VOTES"]

#: The vote rules of the smoothed-inference paper (original code names in
#: brackets): hard vote (mcpredict), rank weights 2^-r (mclogits), mean
#: logits (mcepredict).
VOTES = ("prediction", "weighted", "soft")
# Default largest number of examples per base call when chunk_size is None.
_MAX_BATCH = 4096
# Floor of a vote fraction before its log: keeps the scores finite (a class
# with no vote scores log(1e-12) ~ -27.6) so logit-based losses never see -inf.
_FLOOR = 1e-12


def _check_sigma(sigma, name="sigma"):
    return _validate.check_float(sigma, name=name, minimum=0.0)


def _check_n(n, name="n"):
    return _validate.check_int(n, name=name, minimum=1)


def _knob(value, variable, check, dtype):
    """A call-time override (validated when it is a Python number) or the variable."""
    if value is None:
        return tf.convert_to_tensor(variable, dtype)
    if not tf.is_tensor(value) and not hasattr(value, "dtype"):
        value = check(value)
    return tf.cast(tf.convert_to_tensor(value), dtype)


@keras.saving.register_keras_serializable(package="tfrobust")
class SmoothedClassifier(keras.Model):
    """A base classifier smoothed by Gaussian input noise and a vote over n passes.

    At inference (and in training) every call adds fresh noise
    `N(0, sigma^2 I)` to the input; the noise never switches off. At
    inference `n` noisy passes are combined by the vote rule:

    - `"soft"` (mcepredict): the mean of the logits; `call` returns it.
    - `"prediction"` (mcpredict, hard vote): the fraction of passes whose
      top-1 class is c; `call` returns `log(max(fraction, 1e-12))`.
    - `"weighted"` (mclogits): in each pass the class at rank r (0 = top)
      gets weight 2^-r; `call` returns the log of the summed weights
      normalised to sum to 1 (`log(max(w, 1e-12))`).

    Every output is logit-like: its argmax is the smoothed prediction, and
    for the two vote rules its softmax is the vote distribution. The vote
    counts have zero gradient almost everywhere, so for `"prediction"` and
    `"weighted"` the backward pass is that of `log(mean softmax)` over the
    same noisy passes (the soft smoothed classifier of Salman et al. 2019),
    through a straight-through estimator: value of the vote, gradient of the
    soft score. Gradient attacks on those rules therefore attack the soft
    smoothed classifier; the value they are judged on is the vote.

    With `training=True` one noisy pass is run and the base's logits are
    returned (Gaussian-noise training, as the original's loss uses one
    noisy pass).

    Args:
        base: a Keras model (or layer) `x -> logits [B, K]`.
        sigma: standard deviation of the input noise (>= 0, in input units;
            0 makes every pass the clean one). A non-trainable variable:
            change it with `set_knobs(sigma=...)`.
        n: number of Monte-Carlo passes at inference (>= 1), a
            non-trainable int32 variable.
        vote: one of `VOTES`.
        top_k: default k of `predict_top_k` (>= 1).
        chunk_size: passes per base call (>= 1), or None for
            `max(1, 4096 // B)`: each base call sees `min(chunk_size, n) * B`
            examples. A base with weight noise (PNI/CPNI layers draw one
            weight sample per call) shares that sample across the passes of
            a chunk: use `chunk_size=1` for one weight sample per pass.
        seed: int seed of the noise's `keras.random.SeedGenerator` (None:
            non-deterministic).
        share_noise: the images of a call share their noise draws (pass j
            of every image gets draw j; each image still gets n independent
            draws, so each image's vote is distributed as without sharing).
            It divides the Gaussian draw's cost by the batch size; the
            images' outcomes are no longer independent of each other.
            Default False.
        **kwargs: base model keyword arguments (`name`, ...).

    Call arguments:
        inputs: float tensor `[B, ...]` in the base's input domain.
        training: one noisy pass, the base's logits.
        sigma: optional per-call override of `sigma` (number or scalar
            tensor); the variable is unchanged.
        n: optional per-call override of `n` (int or int32 scalar tensor).

    Returns:
        Float32 scores `[B, K]` (see above).

    Declared flags: `randomized = True` (two calls differ),
    `optimizes_at_inference = False`.

    Raises:
        ValueError: on a base that is not a Keras layer, `sigma < 0`,
            `n < 1`, an unknown `vote`, `top_k < 1`, `chunk_size < 1` or a
            bad `seed`.

    References:
        Nemcovsky et al., "Smoothed Inference for Adversarial Defense",
        arXiv:1911.07198. Cohen, Rosenfeld & Kolter, "Certified Adversarial
        Robustness via Randomized Smoothing", ICML 2019. Salman et al.,
        "Provably Robust Deep Learning via Adversarially Trained Smoothed
        Classifiers", NeurIPS 2019.
    """

    randomized = True
    optimizes_at_inference = False

    def __init__(self, base, sigma=0.25, n=8, vote="soft", top_k=1, chunk_size=None, seed=None,
                 share_noise=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(base, keras.layers.Layer):
            raise _validate.error("base", "a Keras model or layer returning logits", base)
        self.base = base
        self._sigma = _check_sigma(sigma)
        self._n = _check_n(n)
        self.vote = _validate.check_choice(vote, name="vote", choices=VOTES)
        self.top_k = _validate.check_int(top_k, name="top_k", minimum=1)
        self.chunk_size = _validate.check_int(chunk_size, name="chunk_size", minimum=1, allow_none=True)
        self.seed = _random.check_seed(seed, allow_none=True)
        if not isinstance(share_noise, bool):
            raise _validate.error("share_noise", "a bool", share_noise)
        self.share_noise = share_noise
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.sigma = self.add_weight(name="sigma", shape=(), dtype="float32", trainable=False,
                                     initializer=keras.initializers.Constant(self._sigma))
        self.n = self.add_weight(name="n", shape=(), dtype="int32", trainable=False,
                                 initializer=keras.initializers.Constant(self._n))

    def build(self, input_shape):
        self._image_shape = tuple(input_shape[1:])
        if not self.base.built:
            self.base.build(input_shape)

    def set_knobs(self, *, sigma=None, n=None):
        """Changes sigma and n at run time (validated); None keeps a knob."""
        if sigma is not None:
            self.sigma.assign(_check_sigma(sigma))
        if n is not None:
            self.n.assign(_check_n(n))

    def _call_seed(self):
        # One draw of the layer's generator per call; chunk i folds i in, so
        # chunks and calls never share noise.
        return tf.cast(self.seed_generator.next() % (2**31 - 1), tf.int32)

    def _noisy_logits(self, x, passes, sigma, seed, chunk):
        """Logits of `passes` noisy copies of x, `[passes, B, K]` (draw-major)."""
        batch = tf.shape(x)[0]
        chunk_seed = tf.random.experimental.stateless_fold_in(seed, chunk)
        noisy = noisy_copies(x, passes, sigma, chunk_seed, self.share_noise)
        logits = tf.convert_to_tensor(self.base(noisy, training=False))
        logits = tf.cast(logits, tf.float32)
        return tf.reshape(logits, tf.concat([[passes, batch], tf.shape(logits)[1:]], 0))

    def _votes(self, logits):
        """Per-pass votes `[d, B, K]` of the rule (soft: the logits themselves)."""
        k = logits.shape[-1]
        if self.vote == "soft":
            return logits
        if self.vote == "prediction":
            return tf.one_hot(tf.argmax(logits, axis=-1), k, dtype=tf.float32)
        ranks = tf.argsort(tf.argsort(logits, axis=-1, direction="DESCENDING"), axis=-1)
        return tf.pow(2.0, -tf.cast(ranks, tf.float32))

    def _accumulate(self, x, n, sigma, reduce_fns):
        """Sums of `fn(logits [d, B, K])` over the passes, chunk by chunk.

        The first chunk runs outside the loop so that the class count is
        static; the rest run in one `tf.while_loop`.
        """
        x = tf.convert_to_tensor(x)
        batch = tf.shape(x)[0]
        if self.chunk_size is not None:
            chunk = tf.constant(self.chunk_size, tf.int32)
        else:
            chunk = tf.maximum(1, _MAX_BATCH // tf.maximum(batch, 1))
        chunk = tf.minimum(chunk, n)
        seed = self._call_seed()
        sigma = tf.cast(sigma, x.dtype)

        def step(i, done, sums):
            passes = tf.minimum(chunk, n - done)
            logits = self._noisy_logits(x, passes, sigma, seed, i)
            return i + 1, done + passes, [s + fn(logits) for s, fn in zip(sums, reduce_fns)]

        first = self._noisy_logits(x, chunk, sigma, seed, 0)
        sums = [fn(first) for fn in reduce_fns]
        _, _, sums = tf.while_loop(lambda i, done, sums: done < n, step, (1, chunk, sums))
        return sums

    def call(self, inputs, training=False, sigma=None, n=None):
        sigma = _knob(sigma, self.sigma, _check_sigma, tf.float32)
        if training:
            x = tf.convert_to_tensor(inputs)
            noise = keras.random.normal(tf.shape(x), seed=self.seed_generator, dtype=x.dtype)
            return self.base(x + tf.cast(sigma, x.dtype) * noise, training=True)
        n = _knob(n, self.n, _check_n, tf.int32)
        n_float = tf.cast(n, tf.float32)

        def vote_sum(logits):
            return tf.reduce_sum(self._votes(logits), axis=0)

        if self.vote == "soft":
            (total,) = self._accumulate(inputs, n, sigma, [vote_sum])
            return total / n_float

        def probs_sum(logits):
            return tf.reduce_sum(tf.nn.softmax(logits, axis=-1), axis=0)

        votes, probs = self._accumulate(inputs, n, sigma, [vote_sum, probs_sum])
        if self.vote == "weighted":
            k = votes.shape[-1]
            votes = votes / (2.0 - 2.0 ** (1 - k))  # sum of 2^-r over the K ranks
        hard = tf.math.log(tf.maximum(tf.stop_gradient(votes) / n_float, _FLOOR))
        soft = tf.math.log(tf.maximum(probs / n_float, _FLOOR))
        # Straight-through: the vote's value, the soft smoothed score's gradient.
        return soft + tf.stop_gradient(hard - soft)

    def predict_top_k(self, x, k=None, *, sigma=None, n=None):
        """The k smoothed classes of each input, by the original code's rule.

        Soft and weighted votes rank the classes by their summed scores
        (the weighted rule's "argmax, exclude, repeat" is that order). The
        hard vote keeps one histogram per rank position (how often class c
        is the r-th class of a pass) and fills slot r with the most frequent
        class at rank r not yet chosen.

        Args:
            x: float tensor `[B, ...]`.
            k: number of classes (default `top_k`), at most K.
            sigma, n: optional per-call overrides.

        Returns:
            int32 tensor `[B, k]`, best first.
        """
        k = self.top_k if k is None else _validate.check_int(k, name="k", minimum=1)
        sigma = _knob(sigma, self.sigma, _check_sigma, tf.float32)
        n = _knob(n, self.n, _check_n, tf.int32)
        if self.vote != "prediction":
            (total,) = self._accumulate(x, n, sigma, [lambda l: tf.reduce_sum(self._votes(l), axis=0)])
            return tf.math.top_k(total, k=k).indices

        def rank_histograms(logits):
            order = tf.math.top_k(logits, k=k).indices                     # [d, B, k]
            return tf.reduce_sum(tf.one_hot(order, logits.shape[-1]), axis=0)  # [B, k, K]

        (hist,) = self._accumulate(x, n, sigma, [rank_histograms])
        chosen, taken = [], tf.zeros_like(hist[:, 0])
        for r in range(k):  # k is small and static: one argmax per slot
            masked = tf.where(taken > 0, -1.0, hist[:, r])
            c = tf.argmax(masked, axis=-1, output_type=tf.int32)
            chosen.append(c)
            taken = taken + tf.one_hot(c, hist.shape[-1])
        return tf.stack(chosen, axis=1)

    def predict_dataset(self, x, *, batch_size=128, k=None, sigma=None, n=None, strategy=None):
        """Smoothed scores (or top-k classes) of many inputs, batch by batch, optionally over replicas.

        Batch b holds inputs `[b * batch_size, (b + 1) * batch_size)` and
        draws its noise from its own stream (`tfrobust.distribute.BatchStreams`:
        the seed generator's state at the start of the run, moved by b), so
        an input's noise depends on its index and `batch_size`, never on the
        replica or worker that runs it: with a strategy the result equals
        that of `strategy=None`.

        Args:
            x: float array `[M, ...]`, M >= 1.
            batch_size: inputs per call (>= 1); each call makes `n` passes.
            k: None for the scores of `call`; an int for `predict_top_k`'s
                classes.
            sigma, n: optional per-call overrides (validated numbers).
            strategy: optional `tf.distribute.Strategy`: whole batches are
                dealt to its replicas inside `strategy.run` and gathered
                back in order (`tfrobust.distribute.run_batches`). Build the
                base under `strategy.scope()` and create this classifier
                and call this method outside it (a seed generator created
                inside a scope draws per replica).

        Returns:
            NumPy float32 scores `[M, K]`, or int32 classes `[M, k]` when
            `k` is given. The seed generator is left after the last batch's
            stream (the next run draws new noise).

        Raises:
            ValueError: on a non-float or empty `x`, `batch_size < 1`,
                `k < 1`, a bad `sigma` or `n`, or a bad `strategy`.
        """
        from tfrobust import distribute

        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating) or x.ndim < 2 or len(x) == 0:
            raise _validate.error("x", "a non-empty float array [M, ...]", x,
                                  received=f"x.dtype={x.dtype}, x.shape={x.shape}")
        batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        k = _validate.check_int(k, name="k", minimum=1, allow_none=True)
        sigma = None if sigma is None else _check_sigma(sigma)
        n = None if n is None else _check_n(n)

        def scores(xb):
            if k is None:
                return self(xb, sigma=sigma, n=n)
            return self.predict_top_k(xb, k, sigma=sigma, n=n)

        x = x.astype(np.float32)
        batches = [(x[i:i + batch_size],) for i in range(0, len(x), batch_size)]
        outs = distribute.map_batches(strategy, scores, batches, streams=distribute.BatchStreams.of([self]))
        return np.concatenate([out for (out,) in outs])

    def export_with_knobs(self, path, input_shape=None):
        """Writes a SavedModel with `serve(x)` (the current knobs) and
        `serve_knobs(x, sigma, n)` (float32 and int32 scalars per request).

        Args:
            path: the SavedModel folder to write.
            input_shape: `(H, W, C)` (default: the shape the model was built on).

        Returns:
            `path`.
        """
        from tfrobust.models.saved_model import export_with_knobs

        shape = input_shape if input_shape is not None else getattr(self, "_image_shape", None)
        return export_with_knobs(self, path, [("sigma", tf.float32), ("n", tf.int32)], shape)

    def random_generators(self):
        """The noise generator (also found as a Keras seed generator)."""
        return [self.seed_generator]

    def get_config(self):
        config = super().get_config()
        config.update(base=keras.saving.serialize_keras_object(self.base), sigma=self._sigma,
                      n=self._n, vote=self.vote, top_k=self.top_k, chunk_size=self.chunk_size,
                      seed=self.seed, share_noise=self.share_noise)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["base"] = keras.saving.deserialize_keras_object(config["base"])
        return cls(**config)

