"""Kernels of `tfrobust.threats` on flattened `[B, d]` tensors.

The per-example norm and the exact projections (L1 by the sort-based
algorithm, onto ball ∩ box for L1 and L2) that `LpBall` composes, and the
seed handling of its random start. Private: use `tfrobust.threats.LpBall`.
"""

import numbers

import numpy as np
import tensorflow as tf


def _flatten(v):
    # A static row length (known whenever the non-batch dims are) keeps the
    # top-k size static, which XLA needs.
    dim = v.shape[1:].num_elements() if v.shape.rank is not None else None
    return tf.reshape(v, [tf.shape(v)[0], -1 if dim is None else dim])


def _lp_norm(v, p):
    flat = tf.abs(_flatten(v))
    if p == np.inf:
        return tf.reduce_max(flat, axis=1)
    if p == 1:
        return tf.reduce_sum(flat, axis=1)
    scale = tf.reduce_max(flat, axis=1, keepdims=True)
    return tf.squeeze(scale, 1) * tf.norm(tf.math.divide_no_nan(flat, scale), axis=1)


def _project_l2(flat, eps):
    norm = _lp_norm(flat, 2)[:, None]
    return flat * tf.math.divide_no_nan(tf.constant(eps, flat.dtype), norm)


def _project_l1(flat, eps):
    """Duchi et al. (2008), Fig. 1, vectorized over the batch."""
    mu = tf.sort(tf.abs(flat), axis=1, direction="DESCENDING")
    cumsum = tf.cumsum(mu, axis=1)
    j = tf.range(1, tf.shape(flat)[1] + 1, dtype=flat.dtype)
    # The condition holds on a prefix, so rho is the count of True entries;
    # eps = 0 gives rho = 0 and we clamp to 1, where theta = max|v| zeroes all.
    rho = tf.reduce_sum(tf.cast(mu - (cumsum - eps) / j > 0, tf.int32), axis=1)
    rho = tf.maximum(rho, 1)
    theta = (tf.gather(cumsum, rho - 1, batch_dims=1) - eps) / tf.cast(rho, flat.dtype)
    return tf.sign(flat) * tf.nn.relu(tf.abs(flat) - theta[:, None])


def _box_l2_magnitudes(a, b, eps, max_steps=16):
    """|d_i| = min(t a_i, b_i) with the largest t making ||d||_2 = eps.

    Only matters where ||min(a, b)||_2 > eps, so t is in (0, 1). With the
    capped set C fixed, ||d(t)||^2 = sum_C b^2 + t^2 sum_{not C} a^2 bounds
    the true value from above, so solving it for t from a feasible t_0
    gives an increasing sequence of feasible t that stops, exactly at the
    solution, once C no longer grows: an active-set method that needs 1-3
    passes of elementwise work on image perturbations. Should it not settle
    within `max_steps`, the exact sort-based sweep takes over.
    """
    eps = tf.constant(eps, a.dtype)
    zero = tf.zeros_like(a)

    def solve(capped):
        capped_b2 = tf.reduce_sum(tf.where(capped, b ** 2, zero), axis=1)
        free_a2 = tf.reduce_sum(tf.where(capped, zero, a ** 2), axis=1)
        return _solve_t(eps, capped_b2, free_a2)

    def body(i, t, capped, _):
        t_next = tf.maximum(solve(capped), t)  # max() keeps rounding from shrinking C
        capped_next = t_next[:, None] * a >= b
        return i + 1, t_next, capped_next, tf.reduce_all(tf.equal(capped_next, capped))

    t0 = tf.minimum(tf.math.divide_no_nan(eps, tf.norm(a, axis=1)), 1.0)  # ||clip(t0 a)|| <= eps
    _, t, _, settled = tf.while_loop(lambda i, t, c, settled: (i < max_steps) & tf.logical_not(settled), body,
                                     (tf.constant(0), t0, t0[:, None] * a >= b, tf.constant(False)))
    return tf.cond(settled, lambda: tf.minimum(t[:, None] * a, b), lambda: _box_l2_sweep(a, b, eps))


def _box_l2_sweep(a, b, eps):
    """The same magnitudes by an exact sweep over the sorted breakpoints.

    Coordinate i is capped once t >= s_i = b_i / a_i; between sorted
    breakpoints ||d(t)||^2 = (sum of capped b^2) + t^2 (sum of free a^2).
    """
    s = tf.where(a > 0, b / tf.where(a > 0, a, tf.ones_like(a)), tf.fill(tf.shape(a), tf.constant(np.inf, a.dtype)))
    order = tf.argsort(s, axis=1)
    s_sorted = tf.gather(s, order, batch_dims=1)
    b2 = tf.gather(b, order, batch_dims=1) ** 2
    a2 = tf.gather(a, order, batch_dims=1) ** 2
    capped_b2 = tf.cumsum(b2, axis=1)  # at breakpoint j, coordinates 0..j are capped
    free_a2 = tf.cumsum(a2, axis=1, exclusive=True, reverse=True)  # and j+1.. are free
    finite = tf.math.is_finite(s_sorted)
    s_safe = tf.where(finite, s_sorted, tf.zeros_like(s_sorted))
    at_break = tf.where(finite, capped_b2 + s_safe ** 2 * free_a2, tf.fill(tf.shape(s), tf.constant(np.inf, a.dtype)))
    m = tf.reduce_sum(tf.cast(at_break <= eps ** 2, tf.int32), axis=1)   # number of capped coordinates
    pad = tf.zeros_like(capped_b2[:, :1])
    capped = tf.gather(tf.concat([pad, capped_b2], 1), m, batch_dims=1)
    free = tf.gather(tf.concat([tf.cumsum(a2, axis=1, reverse=True), pad], 1), m, batch_dims=1)
    return tf.minimum(_solve_t(eps, capped, free)[:, None] * a, b)


