"""Tensor-only optimisation steps, usable inside any compiled loop.

Attacks (C&W, EAD, SPSA, NAttack) and defenses that optimise at inference
(invert-and-classify, Deep Image Prior) run their inner optimisation inside
`tf.while_loop`s, often inside an attacker's own `tf.function`. Keras
optimizers create variables on first use, which a loop body may not do; the
optimisers here are pure functions instead: `state = opt.init(params)`,
`params, state = opt.step(params, grads, state)`, on any nest of tensors
(a tensor, a list of weights, a dict), with no variables at all.

Example:

```python
import tensorflow as tf
from tfrobust import optim

adam = optim.Adam(learning_rate=0.1)
z = tf.zeros([4, 2])
state = adam.init(z)
for _ in range(100):            # or the body of a tf.while_loop
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(tf.square(z - 3.0))
    z, state = adam.step(z, tape.gradient(loss, z), state)
```

The box change of variables `to_tanh_space` / `from_tanh_space` maps the box
`[lo, hi]` to all of R, so that an unconstrained optimiser stays inside the
box without clipping (Carlini & Wagner 2017).
"""

import tensorflow as tf

from tfrobust import _validate

__all__ = ["SGD", "Momentum", "Adam", "get", "to_tanh_space", "from_tanh_space"]

# atanh(±1) is infinite: pixels on the box faces are pulled this far inside
# first (the C&W reference's constant).
TANH_SHRINK = 0.999999


def _map(fn, *structures):
    return tf.nest.map_structure(fn, *structures)


class _Optimizer:
    """Base: `init(params) -> state`, `step(params, grads, state, mask=None)`.

    `mask` (optional, a nest like `params` of booleans broadcastable to each
    parameter, or one boolean tensor broadcastable to all) freezes the
    entries where it is False: their parameters and optimiser state keep
    their values (used to stop converged examples of a batch).
    """

    def __init__(self, learning_rate):
        self.learning_rate = _validate.check_float(
            learning_rate, name="learning_rate", minimum=0.0, exclusive_minimum=True)

    def init(self, params):
        raise NotImplementedError

    def _update(self, params, grads, state):
        raise NotImplementedError

    def step(self, params, grads, state, mask=None):
        """One descent step. Returns `(new_params, new_state)`."""
        grads = _map(lambda g, p: tf.zeros_like(p) if g is None else tf.cast(g, p.dtype), grads, params)
        new_params, new_state = self._update(params, grads, state)
        if mask is None:
            return new_params, new_state

        def keep(new, old):
            return tf.where(tf.cast(mask, tf.bool), new, old) if new.shape.rank else new

        new_params = _map(keep, new_params, params)
        new_state = self._mask_state(new_state, state, keep)
        return new_params, new_state

    def _mask_state(self, new_state, old_state, keep):
        return _map(keep, new_state, old_state)

    def get_config(self):
        return {"name": type(self).__name__, "learning_rate": self.learning_rate}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(_Optimizer):
    """Plain gradient descent: `p <- p - lr * g`."""

    def init(self, params):
        return ()

    def _update(self, params, grads, state):
        lr = self.learning_rate
        return _map(lambda p, g: p - lr * g, params, grads), ()

    def _mask_state(self, new_state, old_state, keep):
        return ()


