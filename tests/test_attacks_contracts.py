"""Contracts every attack keeps: declared capabilities, seeds, bad models and inputs.

One table of attacks (`FACTORIES`), the same assertions for each: the
capability flags the evaluation engine reads, non-finite logits never
counted as adversarial, `targeted` only a real bool, any float dtype of
logits, clear errors on integer or one-logit outputs and on shape
mistakes, and `validate="cheap"` saving the extra forward pass.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust import threats
from tfrobust.attacks import Attack
from tfrobust.attacks import is_adversarial
from tfrobust.attacks import nonfinite_rows

INF = np.inf


def _linf(eps=0.1):
    return threats.LpBall(INF, eps)


def _source(x):
    return tf.reshape(x, [tf.shape(x)[0], -1])[:, :3] * 2.0


# name -> (factory, expected flags: black_box, randomized, steps).
FACTORIES = {
    "PGD": (lambda: attacks.PGD(_linf(), steps=3, seed=0), (False, True, 3)),
    "FGSM": (lambda: attacks.FGSM(0.1), (False, False, 1)),
    "BIM": (lambda: attacks.BIM(_linf(), steps=4), (False, False, 4)),
    "MIFGSM": (lambda: attacks.MIFGSM(_linf(), steps=4), (False, False, 4)),
    "Restarts": (lambda: attacks.Restarts(attacks.PGD(_linf(), steps=2, seed=0), 2), (False, True, 2)),
    "DAA": (lambda: attacks.DAA(_linf(), steps=3, seed=0), (False, True, 3)),
    "SPSA": (lambda: attacks.SPSA(_linf(), steps=2, samples=8, chunk_size=8, seed=0), (True, True, 2)),
    "NAttack": (lambda: attacks.NAttack(_linf(), steps=2, samples=4, seed=0), (True, True, 2)),
    "TransferAttack": (lambda: attacks.TransferAttack(_source, attacks.FGSM(0.1)), (True, False, 1)),
    "CarliniWagnerL2": (lambda: attacks.CarliniWagnerL2(steps=5, binary_search_steps=2), (False, False, 5)),
    "EAD": (lambda: attacks.EAD(steps=5, binary_search_steps=2), (False, False, 5)),
    "DeepFool": (lambda: attacks.DeepFool(steps=5), (False, False, 5)),
    "DDN": (lambda: attacks.DDN(steps=5), (False, False, 5)),
    "BoxedLinearL2": (lambda: attacks.BoxedLinearL2(max_iter=7), (False, False, 7)),
}

_ATTACK_CLASSES = sorted(
    name for name in attacks.__all__
    if isinstance(getattr(attacks, name), type) and issubclass(getattr(attacks, name), Attack)
    and name not in ("Attack", "MinimizationAttack")
)


def _dense(num_classes=3, seed=0, shape=(2, 2, 1)):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


@pytest.fixture
def x():
    return np.random.default_rng(0).uniform(0.2, 0.8, size=(4, 2, 2, 1)).astype("float32")


def test_every_exported_attack_declares_its_capabilities():
    assert set(FACTORIES) <= set(_ATTACK_CLASSES)
    for name in _ATTACK_CLASSES:
        cls = getattr(attacks, name)
        for flag in ("black_box", "uses_eot", "randomized"):
            value = getattr(cls, flag)
            assert isinstance(value, (bool, property)), (name, flag)
        assert getattr(cls, "steps") is None or isinstance(getattr(cls, "steps"), (int, property)), name
        assert callable(getattr(cls, "random_generators"))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_declared_capabilities(name):
    factory, (black_box, randomized, steps) = FACTORIES[name]
    attack = factory()
    assert attack.black_box is black_box
    assert attack.randomized is randomized
    assert attack.uses_eot is False  # no attack averages over randomness by itself
    assert attack.steps == steps and isinstance(attack.steps, int)
    assert attack.validate == "full"
    generators = attack.random_generators()
    assert bool(generators) is randomized
    assert all(isinstance(g, tf.random.Generator) for g in generators)


@pytest.mark.parametrize("name", [n for n in sorted(FACTORIES) if FACTORIES[n][1][1]])
def test_declared_generators_drive_every_draw(name, x):
    """A seeded attack declares its generators before the first call, and
    resetting them (as the training loop does on resume) replays the run."""
    attack = FACTORIES[name][0]()
    generators = attack.random_generators()
    assert generators and [id(g) for g in generators] == [id(g) for g in attack.random_generators()]
    model = _dense()
    y = np.array([0, 1, 2, 0])
    for g in generators:
        g.reset_from_seed(7)
    first = attack(model, x, y).numpy()
    second = attack(model, x, y).numpy()
    for g in generators:
        g.reset_from_seed(7)
    again = attack(model, x, y).numpy()
    np.testing.assert_array_equal(first, again)
    assert [id(g) for g in generators] == [id(g) for g in attack.random_generators()]
    del second  # a second draw may or may not change a tiny model's result


def test_spsa_declares_its_perturbation_stream_too():
    attack = attacks.SPSA(_linf(), seed=3)
    start, noise = attack.random_generators()
    assert start is not noise


# ---------------------------------------------------------------------------
# Issue 9, item 1: non-finite logits never count as adversarial.


class _NaNAbove:
    """A linear model, finite on clean inputs but NaN once a pixel exceeds 0.95."""

    def __init__(self, model, threshold=0.95):
        self.model = model
        self.threshold = threshold

    def __call__(self, z):
        logits = self.model(z)
        broken = tf.reduce_max(tf.reshape(z, [tf.shape(z)[0], -1]), axis=1) > self.threshold
        return tf.where(broken[:, None], tf.constant(np.nan, logits.dtype), logits)


def test_is_adversarial_refuses_non_finite_rows():
    logits = tf.constant([[np.nan, 0.0, 1.0], [0.0, np.inf, 1.0], [0.0, 2.0, 1.0]])
    y = tf.constant([1, 0, 0])
    np.testing.assert_array_equal(nonfinite_rows(logits).numpy(), [True, True, False])
    np.testing.assert_array_equal(is_adversarial(logits, y, False).numpy(), [False, False, True])
    np.testing.assert_array_equal(is_adversarial(logits, tf.constant([0, 1, 1]), True).numpy(),
                                  [False, False, True])


@pytest.fixture
def fragile():
    keras.utils.set_random_seed(1)
    base = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(3).uniform(0.3, 0.9, size=(8, 4, 4, 1)).astype("float32")
    x[:, 0, 0, 0] = 0.9  # every example is one step of 0.1 away from NaN
    model = _NaNAbove(base)
    y = np.argmax(model(x).numpy(), axis=-1)
    # Class 0 is what argmax returns for a NaN row: make it never the label.
    y_safe = np.where(y == 0, 1, y)
    return model, x, y_safe


@pytest.mark.parametrize("make", [
    lambda: attacks.PGD(_linf(0.1), steps=5, seed=0),
    lambda: attacks.PGD(_linf(0.1), steps=5, seed=0, early_stop=True),
    lambda: attacks.FGSM(0.1),
    lambda: attacks.SPSA(_linf(0.1), steps=3, samples=16, chunk_size=16, seed=0),
    lambda: attacks.NAttack(_linf(0.1), steps=3, samples=8, seed=0),
], ids=["pgd", "pgd_early_stop", "fgsm", "spsa", "nattack"])
def test_nan_points_are_not_successes(fragile, make):
    model, x, y = fragile
    x_adv = make()(model, x, y)
    logits = model(x_adv)
    assert not np.any(is_adversarial(logits, y, False).numpy() & nonfinite_rows(logits).numpy())


@pytest.mark.parametrize("make", [
    lambda: attacks.DeepFool(steps=10, overshoot=0.5),
    lambda: attacks.CarliniWagnerL2(steps=20, binary_search_steps=2, learning_rate=0.1, initial_const=10.0),
    lambda: attacks.EAD(steps=20, binary_search_steps=2, learning_rate=0.1, initial_const=10.0),
], ids=["deepfool", "cw", "ead"])
def test_minimization_success_needs_finite_logits(fragile, make):
    model, x, y = fragile
    result = make().minimize(model, x, y)
    success = result.success.numpy()
    logits = model(result.x_adv).numpy()
    assert np.all(np.isfinite(logits[success]))
    assert np.all(np.isinf(result.norm.numpy()[~success]))


def test_pgd_prefers_a_finite_iterate(fragile):
    """A NaN iterate never displaces a finite one as PGD's best."""
    model, x, y = fragile
    x_adv = attacks.PGD(_linf(0.1), steps=6, random_start=False, step_size=0.02)(model, x, y)
    # Steps of 0.02 reach the NaN region only after 3 steps up; the first
    # iterates are finite, so the best iterate is.
    assert np.all(np.isfinite(model(x_adv).numpy()))


