"""Seeds and random generators, declared so that training resumes exactly.

Anything in tfrobust that draws random numbers outside a Keras layer (an
attack's random start, a noisy input transform, a smoothing sampler) owns a
`tf.random.Generator` created by `make_generator` and *declares* it through
a `random_generators()` method. `generators_of(objects)` collects them
(plus the `keras.random.SeedGenerator`s of Keras layers) in a deterministic
order, and the training loop resets each from `(seed, epoch)` at every epoch
start, so a run resumed at epoch k draws exactly what an uninterrupted run
draws there. Nothing is found by scanning attributes: an object that does
not declare its generators is not reseeded (and says so in its docs).
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate

__all__ = ["check_seed", "derived_seed", "generators_of", "make_generator", "next_seed"]

_MAX_SEED = 2**32


def check_seed(seed, *, name="seed", allow_none=False):
    """An integer seed in [0, 2**32) (or None when `allow_none`)."""
    return _validate.check_int(seed, name=name, minimum=0, maximum=_MAX_SEED - 1,
                               allow_none=allow_none)


def make_generator(seed=None):
    """A `tf.random.Generator`: from `seed`, or non-deterministic when None.

    Created under `tf.init_scope` so that it can be made lazily inside a
    `tf.function` (its state variable lives outside the graph).
    """
    seed = check_seed(seed, allow_none=True)
    with tf.init_scope():
        if seed is None:
            return tf.random.Generator.from_non_deterministic_state()
        return tf.random.Generator.from_seed(seed)


def next_seed(generator):
    """A fresh stateless-op seed `[2]` (int32) drawn from `generator`."""
    seed = generator.make_seeds(1)[:, 0]
    return tf.cast(seed % (2**31 - 1), tf.int32)


def derived_seed(seed, *streams):
    """A seed in [0, 2**31) derived from `seed` and integer stream ids.

    Uses NumPy's `SeedSequence`, so different `(seed, streams)` give
    statistically independent values (not `seed + epoch`).
    """
    state = np.random.SeedSequence([int(seed), *[int(s) for s in streams]]).generate_state(1)
    # Keras seeds live in int64 state on TF but are uint32 in spirit; staying
    # below 2**31 keeps them valid for every backend dtype.
    return int(state[0] >> 1)


def generators_of(objects):
    """The random generators `objects` own, deduplicated, in a fixed order.

    For each object: the `keras.random.SeedGenerator`s of every sublayer when
    it is a Keras layer or model; then whatever its `random_generators()`
    method declares (generators, or further objects to collect from). A
    Keras layer may declare more than its seed generators the same way.
    """
    found, seen = [], set()

    def add(generator):
        if id(generator) not in seen:
            seen.add(id(generator))
            found.append(generator)

    def visit(obj, depth):
        if depth > 16:
            raise ValueError("random_generators() declarations nest more than 16 levels deep "
                             f"(a cycle?). Received: {obj!r}")
        if isinstance(obj, (keras.random.SeedGenerator, tf.random.Generator)):
            add(obj)
            return
        if isinstance(obj, keras.layers.Layer):
            for layer in obj._flatten_layers(include_self=True, recursive=True):
                for generator in getattr(layer, "_seed_generators", ()):
                    add(generator)
        declare = getattr(obj, "random_generators", None)
        if callable(declare):
            for item in declare() or ():
                visit(item, depth + 1)

    for obj in objects:
        if obj is not None:
            visit(obj, 0)
    return found
