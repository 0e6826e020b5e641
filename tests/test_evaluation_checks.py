"""Evaluation engine: non-finite outputs, checks that cannot run, dynamic inference,
declared flags, data mistakes (issue 8 and issue 9 items 1, 9 and 10)."""

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import threats
from tfrobust.attacks.pgd import FGSM
from tfrobust.attacks.pgd import PGD
from tfrobust.evaluation import inputs
from tfrobust.evaluation import sanity
from tfrobust.evaluation.engine import evaluate
from tfrobust.testing.attack_test import small_trained_mnist_model


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sanity.RobustnessWarning)
        return fn(*args, **kwargs)


class NaNAbove:
    """Finite on clean inputs, NaN logits once a pixel exceeds 0.95."""

    def __init__(self, model, threshold=0.95):
        self.model, self.threshold = model, threshold

    def __call__(self, x, training=False):
        logits = self.model(x)
        bad = tf.reduce_max(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1) > self.threshold
        return tf.where(bad[:, None], tf.fill(tf.shape(logits), np.float32(np.nan)), logits)


class VariablePerCall:
    """A forward pass that creates a tf.Variable per call (cannot run in a compiled attack)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        return self.model(x + tf.Variable(tf.zeros_like(x)))


def noise_attack(model, x, y, targeted=False):
    """A foreign (non-tfrobust) attack callable: eager random signs, L∞ 0.1."""
    del model, y, targeted
    signs = tf.sign(tf.random.stateless_normal(tf.shape(x), seed=[0, 1]))
    return x + 0.1 * signs


noise_attack.threat = threats.LpBall(np.inf, 0.1)


# ---------------------------------------------------------------------------
# Issue 9 item 1: non-finite logits at adversarial points.


def test_nonfinite_adversarial_points_are_counted_not_misclassified(trained, tmp_path):
    x, y = trained.x * 0.9, trained.y  # every clean pixel <= 0.9: finite clean logits
    model = NaNAbove(trained.model)
    assert np.all(np.isfinite(np.asarray(model(x))))
    with pytest.warns(sanity.RobustnessWarning, match="[Nn]on-finite outputs at adversarial points"):
        res = evaluate(model, (x, y), {"pgd": PGD(threats.LpBall(np.inf, 0.1), steps=5, seed=0)},
                       verbose=0)
    a = res.attacks["pgd"]
    assert a.nonfinite_count > 0
    # Never a success of the attack: no non-finite row is broken, its pred is -1.
    assert not np.any(a.broken & a.nonfinite)
    assert np.all(a.pred[a.nonfinite] == -1)
    np.testing.assert_array_equal(a.robust, res.clean_correct & ~a.broken)
    flag = next(f for f in res.sanity_flags if f.check == "nonfinite")
    assert flag.details["counts"] == {"pgd": a.nonfinite_count}
    res.save(str(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["nonfinite_outputs"] == {"pgd": a.nonfinite_count}
    assert report["attacks"]["pgd"]["nonfinite_outputs"] == a.nonfinite_count
    assert f"| {a.nonfinite_count} |" in (tmp_path / "report.md").read_text()


# ---------------------------------------------------------------------------
# Issue 8: a check that raises becomes a flag; the evaluation completes.


def test_a_check_that_cannot_run_is_a_flag(trained):
    model = VariablePerCall(trained.model)
    with pytest.warns(sanity.RobustnessWarning, match="check could not run"):
        res = evaluate(model, (trained.x[:16], trained.y[:16]), {"noise": noise_attack}, verbose=0)
    flags = {f.check: f for f in res.sanity_flags}
    assert flags["large_eps"].message.startswith("check could not run: ValueError")
    assert "singleton tf.Variables" in flags["large_eps"].message
    assert res.attacks["noise"].robust_accuracy <= res.clean_accuracy
    # The foreign attack's output was kept inside its threat and the box.
    assert res.attacks["noise"].norms["linf"].max() <= 0.1 + 1e-6
    assert res.attacks["noise"].threat == threats.LpBall(np.inf, 0.1)
    named = evaluate(trained.model, (trained.x[:8], trained.y[:8]), [noise_attack], sanity_checks=False,
                     verbose=0)
    assert list(named.attacks) == ["noise_attack-Linf-0.1"]
    assert named.attacks["noise_attack-Linf-0.1"].config == {"name": "noise_attack"}


def test_guarded_returns_the_check_result_or_a_flag():
    assert sanity.guarded("x", lambda: None) is None

    def boom():
        raise RuntimeError("first line\nthe cause")

    flag = sanity.guarded("gradients", boom, warn=False)
    assert flag.check == "gradients" and flag.message == "check could not run: RuntimeError: the cause"


# ---------------------------------------------------------------------------
# check_dynamic and declared model flags.


class Declared:
    def __init__(self, model, **flags):
        self.model = model
        for key, value in flags.items():
            setattr(self, key, value)

    def __call__(self, x, training=False):
        return self.model(x)


def batch_centered(model):
    """Outputs depend on the batch: the batch mean is subtracted before the classifier."""
    return lambda x, training=False: model(x - tf.reduce_mean(x, axis=0, keepdims=True) + 0.5)


def test_check_dynamic(trained):
    x = trained.x
    with warnings.catch_warnings():
        warnings.simplefilter("error", sanity.RobustnessWarning)
        assert sanity.check_dynamic(trained.model, x) is None
    with pytest.warns(sanity.RobustnessWarning, match="BPDA"):
        flag = sanity.check_dynamic(Declared(trained.model, optimizes_at_inference=True), x)
    assert flag.check == "dynamic" and flag.details["optimizes_at_inference"]
    with pytest.warns(sanity.RobustnessWarning, match="depend on the batch"):
        flag = sanity.check_dynamic(batch_centered(trained.model), x)
    assert flag.details["max_logit_difference"] > flag.details["tolerance"]
    with pytest.raises(ValueError, match="model.optimizes_at_inference"):
        sanity.check_dynamic(Declared(trained.model, optimizes_at_inference="yes"), x)


def test_evaluate_reads_declared_model_flags(trained):
    model = Declared(trained.model, randomized=True, optimizes_at_inference=True)
    with pytest.warns(sanity.RobustnessWarning):
        res = evaluate(model, (trained.x[:16], trained.y[:16]), [FGSM(0.1)], verbose=0)
    checks = {f.check for f in res.sanity_flags}
    assert {"randomness", "dynamic"} <= checks
    eot = Declared(trained.model, randomized=True, uses_eot=True)
    assert _quiet(sanity.check_randomness, eot, trained.x) is None


def test_attack_capabilities_are_read_from_declarations():
    caps = inputs.capabilities(PGD(threats.LpBall(2, 0.5), steps=7, seed=0))
    assert caps.threat == threats.LpBall(2, 0.5) and caps.steps == 7
    assert caps.randomized and not caps.black_box and not caps.uses_eot
    from tfrobust.attacks import Restarts

    wrapped = inputs.capabilities(Restarts(PGD(threats.LpBall(2, 0.5), steps=7, seed=0), 2))
    assert wrapped.steps == 7 and wrapped.randomized  # declared by the wrapper
    foreign = inputs.capabilities(noise_attack)
    assert foreign.steps is None and not foreign.black_box and foreign.p == np.inf


# ---------------------------------------------------------------------------
# Issue 9 items 9 and 10: data mistakes named clearly.


def test_unbatched_dataset_is_refused(trained):
    ds = tf.data.Dataset.from_tensor_slices((trained.x, trained.y))
    with pytest.raises(ValueError, match="dataset is not batched"):
        evaluate(trained.model, ds, [FGSM(0.1)], sanity_checks=False, verbose=0)


def test_data_of_another_shape_than_the_model_input(trained):
    x = np.zeros((4, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="model input 8x8x1 vs data 28x28x1"):
        evaluate(trained.model, (x, np.zeros(4, np.int64)), [FGSM(0.1)], sanity_checks=False,
                 verbose=0)


def test_labels_outside_the_model_classes(trained):
    ds = tf.data.Dataset.from_tensor_slices((trained.x, trained.y + 10)).batch(16)
    with pytest.raises(ValueError, match=r"labels of `data` in \[0, 10\)"):
        evaluate(trained.model, ds, [FGSM(0.1)], sanity_checks=False, verbose=0)


def test_one_logit_model_is_refused(trained):
    one = lambda x, training=False: trained.model(x)[:, :1]  # noqa: E731
    with pytest.raises(ValueError, match="at least 2 classes"):
        evaluate(one, (trained.x, trained.y * 0), [FGSM(0.1)], sanity_checks=False, verbose=0)


def test_partial_results_are_handed_over_as_each_attack_finishes(trained):
    seen = []
    attacks = {"a": FGSM(0.05), "b": FGSM(0.1)}
    evaluate(trained.model, (trained.x, trained.y), attacks, sanity_checks=False, verbose=0,
             on_attack_result=lambda name, partial: seen.append((name, list(partial.attacks))))
    assert seen == [("a", ["a"]), ("b", ["a", "b"])]


def test_a_defense_declaring_inference_optimisation_is_flagged(trained):
    # The engine reads the flag a tfrobust Defense declares (and its BPDA view
    # passes it through) without importing tfrobust.defenses itself.
    from tfrobust.defenses import Defense

    class Smoothing(Defense):
        optimizes_at_inference = True

        def purify(self, x, training=False):
            return 0.5 * x + 0.25

    defense = Smoothing(trained.model)
    for model in (defense, defense.bpda()):
        with pytest.warns(sanity.RobustnessWarning, match="optimizes_at_inference"):
            res = evaluate(model, (trained.x[:16], trained.y[:16]), [FGSM(0.1)], verbose=0)
        assert "dynamic" in {f.check for f in res.sanity_flags}
