"""Per-point worst cases: within one test_rCNN run (the deployed model over
BPDA+EoT and the judged static examples) and over several runs' points.npz."""

import json

import numpy as np
import pytest

from tfrobust.experiments.rbf_cnn_eval import _deployed
from tfrobust.experiments.rbf_cnn_points import combine, load_points, write_combined


def _run(path, **arrays):
    path.mkdir()
    np.savez(path / "points.npz", **arrays)
    return str(path)


def test_deployed_worst_case_is_per_point_on_the_adaptive_images():
    points = {"judged/1.75/l2/PGD-40": np.array([1, 1, 0, 1, 1], bool),
              "judged/1.75/l2/CW": np.array([1, 0, 1, 1, 0], bool),
              "judged/1.0/l2/CW": np.array([0, 0, 0, 0, 0], bool),   # another beta2: not combined
              "judged/1.75/linf/CW": np.array([0, 0, 0, 0, 0], bool),  # another threat
              "adaptive/1.75/l2/BPDA+EoT PGD": np.array([1, 1, 1, 0], bool),
              "adaptive/1.75/l2/EoT APGD-CE": np.array([1, 1, 1, 1], bool)}
    d = _deployed(points, 1.75, "l2")
    # Per point over the first 4 images: only image 0 survives all four;
    # each view alone says 50-100%.
    assert d == {"n": 4, "adaptive_attacks": 2, "static_attacks": 2, "robust": 0.25}


def test_adaptive_views_chunk_reconstructions_by_eot_batch():
    import keras

    from tfrobust import rbf
    from tfrobust.defenses.rbf_cnn import RBFCNN
    from tfrobust.experiments.rbf_cnn_eval import EvalConfig, _adaptive_attacks
    from tfrobust.threats import LpBall

    templates = rbf.Templates(np.full((2, 3, 3, 1), 0.5, "float32"), np.full(2, 0.1, "float32"))
    classifier = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model = RBFCNN.from_templates(templates, classifier, samples=1, seed=0)
    config = EvalConfig(samples=10, eot_samples=50, eot_batch=512, adaptive_attacks=("BPDA+EoT PGD", "EoT APGD-CE"))
    battery = _adaptive_attacks(model, LpBall(2, 1.0), config)
    assert set(battery) == {"BPDA+EoT PGD", "EoT APGD-CE"}
    # 512 reconstructions per call at m = 10: at most 51 examples (image x draw).
    assert all(a.view.max_batch == 51 and a.view.n == 50 for a in battery.values())


def test_combine_takes_per_point_minima_over_runs_on_common_images(tmp_path):
    y = np.arange(6) % 3
    a = _run(tmp_path / "a", y=y, **{"static/l1/PGD-40": np.array([1, 1, 1, 0, 1, 1], bool),
                                     "judged/1.75/l1/PGD-40": np.array([1, 1, 1, 1, 1, 0], bool)})
    b = _run(tmp_path / "b", y=y[:4], **{"static/l1/EAD": np.array([1, 0, 1, 1], bool),
                                         "adaptive/1.75/l1/EoT APGD-CE": np.array([0, 1, 1, 1], bool),
                                         "adaptive/1.75/l1": np.array([1, 1, 1, 1], bool)})  # an older run's key
    out = combine([a, b])
    assert out["static"]["l1"] == {"n": 4, "robust": 0.5, "attacks": ["0: PGD-40", "1: EAD"]}
    assert out["deployed (beta2 = 1.75)"]["l1"] == {"n": 4, "robust": 0.75,
                                                    "attacks": ["0: PGD-40", "1: EoT APGD-CE",
                                                                "1: BPDA+EoT PGD"]}
    written = write_combined([a, b], str(tmp_path / "out"))
    assert json.load(open(tmp_path / "out" / "combined.json"))["views"] == written
    assert "| static | l1 | 4 | 50.0 | 2 |" in open(tmp_path / "out" / "combined.md").read()


def test_combine_rejects_missing_corrupt_and_mismatched_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="points.npz"):
        load_points(str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "points.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="unreadable"):
        load_points(str(bad))
    a = _run(tmp_path / "a", y=np.array([0, 1, 2]), **{"static/l2/CW": np.ones(3, bool)})
    b = _run(tmp_path / "b", y=np.array([0, 2, 2]), **{"static/l2/CW": np.ones(3, bool)})
    with pytest.raises(ValueError, match="same test images"):
        combine([a, b])
    with pytest.raises(ValueError, match="combine"):
        combine([])
    no_y = _run(tmp_path / "c", **{"static/l2/CW": np.ones(3, bool)})
    with pytest.raises(ValueError, match="`y`"):
        load_points(no_y)