def _solve_t(eps, capped_b2, free_a2):
    """t in [0, 1] solving capped_b2 + t^2 free_a2 = eps^2."""
    t = tf.sqrt(tf.math.divide_no_nan(tf.nn.relu(eps ** 2 - capped_b2), free_a2))
    # free_a2 = 0 only when the float64 norm of the clipped delta is <= eps
    # after all (a float32 caller saw it just outside): t = 1 returns the clip.
    return tf.minimum(tf.where(free_a2 > 0, t, tf.ones_like(t)), 1.0)


def _box_l1_magnitudes(a, b, eps):
    """|d_i| = min(relu(a_i - lam), b_i) with the smallest lam making ||d||_1 = eps.

    Only called where ||min(a, b)||_1 > eps, so lam > 0. g(lam) = ||d||_1 is
    piecewise linear: coordinate i is capped for lam <= a_i - b_i, free
    (slope -1) up to a_i, then zero. We sort the 2d breakpoints, accumulate
    g at each, and solve the linear piece where g crosses eps.
    """
    eps = tf.constant(eps, a.dtype)
    points = tf.concat([a - b, a], axis=1)
    slope_change = tf.concat([-tf.ones_like(a), tf.ones_like(a)], axis=1)
    order = tf.argsort(points, axis=1)
    z = tf.gather(points, order, batch_dims=1)
    slope = tf.cumsum(tf.gather(slope_change, order, batch_dims=1), axis=1)  # slope right of z_j
    gaps = z[:, 1:] - z[:, :-1]
    g0 = tf.reduce_sum(b, axis=1, keepdims=True)  # every coordinate capped left of z_0
    g = tf.concat([g0, g0 + tf.cumsum(slope[:, :-1] * gaps, axis=1)], axis=1)
    m = tf.reduce_sum(tf.cast(g > eps, tf.int32), axis=1)  # g(z_{m-1}) > eps >= g(z_m)
    m = tf.clip_by_value(m, 1, tf.shape(z)[1] - 1)
    z_left = tf.gather(z, m - 1, batch_dims=1)
    g_left = tf.gather(g, m - 1, batch_dims=1)
    s_left = tf.gather(slope, m - 1, batch_dims=1)
    lam = z_left + tf.math.divide_no_nan(g_left - eps, -s_left)
    lam = tf.clip_by_value(lam, z_left, tf.gather(z, m, batch_dims=1))
    # eps = 0 admits only d = 0; the sweep would stop at the first zero of g.
    lam = tf.where(eps > 0, tf.maximum(lam, 0.0), tf.reduce_max(a, axis=1))
    return tf.minimum(tf.nn.relu(a - lam[:, None]), b)


def _uniform_sampler(seed):
    """Returns draw(shape, dtype) -> U[0, 1) samples from the given seed source."""
    if seed is None:
        return lambda shape, dtype: tf.random.uniform(shape, dtype=dtype)
    if isinstance(seed, tf.random.Generator):
        return lambda shape, dtype: seed.uniform(shape, dtype=dtype)
    try:
        import keras
        if isinstance(seed, keras.random.SeedGenerator):
            return lambda shape, dtype: tf.convert_to_tensor(keras.random.uniform(shape, dtype=dtype.name, seed=seed))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(seed, bool):
        state = tf.constant([int(seed), 0], dtype=tf.int64)
    else:
        state = tf.convert_to_tensor(seed)
        if not state.dtype.is_integer or state.shape.rank != 1 or state.shape[0] != 2:
            raise ValueError("Expected seed to be None, an int, a shape-[2] integer seed, a tf.random.Generator or "
                             f"a keras.random.SeedGenerator. Received: seed={seed!r}")
    counter = [0]

    def draw(shape, dtype):
        # Fold a call counter into the seed so the draws of one call differ;
        # Philox (not "auto_select") gives the same stream eagerly, in graphs,
        # under XLA and on every device.
        counter[0] += 1
        sub = tf.random.experimental.stateless_fold_in(state, counter[0], alg="philox")
        return tf.random.stateless_uniform(shape, sub, dtype=dtype, alg="philox")

    return draw
