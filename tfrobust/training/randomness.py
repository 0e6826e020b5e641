"""Seeds: one global seed per run, and per-epoch reseeding for exact resume.

Dropout, noise layers and noisy input transforms draw from random state that
a checkpoint does not hold. `fit` therefore resets that state at the start of
every epoch to a value derived from `(seed, epoch)`: an interrupted run
resumed at epoch `k` draws exactly what an uninterrupted run draws there.

Which generators are reset is *declared*, not guessed: the Keras
`SeedGenerator`s of the model's layers, and whatever the input transform,
the loss and the extra losses declare through a `random_generators()` method
(see `tfrobust._random.generators_of`; attacks declare theirs through
`Attack.random_generators()`, and `tfrobust.transforms` forward their
attack's).
"""

import keras
import tensorflow as tf

from tfrobust import _random

__all__ = ["check_seed", "reseed_for_epoch", "set_seed"]


def check_seed(seed):
    """An integer seed in [0, 2**32); see `tfrobust._random.check_seed`."""
    return _random.check_seed(seed)


def set_seed(seed):
    """Seeds Python, NumPy, TensorFlow and Keras in one call.

    A thin wrapper of `keras.utils.set_random_seed` that validates the seed.

    Args:
        seed: An integer in [0, 2**32).

    Raises:
        ValueError: if `seed` is not such an integer.
    """
    keras.utils.set_random_seed(check_seed(seed))


def _keras_global_generator():
    try:
        from keras.src.random import seed_generator
    except ImportError:  # pragma: no cover - older or newer Keras layout
        return None
    return seed_generator.global_seed_generator()


def reseed_for_epoch(model, seed, epoch, others=()):
    """Resets the random state `fit` cannot checkpoint, from `(seed, epoch)`.

    Covers the generators `tfrobust._random.generators_of([model, *others])`
    finds (the seed generators of the model's layers, and those that the
    input transform, losses or other objects declare with
    `random_generators()`), Keras' global seed generator (`keras.random.*`
    with `seed=None`) and TensorFlow's global `tf.random.Generator`.
    Stateful legacy ops such as `tf.random.normal` keep per-op state that
    cannot be reset; input transforms that need exact resume should draw
    from one of the sources above.

    Args:
        model: The model being trained.
        seed: The run's seed.
        epoch: The 0-based epoch about to start.
        others: Further objects whose declared generators are reseeded.
    """
    generators = _random.generators_of([model, *others])
    for index, generator in enumerate(generators):
        value = _random.derived_seed(seed, epoch, index + 2)
        if isinstance(generator, tf.random.Generator):
            generator.reset_from_seed(value)
        else:
            generator.state.assign(tf.constant(
                [value, 0], dtype=generator.state.dtype))
    generator = _keras_global_generator()
    if generator is not None:
        generator.state.assign(tf.constant(
            [_random.derived_seed(seed, epoch, 0), 0],
            dtype=generator.state.dtype))
    tf.random.get_global_generator().reset_from_seed(
        _random.derived_seed(seed, epoch, 1))
