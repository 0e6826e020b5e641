"""Tests of Smooth (CERTIFY / PREDICT) and its statistics: closed forms, alpha, errors."""

import keras
import numpy as np
import pytest
from scipy import stats as scipy_stats

from tfrobust.evaluation import certificates
from tfrobust.smoothing import ABSTAIN, Smooth, stats
from tfrobust.testing import acceptance_interval, assert_rate_within, linear_two_class_model

SIGMA = 0.5


@pytest.fixture(scope="module")
def linear():
    model, w, b = linear_two_class_model(seed=0)
    return model, w.astype(np.float64), float(b)


def _points(w, b, margins, seed=0):
    """Images whose signed distance to the boundary w.x + b = 0 is `margins`."""
    x0 = np.random.default_rng(seed).uniform(size=(len(margins), w.size))
    unit = w / np.linalg.norm(w)
    shift = (x0 @ w + b) / np.linalg.norm(w)
    x = x0 + (np.asarray(margins)[:, None] - shift[:, None]) * unit
    return x.reshape(-1, 4, 4, 1).astype("float32")


def _signed_distance(x, w, b):
    return (x.reshape(len(x), -1).astype(np.float64) @ w + b) / np.linalg.norm(w)


def test_linear_classifier_radius_below_and_close_to_the_true_distance(linear):
    # Class 0 wins where w.x + b > 0, and p_A = Phi(|distance| / sigma); the
    # smoothed classifier of a linear one is the linear one, so the true
    # certified radius is exactly the distance to the boundary.
    model, w, b = linear
    x = _points(w, b, [0.1, 0.3, -0.25, 0.6, -0.5])
    dist = _signed_distance(x, w, b)
    n, alpha = 20_000, 0.001
    result = Smooth(model, 2, SIGMA, seed=0).certify_batch(x, n0=100, n=n, alpha=alpha, batch_size=5000)
    np.testing.assert_array_equal(result.pred, np.where(dist > 0, 0, 1))
    assert np.all(result.radius <= np.abs(dist))
    # Close: at least the radius of the smallest count the binomial makes plausible.
    p_a = scipy_stats.norm.cdf(np.abs(dist) / SIGMA)
    low = [acceptance_interval(n, p)[0] for p in p_a]
    floor = SIGMA * scipy_stats.norm.ppf(stats.lower_confidence_bound(np.array(low), n, alpha))
    assert np.all(result.radius >= floor)
    np.testing.assert_array_equal(result.counts.sum(1), n)
    assert result.time.shape == (5,) and np.all(result.time > 0)


def test_single_image_certify_and_predict(linear):
    model, w, b = linear
    x = _points(w, b, [0.4, -0.4])
    smooth = Smooth(model, 2, SIGMA, seed=1)
    label, radius = smooth.certify(x[0], n0=100, n=2000, alpha=0.001, batch_size=1000)
    assert label == 0 and 0.0 < radius <= 0.4
    assert smooth.predict(x[1], n=500, alpha=0.001, batch_size=250) == 1
    assert isinstance(label, int) and isinstance(radius, float)


def test_abstains_on_a_tie(linear):
    # On the boundary both classes have probability 1/2: CERTIFY's bound is
    # below 1/2 and PREDICT's binomial test cannot reject the tie.
    model, w, b = linear
    x = _points(w, b, [0.0, 0.0, 0.0])
    smooth = Smooth(model, 2, SIGMA, seed=2)
    result = smooth.certify_batch(x, n0=50, n=2000, alpha=0.001, batch_size=3000)
    np.testing.assert_array_equal(result.pred, ABSTAIN)
    np.testing.assert_array_equal(result.radius, 0.0)
    np.testing.assert_array_equal(smooth.predict_batch(x, n=2000, alpha=0.001, batch_size=3000), ABSTAIN)
    cert = result.to_certificate()
    assert np.all(cert.abstained) and np.all(cert.radius == -np.inf)


