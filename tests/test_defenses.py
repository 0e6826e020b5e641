"""Tests of tfrobust.defenses: the Defense base, BPDA / EoT views, and a
defense that runs an optimiser in its forward pass (generator inversion)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import data
from tfrobust import optim
from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.defenses import Attackable
from tfrobust.defenses import Defense
from tfrobust.defenses import minimize
from tfrobust.models.wrappers import EoT
from tfrobust.testing import accuracy
from tfrobust.testing import run_layer_test
from tfrobust.testing import small_trained_mnist_model

LATENT = 24


@keras.saving.register_keras_serializable(package="tfrobust_test")
class Quantize(Defense):
    """Rounds pixels to multiples of 1/4: no useful gradient."""

    def purify(self, x, training=False):
        return tf.round(x * 4.0) / 4.0


@keras.saving.register_keras_serializable(package="tfrobust_test")
class GeneratorInversion(Defense):
    """Projects x onto a generator's range, `G(argmin_z ||G(z) - x||^2)`, and classifies it.

    The inversion is a `tf.while_loop` of `optim.Adam` steps over
    `generator.stateless_call`: no variable is created per call, so it runs
    inside an attacker's compiled loop. The target `x` is a constant of the
    inner problem, so the defense's own gradient is zero (gradient masking)
    and BPDA is the way to attack it. With `random_start` the search starts
    from z ~ N(0, I) (a random defense).
    """

    optimizes_at_inference = True

    def __init__(self, classifier, generator, steps=60, learning_rate=0.1, random_start=False,
                 seed=None, **kwargs):
        super().__init__(classifier, **kwargs)
        self.generator = generator
        self.steps = steps
        self.learning_rate = learning_rate
        self.random_start = random_start
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if random_start else None

    @property
    def randomized(self):
        return self.random_start

    def _render(self, z):
        weights = ([v.value for v in self.generator.trainable_variables],
                   [v.value for v in self.generator.non_trainable_variables])
        return self.generator.stateless_call(*weights, z)[0]

    def purify_with_state(self, x, training=False):
        x = tf.stop_gradient(tf.convert_to_tensor(x))
        shape = [tf.shape(x)[0], LATENT]
        if self.random_start:
            z0 = keras.random.normal(shape, seed=self.seed_generator)
        else:
            z0 = tf.zeros(shape)
        loss = lambda z: tf.reduce_sum(tf.square(self._render(z) - x), axis=[1, 2, 3])
        z = minimize(loss, z0, optimizer=optim.Adam(self.learning_rate), steps=self.steps)
        return self._render(z), z

    def purify(self, x, training=False):
        return self.purify_with_state(x, training=training)[0]

    def get_config(self):
        return dict(super().get_config(), generator=keras.saving.serialize_keras_object(self.generator),
                    steps=self.steps, learning_rate=self.learning_rate,
                    random_start=self.random_start, seed=self.seed)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        return super().from_config(config)


class LinearisedInversion(GeneratorInversion):
    """BPDA through the exact Jacobian of the projection, built from z*.

    For G(z) = z W + b with orthonormal rows of W, z*(x) = (x - b) W^T, so
    `G(z* + (x - stop_gradient(x)) W^T)` has the forward's value and the
    projection's true gradient W^T W.
    """

    def surrogate(self, x, x_purified, z):
        kernel = self.generator.layers[0].kernel
        flat = tf.reshape(x - tf.stop_gradient(x), [tf.shape(x)[0], -1])
        return self._render(z + flat @ tf.transpose(kernel))


def _pca_generator():
    """G(z) = mean + z W (W: the top principal directions of the digits)."""
    x, _ = data.load("digits", "train")
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    w = vt[:LATENT].astype(np.float32)  # orthonormal rows
    return keras.Sequential([
        keras.Input((LATENT,)),
        keras.layers.Dense(64, kernel_initializer=keras.initializers.Constant(w),
                           bias_initializer=keras.initializers.Constant(mean.astype(np.float32))),
        keras.layers.Reshape((8, 8, 1)),
    ], name="pca_generator"), w


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.fixture(scope="module")
def inversion(trained):
    generator, w = _pca_generator()
    return GeneratorInversion(trained.model, generator), w


# ---------------------------------------------------------------------------
# The base class.


def test_defense_is_classifier_of_purified_input(trained):
    defense = Quantize(trained.model)
    x = trained.x[:8]
    np.testing.assert_allclose(defense(x).numpy(), trained.model(np.round(x * 4) / 4).numpy(), rtol=1e-6)
    identity = Defense(trained.model)
    np.testing.assert_allclose(identity(x).numpy(), trained.model(x).numpy(), rtol=1e-6)
    assert Defense.randomized is False and Defense.optimizes_at_inference is False
    assert identity.surrogate(x, x) is x


def test_bpda_breaks_the_quantizer_and_plain_gradients_do_not(trained):
    defense = Quantize(trained.model)
    keep = np.argmax(defense(trained.x).numpy(), -1) == trained.y
    x, y = trained.x[keep][:32], trained.y[keep][:32]
    attack = PGD(threats.LpBall(np.inf, 0.25), steps=10, random_start=False)
    acc_masked = accuracy(defense, attack(defense, x, y), y)
    view = defense.bpda()
    assert isinstance(view, Attackable) and view.randomized is False
    acc_bpda = accuracy(defense, attack(view, x, y), y)
    assert acc_masked == 1.0  # zero gradient: PGD never leaves x
    assert acc_bpda <= 0.5


def test_defense_keras_contract(trained):
    # Config round trip, .keras save/load and SavedModel export at two batch
    # sizes, with the classifier serialized inside.
    run_layer_test(Quantize, {"classifier": trained.model}, (3, 8, 8, 1), expected_output_shape=(3, 10),
                   expected_num_trainable_weights=4)
    run_layer_test(Defense, {"classifier": trained.model}, (3, 8, 8, 1), expected_output_shape=(3, 10))


def test_flags_are_declared_bools():
    with pytest.raises(TypeError, match="randomized"):
        type("Bad", (Defense,), {"randomized": "yes"})
    with pytest.raises(TypeError, match="purify_with_state"):
        type("Half", (Defense,), {"purify_with_state": lambda self, x, training=False: (x, ())})
    with pytest.raises(ValueError, match="classifier"):
        Defense(lambda x: x)


# ---------------------------------------------------------------------------
# A defense that optimises at inference.


def test_inversion_projects_onto_the_generator(inversion, trained):
    defense, w = inversion
    x = trained.x[:16]
    flat = x.reshape(16, -1)
    mean = defense.generator.layers[0].bias.numpy()
    exact = (mean + (flat - mean) @ w.T @ w).reshape(x.shape)
    np.testing.assert_allclose(defense.purify(x).numpy(), exact, atol=0.05)
    assert defense.optimizes_at_inference is True and defense.randomized is False


def test_inversion_runs_compiled_without_creating_variables(inversion, trained):
    defense, _ = inversion
    before = len(defense.variables)
    compiled = tf.function(lambda t: defense(t))
    for batch in (4, 7):  # a retrace with another batch must not create variables either
        x = trained.x[:batch]
        np.testing.assert_allclose(compiled(x).numpy(), defense(x).numpy(), rtol=1e-4, atol=1e-4)
    assert len(defense.variables) == before


def test_pgd_through_bpda_attacks_the_inversion(inversion, trained):
    defense, _ = inversion
    keep = np.argmax(defense(trained.x).numpy(), -1) == trained.y
    x, y = trained.x[keep][:24], trained.y[keep][:24]
    assert len(x) >= 16
    # The defense's own gradient is zero (its inner problem treats x as a constant).
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        plain = tf.reduce_sum(defense(xt))
        through_bpda = tf.reduce_sum(defense.bpda()(xt))
    assert tape.gradient(plain, xt, unconnected_gradients="zero").numpy().max() == 0.0
    assert np.abs(tape.gradient(through_bpda, xt).numpy()).max() > 0.0

    attack = PGD(threats.LpBall(np.inf, 0.1), steps=5, seed=0)
    x_adv = attack(defense.bpda(), x, y)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert accuracy(defense, x_adv, y) < 1.0  # predictions change


def test_surrogate_sees_the_latent(trained):
    generator, w = _pca_generator()
    defense = LinearisedInversion(trained.model, generator)
    x = tf.constant(trained.x[:4])
    v = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    view = defense.bpda()
    with tf.GradientTape() as tape:
        tape.watch(x)
        # Route the upstream v through the purified image only.
        out = tf.reduce_sum(tf.reshape(view._purify(x), [4, -1]) * v)
    grad = tape.gradient(out, x).numpy().reshape(4, -1)
    np.testing.assert_allclose(grad, v @ w.T @ w, rtol=1e-4, atol=1e-5)


def test_eot_over_a_randomized_inversion(trained):
    generator, _ = _pca_generator()
    defense = GeneratorInversion(trained.model, generator, steps=8, random_start=True, seed=3)
    assert defense.randomized is True
    x = trained.x[:8]
    # Too few inner steps to converge: two calls differ.
    assert not np.allclose(defense(x).numpy(), defense(x).numpy())
    eot = defense.eot(4, bpda=True)
    assert isinstance(eot, EoT) and eot.uses_eot and eot.randomized and eot.optimizes_at_inference
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(eot(xt))
    assert np.abs(tape.gradient(loss, xt).numpy()).max() > 0.0
    x_adv = PGD(threats.LpBall(np.inf, 0.1), steps=3, seed=0)(eot, x, trained.y[:8])
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6


def test_inversion_saves_loads_and_exports(inversion, trained):
    defense, _ = inversion
    run_layer_test(GeneratorInversion, {"classifier": trained.model, "generator": defense.generator,
                                        "steps": 20},
                   (2, 8, 8, 1), expected_output_shape=(2, 10), tol=1e-4)


def test_minimize_in_a_while_loop_and_as_a_tensor_knob():
    target = tf.constant([[1.0, -2.0], [0.5, 3.0]])
    loss = lambda z: tf.reduce_sum(tf.square(z - target), axis=-1)
    z = minimize(loss, tf.zeros([2, 2]), optimizer="adam", steps=0)
    np.testing.assert_array_equal(z.numpy(), 0.0)

    @tf.function
    def run(steps):
        return minimize(loss, tf.zeros([2, 2]), optimizer=optim.Adam(0.1), steps=steps)

    np.testing.assert_allclose(run(tf.constant(300)).numpy(), target.numpy(), atol=0.02)
    with pytest.raises(ValueError, match="steps"):
        minimize(loss, tf.zeros([2, 2]), optimizer="adam", steps=-1)