# ---------------------------------------------------------------------------
# Issue 9, item 2: `targeted` is a real bool.


@pytest.mark.parametrize("value", ["no", "False", 1, 0, None, np.array([True])])
def test_targeted_must_be_a_bool(x, value):
    model = _dense()
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="Expected `targeted` to be a bool"):
        attacks.PGD(_linf(), steps=2, seed=0)(model, x, y, targeted=value)
    with pytest.raises(ValueError, match="Expected `targeted` to be a bool"):
        attacks.DeepFool(steps=2).minimize(model, x, y, targeted=value)


def test_targeted_accepts_bool_tensors(x):
    model = _dense()
    y = np.array([0, 1, 2, 0])
    attack = attacks.PGD(_linf(), steps=2, random_start=False)
    np.testing.assert_array_equal(attack(model, x, y, targeted=tf.constant(True)).numpy(),
                                  attack(model, x, y, targeted=np.bool_(True)).numpy())


# ---------------------------------------------------------------------------
# Issue 9, items 4 and 8: what the model returns.


class _Cast:
    def __init__(self, model, dtype):
        self.model, self.dtype = model, dtype

    def __call__(self, z):
        return tf.cast(self.model(z), self.dtype)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
@pytest.mark.parametrize("name", ["CarliniWagnerL2", "EAD", "DeepFool", "PGD", "BoxedLinearL2", "SPSA"])
def test_any_float_logits_work(x, dtype, name):
    model = _dense()
    attack = FACTORIES[name][0]()
    out = attack(_Cast(model, dtype), x)
    assert out.dtype == tf.float32 and out.shape == x.shape


