"""Threat models as values: the input domain `Box` and the ball `LpBall`.

An attack never subclasses a norm; it takes an `LpBall` and asks it for the
three things a first-order attack needs (a norm, a projection and a steepest
ascent direction) plus a random start. Every method is batched over the first
axis, reduces over all other axes, runs eagerly or inside `tf.function`, and
keeps the dtype of its input (float32 or float64).

`LpBall.norm` is the library's one per-example norm and `LpBall.contains`
(`within_eps` on precomputed norms) its one "inside the budget" test, with
the slack `eps * (1 + CONTAINS_RTOL) + CONTAINS_ATOL`. The projections
refuse NaN inputs (a ValueError eagerly, an assertion in graphs).

>>> ball = LpBall("l2", eps=0.5)
>>> delta = ball.project_with_box(x, 0.1 * tf.random.normal(tf.shape(x)))
"""

import math

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust._threat_kernels import _box_l1_magnitudes
from tfrobust._threat_kernels import _box_l2_magnitudes
from tfrobust._threat_kernels import _flatten
from tfrobust._threat_kernels import _lp_norm
from tfrobust._threat_kernels import _project_l1
from tfrobust._threat_kernels import _project_l2
from tfrobust._threat_kernels import _uniform_sampler

__all__ = ["Box", "LpBall", "CONTAINS_ATOL", "CONTAINS_RTOL", "within_eps"]

# THE budget tolerance of the library ("inside the ball"): a perturbation of
# norm n is inside an eps-ball when n <= eps * (1 + CONTAINS_RTOL) +
# CONTAINS_ATOL. The exact float64 projections come back to float32 with a
# relative error of ~1e-7 per coordinate, which sums to well under 1e-5 on
# image-sized inputs; the absolute term covers eps = 0 and norms of exact
# zeros computed from rounded differences x_adv - x (1e-6 is far below one
# intensity level, 1/255).
CONTAINS_RTOL = 1e-5
CONTAINS_ATOL = 1e-6

# The projections accumulate sums over every coordinate of an example, which
# float32 does to only ~1e-3 relative accuracy on CIFAR-sized inputs, so they
# run in float64 and cast back.
_SWEEP_DTYPE = tf.float64



def within_eps(norms, eps):
    """Whether per-example `norms` are within the budget `eps` (the one slack).

    `norms <= eps * (1 + CONTAINS_RTOL) + CONTAINS_ATOL`, elementwise. Works
    on NumPy arrays (returns a bool array) and on tensors (returns a bool
    tensor); `LpBall.contains` is this test applied to `LpBall.norm`.

    Args:
        norms: float array or tensor of norms, any shape.
        eps: the radius, a float >= 0.
    """
    limit = float(eps) * (1.0 + CONTAINS_RTOL) + CONTAINS_ATOL
    if isinstance(norms, (tf.Tensor, tf.Variable)):
        return norms <= tf.constant(limit, norms.dtype)
    return np.asarray(norms) <= limit


def _finite_real(value, name):
    return _validate.check_float(value, name=name)


def _non_negative(value, name):
    return _validate.check_float(value, name=name, minimum=0.0)


def _check_no_nan(value, name):
    """Refuses NaN entries: eagerly a ValueError, in graphs an assertion.

    A NaN would silently propagate through every projection (clip, rescale,
    sort) and come back as a "perturbation" inside no ball at all.
    """
    message = (f"Expected `{name}` to contain no NaN (a NaN gradient or iterate upstream?). "
               f"Received: {name} containing NaN")
    if tf.executing_eagerly():
        if bool(tf.reduce_any(tf.math.is_nan(value))):
            raise ValueError(message)
        return value
    with tf.control_dependencies([tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(tf.math.is_nan(value))), [message])]):
        return tf.identity(value)