def _exact_wrong_rate(p_a, n0, n, alpha):
    """P(CERTIFY gives a wrong certificate) for two classes, exactly.

    Class A (true, probability p_a) is selected when its n0-count is at least
    the other's (np.argmax takes the first on a tie, and A is class 0).
    A certificate is wrong when A is selected and sigma*Phi^-1(LCB) exceeds
    the true radius (LCB > p_a), or B is selected and certified (LCB >= 1/2).
    """
    k0 = np.arange(n0 + 1)
    select_a = scipy_stats.binom.pmf(k0, n0, p_a)[k0 >= n0 - k0].sum()
    k = np.arange(n + 1)
    lcb = stats.lower_confidence_bound(k, n, alpha)
    over_a = scipy_stats.binom.pmf(k, n, p_a)[lcb > p_a].sum()
    over_b = scipy_stats.binom.pmf(k, n, 1 - p_a)[lcb >= 0.5].sum()
    return select_a * over_a + (1 - select_a) * over_b


def test_wrong_certificate_rate_stays_within_alpha(linear):
    # 4000 independent certifications of one image (one batched call): the
    # number of wrong certificates is Binomial(4000, q) with q computed
    # exactly, and q <= alpha is the guarantee.
    model, w, b = linear
    margin, n0, n, alpha, trials = 0.2, 10, 100, 0.05, 4000
    x = np.repeat(_points(w, b, [margin]), trials, axis=0)
    result = Smooth(model, 2, SIGMA, seed=3).certify_batch(x, n0=n0, n=n, alpha=alpha, batch_size=20_000)
    wrong = (result.pred != ABSTAIN) & ((result.pred != 0) | (result.radius > margin))
    q = _exact_wrong_rate(scipy_stats.norm.cdf(margin / SIGMA), n0, n, alpha)
    assert q <= alpha
    assert_rate_within(int(wrong.sum()), trials, q)
    assert int(wrong.sum()) <= acceptance_interval(trials, alpha)[1]


def test_clopper_pearson_coverage_and_stats_edge_cases():
    n, alpha = 30, 0.05
    k = np.arange(n + 1)
    lcb = stats.lower_confidence_bound(k, n, alpha)
    for p in np.linspace(0.01, 0.99, 25):  # exact coverage >= 1 - alpha for every p
        assert scipy_stats.binom.pmf(k, n, p)[lcb > p].sum() <= alpha + 1e-12
    assert lcb[0] == 0.0 and np.all(np.diff(lcb) > 0)
    assert stats.lower_confidence_bound(n, n, alpha) == pytest.approx(alpha ** (1 / n))
    assert stats.certified_radius(0.5, 0.3) == 0.0
    assert stats.certified_radius(scipy_stats.norm.cdf(1.0), 0.3) == pytest.approx(0.3)
    assert stats.binomial_test_p_value(5, 10) == 1.0
    assert stats.binomial_test_p_value(2, 10) == pytest.approx(stats.binomial_test_p_value(8, 10))
    with pytest.raises(ValueError, match="`k`"):
        stats.lower_confidence_bound(11, 10, 0.1)
    with pytest.raises(ValueError, match="`alpha`"):
        stats.lower_confidence_bound(1, 10, 0.0)
    with pytest.raises(ValueError, match="`p_lower`"):
        stats.certified_radius(1.5, 0.3)


