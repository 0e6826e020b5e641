"""Square attack (Andriushchenko et al. 2020): score-based black box, L∞ and L2.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks import Square

square = Square(threats.LpBall(np.inf, 0.3), n_queries=5000, seed=0)
x_adv = square(model, x, y)                      # the Attack contract
result = square.run(model, x, y)                 # + per-example query counts
result.queries, result.success
```

Random search over square-shaped updates: at iteration i a window of side
`s_i = round(sqrt(p_i * n_features / C))` (L∞: at least 1; L2: at least 3
and odd) at a uniformly random position gets a new perturbation, accepted
only if it lowers the margin loss `z_y - max_{j != y} z_j` (targeted:
`max_{j != t} z_j - z_t`, and the cross-entropy of the target). `p_i`
follows the paper's piecewise schedule from `p_init` (halved at 10, 50,
200, 500, 1000, 2000, 4000, 6000, 8000 iterations, rescaled to the budget
as if it were 10,000 queries). L∞ starts from vertical stripes of ±eps and
proposes ±2 eps per channel on the window (then clips to ball ∩ box); L2
starts from a grid of the paper's centred "eta" patterns and moves the mass
of a second window into the first, keeping the perturbation's L2 norm at
eps. Only the model's outputs are read (`black_box = True`).

Differences from the reference code, on purpose: positions, signs and the
pattern orientation are drawn per example (the reference shares them across
the batch in a step), and the whole batch runs in one compiled loop; points
that succeeded stop changing and stop counting queries.

References:
    Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
    query-efficient black-box adversarial attack via random search",
    ECCV 2020.
"""

import functools
import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import Attack

__all__ = ["Square", "SquareResult", "square_p_schedule"]

_BREAKS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_p_schedule(iteration, n_queries, p_init=0.8):
    """The fraction `p` of pixels changed at `iteration` (paper's schedule,
    rescaled to a budget of `n_queries`)."""
    it = int(iteration / n_queries * 10000)
    halvings = sum(it > b for b in _BREAKS)
    return p_init / 2 ** halvings


class SquareResult(NamedTuple):
    """Result of `Square.run`.

    Attributes:
        x_adv: float32 tensor like x, inside threat ∩ box.
        queries: int32 `[B]`, model evaluations spent on each example
            (including the initial one); never above `n_queries`.
        success: bool `[B]`, whether `x_adv` meets the goal.
    """

    x_adv: tf.Tensor
    queries: tf.Tensor
    success: tf.Tensor


