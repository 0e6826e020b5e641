"""Seeds: one global seed per run, and per-epoch reseeding for exact resume.

Dropout, noise layers and noisy input transforms draw from random state that
a checkpoint does not hold. `fit` therefore resets that state at the start of
every epoch to a value derived from `(seed, epoch)`: an interrupted run
resumed at epoch `k` draws exactly what an uninterrupted run draws there.
"""

import numbers

import keras
import numpy as np
import tensorflow as tf


def check_seed(seed):
    if (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
            or not 0 <= seed < 2**32):
        raise ValueError(
            f"Expected seed to be an integer in [0, 2**32). Received: "
            f"seed={seed!r}")
    return int(seed)


def set_seed(seed):
    """Seeds Python, NumPy, TensorFlow and Keras in one call.

    A thin wrapper of `keras.utils.set_random_seed` that validates the seed.

    Args:
        seed: An integer in [0, 2**32).

    Raises:
        ValueError: if `seed` is not such an integer.
    """
    keras.utils.set_random_seed(check_seed(seed))


def _generators(owners):
    """The random generators owned by `owners`, in a deterministic order.

    For Keras layers and models: the `keras.random.SeedGenerator`s of every
    sublayer. For other objects (input transforms, extra losses): the
    `SeedGenerator` and `tf.random.Generator` instances among their
    attributes.
    """
    found, seen = [], set()

    def add(generator):
        if id(generator) not in seen:
            seen.add(id(generator))
            found.append(generator)

    for owner in owners:
        if hasattr(owner, "_flatten_layers"):
            for layer in owner._flatten_layers(include_self=True,
                                               recursive=True):
                for generator in getattr(layer, "_seed_generators", ()):
                    add(generator)
        elif hasattr(owner, "__dict__"):
            for value in vars(owner).values():
                if isinstance(value, (keras.random.SeedGenerator,
                                      tf.random.Generator)):
                    add(value)
    return found


def _keras_global_generator():
    try:
        from keras.src.random import seed_generator
    except ImportError:  # pragma: no cover - older or newer Keras layout
        return None
    return seed_generator.global_seed_generator()


def _derived(seed, epoch, stream):
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1)
    # Keras seeds are conceptually uint32 but kept in int64 (TF backend);
    # staying below 2**31 keeps them valid for every backend dtype.
    return int(state[0] >> 1)


def reseed_for_epoch(model, seed, epoch, others=()):
    """Resets the random state `fit` cannot checkpoint, from `(seed, epoch)`.

    Covers the seed generators of the model's layers (Dropout, noise layers),
    `SeedGenerator` / `tf.random.Generator` attributes of `others` (the input
    transform and extra losses), Keras' global seed generator
    (`keras.random.*` with `seed=None`) and TensorFlow's global
    `tf.random.Generator`. Stateful legacy ops such as `tf.random.normal`
    keep per-op state that cannot be reset; input transforms that need exact
    resume should draw from one of the sources above.

    Args:
        model: The model being trained.
        seed: The run's seed.
        epoch: The 0-based epoch about to start.
        others: Further objects whose generator attributes are reseeded.
    """
    for index, generator in enumerate(_generators([model, *others])):
        value = _derived(seed, epoch, index + 2)
        if isinstance(generator, tf.random.Generator):
            generator.reset_from_seed(value)
        else:
            generator.state.assign(tf.constant(
                [value, 0], dtype=generator.state.dtype))
    generator = _keras_global_generator()
    if generator is not None:
        generator.state.assign(tf.constant(
            [_derived(seed, epoch, 0), 0], dtype=generator.state.dtype))
    tf.random.get_global_generator().reset_from_seed(_derived(seed, epoch, 1))