@pytest.mark.parametrize("name", ["CarliniWagnerL2", "PGD", "NAttack"])
def test_integer_outputs_and_one_logit_are_refused(x, name):
    model = _dense()
    attack = FACTORIES[name][0]()
    with pytest.raises(ValueError, match="floating-point logits"):
        attack(_Cast(model, "int32"), x)
    with pytest.raises(ValueError, match="at least 2 classes"):
        attack(_dense(num_classes=1), x)
    with pytest.raises(ValueError, match="at least 2 classes"):
        FACTORIES[name][0]()(_dense(num_classes=1), x, np.zeros(4, "int32"))


def test_plain_callables_get_no_training_keyword(x):
    """BoxedLinearL2 used to call model(x, training=False)."""
    model = _dense()
    direct = attacks.BoxedLinearL2().minimize(model, x)
    plain = attacks.BoxedLinearL2().minimize(lambda t: model(t), x)
    np.testing.assert_allclose(plain.norm.numpy(), direct.norm.numpy(), rtol=1e-5)
    seen = []

    def with_training(t, training=True):
        seen.append(training)
        return model(t)

    attacks.FGSM(0.1)(with_training, x)
    assert seen and not any(seen)  # accepted, so passed as False


# ---------------------------------------------------------------------------
# Issue 9, item 9: shape mistakes.


