"""Tests of tfrobust.smoothing.attacks (EPGD, ViewAttack, factories) and smoothing.training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.experiments.smoothing_eval import baseline_row, grid_table, vote_predictions
from tfrobust.smoothing.attacks import EPGD, ViewAttack, original_pgd, smoothing_attacks
from tfrobust.smoothing.classifier import SmoothedClassifier
from tfrobust.smoothing.training import SmoothingTransform, random_crop_flip


def _linear(seed=0, shape=(4, 4, 1), k=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(k)])


def _data(n=6, shape=(4, 4, 1), k=3):
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, size=(n,) + shape).astype(np.float32), np.arange(n) % k


def test_epgd_with_one_pass_is_pgd():
    model, (x, y) = _linear(), _data()
    threat = threats.LpBall(np.inf, 0.1)
    a = EPGD(threat, passes=1, steps=5, step_size=0.025, seed=3)(model, x, y)
    b = PGD(threat, steps=5, step_size=0.025, seed=3)(model, x, y)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_epgd_gradient_is_the_mean_over_passes():
    # A model whose j-th call adds j to the logit of class 0: the mean
    # objective over m passes is the objective at the mean offset.
    base, (x, y) = _linear(), _data()
    calls = tf.Variable(0.0)

    def drifting(z):
        calls.assign_add(1.0)
        return base(z) + tf.one_hot(0, 3) * calls

    attack = EPGD(threats.LpBall(np.inf, 0.1), passes=4, steps=1)
    obj, grad, logits = attack.objective_and_grad(drifting, tf.constant(x), tf.constant(y), False)
    assert float(calls.numpy()) == 4.0
    expected_logits = base(x) + tf.one_hot(0, 3) * 2.5              # mean of 1, 2, 3, 4
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5)
    per_pass = [tf.nn.sparse_softmax_cross_entropy_with_logits(y, base(x) + tf.one_hot(0, 3) * j)
                for j in (1, 2, 3, 4)]
    np.testing.assert_allclose(obj, np.mean(per_pass, axis=0), rtol=1e-5)
    assert grad.shape == x.shape and np.abs(grad).sum() > 0


def test_view_attack_follows_the_view_and_declares_eot():
    view, (x, y) = _linear(1), _data()
    flat = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(3, kernel_initializer="zeros")])  # no gradient
    attack = original_pgd(0.1, seed=5)
    via = ViewAttack(original_pgd(0.1, seed=5), view)
    np.testing.assert_allclose(via(flat, x, y), attack(view, x, y), atol=1e-6)
    assert not via.uses_eot and ViewAttack(attack, view, averages=True).uses_eot
    assert ViewAttack(EPGD(threats.LpBall(np.inf, 0.1)), view).uses_eot
    assert not ViewAttack(attack, view).black_box


def test_view_attack_is_the_library_one_and_forwards_black_box():
    import tfrobust.attacks
    from tfrobust.attacks import SPSA
    from tfrobust.models.wrappers import EoT

    view = _linear(1)
    assert tfrobust.attacks.ViewAttack is ViewAttack
    spsa = SPSA(threats.LpBall(np.inf, 0.1), steps=2, samples=4, chunk_size=4, seed=0)
    assert ViewAttack(spsa, view).black_box and not ViewAttack(spsa, view).uses_eot
    assert ViewAttack(original_pgd(0.1), EoT(view, 2)).uses_eot  # an EoT view declares it
    with pytest.raises(ValueError, match="attack"):
        ViewAttack(view, view)
    with pytest.raises(ValueError, match="view"):
        ViewAttack(spsa, "not callable")


def test_factories_use_the_original_defaults():
    pgd = original_pgd(8 / 255)
    assert pgd.steps == 7 and pgd.random_start and abs(pgd.step_size - 2 / 255) < 1e-9
    attacks = smoothing_attacks(_linear(), 0.1, 0.1, passes=3, names=("pgd", "epgd", "pgd_smoothed", "pgd_eot"))
    assert attacks["epgd"].attack.passes == 3 and attacks["epgd"].uses_eot
    assert attacks["pgd_smoothed"].view.vote == "soft" and int(attacks["pgd_smoothed"].view.n.numpy()) == 3
    assert not attacks["pgd"].uses_eot and attacks["pgd_eot"].uses_eot
    x, y = _data()
    for attack in attacks.values():
        x_adv = np.asarray(attack(SmoothedClassifier(_linear(), 0.1, n=2, vote="prediction"), x, y))
        assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_vote_predictions_match_the_classifier_rules():
    logits = np.random.default_rng(2).normal(size=(7, 5, 4)).astype(np.float32)
    clf = SmoothedClassifier(_linear(k=4), 0.1, n=7)
    for vote in ("prediction", "weighted", "soft"):
        clf.vote = vote
        expected = np.argmax(np.asarray(tf.reduce_sum(clf._votes(tf.constant(logits)), axis=0)), axis=-1)
        np.testing.assert_array_equal(vote_predictions(logits, vote), expected)


def test_baseline_row_is_the_unsmoothed_row_at_the_asked_sigma():
    # The grid holds one "none" row per sigma; the plot's "no smoothing"
    # lines once took the first (smallest sigma's) whatever the panel's sigma.
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="ones")])
    x = np.random.default_rng(0).uniform(size=(6, 4)).astype("float32")
    y = np.arange(6) % 3
    rows = []
    for s, x_adv in ((0.0, 1.0 - x), (0.5, x)):
        rows += grid_table(base, {"clean": x, "pgd": x_adv}, y, s, (1, 2), batch_size=4, seed=0)
    row = baseline_row(rows, 0.5)
    assert (row["vote"], row["sigma"], row["m"]) == ("none", 0.5, 1)
    assert row is [r for r in rows if r["vote"] == "none"][1]
    with pytest.raises(ValueError, match="sigma=0.25"):
        baseline_row(rows, 0.25)


def test_transform_mixes_clean_and_adversarial_with_adv_w():
    model, (x, y) = _linear(), _data()
    transform = SmoothingTransform(attack=ViewAttack(original_pgd(0.1, seed=0), model), adv_w=0.3, copies=2)
    xt, yt, w = transform.apply(model, tf.constant(x), tf.constant(y))
    n = 2 * len(x)
    assert xt.shape[0] == 2 * n and np.all(np.asarray(yt) == np.tile(y, 4))
    np.testing.assert_allclose(w, [0.6] * n + [1.4] * n, rtol=1e-6)
    # fit divides the weighted sum by the batch: 0.3 mean(adv) + 0.7 mean(clean).
    np.testing.assert_allclose(np.asarray(xt[n:]), np.tile(x, (2, 1, 1, 1)))
    assert len(transform.random_generators()) == 2


def test_random_crop_flip_is_a_shifted_or_mirrored_crop():
    x = np.random.default_rng(0).uniform(size=(5, 6, 6, 2)).astype(np.float32)
    out = np.asarray(random_crop_flip(tf.constant(x), tf.constant([1, 2])))
    padded = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)])
    for i in range(5):
        candidates = [c for r in range(9) for s in range(9) for c in
                      (padded[i, r:r + 6, s:s + 6], padded[i, r:r + 6, s:s + 6][:, ::-1])]
        assert any(np.array_equal(out[i], c) for c in candidates)


@pytest.mark.parametrize("make, arg", [
    (lambda: EPGD(threats.LpBall(np.inf, 0.1), passes=0), "passes"),
    (lambda: ViewAttack(lambda m, x, y: x, _linear()), "attack"),
    (lambda: ViewAttack(original_pgd(0.1), "model"), "view"),
    (lambda: smoothing_attacks(_linear(), 0.1, 0.1, names=("fgsm",)), "names"),
    (lambda: SmoothingTransform(adv_w=1.5), "adv_w"),
    (lambda: SmoothingTransform(copies=0), "copies"),
])
def test_bad_arguments(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()
