"""Randomized-smoothing certification (Cohen, Rosenfeld & Kolter 2019): `Smooth`.

Example:

```python
import keras
import numpy as np
from tfrobust.smoothing import Smooth

base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                         keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
smooth = Smooth(base, num_classes=10, sigma=0.25, seed=0)
label, radius = smooth.certify(x[0], n0=100, n=1000, alpha=0.001, batch_size=500)
result = smooth.certify_batch(x, n0=100, n=1000, alpha=0.001, batch_size=1000)
cert = result.to_certificate()          # tfrobust.evaluation.certificates.Certificate
label = smooth.predict(x[0], n=100, alpha=0.001, batch_size=100)
```

**The smoothed classifier.** For a base classifier f (any callable returning
scores `[B, K]`; its argmax is the class) and noise level sigma,

    g(x) = argmax_c P(f(x + eps) = c),   eps ~ N(0, sigma^2 I).

**The guarantee (Cohen et al., Theorem 1).** If `p_A_lower <= P(f(x + eps) =
c_A)` then g(x + delta) = c_A for every delta with
`||delta||_2 < R = sigma * Phi^-1(p_A_lower)` (the runner-up has at most
`1 - p_A_lower`). CERTIFY (`certify`) picks c_A from n0 selection samples,
counts c_A in n fresh estimation samples and takes for p_A_lower the
one-sided (1 - alpha) Clopper-Pearson bound, so that

    P(certify returns (c, R) with c != ABSTAIN and
      [g(x) != c or some ||delta||_2 < R has g(x + delta) != c]) <= alpha,

the probability being over the Monte-Carlo noise. It abstains when
p_A_lower < 1/2. The bound holds per image: over M images each certificate
fails with probability at most alpha (not all of them jointly). The ball is
open, so `to_certificate` rounds R down by one ulp for the closed-ball
convention of `tfrobust.evaluation.certificates`. PREDICT (`predict`)
returns the top class of n samples unless the two-sided binomial test of its
count against the runner-up's has p-value > alpha (then ABSTAIN); it
returns a class other than g(x) with probability at most alpha.

**Speed.** Noise is drawn (stateless normal draws seeded from a declared
`tf.random.Generator`) and classes counted
(one-hot sums) on the device in one compiled `tf.while_loop`: every base
call sees `batch_size` noisy examples, made of G images (`G = min(M,
batch_size)`) times `batch_size // G` passes, so many images are certified
in one loop and only the [M, K] counts come back to the host for SciPy.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust.smoothing import stats
from tfrobust.smoothing._noise import noisy_copies

__all__ = ["ABSTAIN", "CertifyResult", "Smooth"]

#: The label of an abstention (equal to `tfrobust.evaluation.certificates.ABSTAIN`).
ABSTAIN = -1


@dataclasses.dataclass
class CertifyResult:
    """Certification of M images.

    Attributes:
        pred: int64 `[M]`, the certified class or `ABSTAIN`.
        radius: float64 `[M]`, `sigma * Phi^-1(p_lower)` (0.0 where it
            abstains, as in Cohen et al.'s code). The guarantee is for
            `||delta||_2 < radius`.
        p_lower: float64 `[M]`, the lower bound on p_A of the selected class.
        counts: int64 `[M, K]`, the estimation counts.
        time: float64 `[M]`, wall seconds per image (the batch's time shared
            equally by its images).
        sigma, n0, n, alpha: the settings.
    """

    pred: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    counts: np.ndarray
    time: np.ndarray
    sigma: float
    n0: int
    n: int
    alpha: float

    def __len__(self):
        return int(self.pred.shape[0])

    def to_certificate(self):
        """The result as a `tfrobust.evaluation.certificates.Certificate` (L2).

        The open ball `||delta|| < R` becomes the closed ball of radius
        `nextafter(R, 0)`; abstentions get radius -inf.
        """
        from tfrobust.evaluation import certificates

        radius = np.where(self.pred == ABSTAIN, -np.inf, np.nextafter(self.radius, 0.0))
        return certificates.Certificate(self.pred.astype(np.int64), radius.astype(np.float64), 2)


class Smooth:
    """A base classifier smoothed by Gaussian noise: PREDICT and CERTIFY.

    Args:
        base: callable `x [B, ...] -> scores [B, K]` (logits, probabilities
            or log-probabilities: only the argmax is used), e.g. a Keras
            model, a `tfrobust.defenses.RBFCNN` or a loaded SavedModel.
        num_classes: K (>= 2).
        sigma: the noise level (> 0), in input units.
        seed: seed of the noise generator (None: non-deterministic). The
            generator is declared by `random_generators()`.
        share_noise: give the images sampled together the same noise draws
            (each image still gets `n` independent draws). The guarantee of
            each image's certificate holds unchanged (CERTIFY's probability
            is over one image's noise); what changes is that the images'
            outcomes are no longer independent of each other, so do not put
            a binomial confidence interval on a certified accuracy computed
            this way. It removes most of the Gaussian draw's cost (on a CPU
            the draw costs about as much as a small CNN's forward pass).
            Default False: independent noise for every image.

    Raises:
        ValueError: on a non-callable base, `num_classes < 2` or
            `sigma <= 0` (or not finite).

    References:
        Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
        Randomized Smoothing", ICML 2019 (Algorithms PREDICT and CERTIFY).
    """

    #: Returned in place of a class when the test cannot decide.
    ABSTAIN = ABSTAIN

    def __init__(self, base, num_classes, sigma, *, seed=None, share_noise=False):
        if not callable(base):
            raise _validate.error("base", "a callable returning scores [B, K]", base)
        self.base = base
        self.num_classes = _validate.check_int(num_classes, name="num_classes", minimum=2)
        self.sigma = _validate.check_float(sigma, name="sigma", minimum=0.0, exclusive_minimum=True)
        self.seed = _random.check_seed(seed, allow_none=True)
        if not isinstance(share_noise, bool):
            raise _validate.error("share_noise", "a bool", share_noise)
        self.share_noise = share_noise
        self._generator = _random.make_generator(seed)
        self._count_fn = tf.function(self._count, reduce_retracing=True)

    def random_generators(self):
        """The noise generator (for `tfrobust._random.generators_of`)."""
        return [self._generator]

    # -- checks ---------------------------------------------------------

    def _input_shape(self):
        try:
            shape = getattr(self.base, "input_shape", None)
        except (AttributeError, ValueError, RuntimeError):  # a subclassed model without inputs
            shape = None
        if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], (tuple, list)):
            return tuple(shape[1:])
        return None

    def _check_x(self, x, *, batched):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise _validate.error("x", "a float array", x, received=f"x.dtype={x.dtype}")
        expected = self._input_shape()
        rank = len(expected) if expected is not None else None
        if batched:
            if x.ndim < 2 or x.shape[0] == 0 or (rank is not None and x.ndim != rank + 1):
                raise _validate.error("x", "a non-empty batch [M, ...] of images", x,
                                      received=f"x.shape={x.shape}")
            shape = x.shape[1:]
        else:
            if x.ndim < 1 or (rank is not None and x.ndim != rank):
                raise _validate.error("x", "one image, without a batch axis", x,
                                      received=f"x.shape={x.shape}")
            shape = x.shape
        if expected is not None and any(e is not None and e != s for e, s in zip(expected, shape)):
            raise _validate.error("x", f"images of shape {expected}", x, received=f"x.shape={x.shape}")
        if not np.all(np.isfinite(x)):
            raise _validate.error("x", "finite values", x,
                                  received=f"{int((~np.isfinite(x)).sum())} non-finite entries")
        return x.astype(np.float32)

    @staticmethod
    def _check_alpha(alpha):
        return _validate.check_float(alpha, name="alpha", minimum=0.0, maximum=1.0,
                                     exclusive_minimum=True, exclusive_maximum=True)

    # -- sampling -------------------------------------------------------

    def _count(self, x, num, passes, seed=None):
        """Class counts `[G, K]` (int32) of `num` noisy copies of each of G images.

        `seed`: the group's stateless seed `[2]` (default: drawn from the generator).
        """
        group = tf.shape(x)[0]
        # One seed per call from the declared generator, chunk i folded in:
        # the stateless normal kernel is ~10x faster on CPU than the
        # generator's own (stateful) one, and chunks never share noise.
        if seed is None:
            seed = _random.next_seed(self._generator)

        def body(i, done, counts):
            d = tf.minimum(passes, num - done)
            key = tf.random.experimental.stateless_fold_in(seed, i)
            noisy = noisy_copies(x, d, self.sigma, key, self.share_noise)
            scores = tf.convert_to_tensor(self.base(noisy))
            pred = tf.reshape(tf.argmax(scores, axis=-1, output_type=tf.int32), [d, group])
            hits = tf.one_hot(pred, self.num_classes, dtype=tf.int32)
            return i + 1, done + d, tf.ensure_shape(counts + tf.reduce_sum(hits, axis=0), counts.shape)

        counts = tf.zeros([group, self.num_classes], tf.int32)
        _, _, counts = tf.while_loop(lambda i, done, counts: done < num, body,
                                     (tf.constant(0), tf.constant(0), counts))
        return counts

    def sample_counts(self, x, num, batch_size, strategy=None):
        """Class counts of `num` noisy copies of each image (`x` `[M, ...]`).

        Args:
            x: float array `[M, ...]`.
            num: noise samples per image (>= 1).
            batch_size: noisy examples per base call (>= 1).
            strategy: optional `tf.distribute.Strategy`: the groups of
                images are dealt to its replicas inside `strategy.run`
                (`tfrobust.distribute.run_batches`) and the counts gathered
                in order. The groups' seeds are drawn here, one per group in
                group order (the seeds `strategy=None` draws), so the counts
                equal those of `strategy=None` on every replica and worker.
                Call it outside `strategy.scope()`.

        Returns:
            `(counts int64 [M, K], seconds float64 [M])` (with a strategy,
            the seconds are the run's time spread evenly).
        """
        x = self._check_x(x, batched=True)
        num = _validate.check_int(num, name="num", minimum=1)
        batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        group = min(x.shape[0], batch_size)
        passes = max(1, batch_size // group)
        if strategy is not None:
            return self._distributed_counts(x, num, group, passes, strategy)
        counts, seconds = [], []
        for start in range(0, x.shape[0], group):
            xb = tf.constant(x[start:start + group])
            began = time.perf_counter()
            c = self._count_fn(xb, tf.constant(num, tf.int32), tf.constant(passes, tf.int32)).numpy()
            took = time.perf_counter() - began
            counts.append(c.astype(np.int64))
            seconds.append(np.full(c.shape[0], took / c.shape[0]))
        return np.concatenate(counts), np.concatenate(seconds)

    def _distributed_counts(self, x, num, group, passes, strategy):
        from tfrobust import distribute

        groups = [x[start:start + group] for start in range(0, x.shape[0], group)]
        began = time.perf_counter()
        # A group's noise then depends on its index only, not on the replica
        # or worker that runs it (each worker's generator is its own copy).
        seeds = [np.asarray(_random.next_seed(self._generator)) for _ in groups]
        outs = distribute.run_batches(
            strategy, lambda xb, sb: self._count(xb, tf.constant(num, tf.int32), tf.constant(passes, tf.int32),
                                                 seed=sb[0]),
            [(g, np.tile(s[None], (len(g), 1))) for g, s in zip(groups, seeds)])
        counts = np.concatenate([c for (c,) in outs]).astype(np.int64)
        return counts, np.full(counts.shape[0], (time.perf_counter() - began) / counts.shape[0])

    # -- Cohen et al.'s algorithms ----------------------------------------

    def predict_batch(self, x, n, alpha, batch_size):
        """PREDICT for each image of `x` `[M, ...]`: int64 `[M]` classes or ABSTAIN.

        Raises:
            ValueError: on bad `x`, `n < 1`, alpha outside (0, 1) or
                `batch_size < 1`.
        """
        n = _validate.check_int(n, name="n", minimum=1)
        alpha = self._check_alpha(alpha)
        counts, _ = self.sample_counts(x, n, batch_size)
        order = np.argsort(-counts, axis=1, kind="stable")
        top, runner = order[:, 0], order[:, 1]
        n_a = np.take_along_axis(counts, top[:, None], 1)[:, 0]
        n_b = np.take_along_axis(counts, runner[:, None], 1)[:, 0]
        p_value = stats.binomial_test_p_value(n_a, np.maximum(n_a + n_b, 1))
        return np.where(p_value > alpha, ABSTAIN, top).astype(np.int64)

    def predict(self, x, n, alpha, batch_size):
        """PREDICT: the smoothed class of one image, or `ABSTAIN`.

        Draws n noisy samples, and returns the most frequent class c_A
        unless the two-sided binomial test of `n_A ~ Binomial(n_A + n_B,
        1/2)` (n_B the runner-up's count) has p-value > alpha. The returned
        class differs from g(x) with probability at most alpha.

        Args:
            x: one image (no batch axis), float, finite.
            n: number of noise samples (>= 1).
            alpha: failure probability, in (0, 1).
            batch_size: noisy examples per base call (>= 1).

        Returns:
            An int class or `ABSTAIN`.

        Raises:
            ValueError: on bad `x` (shape, dtype, NaN), `n < 1`, alpha
                outside (0, 1) or `batch_size < 1`.
        """
        x = self._check_x(x, batched=False)
        return int(self.predict_batch(x[None], n, alpha, batch_size)[0])

    def certify_batch(self, x, n0, n, alpha, batch_size, strategy=None):
        """CERTIFY for each image of `x` `[M, ...]`, in one batched loop.

        Args:
            x: float array `[M, ...]`, finite.
            n0: selection samples per image (>= 1, <= n).
            n: estimation samples per image (>= 1), drawn afresh.
            alpha: failure probability per image, in (0, 1).
            batch_size: noisy examples per base call (>= 1).
            strategy: optional `tf.distribute.Strategy` over which the
                sampling is spread (see `sample_counts`).

        Returns:
            A `CertifyResult` (see the module docstring for the guarantee).

        Raises:
            ValueError: on bad `x`, `n0 < 1`, `n < 1`, `n0 > n`, alpha
                outside (0, 1) or `batch_size < 1`.
        """
        n = _validate.check_int(n, name="n", minimum=1)
        n0 = _validate.check_int(n0, name="n0", minimum=1)
        if n0 > n:
            raise _validate.error("n0", f"at most n={n} (selection uses fewer samples than "
                                        "estimation)", n0)
        alpha = self._check_alpha(alpha)
        x = self._check_x(x, batched=True)
        batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        selection, t0 = self.sample_counts(x, n0, batch_size, strategy=strategy)
        c_a = np.argmax(selection, axis=1)
        # Fresh samples: reusing the selection samples would bias p_A upward.
        counts, t1 = self.sample_counts(x, n, batch_size, strategy=strategy)
        n_a = np.take_along_axis(counts, c_a[:, None], 1)[:, 0]
        p_lower = np.asarray(stats.lower_confidence_bound(n_a, n, alpha), np.float64).reshape(-1)
        abstain = p_lower < 0.5
        radius = np.where(abstain, 0.0, stats.certified_radius(np.where(abstain, 0.5, p_lower), self.sigma))
        return CertifyResult(np.where(abstain, ABSTAIN, c_a).astype(np.int64), radius.astype(np.float64),
                             p_lower, counts, t0 + t1, self.sigma, n0, n, alpha)

    def certifier(self, n0, n, alpha, batch_size):
        """A callable `(x, y) -> Certificate` running `certify_batch`, for
        `tfrobust.evaluation.evaluate(certificates=...)` and
        `tfrobust.evaluation.certified_vs_empirical`.

        Raises:
            ValueError: as `certify_batch`, when called.
        """
        def certify(x, y):
            del y  # the certificate is of the prediction; the engine compares it with y
            return self.certify_batch(np.asarray(x), n0, n, alpha, batch_size).to_certificate()

        return certify

    def certify(self, x, n0, n, alpha, batch_size):
        """CERTIFY one image: `(class, radius)` or `(ABSTAIN, 0.0)`.

        With probability at least 1 - alpha over the noise, a returned class
        c != ABSTAIN is g(x) and g(x + delta) = c for all
        `||delta||_2 < radius` (see the module docstring).

        Args:
            x: one image (no batch axis), float, finite.
            n0: selection samples (>= 1, <= n; Cohen et al.: 100).
            n: estimation samples (>= 1; Cohen et al.: 100,000).
            alpha: failure probability, in (0, 1) (Cohen et al.: 0.001).
            batch_size: noisy examples per base call (>= 1).

        Returns:
            `(label, radius)`: an int class and a float radius, or
            `(ABSTAIN, 0.0)`.

        Raises:
            ValueError: on bad `x` (shape, dtype, NaN), `n0 < 1`, `n < 1`,
                `n0 > n`, alpha outside (0, 1) or `batch_size < 1`.
        """
        x = self._check_x(x, batched=False)
        result = self.certify_batch(x[None], n0, n, alpha, batch_size)
        return int(result.pred[0]), float(result.radius[0])
