"""apps/eval_dip.py's library run end to end on real CIFAR-10, tiny settings, through tfrobust.distribute."""

import json

import numpy as np


def test_eval_dip_end_to_end_under_a_strategy(data_dir, tmp_path):
    import keras

    from tfrobust.experiments.dip_eval import DIPEvalConfig, evaluate_dip

    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / "clf.keras")
    classifier.save(path)
    out = tmp_path / "eval"
    eps = 8.0 / 255.0
    # Two batches of one image: the BIM crafting, the DIP fits and the
    # adaptive attack each go through map_batches / run_batches.
    results = evaluate_dip(DIPEvalConfig(
        classifier=path, data_dir=data_dir, out_dir=str(out), n=2, batch_size=1, eps=eps, bim_steps=1,
        curve_steps=(1,), attack_dip_steps=1, attack_steps=1, n_eot=1, channels=4, strategy="one_device"))
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["config"]["strategy"] == "one_device" and on_disk["curve_steps"] == [1]
    for name in ("clean", "bim"):
        assert len(results["curve"][name]) == 1 and all(0.0 <= a <= 1.0 for a in results["curve"][name])
        assert all(np.isfinite(results["curve"][name + "_mse_to_input"]))
    adaptive = results["dip_at_attack_steps"]
    assert 0.0 < adaptive["linf"] <= eps + 1e-6  # the attack moved the images, inside the ball
    for name in ("results.md", "curve.png", "reconstructions.png"):
        assert (out / name).stat().st_size > 0, name
