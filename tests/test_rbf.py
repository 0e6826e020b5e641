"""Tests of template learning (numba EM, gradient v2) and template files."""

import json
import os

import numpy as np
import pytest

from tfrobust import rbf
from tfrobust.layers.rbf import RBFLayer


def _mixture(n=400, levels=(0.05, 0.5, 0.95), size=6, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(levels), size=n)
    x = np.asarray(levels)[labels][:, None, None, None] + rng.normal(0, noise, size=(n, size, size, 1))
    return np.clip(x, 0, 1)


def test_em_recovers_the_centres_of_a_synthetic_mixture():
    x = _mixture()
    config = rbf.EMConfig(batch_images=20, total_steps=250, non_param_steps=200, desired_templates=3.0)
    templates = rbf.train_templates(x, config=config)
    centres = np.sort(templates.means.reshape(templates.num_templates, -1).mean(1))
    assert templates.num_templates == 3
    np.testing.assert_allclose(centres, [0.05, 0.5, 0.95], atol=0.01)
    # c_k is the total variance over the 9 pixels: 9 * 0.02^2.
    np.testing.assert_allclose(templates.variances, 9 * 0.02**2, rtol=0.15)
    assert len(templates.history["templates"]) == 250 and templates.history["alpha"][-1] > 1


def test_numba_e_step_equals_numpy():
    rng = np.random.default_rng(1)
    patches = rbf.extract_patches(rng.uniform(size=(10, 7, 7, 2)))
    assert patches.shape == (10 * 25, 18)
    means = rng.uniform(size=(6, 18))
    variances = rng.uniform(0.2, 2.0, size=6)
    for alpha, allow in ((1.0, True), (50.0, True), (0.0, True), (5.0, False)):
        expected = rbf.e_step(patches, means, variances, alpha, allow)
        for method in ("matmul", "direct"):
            np.testing.assert_array_equal(expected,
                                          rbf.e_step_numpy(patches, means, variances, alpha, allow, method=method))
    with pytest.raises(ValueError, match="method"):
        rbf.e_step_numpy(patches, means, variances, 1.0, method="loop")


def test_numpy_statistics_equal_the_numba_accumulation():
    from tfrobust.rbf.em import _accumulate

    rng = np.random.default_rng(3)
    patches = rng.uniform(size=(500, 9))
    assignment = rng.integers(0, 4, size=500)  # slot 4 (of 5) stays empty
    sums, squares, counts = np.zeros((5, 9)), np.zeros((5, 9)), np.zeros(5)
    _accumulate(patches, assignment, sums, squares, counts)
    for got, want in zip(rbf.accumulate_numpy(patches, assignment, 5), (sums, squares, counts)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_extract_patches_layout_matches_the_layer():
    # means.reshape(K, -1) and the patch rows use the same (dy, dx, c) order.
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(1, 4, 4, 2))
    means = rng.uniform(size=(3, 3, 3, 2))
    variances = np.ones(3)
    patches = rbf.extract_patches(x)
    flat = means.reshape(3, -1)
    expected = -np.sum((patches[:, None] - flat[None]) ** 2, -1) / 2
    scores = RBFLayer.from_templates(means, variances)(x.astype("float32")).numpy().reshape(-1, 3)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_and_layer(tmp_path):
    rng = np.random.default_rng(3)
    templates = rbf.Templates(rng.uniform(size=(4, 3, 3, 1)).astype("float32"),
                              rng.uniform(0.1, 1, 4).astype("float32"), "variance", {"templates": [1, 4]}, {})
    written = rbf.save_templates(str(tmp_path / "t.npz"), templates)
    assert all(os.path.exists(p) for p in written) and written[-1].endswith(".png")
    assert json.load(open(tmp_path / "t.json"))["num_templates"] == 4
    loaded = rbf.load_templates(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(loaded.means, templates.means)
    layer = RBFLayer.load(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(layer.means.numpy(), templates.means)


def test_load_original_layout(tmp_path):
    np.save(tmp_path / "mean0.npy", np.zeros((2, 3, 3, 1)))
    np.save(tmp_path / "conv0.npy", np.array([1e-20, 0.5]))
    templates = rbf.load_original(str(tmp_path))
    assert templates.num_templates == 2


@pytest.mark.parametrize("corrupt, error, match", [
    ("missing", FileNotFoundError, "does not exist"),
    ("truncated", ValueError, "truncated"),
    ("nan", ValueError, "NaN"),
    ("zero_variance", ValueError, "variances > 0"),
    ("shape", ValueError, r"\[K, 3, 3, C\]"),
    ("keys", ValueError, "missing"),
])
def test_bad_template_files(tmp_path, corrupt, error, match):
    path = str(tmp_path / "t.npz")
    means, variances = np.full((2, 3, 3, 1), 0.5), np.array([0.5, 0.5])
    if corrupt == "nan":
        variances = np.array([0.5, np.nan])
    if corrupt == "zero_variance":
        variances = np.array([0.5, 0.0])
    if corrupt == "shape":
        means = np.zeros((2, 2, 2, 1))
    if corrupt == "keys":
        np.savez(path, means=means)
    elif corrupt != "missing":
        np.savez(path, means=means, variances=variances)
    if corrupt == "truncated":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(error, match=match):
        rbf.load_templates(path)


def test_gradient_training_lowers_the_loss():
    templates = rbf.train_templates_gradient(_mixture(n=100), num_templates=4, epochs=3, batch_size=50)
    assert templates.parameterization == "log_variance" and templates.means.shape == (4, 3, 3, 1)
    assert templates.history["loss"][-1] < templates.history["loss"][0]


@pytest.mark.parametrize("images, match", [
    (np.zeros((2, 2, 2, 1)), "H, W >= 3"),
    (np.full((2, 5, 5, 1), 255.0), r"\[0, 1\]"),
    (np.full((2, 5, 5, 1), np.nan), r"\[0, 1\]"),
])
def test_em_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        rbf.train_templates(images, max_steps=1)


def test_em_bad_config():
    with pytest.raises(ValueError, match="batch_count"):
        rbf.train_templates(_mixture(n=10), config=rbf.EMConfig(batch_count=0))
