"""Tests of the evaluation engine, its reports and its sanity checks."""

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import data
from tfrobust import threats
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import is_adversarial
from tfrobust.attacks.deepfool import DeepFool
from tfrobust.attacks.pgd import BIM
from tfrobust.attacks.pgd import FGSM
from tfrobust.attacks.pgd import PGD
from tfrobust.evaluation import registry
from tfrobust.evaluation import sanity
from tfrobust.evaluation.engine import evaluate
from tfrobust.evaluation.engine import robust_accuracy_curve
from tfrobust.evaluation.result import inside
from tfrobust.models.wrappers import EoT
from tfrobust.testing.attack_test import small_trained_mnist_model

EPS = 0.1
N = 100


@pytest.fixture(scope="module")
def trained():
    return small_trained_mnist_model()


@pytest.fixture(scope="module")
def eval_data():
    # The first test examples, misclassified ones included.
    x, y = data.load("digits", "test")
    return x[:N], y[:N]


@pytest.fixture(scope="module")
def result(trained, eval_data):
    attacks = {
        "fgsm": FGSM(EPS),
        "pgd": PGD(threats.LpBall(np.inf, EPS), steps=10, seed=0),
        "bim": BIM(threats.LpBall(np.inf, EPS), steps=10, step_size=EPS / 4),
        "pgd_big": PGD(threats.LpBall(np.inf, 2 * EPS), steps=10, seed=0),
        "deepfool": DeepFool(steps=20),
    }
    # batch_size 48 gives batches 48, 48, 4: the last one is padded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", sanity.RobustnessWarning)
        return evaluate(trained.model, eval_data, attacks, threats=[(2, 0.5), (2, 1.0)],
                        batch_size=48, keep_adversarials=True, verbose=0)


class NoisyModel:
    """A random defense: Gaussian noise on the input of a fixed classifier."""

    def __init__(self, model, sigma=0.3):
        self.model, self.sigma = model, sigma

    def __call__(self, x, training=False):
        return self.model(x + self.sigma * tf.random.normal(tf.shape(x)))


def quantized(model, levels=4):
    """A gradient-masking defense: input quantization (tf.round has no gradient)."""
    return lambda x, training=False: model(tf.round(x * levels) / levels)


def nan_gradient(model):
    """Forward pass unchanged, gradient NaN (0 * d sqrt(0))."""
    def call(x, training=False):
        zero = tf.reduce_sum(tf.sqrt(tf.reshape(x, [tf.shape(x)[0], -1]) * 0.0), axis=1)
        return model(x) + zero[:, None]
    return call


class RandomCorners(Attack):
    """A black-box attack for the tests: the first adversarial random vertex of the L∞ ball."""

    black_box = True

    def __init__(self, threat, samples=64, seed=0):
        super().__init__(threat)
        self.samples, self.seed = samples, seed

    def _run(self, model, x, y, targeted):
        gen = tf.random.Generator.from_seed(self.seed)
        best, found = x, tf.zeros([x.shape[0]], tf.bool)
        for _ in range(self.samples):
            cand = tf.clip_by_value(x + self.threat.eps * tf.sign(gen.normal(x.shape)), 0.0, 1.0)
            hit = tf.logical_and(is_adversarial(model(cand), y, targeted), tf.logical_not(found))
            best = tf.where(tf.reshape(hit, [-1, 1, 1, 1]), cand, best)
            found = tf.logical_or(found, hit)
        return best


# ---------------------------------------------------------------------------
# Engine.


def test_robust_implies_clean_correct(result):
    clean = result.clean_correct
    assert 0.5 < result.clean_accuracy <= 1.0
    for a in result.attacks.values():
        assert not np.any(a.robust & ~clean), a.name
        np.testing.assert_array_equal(a.robust, clean & ~a.broken)
    for t in result.threats.values():
        assert not np.any(t.robust & ~clean), t.label


def test_worst_case_below_every_attack_of_its_threat(result):
    t = result.threats["Linf eps=0.1"]
    assert set(t.per_attack) == {"fgsm", "pgd", "bim", "pgd_big"}
    for name in ("fgsm", "pgd", "bim"):
        # Per example: robust to the threat implies robust to each attack.
        assert not np.any(t.robust & ~result.attacks[name].robust), name
        assert t.robust_accuracy <= result.attacks[name].robust_accuracy
    assert t.robust_accuracy < result.clean_accuracy
    # Nested balls: robust at 2 eps implies robust at eps.
    big = result.threats["Linf eps=0.2"]
    assert not np.any(big.robust & ~t.robust)
    assert big.robust_accuracy <= result.attacks["pgd_big"].robust_accuracy