def _eta_rectangles(rows, cols):
    delta = np.zeros([rows, cols])
    rc, cc = rows // 2 + 1, cols // 2 + 1
    r0, c0 = rc - 1, cc - 1
    for k in range(max(rc, cc)):
        delta[max(r0, 0):min(r0 + 2 * k + 1, rows), max(c0, 0):min(c0 + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        r0, c0 = r0 - 1, c0 - 1
    return delta / np.sqrt(np.sum(delta**2))


def _eta(s):
    """The paper's L2 window pattern: two centred rectangles of opposite sign."""
    delta = np.zeros([s, s])
    delta[: s // 2] = _eta_rectangles(s // 2, s)
    delta[s // 2:] = -_eta_rectangles(s - s // 2, s)
    return delta / np.sqrt(np.sum(delta**2))


class Square(Attack):
    """The Square attack; see the module docstring.

    Args:
        threat: `LpBall` with p = inf or 2 (the paper's two versions).
        n_queries: total model evaluations per example, including the
            initial one (paper and AutoAttack: 5000).
        p_init: initial fraction of pixels changed (paper: 0.05 for the
            untargeted L∞ ImageNet runs; AutoAttack: 0.8).
        restarts: runs from new random starts on the points still robust.
        loss: "margin" (default) or "ce" for the untargeted acceptance
            test (targeted runs always use the target's cross-entropy).
        seed: int for reproducible runs, None for fresh randomness.
        bounds: the input box.
        validate: "full" or "cheap" (no extra forward pass; see `Attack`).

    Call arguments:
        As `Attack`; `x` must be a batch of images `[B, H, W, C]`.

    Raises:
        ValueError: on bad arguments or non-image inputs.
    """

    black_box = True
    randomized = True

    def __init__(self, threat, *, n_queries=5000, p_init=0.8, restarts=1, loss="margin", seed=None,
                 bounds=(0.0, 1.0), validate="full"):
        super().__init__(threat, bounds=bounds, validate=validate)
        if threat is None or getattr(threat, "p", None) not in (2, np.inf):
            raise _validate.error("threat", "an LpBall with p in {2, inf}", threat)
        self.n_queries = _validate.check_int(n_queries, name="n_queries", minimum=1)
        self.steps = self.n_queries
        self.p_init = _validate.check_float(p_init, name="p_init", minimum=0.0, maximum=1.0,
                                            exclusive_minimum=True)
        self.restarts = _validate.check_int(restarts, name="restarts", minimum=1)
        self.loss = _validate.check_choice(loss, name="loss", choices=("margin", "ce"))
        self.seed = _validate.check_int(seed, name="seed", minimum=0, allow_none=True)
        self._rng = None
        self._compiled = tf.function(functools.partial(type(self)._attack_once, self),
                                     reduce_retracing=True)

    def get_config(self):
        return dict(super().get_config(), n_queries=self.n_queries, p_init=self.p_init,
                    restarts=self.restarts, loss=self.loss, seed=self.seed)

    def run(self, model, x, y=None, *, targeted=False):
        """Runs the attack and returns a `SquareResult` with query counts."""
        model, x, y, targeted = self._validated(model, x, y, targeted)
        x_adv, queries, success = self._search(model, x, y, targeted)
        return SquareResult(self._finalize(x, x_adv), queries, success)

    def _run(self, model, x, y, targeted):
        return self._search(model, x, y, targeted)[0]

    # ------------------------------------------------------------------

    def _search(self, model, x, y, targeted):
        if x.shape.rank != 4 or None in x.shape[1:]:
            raise ValueError("Expected `x` to be a batch of images [B, H, W, C] with known H, W, C "
                             f"for the Square attack. Received: x.shape={tuple(x.shape)}")
        targeted_t = tf.constant(targeted, tf.bool) if isinstance(targeted, bool) else targeted
        x_adv = queries = success = None
        for _ in range(self.restarts):
            x_new, q_new, s_new = self._compiled(model, x, y, targeted_t, self._next_seed())
            if x_adv is None:
                x_adv, queries, success = x_new, q_new, s_new
                continue
            # A restart only matters for points still robust; its queries add.
            take = s_new & ~success
            x_adv = tf.where(take[:, None, None, None], x_new, x_adv)
            queries = queries + tf.where(success, 0, q_new)
            success = success | s_new
        return x_adv, queries, success

    def _margin_and_loss(self, logits, y, targeted):
        logits = tf.cast(logits, tf.float32)
        k = tf.shape(logits)[-1]
        onehot = tf.one_hot(y, k, on_value=True, off_value=False, dtype=tf.bool)
        own = tf.reduce_sum(tf.where(onehot, logits, 0.0), axis=-1)
        others = tf.reduce_max(tf.where(onehot, -np.inf, logits), axis=-1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        # Success is margin < 0 (the reference accepts ties, which argmax
        # may still resolve to y).
        margin = tf.where(targeted, others - own, own - others)
        loss = tf.where(targeted, ce, -ce if self.loss == "ce" else own - others)
        # A non-finite output is never a success nor an improvement.
        finite = tf.reduce_all(tf.math.is_finite(logits), axis=-1)
        inf = tf.fill(tf.shape(margin), np.inf)
        return tf.where(finite, margin, inf), tf.where(finite, loss, inf)

    def _schedule(self, h, w, c):
        """Window side per iteration, and (L2) the table of eta patterns."""
        n_features = h * w * c
        iterations = self.n_queries - 1
        sides = []
        for i in range(max(iterations, 1)):
            s = int(round(math.sqrt(square_p_schedule(i, self.n_queries, self.p_init) * n_features / c)))
            if self.threat.p == np.inf:
                s = max(s, 1)
            else:
                s = max(s, 3)
                s += 1 - s % 2
            sides.append(min(s, h, w))
        distinct = sorted(set(sides))
        smax = max(distinct)
        table = np.zeros([len(distinct), smax, smax], np.float32)
        if self.threat.p == 2:
            for j, s in enumerate(distinct):
                table[j, :s, :s] = _eta(s)
        index = [distinct.index(s) for s in sides]
        return (tf.constant(sides, tf.int32), tf.constant(index, tf.int32), tf.constant(table))

    def _attack_once(self, model, x, y, targeted, seed):
        lo, hi = self.bounds
        eps = float(self.threat.eps)
        b = tf.shape(x)[0]
        h, w, c = (int(d) for d in x.shape[1:])
        sides, table_index, table = self._schedule(h, w, c)
        rows = tf.range(h)[None, :, None]
        cols = tf.range(w)[None, None, :]
        seeds = tf.random.experimental.stateless_split(seed, 2)

        def draw(i, k):
            return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(seeds[1], i), k)

        def window(i, k, s):
            vh = tf.random.stateless_uniform([b], draw(i, k), 0, h - s + 1, tf.int32)
            vw = tf.random.stateless_uniform([b], draw(i, k + 1), 0, w - s + 1, tf.int32)
            inside = ((rows >= vh[:, None, None]) & (rows < (vh + s)[:, None, None])
                      & (cols >= vw[:, None, None]) & (cols < (vw + s)[:, None, None]))
            return inside[..., None], vh, vw

        def signs(shape, key):
            return tf.where(tf.random.stateless_uniform(shape, key) < 0.5, -1.0, 1.0)

        def l2(v):
            return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2, 3], keepdims=True))

        if self.threat.p == np.inf:
            x_best = tf.clip_by_value(x + eps * signs([b, 1, w, c], seeds[0]), lo, hi)
        else:
            # A grid of eta patterns with random signs per channel, scaled to eps.
            s0 = max(h // 5, 1)
            start = (h - s0 * 5) // 2
            grid = np.zeros([h, w], np.float32)
            pattern = _eta(s0) if s0 >= 2 else np.ones([1, 1])
            cells = []
            for gi in range(h // s0):
                for gj in range(w // s0):
                    r, q = start + gi * s0, start + gj * s0
                    if r + s0 <= h and q + s0 <= w:
                        cells.append((r, q))
            delta0 = tf.zeros_like(x)
            for k, (r, q) in enumerate(cells):
                grid[:] = 0.0
                grid[r:r + s0, q:q + s0] = pattern
                key = tf.random.experimental.stateless_fold_in(seeds[0], k)
                delta0 += tf.constant(grid)[None, :, :, None] * signs([b, 1, 1, c], key)
            x_best = tf.clip_by_value(x + eps * delta0 / (l2(delta0) + 1e-12), lo, hi)

        margin, loss = self._margin_and_loss(model(x_best), y, targeted)
        queries = tf.ones([b], tf.int32)

        def body(i, x_best, margin, loss, queries):
            active = margin >= 0.0
            s = sides[i]
            mask1, vh, vw = window(i, 0, s)
            if self.threat.p == np.inf:
                proposal = x_best + tf.cast(mask1, tf.float32) * 2.0 * eps * signs([b, 1, 1, c], draw(i, 4))
                x_new = tf.clip_by_value(tf.clip_by_value(proposal, x - eps, x + eps), lo, hi)
            else:
                mask2, _, _ = window(i, 2, s)
                m1, m2 = tf.cast(mask1, tf.float32), tf.cast(mask2, tf.float32)
                delta = x_best - x
                norm_window1 = tf.sqrt(tf.reduce_sum(tf.square(delta * m1), axis=[1, 2], keepdims=True))
                norm_image = l2(delta)
                norm_windows = tf.sqrt(tf.reduce_sum(tf.square(delta * tf.maximum(m1, m2)), axis=[1, 2],
                                                     keepdims=True))
                # The eta pattern (randomly transposed) pasted at window 1.
                local_r = tf.clip_by_value(rows - vh[:, None, None], 0, s - 1)
                local_c = tf.clip_by_value(cols - vw[:, None, None], 0, s - 1)
                transpose = tf.random.stateless_uniform([b, 1, 1], draw(i, 5)) < 0.5
                rr, cc = tf.where(transpose, local_c, local_r), tf.where(transpose, local_r, local_c)
                index = tf.stack([tf.broadcast_to(rr, [b, h, w]), tf.broadcast_to(cc, [b, h, w])], -1)
                pattern = tf.gather_nd(table[table_index[i]], index)
                new = pattern[..., None] * signs([b, 1, 1, c], draw(i, 4)) + delta / (norm_window1 + 1e-12)
                new = new * m1
                target = tf.sqrt(tf.maximum(eps**2 - tf.square(norm_image), 0.0) / c + tf.square(norm_windows))
                new = new / (tf.sqrt(tf.reduce_sum(tf.square(new), axis=[1, 2], keepdims=True)) + 1e-12) * target
                delta = tf.where(mask1, new, tf.where(mask2, 0.0, delta))
                x_new = tf.clip_by_value(x + eps * delta / (l2(delta) + 1e-12), lo, hi)
            margin_new, loss_new = self._margin_and_loss(model(x_new), y, targeted)
            accept = active & ((loss_new < loss) | (margin_new < 0.0))
            x_best = tf.where(accept[:, None, None, None], x_new, x_best)
            loss = tf.where(active & (loss_new < loss), loss_new, loss)
            margin = tf.where(accept, margin_new, margin)
            queries = queries + tf.cast(active, tf.int32)
            return i + 1, x_best, margin, loss, queries

        def cond(i, x_best, margin, loss, queries):
            return (i < self.n_queries - 1) & tf.reduce_any(margin >= 0.0)

        # The batch dimension may lose its static size in the loop: with one
        # image, broadcasting against per-example draws of shape [b, ...]
        # (b dynamic) gives an unknown size where [1, ...] went in.
        batch_free = lambda t: tf.TensorShape([None]).concatenate(t.shape[1:])  # noqa: E731
        loop_vars = (tf.constant(0), x_best, margin, loss, queries)
        _, x_best, margin, _, queries = tf.while_loop(
            cond, body, loop_vars, maximum_iterations=max(self.n_queries - 1, 0),
            shape_invariants=(tf.TensorShape([]),) + tuple(batch_free(t) for t in loop_vars[1:]))
        return x_best, queries, margin < 0.0
