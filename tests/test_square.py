"""Tests of the Square attack (L∞, L2): contract, query budget, schedule."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks.square import Square, square_p_schedule
from tfrobust.testing import accuracy, assert_inside_threat, run_attack_test, small_trained_mnist_model

INF = np.inf


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.mark.parametrize("p, eps", [(INF, 0.2), (2, 2.0)])
def test_attack_table(trained, p, eps):
    run_attack_test(lambda e, s: Square(threats.LpBall(p, e), n_queries=200, seed=s),
                    trained.model, trained.x[:32], trained.y[:32], eps=eps,
                    max_accuracy_ratio=0.5, min_target_rate=0.3)


@pytest.mark.parametrize("p, eps, budget", [(INF, 0.05, 1), (INF, 0.05, 40), (2, 0.3, 25)])
def test_queries_never_exceed_the_budget(trained, p, eps, budget):
    attack = Square(threats.LpBall(p, eps), n_queries=budget, restarts=1, seed=0)
    result = attack.run(trained.model, trained.x[:32], trained.y[:32])
    queries = result.queries.numpy()
    assert queries.min() >= 1 and queries.max() <= budget
    # Points still robust used the whole budget; successes stopped early.
    np.testing.assert_array_equal(queries[~result.success.numpy()], budget)
    pred = np.argmax(trained.model(result.x_adv), -1)
    np.testing.assert_array_equal(pred != trained.y[:32], result.success.numpy())
    assert_inside_threat(trained.x[:32], result.x_adv, attack.threat)


def test_p_schedule_is_the_papers():
    # Halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000.
    values = [square_p_schedule(i, 10000, 0.8) for i in (0, 10, 11, 50, 51, 200, 201, 8000, 8001, 9999)]
    np.testing.assert_allclose(values, [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512, 0.8 / 512])
    # Rescaled to smaller budgets: at 1,000 queries, iteration 2 is it 20.
    assert square_p_schedule(2, 1000, 0.8) == 0.4


def test_l2_perturbation_has_norm_eps_and_works_on_mnist_sized_images(data_dir):
    trained = small_trained_mnist_model(data_dir)
    x, y = trained.x[:16], trained.y[:16]
    attack = Square(threats.LpBall(2, 3.0), n_queries=150, seed=0)
    x_adv = attack(trained.model, x, y)
    norms = threats.LpBall(2, 3.0).norm(x_adv - x).numpy()
    assert np.all(norms <= 3.0 + 1e-4)
    assert accuracy(trained.model, x_adv, y) < accuracy(trained.model, x, y)


def test_restarts_add_queries_only_for_robust_points(trained):
    x, y = trained.x[:16], trained.y[:16]
    one = Square(threats.LpBall(INF, 0.03), n_queries=20, restarts=1, seed=0).run(trained.model, x, y)
    two = Square(threats.LpBall(INF, 0.03), n_queries=20, restarts=2, seed=0).run(trained.model, x, y)
    assert np.all(two.queries.numpy() <= 40)
    assert np.sum(two.success.numpy()) >= np.sum(one.success.numpy())


def test_black_box_declared_and_non_images_refused():
    attack = Square(threats.LpBall(INF, 0.1), n_queries=5, seed=0)
    assert attack.black_box and attack.randomized

    def model(t):
        return tf.concat([t, -t], axis=-1)[:, :4]

    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        attack(model, np.full((2, 6), 0.5, "float32"))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_queries": 0}, "n_queries"), ({"p_init": 0.0}, "p_init"), ({"restarts": 0}, "restarts"),
    ({"loss": "dlr"}, "loss"), ({"seed": 1.5}, "seed"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Square(threats.LpBall(INF, 0.1), **kwargs)


def test_l1_threat_refused():
    with pytest.raises(ValueError, match="threat"):
        Square(threats.LpBall(1, 1.0))


def test_cheap_validation_spends_exactly_the_query_budget_on_the_model():
    calls = tf.Variable(0)
    w = tf.constant(np.eye(16, 4, dtype="float32"))

    def model(t):
        calls.assign_add(1)
        return tf.reshape(t, [tf.shape(t)[0], -1]) @ w

    x = np.full((2, 4, 4, 1), 0.5, "float32")
    x[:, 0, 0, 0] = 0.9  # a wide margin: no point is broken, the whole budget runs
    Square(threats.LpBall(INF, 0.01), n_queries=7, seed=0, validate="cheap")(model, x, np.array([0, 0]))
    assert int(calls.numpy()) == 7


@pytest.mark.parametrize("p, eps", [(np.inf, 0.1), (2, 0.5)])
def test_one_image_batch(p, eps):
    # auto_attack hands Square a batch of one when one robust point is left.
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype("float32")
    threat = threats.LpBall(p, eps)
    x_adv = Square(threat, n_queries=20, seed=0)(model, x, np.array([0]))
    assert_inside_threat(x, np.asarray(x_adv), threat)