def test_budgets_and_norms(result, eval_data):
    x = eval_data[0]
    for name in ("fgsm", "pgd", "bim"):
        a = result.attacks[name]
        assert a.norms["linf"].max() <= EPS * (1 + 1e-5) + 1e-6
        delta = (a.x_adv - x).reshape(N, -1)
        np.testing.assert_allclose(a.norms["l2"], np.linalg.norm(delta, axis=1), rtol=1e-5, atol=1e-6)
    assert result.attacks["pgd"].seconds > 0


def test_unbounded_minimization_converted_at_each_eps(result):
    df = result.attacks["deepfool"]
    assert df.threat is None and df.p == 2 and df.minimization
    clean = result.clean_correct
    for eps in (0.5, 1.0):
        t = result.threats[f"L2 eps={eps:g}"]
        assert list(t.per_attack) == ["deepfool"]
        expected = clean & ~(df.broken & inside(df.min_norm, eps))
        np.testing.assert_array_equal(t.robust, expected)
    assert result.threats["L2 eps=1"].robust_accuracy <= result.threats["L2 eps=0.5"].robust_accuracy
    # Where DeepFool failed, the reported minimal norm is +inf and x_adv = x.
    assert np.all(np.isinf(df.min_norm[~df.broken & clean]))


def test_padding_and_dataset_input_give_the_same_results(trained, eval_data):
    # FGSM is deterministic: batching (padded last batch, tf.data) must not matter.
    x, y = eval_data
    one = evaluate(trained.model, (x, y), [FGSM(EPS)], batch_size=N, sanity_checks=False, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(48)
    many = evaluate(trained.model, ds, [FGSM(EPS)], sanity_checks=False, verbose=0)
    (a,), (b,) = one.attacks.values(), many.attacks.values()
    assert a.name == "FGSM-Linf-0.1"
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_allclose(a.norms["l2"], b.norms["l2"], rtol=1e-5)
    np.testing.assert_array_equal(one.y, y)


def test_targeted_evaluation(trained, eval_data):
    res = evaluate(trained.model, eval_data, [PGD(threats.LpBall(np.inf, 0.3), steps=10, seed=0)],
                   targets="random", sanity_checks=False, verbose=0, seed=3)
    (a,) = res.attacks.values()
    assert res.y_target is not None and np.all(res.y_target != res.y)
    np.testing.assert_array_equal(a.broken, a.pred == res.y_target)
    assert a.broken.mean() > 0.3  # a 0.3 L∞ targeted PGD reaches many targets
    assert not np.any(a.robust & ~res.clean_correct)


def test_robust_accuracy_curve(trained, eval_data):
    curve = robust_accuracy_curve(
        trained.model, *eval_data, lambda eps: PGD(threats.LpBall(np.inf, eps), steps=10, seed=0),
        [0.0, 0.05, 0.3])
    assert curve.robust_accuracy[0] == pytest.approx(curve.clean_accuracy)
    assert curve.robust_accuracy[2] < curve.robust_accuracy[1] <= curve.robust_accuracy[0]
    assert curve.robust_accuracy[2] < 0.1


# ---------------------------------------------------------------------------
# Reports.


def test_report_files_are_written_and_parse(result, tmp_path):
    paths = result.save(str(tmp_path))
    assert set(paths) == {"json", "markdown", "npz", "png"}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_examples"] == N
    assert report["clean_accuracy"] == pytest.approx(result.clean_accuracy)
    assert report["robust_accuracy"]["Linf eps=0.1"] == pytest.approx(
        result.threats["Linf eps=0.1"].robust_accuracy)
    assert report["attacks"]["pgd"]["threat"] == {"p": "inf", "eps": EPS}
    assert report["attacks"]["deepfool"]["norm"] == 2
    assert report["nonfinite_outputs"] == dict.fromkeys(result.attacks, 0)
    md = (tmp_path / "report.md").read_text()
    assert ("| attack | threat | robust accuracy | median L1 | median L2 | median Linf | "
            "non-finite | seconds |") in md
    assert all(f"| {name} |" in md for name in result.attacks)
    arrays = np.load(tmp_path / "results.npz")
    np.testing.assert_array_equal(arrays["attack/pgd/robust"], result.attacks["pgd"].robust)
    np.testing.assert_array_equal(arrays["threat/L2 eps=0.5/robust"], result.threats["L2 eps=0.5"].robust)
    np.testing.assert_array_equal(arrays["attack/deepfool/min_norm"], result.attacks["deepfool"].min_norm)
    assert (tmp_path / "robust_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = result.summary()
    assert "worst case" in text and "sanity checks: all passed" in text


def test_save_into_a_file_names_the_path(result, tmp_path):
    # Issue 9 item 5: was a raw FileExistsError from os.makedirs.
    a_file = tmp_path / "report"
    a_file.write_text("")
    with pytest.raises(ValueError, match=f"out_dir='{a_file}', which is an existing file"):
        result.save(str(a_file))


def test_threats_are_keyed_by_lp_ball_and_by_label(result):
    ball = threats.LpBall(np.inf, EPS)
    assert ball in result.threats and "Linf eps=0.1" in result.threats
    assert result.threats[ball] is result.threats["Linf eps=0.1"]
    assert result.threats[ball].threat == ball and result.attacks["pgd"].threat == ball
    assert list(result.robust_accuracy) == result.threats.labels()


def test_budgeted_adversarial_examples(result, eval_data):
    x_adv, pred = result.adversarial_examples("deepfool", eps=0.5)
    norms = np.linalg.norm((x_adv - eval_data[0]).reshape(N, -1), axis=1)
    assert np.all(norms <= 0.5 * (1 + 1e-5) + 1e-6)
    assert np.all(pred[norms == 0] == result.clean_pred[norms == 0])


# ---------------------------------------------------------------------------
# Sanity checks: each fires on its triggering model and stays silent otherwise.


def test_normal_model_passes_every_check(trained):
    x, y = trained.x, trained.y
    with warnings.catch_warnings():
        warnings.simplefilter("error", sanity.RobustnessWarning)
        assert sanity.check_randomness(trained.model, x) is None
        assert sanity.check_gradients(trained.model, x, y) is None
        assert sanity.check_large_eps(trained.model, x, y) is None


def test_randomness_check(trained):
    noisy = NoisyModel(trained.model)
    with pytest.warns(sanity.RobustnessWarning, match="EoT"):
        flag = sanity.check_randomness(noisy, trained.x)
    assert flag.check == "randomness" and flag.details["max_logit_difference"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", sanity.RobustnessWarning)
        assert sanity.check_randomness(EoT(noisy, n=4), trained.x) is None


@pytest.mark.parametrize("defense", [quantized, nan_gradient])
def test_gradient_check(trained, defense):
    with pytest.warns(sanity.RobustnessWarning, match="BPDA"):
        flag = sanity.check_gradients(defense(trained.model), trained.x, trained.y)
    assert flag.check == "gradients" and flag.details["masked_fraction"] > 0.05


def test_large_eps_check(trained):
    with pytest.warns(sanity.RobustnessWarning, match="whole input space"):
        flag = sanity.check_large_eps(quantized(trained.model), trained.x, trained.y)
    assert flag.details["robust_accuracy"] > 0.05 and flag.details["eps"] == 1.0


def test_one_step_vs_iterative_check():
    inf = np.inf
    good = [("fgsm", (inf, 0.1), 0.5, 1), ("pgd", (inf, 0.1), 0.4, 40), ("pgd2", (inf, 0.3), 0.9, 40)]
    assert sanity.check_one_step_vs_iterative(good, warn=False) is None
    bad = good + [("bim", (inf, 0.1), 0.6, 10)]
    with pytest.warns(sanity.RobustnessWarning, match="increase steps"):
        flag = sanity.check_one_step_vs_iterative(bad)
    assert [(d["one_step"], d["iterative"]) for d in flag.details["pairs"]] == [("fgsm", "bim")]


def test_black_box_vs_white_box_check():
    inf = np.inf
    records = [sanity.AttackRecord("pgd", (inf, 0.1), 0.4, 40),
               sanity.AttackRecord("spsa", (inf, 0.1), 0.45, 100, True)]
    assert sanity.check_black_box_vs_white_box(records, warn=False) is None
    records[1] = records[1]._replace(robust_accuracy=0.2)
    with pytest.warns(sanity.RobustnessWarning, match="obfuscated"):
        flag = sanity.check_black_box_vs_white_box(records)
    assert flag.details["cases"][0]["black_box"] == "spsa"


def test_evaluate_flags_a_failing_iterative_attack(trained, tmp_path):
    stuck = PGD(threats.LpBall(np.inf, 0.2), steps=5, step_size=0.0, random_start=False)
    with pytest.warns(sanity.RobustnessWarning, match="iterative attack is failing"):
        res = evaluate(trained.model, (trained.x, trained.y), {"fgsm": FGSM(0.2), "stuck": stuck},
                       verbose=0)
    assert [f.check for f in res.sanity_flags] == ["one_step_vs_iterative"]
    res.save(str(tmp_path))
    assert "one_step_vs_iterative" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["sanity_flags"][0]["check"] == (
        "one_step_vs_iterative")


def test_evaluate_flags_masked_gradients(trained):
    masked = quantized(trained.model)
    attacks = {"pgd": PGD(threats.LpBall(np.inf, 0.3), steps=5, random_start=False),
               "corners": RandomCorners(threats.LpBall(np.inf, 0.3))}
    with pytest.warns(sanity.RobustnessWarning):
        res = evaluate(masked, (trained.x, trained.y), attacks, verbose=0)
    assert res.attacks["corners"].robust_accuracy < res.attacks["pgd"].robust_accuracy
    assert {f.check for f in res.sanity_flags} == {"gradients", "black_box_vs_white_box", "large_eps"}


def test_evaluate_flags_random_model_without_eot(trained):
    with pytest.warns(sanity.RobustnessWarning, match="EoT"):
        res = evaluate(NoisyModel(trained.model, 0.05), (trained.x[:16], trained.y[:16]),
                       [FGSM(0.1)], verbose=0)
    assert "randomness" in {f.check for f in res.sanity_flags}


# ---------------------------------------------------------------------------
# Bad inputs.


def test_bad_inputs(trained, eval_data):
    model, (x, y) = trained.model, eval_data
    fgsm = [FGSM(EPS)]
    cases = [
        (dict(model=None), "model"),
        (dict(attacks=[]), "at least one attack"),
        (dict(attacks=["pgd"]), "Attack instances"),
        (dict(attacks=[FGSM(EPS, bounds=(-1.0, 1.0))]), "bounds"),
        (dict(data=(x * np.nan, y)), "finite"),
        (dict(data=(x + 2.0, y)), "bounds"),
        (dict(data=(x, y[:-1])), "labels of shape"),
        (dict(data=(x, y.astype(np.float32))), "int labels"),
        (dict(data=(x.astype(np.int64), y)), "float images"),
        (dict(data=(x[:0], y[:0])), "non-empty"),
        (dict(data=x), r"\(x, y\)"),
        (dict(batch_size=0), "batch_size"),
        (dict(threats=[(1, 5.0)]), "norm"),
        (dict(threats=["l2"]), "LpBall"),
        (dict(targets=np.zeros(3, np.int64)), "targets"),
        (dict(targets="all"), "targets"),
        (dict(targets=99), "targets in"),
        (dict(data=(x, y + 20)), "labels in"),
    ]
    for overrides, match in cases:
        kwargs = dict(model=model, data=(x, y), attacks=fgsm, sanity_checks=False, verbose=0)
        kwargs.update(overrides)
        with pytest.raises(ValueError, match=match):
            evaluate(kwargs.pop("model"), kwargs.pop("data"), kwargs.pop("attacks"), **kwargs)
    with pytest.raises(ValueError, match="eps_list"):
        robust_accuracy_curve(model, x, y, FGSM, [])
    with pytest.raises(ValueError, match="eps_list"):
        robust_accuracy_curve(model, x, y, FGSM, [-0.1])
    with pytest.raises(ValueError, match="threshold"):
        sanity.check_gradients(model, x, y, threshold=1.5)
    with pytest.raises(ValueError, match="n_examples"):
        sanity.check_large_eps(model, x, y, n_examples=0)
    with pytest.raises(ValueError, match="non-empty float batch"):
        sanity.check_randomness(model, x[:0])


def test_registry():
    assert isinstance(registry.make_attack("pgd_margin", norm="2", eps=0.5), PGD)
    assert registry.make_attack("pgd", eps=0.1, steps=7, restarts=2).restarts == 2
    assert isinstance(registry.make_attack("deepfool", norm="inf"), DeepFool)
    for name in registry.ATTACKS:
        norm = {"cw": 2, "ead": 1}.get(name, "inf")
        attack = registry.make_attack(name, norm=norm, eps=0.1, steps=3)
        assert attack.threat is not None and attack.threat.eps == 0.1, name
    with pytest.raises(ValueError, match="attack name"):
        registry.make_attack("nope", eps=0.1)
    with pytest.raises(ValueError, match="norm"):
        registry.make_attack("cw", norm="inf")
    with pytest.raises(ValueError, match="norm"):
        registry.make_attack("pgd", norm=3, eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        registry.make_attack("pgd")
    with pytest.raises(ValueError, match="restarts"):
        registry.make_attack("pgd", eps=0.1, restarts=0)
