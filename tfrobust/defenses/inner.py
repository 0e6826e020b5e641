"""Inner optimisation of a forward pass, written so it runs inside any compiled loop.

Example (projection onto a generator's range, `z* = argmin ||G(z) - x||^2`):

```python
import keras
import tensorflow as tf
from tfrobust import optim
from tfrobust.defenses import minimize

generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64)])
x = tf.random.uniform([8, 64])
weights = ([v.value for v in generator.trainable_variables],
           [v.value for v in generator.non_trainable_variables])

def loss(z):
    out, _ = generator.stateless_call(*weights, z)
    return tf.reduce_sum(tf.square(out - x), axis=-1)   # one loss per example

z_star = minimize(loss, tf.zeros([8, 4]), optimizer=optim.Adam(0.1), steps=50)
```

Defenses that optimise at inference (an inversion, Deep Image Prior) run
inside an attacker's `tf.function`, often several times per attack step.
Keras optimizers and `tf.Variable`s cannot be created there, so the loop is
a `tf.while_loop` over tensors: parameters and optimiser state are loop
variables, each step differentiates the loss with its own `GradientTape`,
and `tfrobust.optim` supplies the update. `steps` may be a tensor (a
run-time knob that survives export).
"""

import tensorflow as tf

from tfrobust import _validate
from tfrobust import optim

__all__ = ["minimize"]


def minimize(loss_fn, params, *, optimizer, steps, initial_state=None, return_state=False):
    """Minimises `loss_fn(params)` over `params` by `steps` optimiser steps.

    Args:
        loss_fn: callable `params -> loss`, a scalar or one loss per example
            (summed: examples are independent, so each gets its own
            gradient). It must create no variables (call models through
            `keras.Model.stateless_call` if they are not built).
        params: the starting point, a tensor or a nest of tensors.
        optimizer: a `tfrobust.optim` optimiser or its name.
        steps: number of steps, a Python int >= 0 or an integer scalar
            tensor.
        initial_state: optional optimiser state to continue from (as
            returned with `return_state=True`), so that a run split into
            segments equals one run (e.g. to read the iterate at several
            step counts).
        return_state: also return the optimiser state.

    Returns:
        The parameters after `steps` steps, with the structure of `params`
        (and the optimiser state, with `return_state=True`).

    Raises:
        ValueError: for a negative Python `steps` or an unknown optimiser.
    """
    optimizer = optim.get(optimizer)
    if not tf.is_tensor(steps):
        steps = _validate.check_int(steps, name="steps", minimum=0)
    params = tf.nest.map_structure(tf.convert_to_tensor, params)
    steps = tf.cast(steps, tf.int32)

    def body(i, p, state):
        with tf.GradientTape() as tape:
            tape.watch(p)
            loss = tf.reduce_sum(loss_fn(p))
        grads = tape.gradient(loss, p, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        p, state = optimizer.step(p, grads, state)
        return i + 1, p, state

    state = optimizer.init(params) if initial_state is None else initial_state
    _, params, state = tf.while_loop(
        lambda i, p, state: i < steps, body, (tf.constant(0), params, state))
    return (params, state) if return_state else params
