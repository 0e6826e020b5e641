"""Certificates next to attacks: one report, one plot, one sanity check."""

import json
import warnings

import keras
import numpy as np
import pytest

from tfrobust import data
from tfrobust import models
from tfrobust import threats
from tfrobust.attacks.deepfool import DeepFool
from tfrobust.attacks.pgd import PGD
from tfrobust.evaluation import certificates
from tfrobust.evaluation import sanity
from tfrobust.evaluation.certificates import ABSTAIN
from tfrobust.evaluation.certificates import Certificate
from tfrobust.evaluation.engine import evaluate

N = 48


@pytest.fixture(scope="module")
def mlp():
    x, y = data.load("digits", "train")
    keras.utils.set_random_seed(0)
    model = models.mlp1layer((8, 8, 1), 10, hidden_units=32)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=4, verbose=0)
    x_test, y_test = data.load("digits", "test")
    return model, x_test[:N], y_test[:N]


def test_certificate_semantics():
    cert = Certificate(np.array([0, 1, 2, ABSTAIN]), np.array([0.5, 0.0, 1.0, 0.3]), "l2")
    y = np.array([0, 1, 0, 3])
    assert cert.p == 2 and len(cert) == 4
    # Abstention: pred ABSTAIN forces radius -inf, and vice versa.
    assert cert.radius[3] == -np.inf and cert.abstained.tolist() == [False, False, False, True]
    # Non-strict: certified at r == radius; radius 0 certifies the point itself only.
    np.testing.assert_array_equal(certificates.certified_accuracy(cert, y, [0.0, 0.5, 0.51]),
                                  [0.5, 0.25, 0.0])
    assert Certificate(np.array([1]), np.array([-np.inf]), 2).pred[0] == ABSTAIN
    both = Certificate.concatenate([cert, cert])
    assert len(both) == 8


@pytest.mark.parametrize("kwargs, match", [
    (dict(pred=np.zeros(2), radius=np.zeros(2), p=2), "pred"),
    (dict(pred=np.zeros(2, int), radius=np.zeros(3), p=2), "radius"),
    (dict(pred=np.zeros(2, int), radius=np.array([0.1, np.nan]), p=2), "radius"),
    (dict(pred=np.zeros(2, int), radius=np.array([0.1, -0.2]), p=2), "radius"),
    (dict(pred=np.zeros(2, int), radius=np.array([0.1, np.inf]), p=2), "radius"),
    (dict(pred=np.array([0, -2]), radius=np.zeros(2), p=2), "pred"),
    (dict(pred=np.zeros(2, int), radius=np.zeros(2), p=3), "`p`"),
])
def test_bad_certificates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Certificate(**kwargs)


def test_certified_next_to_empirical_on_the_same_examples(mlp, tmp_path):
    model, x, y = mlp
    cert = certificates.mlp1layer_certificate(model, x, p=2, batch_size=20)
    assert len(cert) == N and np.all(cert.radius >= 0)
    attacks = {"pgd": PGD(threats.LpBall(2, 0.5), steps=10, seed=0), "deepfool": DeepFool(steps=20)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", sanity.RobustnessWarning)
        res = evaluate(model, (x, y), attacks, threats=[(2, 0.1), (2, 0.25)],
                       certificates={"cross_lipschitz": cert}, batch_size=16, verbose=0)
    c = res.certificates["cross_lipschitz"]
    np.testing.assert_allclose(c.radii, [0.0, 0.1, 0.25, 0.5])
    # A lower bound never above an upper bound, and nothing certified that was broken.
    assert np.all(c.certified_accuracy <= c.empirical_accuracy)
    assert c.contradictions == 0
    assert c.certified_accuracy[0] == pytest.approx(res.clean_accuracy)
    assert c.empirical_accuracy[2] == pytest.approx(res.threats["L2 eps=0.25"].robust_accuracy)
    assert c.certified_accuracy[1] > 0  # the comparison is not vacuous

    paths = res.save(str(tmp_path))
    assert (tmp_path / "certified_vs_empirical.png").read_bytes()[:4] == b"\x89PNG"
    assert paths["certificates_png"].endswith("certified_vs_empirical.png")
    report = json.loads((tmp_path / "report.json").read_text())
    entry = report["certificates"]["cross_lipschitz"]
    assert entry["p"] == 2 and entry["radii"] == [0.0, 0.1, 0.25, 0.5]
    assert entry["certified_accuracy"] == pytest.approx(list(c.certified_accuracy))
    assert entry["empirical_robust_accuracy"] == pytest.approx(list(c.empirical_accuracy))
    md = (tmp_path / "report.md").read_text()
    assert "## Certified (lower) vs empirical (upper) robust accuracy" in md
    assert "| cross_lipschitz | L2 0.25 |" in md
    arrays = np.load(tmp_path / "results.npz")
    np.testing.assert_array_equal(arrays["certificate/cross_lipschitz/radius"], cert.radius)


def test_a_certifier_callable_runs_per_batch(mlp):
    model, x, y = mlp

    def certify(xb, yb):
        return certificates.mlp1layer_certificate(model, xb, p=2)

    res = evaluate(model, (x, y), [PGD(threats.LpBall(2, 0.25), steps=5, seed=0)],
                   certificates=[certify], certificate_radii=[0.0, 0.25], batch_size=20,
                   sanity_checks=False, verbose=0)
    c = res.certificates["certificate-1"]
    whole = certificates.mlp1layer_certificate(model, x, p=2)
    np.testing.assert_array_equal(c.certificate.radius, whole.radius)
    np.testing.assert_allclose(c.radii, [0.0, 0.25])


def test_certificate_above_the_attacks_is_flagged(mlp):
    model, x, y = mlp
    pred = np.argmax(np.asarray(model(x)), -1)
    bogus = Certificate(pred, np.full(N, 10.0), 2)  # claims every prediction robust at 10
    with pytest.warns(sanity.RobustnessWarning, match="Certified accuracy exceeds empirical"):
        res = evaluate(model, (x, y), [PGD(threats.LpBall(2, 1.0), steps=10, seed=0)],
                       certificates={"bogus": bogus}, verbose=0)
    flag = next(f for f in res.sanity_flags if f.check == "certified_vs_empirical")
    case = flag.details["cases"][0]
    assert case["certificate"] == "bogus" and case["contradictions"] > 0
    assert any(r == 1.0 for r, _, _ in case["above"])


def test_bad_certificate_arguments(mlp):
    model, x, y = mlp
    short = Certificate(np.zeros(3, int), np.zeros(3), 2)
    with pytest.raises(ValueError, match="Certificate of the 48 examples"):
        evaluate(model, (x, y), [PGD(threats.LpBall(2, 0.1), steps=1)], certificates={"c": short},
                 sanity_checks=False, verbose=0)
    with pytest.raises(ValueError, match="certificates"):
        evaluate(model, (x, y), [PGD(threats.LpBall(2, 0.1), steps=1)], certificates={"c": 3},
                 sanity_checks=False, verbose=0)
    with pytest.raises(ValueError, match="radii"):
        certificates.certified_accuracy(short, np.zeros(3, int), [-1.0])
    with pytest.raises(ValueError, match="inside bounds"):
        certificates.mlp1layer_certificate(model, x * 255.0)