def _float_tensor(value, name, dtype=None):
    if value is None:  # e.g. a gradient that is disconnected from the loss
        raise ValueError(f"Expected {name} to be a float tensor. Received: {name}=None")
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
        raise ValueError(f"Expected {name} to have a floating dtype. Received: {name}.dtype={value.dtype.name}")
    if dtype is not None and value.dtype != dtype:
        value = tf.cast(value, dtype)
    if value.shape.rank is not None and value.shape.rank < 1:
        raise ValueError(f"Expected {name} to have a batch axis (rank >= 1). Received: {name}.shape={value.shape}")
    return value


def _check_same_shape(a, b, name_a, name_b):
    if not a.shape.is_compatible_with(b.shape):
        raise ValueError(f"Expected {name_a} and {name_b} to have the same shape. "
                         f"Received: {name_a}.shape={a.shape}, {name_b}.shape={b.shape}")


class _ConfigValue:
    """Value semantics from `get_config`: equality, hashing, repr, from_config."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash((type(self).__name__,) + tuple(sorted(self.get_config().items())))

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Box(_ConfigValue):
    """The valid input domain `[lo, hi]` (the same bounds for every pixel).

    Args:
        lo: lower bound, a finite float.
        hi: upper bound, a finite float with `hi > lo`.

    Raises:
        ValueError: if a bound is not finite or `lo >= hi`.
    """

    def __init__(self, lo=0.0, hi=1.0):
        self.lo, self.hi = _finite_real(lo, "lo"), _finite_real(hi, "hi")
        if self.lo >= self.hi:
            raise ValueError(f"Expected lo < hi. Received: lo={lo!r}, hi={hi!r}")

    @classmethod
    def coerce(cls, bounds):
        """Returns `bounds` as a `Box` (accepts a `Box` or a pair `(lo, hi)`)."""
        if isinstance(bounds, Box):
            return bounds
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise ValueError(f"Expected bounds to be a Box or a pair (lo, hi). Received: bounds={bounds!r}") from None
        return cls(lo, hi)

    def clip(self, x):
        """Clips `x` into the box (same dtype and shape)."""
        x = tf.convert_to_tensor(x)
        return tf.clip_by_value(x, tf.constant(self.lo, x.dtype), tf.constant(self.hi, x.dtype))

    def contains(self, x, atol=1e-6):
        """Whether every entry of `x` lies in `[lo - atol, hi + atol]`.

        Returns a Python bool when executing eagerly, a scalar bool tensor
        inside a `tf.function`.
        """
        x = tf.convert_to_tensor(x)
        inside = tf.reduce_all((x >= tf.constant(self.lo - atol, x.dtype))
                               & (x <= tf.constant(self.hi + atol, x.dtype)))
        return bool(inside) if tf.executing_eagerly() else inside

    def get_config(self):
        return {"lo": self.lo, "hi": self.hi}


class LpBall(_ConfigValue):
    """The perturbation set `{delta : ||delta||_p <= eps}`, p in {1, 2, inf}.

    Args:
        p: 1, 2 or `np.inf`; the strings "l1", "l2", "linf", "inf" (any case)
            are accepted too. Stored as 1, 2 or `np.inf`.
        eps: the radius, a finite float >= 0.
        l1_sparsity: for p = 1 only, the quantile of |grad| above which
            `steepest_direction` moves: it uses the top
            `k = max(1, ceil((1 - l1_sparsity) * d))` coordinates of each
            example of dimension d. The default 0.99 keeps the top 1%; 1.0
            moves one coordinate (the exact L1 steepest direction).

    Raises:
        ValueError: on an unknown p, a negative or non-finite eps, or
            `l1_sparsity` outside [0, 1].

    References:
        Duchi et al., "Efficient projections onto the l1-ball for learning in
        high dimensions", ICML 2008 (the L1 projection).
        Tramer & Boneh, "Adversarial training and robustness for multiple
        perturbations", NeurIPS 2019 (the sparse L1 direction, SLIDE).
    """

    def __init__(self, p, eps, l1_sparsity=0.99):
        self.p = self._parse_p(p)
        self.eps = _non_negative(eps, "eps")
        self.l1_sparsity = _non_negative(l1_sparsity, "l1_sparsity")
        if self.l1_sparsity > 1:
            raise _validate.error("l1_sparsity", "a finite real number in [0, 1]", l1_sparsity)

    @staticmethod
    def _parse_p(p):
        return _validate.check_p(p, name="p")

    @property
    def dual_p(self):
        """The exponent q of the dual norm (1/p + 1/q = 1)."""
        return {1: np.inf, 2: 2, np.inf: 1}[self.p]

    def norm(self, delta):
        """Per-example p-norm of `delta`, shape [B]: the library's one norm.

        The L2 norm is computed after dividing by the largest |entry|, so it
        neither underflows on tiny nor overflows on huge perturbations.
        """
        return _lp_norm(_float_tensor(delta, "delta"), self.p)

    def contains(self, delta):
        """Whether each example of `delta` lies in the ball, bool `[B]`.

        THE budget test of the library: `norm(delta) <= eps * (1 +
        CONTAINS_RTOL) + CONTAINS_ATOL` (see `within_eps`), the slack that
        float32 rounding of the exact projections needs. Returns a tensor
        (eagerly an `EagerTensor`; use `.numpy()` for an array).

        Args:
            delta: float tensor `[B, ...]`.
        """
        return within_eps(self.norm(delta), self.eps)

    def dual_norm(self, grad):
        """Per-example dual norm `||grad||_q` (the value `<grad, d>` reaches for the exact steepest direction)."""
        return _lp_norm(_float_tensor(grad, "grad"), self.dual_p)

    def project(self, delta):
        """Exact Euclidean projection of each example of `delta` onto the ball.

        L-inf clips, L2 rescales, L1 soft-thresholds with the threshold from
        the sort-based algorithm of Duchi et al. (2008). Examples already
        inside the ball are returned unchanged, bit for bit.

        Args:
            delta: float tensor [B, ...].

        Returns:
            A tensor like `delta`.
        """
        delta = _check_no_nan(_float_tensor(delta, "delta"), "delta")
        if self.p == np.inf:
            return tf.clip_by_value(delta, -tf.constant(self.eps, delta.dtype), tf.constant(self.eps, delta.dtype))
        flat = _flatten(delta)
        inside = _lp_norm(flat, self.p) <= tf.constant(self.eps, delta.dtype)
        if self.p == 2:
            out = tf.where(inside[:, None], flat, _project_l2(flat, self.eps))
        else:
            def sweep():
                proj = tf.cast(_project_l1(tf.cast(flat, _SWEEP_DTYPE), self.eps), delta.dtype)
                return tf.where(inside[:, None], flat, proj)
            # Skipping the sort when nothing moves makes re-projection cheap.
            out = tf.cond(tf.reduce_all(inside), lambda: flat, sweep)
        return tf.reshape(out, tf.shape(delta))

    def project_with_box(self, x, delta, bounds=(0.0, 1.0)):
        """Exact Euclidean projection of `delta` onto ball ∩ {lo <= x + d <= hi}.

        L-inf clips to the intersection of two boxes. For L2 the solution is
        `d = clip(t * delta, lo - x, hi - x)` and for L1
        `d = clip(soft_threshold(delta, lam), lo - x, hi - x)`, with the
        multiplier (t in (0, 1] or lam >= 0) found per example in float64:
        for L1 by an exact sweep over the sorted breakpoints of the piecewise
        linear norm, for L2 by an active-set iteration that ends on the exact
        solution (falling back to the analogous sorted sweep if it has not
        ended after 16 passes). There is no bisection and no tolerance beyond
        float64 rounding; the result is cast back to the dtype of `delta`, so
        `||d||_p` may exceed eps by a relative 1e-7 in float32. If the
        box-clipped `delta` is already in the ball it is returned as is.

        `x` is assumed to be inside the box; where it is not, the box on `d`
        is widened to contain 0 so that the feasible set is never empty.

        Args:
            x: float tensor [B, ...], the clean inputs.
            delta: float tensor like `x`.
            bounds: a `Box` or a pair `(lo, hi)`.

        Returns:
            A tensor like `delta`.

        Raises:
            ValueError: if `x` and `delta` have different shapes.
        """
        delta = _float_tensor(delta, "delta")
        x = _float_tensor(x, "x", dtype=delta.dtype)
        _check_same_shape(x, delta, "x", "delta")
        delta = _check_no_nan(delta, "delta")
        x = _check_no_nan(x, "x")
        box = Box.coerce(bounds)
        dt = delta.dtype
        lo_d = tf.minimum(tf.constant(box.lo, dt) - x, 0)
        hi_d = tf.maximum(tf.constant(box.hi, dt) - x, 0)
        if self.p == np.inf:
            eps = tf.constant(self.eps, dt)
            return tf.clip_by_value(delta, tf.maximum(lo_d, -eps), tf.minimum(hi_d, eps))
        clipped = tf.clip_by_value(delta, lo_d, hi_d)
        flat_clipped = _flatten(clipped)
        inside = _lp_norm(flat_clipped, self.p) <= tf.constant(self.eps, dt)
        kernel = _box_l2_magnitudes if self.p == 2 else _box_l1_magnitudes

        def sweep():
            flat = tf.cast(_flatten(delta), _SWEEP_DTYPE)
            # The only active bound of coordinate i is the one delta_i points to.
            cap = tf.cast(tf.where(flat >= 0, _flatten(hi_d), -_flatten(lo_d)), _SWEEP_DTYPE)
            proj = tf.cast(tf.sign(flat) * kernel(tf.abs(flat), cap, self.eps), dt)
            return tf.where(inside[:, None], flat_clipped, proj)

        out = tf.cond(tf.reduce_all(inside), lambda: flat_clipped, sweep)
        return tf.reshape(out, tf.shape(delta))

    def steepest_direction(self, grad, x=None, bounds=None):
        """The unit-p-norm direction `d` maximizing `<grad, d>`, per example.

        L-inf: `sign(grad)` (so `<grad, d> = ||grad||_1`). L2:
        `grad / ||grad||_2`. L1: `sign(grad) / k` on the k largest |grad|
        coordinates (see `l1_sparsity`), so `<grad, d>` is the mean of the
        top-k |grad|, equal to `||grad||_inf` when k = 1. For L1, when `x` is
        given, coordinates already on the face of the box that the gradient
        pushes outward are excluded first (the SLIDE rule of Tramer & Boneh);
        `bounds` defaults to (0, 1) then. L2 and L-inf ignore `x`/`bounds`
        since the projection undoes moves into a face.

        Examples whose (remaining) gradient is zero get `d = 0`; if fewer
        than k coordinates are non-zero, the non-zero ones share the unit mass.

        Args:
            grad: float tensor [B, ...].
            x: optional float tensor like `grad`, the current point.
            bounds: optional `Box` or `(lo, hi)`; requires `x`.

        Returns:
            A tensor like `grad`.

        Raises:
            ValueError: on shape mismatch or `bounds` without `x`.
        """
        grad = _float_tensor(grad, "grad")
        if bounds is not None and x is None:
            raise ValueError("Expected x to be given together with bounds. Received: x=None")
        if x is not None:
            x = _float_tensor(x, "x", dtype=grad.dtype)
            _check_same_shape(x, grad, "x", "grad")
        if self.p == np.inf:
            return tf.sign(grad)
        flat = _flatten(grad)
        if self.p == 2:
            # Pre-scale by the max so tiny gradients (1e-25 from a confident
            # softmax) do not underflow to a zero norm when squared.
            scale = tf.reduce_max(tf.abs(flat), axis=1, keepdims=True)
            scaled = tf.math.divide_no_nan(flat, scale)
            direction = tf.math.divide_no_nan(scaled, tf.norm(scaled, axis=1, keepdims=True))
            return tf.reshape(direction, tf.shape(grad))
        if x is not None:
            box = Box.coerce((0.0, 1.0) if bounds is None else bounds)
            xf = _flatten(x)
            blocked = ((xf <= tf.constant(box.lo, grad.dtype)) & (flat < 0)) | \
                      ((xf >= tf.constant(box.hi, grad.dtype)) & (flat > 0))
            flat = tf.where(blocked, tf.zeros_like(flat), flat)
        k = self._top_k(flat)
        _, idx = tf.math.top_k(tf.abs(flat), k=k, sorted=False)
        rows = tf.broadcast_to(tf.range(tf.shape(flat)[0])[:, None], tf.shape(idx))
        picked = tf.scatter_nd(tf.stack([rows, idx], axis=-1), tf.ones_like(idx, dtype=flat.dtype), tf.shape(flat))
        signs = tf.sign(flat) * picked
        count = tf.reduce_sum(tf.abs(signs), axis=1, keepdims=True)
        return tf.reshape(tf.math.divide_no_nan(signs, count), tf.shape(grad))

    def _top_k(self, flat):
        dim = flat.shape[1]
        if dim is not None:
            # round() keeps e.g. (1 - 0.99) * 100 = 1.0000000000000009 at 1.
            return max(1, math.ceil(round((1.0 - self.l1_sparsity) * dim, 9)))
        dim = tf.cast(tf.shape(flat)[1], tf.float64)
        k = tf.math.ceil(tf.round((1.0 - self.l1_sparsity) * dim * 1e9) / 1e9)
        return tf.cast(tf.maximum(k, 1.0), tf.int32)

    def random_init(self, x, seed=None):
        """A random perturbation uniform in the ball, shaped like `x`.

        L-inf: uniform in the cube. L2: Gaussian direction, radius
        `eps * U^(1/d)`. L1: Laplace direction (exponential magnitudes with
        random signs) normalized to the L1 sphere, radius `eps * U^(1/d)`;
        both are exactly uniform in the ball. The box is not applied here.

        Args:
            x: float tensor [B, ...]; only its shape and dtype are used.
            seed: None (TensorFlow's stateful ops, following the global seed),
                an int or a shape-[2] integer seed (stateless ops, so the same
                seed gives the same sample in eager and graph mode), a
                `tf.random.Generator`, or a `keras.random.SeedGenerator`.

        Returns:
            A tensor like `x`.
        """
        x = _float_tensor(x, "x")
        shape, dt = tf.shape(x), x.dtype
        draw = _uniform_sampler(seed)
        if self.p == np.inf:
            return tf.constant(self.eps, dt) * (2 * draw(shape, dt) - 1)
        flat_shape = tf.shape(_flatten(x))
        if self.p == 2:
            u1, u2 = draw(flat_shape, dt), draw(flat_shape, dt)
            # Box-Muller keeps every sampler uniform-only; 1 - u is in (0, 1].
            direction = tf.sqrt(-2 * tf.math.log(1 - u1)) * tf.cos(2 * np.pi * u2)
            direction = tf.math.divide_no_nan(direction, tf.norm(direction, axis=1, keepdims=True))
        else:
            magnitude = -tf.math.log(1 - draw(flat_shape, dt))
            sign = tf.where(draw(flat_shape, dt) < 0.5, -tf.ones([], dt), tf.ones([], dt))
            direction = tf.math.divide_no_nan(sign * magnitude, tf.reduce_sum(magnitude, axis=1, keepdims=True))
        dim = tf.cast(flat_shape[1], dt)
        radius = tf.constant(self.eps, dt) * tf.exp(tf.math.log(1 - draw(flat_shape[:1], dt)) / dim)
        return tf.reshape(radius[:, None] * direction, shape)

    def get_config(self):
        return {"p": "inf" if self.p == np.inf else self.p, "eps": self.eps, "l1_sparsity": self.l1_sparsity}
