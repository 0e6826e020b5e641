"""Tests of tfrobust.evaluation.auto_attack (the AutoAttack sequence)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.attacks.apgd import APGD
from tfrobust.evaluation.autoattack import auto_attack, auto_attack_sequence
from tfrobust.testing import small_trained_mnist_model

INF = np.inf


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


class _Counting:
    """Wraps an attack and records which examples it was asked to attack."""

    def __init__(self, attack):
        self.attack, self.seen, self.name = attack, [], type(attack).__name__

    def __call__(self, model, x, y):
        self.seen.append(np.asarray(x).copy())
        return self.attack(model, x, y)


def test_each_attack_runs_only_on_points_still_robust(trained):
    x, y = trained.x[:40], trained.y[:40]
    threat = threats.LpBall(INF, 0.08)
    first = _Counting(PGD(threat, steps=5, seed=0))
    second = _Counting(APGD(threat, steps=20, seed=0))
    result = auto_attack(trained.model, x, y, threat, version=[first, second], batch_size=16)
    attacked_first = np.concatenate(first.seen)
    attacked_second = np.concatenate(second.seen) if second.seen else np.zeros((0,) + x.shape[1:])
    assert len(attacked_first) == np.sum(result.clean_correct)
    broken_first = result.broken_by == "PGD"
    # The second attack saw exactly the clean-correct points PGD left robust.
    assert len(attacked_second) == np.sum(result.clean_correct & ~broken_first)
    # The final accuracy is the per-point worst case, and every broken point
    # is misclassified inside the ball.
    assert result.robust_accuracy == pytest.approx(np.mean(result.robust))
    broken = result.clean_correct & ~result.robust
    pred = np.argmax(trained.model(result.x_adv), -1)
    assert np.all(pred[broken] != y[broken])
    assert np.all(threat.norm(result.x_adv - x).numpy() <= 0.08 + 1e-6)
    assert list(result.accuracy_after) == ["PGD", "APGD"]
    assert result.accuracy_after["APGD"] <= result.accuracy_after["PGD"]


def test_standard_sequence_and_small_run(trained):
    names = [n for n, _ in auto_attack_sequence(threats.LpBall(INF, 0.1))]
    assert names == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert [n for n, _ in auto_attack_sequence(threats.LpBall(1, 5.0))] == ["apgd-ce", "apgd-t", "fab-t"]
    rand = auto_attack_sequence(threats.LpBall(2, 1.0), "rand")
    assert [n for n, _ in rand] == ["apgd-ce", "apgd-dlr"] and all(a.eot_samples == 20 for _, a in rand)
    x, y = trained.x[:12], trained.y[:12]
    result = auto_attack(trained.model, x, y, threats.LpBall(INF, 0.15), batch_size=12)
    assert result.robust_accuracy <= result.clean_accuracy
    assert result.attacks == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert set(result.to_dict()) >= {"robust_accuracy", "accuracy_after", "nonfinite"}


def test_nan_logits_never_count_as_broken():
    w = np.eye(64, 10, dtype="float32")

    def model(t):
        flat = tf.reshape(t, [tf.shape(t)[0], -1])
        bad = tf.reduce_any(flat > 0.95, axis=-1, keepdims=True)
        return tf.where(bad, np.nan, flat @ w)

    x = np.full((6, 8, 8, 1), 0.5, "float32")
    x[:, 0, 3, 0] = 0.6
    y = np.full(6, 3)
    result = auto_attack(model, x, y, threats.LpBall(INF, 0.5),
                         version=[PGD(threats.LpBall(INF, 0.5), steps=3, seed=0)])
    pred_logits = model(result.x_adv).numpy()
    broken = ~result.robust
    assert np.all(np.isfinite(pred_logits[broken]))


@pytest.mark.parametrize("kwargs, match", [
    ({"version": "fast"}, "version"), ({"version": []}, "version"), ({"version": ["pgd"]}, "version"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments(trained, kwargs, match):
    with pytest.raises(ValueError, match=match):
        auto_attack(trained.model, trained.x[:2], trained.y[:2], threats.LpBall(INF, 0.1), **kwargs)


def test_bad_inputs(trained):
    with pytest.raises(ValueError, match="y"):
        auto_attack(trained.model, trained.x[:2], np.array([0, 10]), threats.LpBall(INF, 0.1))
    with pytest.raises(ValueError, match="bounds"):
        auto_attack(trained.model, trained.x[:2] * 255, trained.y[:2], threats.LpBall(INF, 0.1))


def test_package_exports_the_function_after_the_submodule_was_imported():
    # This module imported `tfrobust.evaluation.autoattack` above; the
    # package's `auto_attack` must still be the function (a submodule of the
    # same name would have replaced it: the bug this name avoids).
    from tfrobust.evaluation import auto_attack as from_package

    assert from_package is auto_attack and callable(from_package)