def test_shape_mistakes_are_named():
    model = _dense(shape=(8, 8, 1))
    one = np.full((8, 8, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match="missing batch axis"):
        attacks.FGSM(0.1)(model, one)
    with pytest.raises(ValueError, match="model input 8x8x1 vs data 28x28x1"):
        attacks.FGSM(0.1)(model, np.full((2, 28, 28, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match="model input 8x8x1 vs data 2x8x8x1"):
        attacks.FGSM(0.1)(model, np.full((3, 2, 8, 8, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match="rank 2 to 4"):
        attacks.FGSM(0.1)(lambda t: model(t[0]), np.full((3, 2, 8, 8, 1), 0.5, np.float32))


# ---------------------------------------------------------------------------
# validate="cheap": no extra forward pass.


class _Counting:
    """Counts the model's executions (also inside compiled loops)."""

    def __init__(self, model):
        self.model = model
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def __call__(self, z):
        with tf.control_dependencies([self.calls.assign_add(1)]):
            return tf.identity(self.model(z))


@pytest.mark.parametrize("validate, labels, extra", [
    ("full", True, 1), ("cheap", True, 0), ("cheap", False, 1),
])
def test_cheap_validation_saves_the_forward_pass(x, validate, labels, extra):
    model = _Counting(_dense())
    y = np.array([0, 1, 2, 0]) if labels else None
    steps = 5
    attacks.PGD(_linf(), steps=steps, seed=0, validate=validate)(model, x, y)
    assert int(model.calls.numpy()) == steps + 1 + extra
    model.calls.assign(0)
    attacks.FGSM(0.1, validate=validate)(model, x, y)
    assert int(model.calls.numpy()) == 1 + extra


@pytest.mark.parametrize("name", ["DeepFool", "CarliniWagnerL2", "EAD"])
def test_cheap_validation_skips_a_verified_recheck(x, name):
    """Attacks that test success on the model at the returned point need
    neither the validation forward pass nor the base's re-check."""
    y = np.array([0, 1, 2, 0])
    counts, results = {}, {}
    for validate in ("full", "cheap"):
        model = _Counting(_dense())
        attack = FACTORIES[name][0]()
        attack.validate = validate
        results[validate] = attack.minimize(model, x, y)
        counts[validate] = int(model.calls.numpy())
    assert counts["full"] - counts["cheap"] == 2
    np.testing.assert_array_equal(results["full"].success.numpy(), results["cheap"].success.numpy())
    np.testing.assert_allclose(results["full"].norm.numpy(), results["cheap"].norm.numpy(), rtol=1e-6)


def test_cheap_validation_still_checks_shapes_and_labels(x):
    model = _dense()
    attack = attacks.PGD(_linf(), steps=2, seed=0, validate="cheap")
    with pytest.raises(ValueError, match="shape \\[B\\]"):
        attack(model, x, np.zeros(3, "int32"))
    with pytest.raises(ValueError, match="integer dtype"):
        attack(model, x, np.zeros(4, "float32"))
    with pytest.raises(ValueError, match="inside bounds"):
        attack(model, x + 2.0, np.zeros(4, "int32"))
    with pytest.raises(ValueError, match=r"y` in \[0, 3\)"):
        attack(model, x, np.full(4, 3, "int32"))  # K from the model's declared output shape
    with pytest.raises(ValueError, match="validate"):
        attacks.PGD(_linf(), validate="none")


def test_wrapping_the_model_never_retraces(x):
    model = _dense()
    y = np.array([0, 1, 2, 0])
    attack = attacks.PGD(_linf(), steps=2, seed=0)
    for _ in range(3):
        attack(model, x, y)
        attack(model, x, y, targeted=True)
    assert attack._compiled.experimental_get_tracing_count() == 1
    other = _dense(seed=1)
    attack(other, x, y)
    attack(model, x, y)
    assert attack._compiled.experimental_get_tracing_count() == 2
