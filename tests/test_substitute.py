"""SubstituteAttack (Papernot et al.): the substitute learns the oracle from its labels; transfer."""

import keras
import numpy as np
import pytest

from tfrobust import data
from tfrobust.attacks import FGSM, SubstituteAttack
from tfrobust.attacks.substitute import jacobian_augmentation


def _linear(weights=None):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    if weights is not None:
        model.layers[-1].set_weights(weights)
    return model


@pytest.fixture(scope="module")
def digits():
    x, _ = data.load("digits", "train")
    x_test, _ = data.load("digits", "test")
    rng = np.random.default_rng(0)
    oracle = _linear([rng.normal(size=(64, 10)).astype("float32"), np.zeros(10, "float32")])
    return x, x_test, oracle


def test_substitute_agrees_with_oracle_above_chance(digits):
    x, x_test, oracle = digits
    keras.utils.set_random_seed(0)
    attack = SubstituteAttack(FGSM(0.1), _linear(), x[:40], rounds=3, epochs=8, batch_size=32,
                              learning_rate=3e-2, seed=0)
    report = attack.fit_substitute(oracle)
    assert report.set_sizes == [40, 80, 160]
    assert report.queries == 160
    labels = np.argmax(oracle(x_test), -1)
    agree = np.mean(np.argmax(attack.substitute(x_test), -1) == labels)
    chance = np.max(np.bincount(labels, minlength=10)) / len(labels)
    # Three binomial standard errors above always answering the most common label.
    assert agree > chance + 3 * np.sqrt(chance * (1 - chance) / len(labels))


def test_attack_transfers_inside_threat_and_reuses_substitute(digits):
    x, x_test, oracle = digits
    calls = []

    def counted(images):
        calls.append(len(images))
        return oracle(images)

    attack = SubstituteAttack(FGSM(0.1), _linear(), x[:20], rounds=2, epochs=2, seed=0)
    y = np.argmax(oracle(x_test[:16]), -1)
    x_adv = np.asarray(attack(counted, x_test[:16], y))
    assert np.max(np.abs(x_adv - x_test[:16])) <= 0.1 + 1e-6
    assert attack.black_box and attack.report.queries == 40
    report, queried = attack.report, sum(calls)
    attack(counted, x_test[:16], y)  # same target: no second training, only the base's label check
    assert attack.report is report and sum(calls) - queried <= 16


def test_jacobian_augmentation_steps_by_lambda_in_box(digits):
    x, _, oracle = digits
    labels = np.argmax(oracle(x[:10]), -1)
    new = jacobian_augmentation(oracle, x[:10], labels, 0.1)
    step = np.abs(new - x[:10])
    assert np.all((new >= 0) & (new <= 1))
    # Each pixel moves by exactly 0.1 unless the box stops it (or its gradient is 0).
    moved = step > 1e-7
    assert np.all(np.isclose(step[moved], 0.1, atol=1e-6) | np.isclose(new[moved], 0) | np.isclose(new[moved], 1))


def test_bad_arguments(digits):
    x, _, _ = digits
    with pytest.raises(ValueError, match="attack"):
        SubstituteAttack(None, _linear(), x[:5])
    with pytest.raises(ValueError, match="substitute"):
        SubstituteAttack(FGSM(0.1), lambda v: v, x[:5])
    with pytest.raises(ValueError, match="x_seed"):
        SubstituteAttack(FGSM(0.1), _linear(), x[:5] + 2.0)
    with pytest.raises(ValueError, match="rounds"):
        SubstituteAttack(FGSM(0.1), _linear(), x[:5], rounds=0)
    with pytest.raises(ValueError, match="oracle"):
        SubstituteAttack(FGSM(0.1), _linear(), x[:5], oracle=3)