def test_counts_are_exact_and_batches_of_images_split():
    # A base that always says class 2: every noisy sample counts there.
    base = keras.Sequential([keras.Input((3, 3, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(4, kernel_initializer="zeros",
                                                bias_initializer=keras.initializers.Constant([0, 0, 1, 0]))])
    smooth = Smooth(base, 4, 0.3, seed=0)
    x = np.zeros((7, 3, 3, 1), "float32")
    counts, seconds = smooth.sample_counts(x, 11, batch_size=3)   # groups of 3 images, 1 pass each
    np.testing.assert_array_equal(counts, np.tile([0, 0, 11, 0], (7, 1)))
    assert seconds.shape == (7,)
    result = smooth.certify_batch(x, n0=5, n=50, alpha=0.01, batch_size=4)
    np.testing.assert_array_equal(result.pred, 2)
    expected = 0.3 * scipy_stats.norm.ppf(0.01 ** (1 / 50))          # LCB of 50/50
    np.testing.assert_allclose(result.radius, expected)
    cert = result.to_certificate()
    assert cert.p == 2 and np.all(cert.radius < result.radius) and np.all(cert.radius > 0)
    y = np.full(7, 2)
    np.testing.assert_array_equal(certificates.certified_accuracy(cert, y, [0.0, expected, expected * 1.01]),
                                  [1.0, 0.0, 0.0])
    assert ABSTAIN == certificates.ABSTAIN == Smooth.ABSTAIN


def test_bad_inputs_name_the_argument(linear):
    model, w, b = linear
    x = _points(w, b, [0.3])
    for kwargs, name in [({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"sigma": np.nan}, "sigma"),
                         ({"num_classes": 1}, "num_classes"), ({"seed": -1}, "seed")]:
        args = {"num_classes": 2, "sigma": SIGMA, **kwargs}
        with pytest.raises(ValueError, match=f"`{name}`"):
            Smooth(model, **args)
    with pytest.raises(ValueError, match="`base`"):
        Smooth("model", 2, SIGMA)
    smooth = Smooth(model, 2, SIGMA)
    good = {"n0": 10, "n": 100, "alpha": 0.01, "batch_size": 50}
    for change, name in [({"n0": 101}, "n0"), ({"n": 0}, "n"), ({"n0": 0}, "n0"), ({"alpha": 0.0}, "alpha"),
                         ({"alpha": 1.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            smooth.certify(x[0], **{**good, **change})
    bad_x = [(x, "one image"), (x[0, :2], "shape"), (np.where(x[0] > 0.5, np.nan, x[0]), "finite"),
             (x[0].astype(int), "float")]
    for value, what in bad_x:
        with pytest.raises(ValueError, match=f"`x`.*{what}"):
            smooth.certify(value, **good)
    with pytest.raises(ValueError, match="`x`"):
        smooth.certify_batch(x[0], **good)
    with pytest.raises(ValueError, match="`n`"):
        smooth.predict(x[0], n=0, alpha=0.01, batch_size=10)
    with pytest.raises(ValueError, match="`alpha`"):
        smooth.predict(x[0], n=10, alpha=-0.1, batch_size=10)


def test_shared_noise_keeps_each_images_count_distribution(linear):
    # share_noise: pass j of every image of a group gets the same draw. Each
    # image's count is still Binomial(n, Phi(margin / sigma)); copies of one
    # image in a group then count identically, and groups differ.
    model, w, b = linear
    margins = [-0.3, 0.0, 0.25, 0.5]
    x = _points(w, b, margins)
    n = 4000
    counts, _ = Smooth(model, 2, SIGMA, seed=5, share_noise=True).sample_counts(x, n, batch_size=4000)
    for margin, row in zip(margins, counts):
        assert row.sum() == n
        assert_rate_within(int(row[0]), n, float(scipy_stats.norm.cdf(margin / SIGMA)))
    copies = np.repeat(x[2:3], 8, axis=0)
    shared, _ = Smooth(model, 2, SIGMA, seed=5, share_noise=True).sample_counts(copies, 500, batch_size=2000)
    assert np.all(shared == shared[0])
    groups, _ = Smooth(model, 2, SIGMA, seed=5, share_noise=True).sample_counts(copies, 500, batch_size=4)
    assert np.all(groups[:4] == groups[0]) and np.any(groups[4:] != groups[0])
    independent, _ = Smooth(model, 2, SIGMA, seed=5).sample_counts(copies, 500, batch_size=2000)
    assert len({int(c) for c in independent[:, 0]}) > 1
    with pytest.raises(ValueError, match="share_noise"):
        Smooth(model, 2, SIGMA, share_noise=1)
