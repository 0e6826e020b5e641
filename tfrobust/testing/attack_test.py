"""Shared assertions for attack tests, and a small trained model to attack.

Example (inside a pytest test):

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.testing import run_attack_test, small_trained_mnist_model

trained = small_trained_mnist_model()          # sklearn digits, cached
run_attack_test(
    lambda eps, seed: PGD(threats.LpBall(np.inf, eps), steps=10, seed=seed),
    trained.model, trained.x, trained.y, eps=0.2)
```

Every attack of the library goes through the same checks (eps = 0 returns
x; the output lies inside threat ∩ box; accuracy drops on a trained model;
targeted mode hits the target; eager and compiled runs agree under a seed),
so a new attack only needs a factory `(eps, seed) -> Attack`.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

__all__ = [
    "TrainedModel",
    "small_trained_mnist_model",
    "accuracy",
    "assert_inside_threat",
    "assert_eps_zero_returns_x",
    "assert_accuracy_drops",
    "assert_targeted_hits",
    "assert_eager_matches_compiled",
    "run_attack_test",
    "linear_two_class_model",
]


class TrainedModel(NamedTuple):
    """A small trained classifier and held-out examples it mostly gets right.

    Attributes:
        model: keras.Model returning logits.
        x: float32 NHWC held-out images in [0, 1] (correctly classified ones).
        y: int32 labels of `x`.
        clean_accuracy: accuracy on the whole held-out split.
        dataset: "mnist" or "digits".
    """

    model: object
    x: np.ndarray
    y: np.ndarray
    clean_accuracy: float
    dataset: str


_CACHE = {}


def small_trained_mnist_model(data_dir=None, *, num_train=2000, num_test=64):
    """A tiny dense net trained in seconds on real digits, cached per process.

    With `data_dir` (a folder holding MNIST's IDX files) it trains on the
    first `num_train` MNIST training images; without it, on scikit-learn's
    bundled 8x8 digits (no files needed). Training is seeded, so the model
    is the same within and across processes on one machine.

    Args:
        data_dir: MNIST folder, or `None` for the embedded digits.
        num_train: number of training images (MNIST only; digits uses all).
        num_test: number of held-out, correctly classified examples returned.

    Returns:
        A `TrainedModel`.
    """
    key = (data_dir, num_train, num_test)
    if key not in _CACHE:
        _CACHE[key] = _train(data_dir, num_train, num_test)
    return _CACHE[key]


def _train(data_dir, num_train, num_test):
    import keras

    from tfrobust import data

    name = "digits" if data_dir is None else "mnist"
    x_train, y_train = data.load(name, "train", data_dir=data_dir)
    x_test, y_test = data.load(name, "test", data_dir=data_dir)
    x_train, y_train = x_train[:num_train], y_train[:num_train]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(x_train.shape[1:]),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(data.num_classes(name)),
        ],
        name=f"small_{name}_net",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=6, verbose=0, shuffle=True)
    x_eval = np.asarray(x_test[: 4 * num_test], np.float32)
    y_eval = np.asarray(y_test[: 4 * num_test], np.int32)
    # A direct call, not `predict`, to save compiling a predict function.
    pred = np.argmax(np.asarray(model(x_eval)), axis=-1)
    correct = pred == y_eval
    keep = np.flatnonzero(correct)[:num_test]
    return TrainedModel(model, x_eval[keep], y_eval[keep], float(correct.mean()), name)


def accuracy(model, x, y):
    """Fraction of `x` that `model` classifies as `y` (a Python float)."""
    pred = tf.argmax(model(tf.convert_to_tensor(x, tf.float32)), axis=-1, output_type=tf.int32)
    return float(tf.reduce_mean(tf.cast(tf.equal(pred, tf.cast(y, tf.int32)), tf.float32)))


def assert_inside_threat(x, x_adv, threat=None, bounds=(0.0, 1.0), atol=1e-6):
    """Asserts `x_adv` has the shape of `x`, is in the box, and `x_adv - x` is in the threat.

    "In the threat" is the threat's own budget test, `threat.contains`
    (the library's one tolerance, `tfrobust.threats.within_eps`); `atol`
    is the tolerance on the box.
    """
    x = np.asarray(x, np.float32)
    x_adv = np.asarray(x_adv)
    assert x_adv.shape == x.shape, f"x_adv.shape={x_adv.shape} != x.shape={x.shape}"
    assert np.all(np.isfinite(x_adv)), "x_adv has NaN or Inf"
    lo, hi = bounds
    assert x_adv.min() >= lo - atol and x_adv.max() <= hi + atol, (
        f"x_adv outside bounds {bounds}: [{x_adv.min()}, {x_adv.max()}]"
    )
    if threat is not None:
        delta = tf.constant(x_adv - x)
        norms = np.asarray(threat.norm(delta))
        if callable(getattr(threat, "contains", None)):
            inside = np.asarray(threat.contains(delta))
        else:
            from tfrobust.threats import within_eps

            inside = within_eps(norms, threat.eps)
        assert inside.all(), f"max ||x_adv - x||_{threat.p} = {norms.max()} > eps = {threat.eps}"


def assert_eps_zero_returns_x(attack_factory, model, x, y=None, atol=1e-6):
    """Asserts that the attack built with eps = 0 returns x (untargeted)."""
    x_adv = attack_factory(0.0, 0)(model, x, y)
    np.testing.assert_allclose(np.asarray(x_adv), np.asarray(x, np.float32), rtol=0, atol=atol)


def assert_accuracy_drops(attack, model, x, y, max_ratio=0.5):
    """Asserts `acc(x_adv) <= max_ratio * acc(x)` and `acc(x_adv) < acc(x)`.

    Returns:
        `(x_adv, clean_accuracy, adversarial_accuracy)`.
    """
    clean = accuracy(model, x, y)
    x_adv = attack(model, x, y)
    adv = accuracy(model, x_adv, y)
    assert adv < clean and adv <= max_ratio * clean, (
        f"{type(attack).__name__}: accuracy {clean:.3f} -> {adv:.3f}; expected <= {max_ratio} x clean"
    )
    return x_adv, clean, adv


def assert_targeted_hits(attack, model, x, y_target, min_rate=0.5):
    """Asserts the targeted attack reaches `y_target` on >= `min_rate` of x.

    Returns:
        `(x_adv, hit_rate)`.
    """
    before = accuracy(model, x, y_target)
    x_adv = attack(model, x, y_target, targeted=True)
    rate = accuracy(model, x_adv, y_target)
    assert rate >= min_rate and rate > before, (
        f"{type(attack).__name__}: target hit rate {before:.3f} -> {rate:.3f}; expected >= {min_rate}"
    )
    return x_adv, rate


def assert_eager_matches_compiled(
    attack_factory, model, x, y, *, eps, seed=0, atol=1e-5, max_mismatch=0.0, compiled=None
):
    """Asserts two attacks built with one seed agree, one compiled and one run eagerly.

    Args:
        attack_factory: `(eps, seed) -> Attack`.
        model, x, y: as for the attack.
        eps: the budget.
        seed: the shared seed.
        atol: per-coordinate tolerance.
        max_mismatch: fraction of coordinates allowed to differ by more than
            `atol` (a sign step can flip where a gradient entry is at float
            rounding level, as graph and eager kernels may round differently).
        compiled: the output of a fresh `attack_factory(eps, seed)` on
            `(model, x, y)`, if already computed (saves a run).
    """
    if compiled is None:
        compiled = attack_factory(eps, seed)(model, x, y)
    compiled = np.asarray(compiled)
    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        eager = np.asarray(attack_factory(eps, seed)(model, x, y))
    finally:
        tf.config.run_functions_eagerly(previous)
    mismatch = float(np.mean(np.abs(compiled - eager) > atol))
    assert mismatch <= max_mismatch, (
        f"eager and compiled results differ on {mismatch:.2%} of coordinates (allowed {max_mismatch:.2%})"
    )


def run_attack_test(
    attack_factory,
    model,
    x,
    y,
    *,
    eps,
    num_classes=None,
    max_accuracy_ratio=0.5,
    min_target_rate=0.5,
    check_determinism=True,
    bounds=(0.0, 1.0),
    atol=1e-5,
    max_mismatch=0.0,
):
    """Runs the shared attack assertions.

    1. eps = 0 returns x. 2. The output lies inside threat ∩ box. 3. Accuracy
    drops to at most `max_accuracy_ratio` of the clean accuracy. 4. Targeted
    at `(y + 1) % K`, the attack reaches the target on at least
    `min_target_rate` of x (skipped when `min_target_rate` is None).
    5. Compiled and eager runs agree under a seed (skipped when
    `check_determinism` is False).

    Args:
        attack_factory: `(eps, seed) -> Attack`, seed an int or None.
        model: callable returning logits.
        x: inputs the model classifies correctly (mostly).
        y: their labels.
        eps: budget for checks 2-5.
        num_classes: K (default: the model's output width).
        max_accuracy_ratio: bound of check 3 (None skips it).
        min_target_rate: bound of check 4 (None skips it).
        check_determinism: whether to run check 5.
        bounds: the box.
        atol, max_mismatch: tolerances of check 5.

    Returns:
        A dict of the measured values (`clean_accuracy`,
        `adversarial_accuracy`, `target_rate`).
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    results = {}
    assert_eps_zero_returns_x(attack_factory, model, x, y)
    attack = attack_factory(eps, 0)
    if max_accuracy_ratio is not None:
        x_adv, results["clean_accuracy"], results["adversarial_accuracy"] = assert_accuracy_drops(
            attack, model, x, y, max_accuracy_ratio
        )
    else:
        x_adv = attack(model, x, y)
    assert_inside_threat(x, x_adv, attack.threat, bounds)
    if check_determinism:
        # The first run of a fresh attack is the compiled half of the check.
        assert_eager_matches_compiled(
            attack_factory, model, x, y, eps=eps, atol=atol, max_mismatch=max_mismatch, compiled=x_adv
        )
    if min_target_rate is not None:
        if num_classes is None:
            num_classes = int(model(x[:1]).shape[-1])
        y_target = (y + 1) % num_classes
        x_adv, results["target_rate"] = assert_targeted_hits(attack, model, x, y_target, min_target_rate)
        assert_inside_threat(x, x_adv, attack.threat, bounds)
    return results


def linear_two_class_model(seed=0, shape=(4, 4, 1), offset=0.2):
    """A Keras model with two logits and `f_0 - f_1 = w·x + b`: its decision
    boundary is a hyperplane, so minimal perturbations have closed forms.

    Returns:
        `(model, w, b)` with `w` of length `prod(shape)`.
    """
    import keras

    dim = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim).astype("float32")
    b = np.float32(-0.5 * w.sum() + offset)
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.stack([w, -w], 1) / 2, np.array([b, -b]) / 2])
    return model, w, b