class Momentum(_Optimizer):
    """Heavy-ball momentum: `v <- mu v + g`, `p <- p - lr v` (Keras SGD with
    momentum, nesterov=False)."""

    def __init__(self, learning_rate, momentum=0.9):
        super().__init__(learning_rate)
        self.momentum = _validate.check_float(momentum, name="momentum", minimum=0.0, maximum=1.0,
                                              exclusive_maximum=True)

    def init(self, params):
        return _map(tf.zeros_like, params)

    def _update(self, params, grads, state):
        velocity = _map(lambda v, g: self.momentum * v + g, state, grads)
        return _map(lambda p, v: p - self.learning_rate * v, params, velocity), velocity

    def get_config(self):
        return dict(super().get_config(), momentum=self.momentum)


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015).

    By default the bias correction is folded into the step size, as Keras,
    TF1's `AdamOptimizer` and the C&W reference compute it:
    `p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.
    With `folded=False` it is the paper's Algorithm 1 (as the SPSA reference
    computes it): `p <- p - lr * m_hat / (sqrt(v_hat) + eps)` with
    `m_hat = m / (1 - b1^t)`, `v_hat = v / (1 - b2^t)`. The two differ only
    in where `eps` acts (it is `eps * sqrt(1 - b2^t)` in the folded form).

    The state is `(t, m, v)` with a scalar step count `t`; under a `mask`
    frozen entries keep `m` and `v`, and `t` counts the loop's steps (as in
    the C&W reference, where stopped examples simply stop changing).

    Args:
        learning_rate: step size (> 0).
        beta_1, beta_2: moment decays in [0, 1).
        epsilon: the denominator's guard (> 0).
        folded: the bias-correction form (see above).
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, folded=True):
        super().__init__(learning_rate)
        self.folded = _validate.check_bool(folded, name="folded")
        self.beta_1 = _validate.check_float(beta_1, name="beta_1", minimum=0.0, maximum=1.0,
                                            exclusive_maximum=True)
        self.beta_2 = _validate.check_float(beta_2, name="beta_2", minimum=0.0, maximum=1.0,
                                            exclusive_maximum=True)
        self.epsilon = _validate.check_float(epsilon, name="epsilon", minimum=0.0, exclusive_minimum=True)

    def init(self, params):
        return (tf.zeros([], tf.float32), _map(tf.zeros_like, params), _map(tf.zeros_like, params))

    def _update(self, params, grads, state):
        t, m, v = state
        t = t + 1.0
        b1, b2 = self.beta_1, self.beta_2
        m = _map(lambda m_, g: b1 * m_ + (1.0 - b1) * g, m, grads)
        v = _map(lambda v_, g: b2 * v_ + (1.0 - b2) * tf.square(g), v, grads)
        if self.folded:
            scale = self.learning_rate * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))

            def move(p, m_, v_):
                return p - tf.cast(scale, p.dtype) * m_ / (tf.sqrt(v_) + self.epsilon)
        else:
            c1, c2 = 1.0 - tf.pow(b1, t), 1.0 - tf.pow(b2, t)

            def move(p, m_, v_):
                m_hat = m_ / tf.cast(c1, m_.dtype)
                v_hat = v_ / tf.cast(c2, v_.dtype)
                return p - self.learning_rate * (m_hat / (tf.sqrt(v_hat) + self.epsilon))

        return _map(move, params, m, v), (t, m, v)

    def _mask_state(self, new_state, old_state, keep):
        t, m, v = new_state
        _, m_old, v_old = old_state
        return (t, _map(keep, m, m_old), _map(keep, v, v_old))

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    folded=self.folded)


_BY_NAME = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def get(optimizer, learning_rate=None):
    """An optimiser from a name ('sgd', 'momentum', 'adam') or an instance."""
    if isinstance(optimizer, _Optimizer):
        return optimizer
    name = _validate.check_choice(optimizer, name="optimizer", choices=tuple(_BY_NAME))
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    return _BY_NAME[name](**kwargs)


def to_tanh_space(x, bounds=(0.0, 1.0), shrink=TANH_SHRINK):
    """`w = atanh((x - center) / half_range * shrink)`, the inverse of
    `from_tanh_space` (up to the shrink that keeps it finite on the faces;
    a smaller shrink keeps face pixels off tanh's flat tails)."""
    lo, hi = _validate.check_pair(bounds, name="bounds")
    half_range, center = (hi - lo) / 2.0, (hi + lo) / 2.0
    return tf.atanh((x - center) / half_range * shrink)


def from_tanh_space(w, bounds=(0.0, 1.0)):
    """`x = tanh(w) * half_range + center`: always inside `bounds`."""
    lo, hi = _validate.check_pair(bounds, name="bounds")
    half_range, center = (hi - lo) / 2.0, (hi + lo) / 2.0
    return tf.tanh(w) * half_range + center
