"""apps/eval_manifold_defense.py's library run end to end on real MNIST, tiny settings."""

import dataclasses
import json
import os

import numpy as np


def test_eval_manifold_end_to_end(data_dir, tmp_path):
    import keras

    from tfrobust.experiments.manifold_eval import ManifoldEvalConfig, run
    from tfrobust.models import manifold

    keras.utils.set_random_seed(0)
    classifier = manifold.madry_mnist_cnn()
    clf_path = str(tmp_path / "clf.keras")
    classifier.save(clf_path)
    gen_path = str(tmp_path / "gen.keras")
    manifold.mnist_vae(seed=0).decoder.save(gen_path)
    out = tmp_path / "eval"
    summary = run(ManifoldEvalConfig(
        classifier=clf_path, generator=gen_path, robust_models=(), data_dir=data_dir,
        out_dir=str(out), n_static=6, n_adaptive=3, inc_steps=3, attack_inc_steps=2, eot=2, pgd_steps=2,
        bpda_steps=2, cw_steps=2, cw_search=1, latent_copies=2, latent_noise=2, latent_steps=2, substitute_seed=6,
        substitute_rounds=2, substitute_epochs=1, op_pairs=3, op_steps=2, robust_eps=(1.5,), robust_steps=2,
        batch_size=6, strategy="one_device"))  # static-plain and robust through tfrobust.distribute
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(on_disk) >= {"static_plain", "static_inc", "adaptive_inc", "overpowered", "robust", "config"}
    for part in ("static_plain", "static_inc", "adaptive_inc"):
        assert os.path.exists(out / part / "report.json") and os.path.exists(out / part / "report.md")
    adaptive = summary["adaptive_inc"]
    assert {"BPDA+EoT-PGD", "BPDA+EoT-PGD-L2", "latent-L2-4", "substitute-FGSM", "FGSM"} <= set(adaptive["per_attack"])
    # The worst case per threat is never above any attack judged in it.
    worst = adaptive["worst_case_per_threat"]
    assert min(v for k, v in worst.items() if "Linf" in k) <= adaptive["per_attack"]["BPDA+EoT-PGD"] + 1e-9
    assert summary["static_inc"]["substitute"]["queries"] == 12
    assert set(summary["overpowered"]) == {"plain"}
    assert 0.0 <= summary["overpowered"]["plain"]["overpowered_success_rate"] <= 1.0
    assert set(summary["robust"]) == {"plain"} and "PGD-L2-1.5" in summary["robust"]["plain"]["per_attack"]
    assert (out / "projections.png").stat().st_size > 1000
    assert np.isfinite(summary["static_plain"]["clean_accuracy"])


def test_eval_manifold_bpda_part_only(data_dir, tmp_path):
    import keras
    import pytest

    from tfrobust.experiments.manifold_eval import ManifoldEvalConfig, run
    from tfrobust.models import manifold

    keras.utils.set_random_seed(0)
    clf_path, gen_path = str(tmp_path / "clf.keras"), str(tmp_path / "gen.keras")
    manifold.madry_mnist_cnn().save(clf_path)
    manifold.mnist_vae(seed=0).decoder.save(gen_path)
    config = ManifoldEvalConfig(classifier=clf_path, generator=gen_path, data_dir=data_dir, out_dir=str(tmp_path),
                                parts=("bpda",), n_static=3, n_adaptive=3, inc_steps=2, attack_inc_steps=2, eot=1,
                                bpda_steps=2, substitute_seed=3, batch_size=3)
    summary = run(config)
    assert set(summary) >= {"bpda_inc", "bpda_seconds"} and "static_inc" not in summary
    row = summary["bpda_inc"]
    assert set(row["per_attack"]) == {"BPDA+EoT-PGD-L2"}
    assert row["per_attack"]["BPDA+EoT-PGD-L2"] <= row["clean_accuracy"] + 1e-9
    assert os.path.exists(tmp_path / "bpda_inc" / "report.json")
    with pytest.raises(ValueError, match="parts"):
        run(dataclasses.replace(config, parts=("bpda", "nope")))


def test_eval_manifold_adaptive_reuses_prior_results(data_dir, tmp_path):
    import keras
    import pytest

    from tfrobust.experiments.manifold_eval import ManifoldEvalConfig, run
    from tfrobust.models import manifold

    keras.utils.set_random_seed(0)
    clf_path, gen_path = str(tmp_path / "clf.keras"), str(tmp_path / "gen.keras")
    manifold.madry_mnist_cnn().save(clf_path)
    manifold.mnist_vae(seed=0).decoder.save(gen_path)
    base = ManifoldEvalConfig(classifier=clf_path, generator=gen_path, data_dir=data_dir, n_static=4, n_adaptive=2,
                              inc_steps=2, attack_inc_steps=2, eot=1, pgd_steps=2, bpda_steps=2, cw_steps=2,
                              cw_search=1, latent_copies=1, latent_noise=1, latent_steps=2, substitute_seed=4,
                              substitute_rounds=1, substitute_epochs=1, batch_size=4)
    static = run(dataclasses.replace(base, out_dir=str(tmp_path / "static"), parts=("static",)))
    folder = str(tmp_path / "static" / "static_inc")
    # The second chunk (test images 2-3) of the static run, evaluated adaptively.
    chunk = dataclasses.replace(base, out_dir=str(tmp_path / "chunk"), parts=("adaptive",), n_static=2, offset=2,
                                prior_results=(folder,))
    row = run(chunk)["adaptive_inc"]
    assert set(row["per_attack"]) == {"BPDA+EoT-PGD", "BPDA+EoT-PGD-L2", "latent-L2-4"}
    merged = row["worst_case_with_prior"]
    assert set(merged) == set(row["worst_case_per_threat"]) == {"Linf eps=0.3", "L2 eps=2", "L2 eps=4"}
    for label, value in merged.items():
        assert value <= row["worst_case_per_threat"][label] + 1e-9
    # Every static attack judged in L-inf broke the same examples as in the static run.
    static_npz = np.load(os.path.join(folder, "results.npz"))
    static_linf = static_npz["threat/Linf eps=0.3/robust"][2:4]
    assert merged["Linf eps=0.3"] <= np.mean(static_linf) + 1e-9
    assert static["static_inc"]["n"] == 4
    with pytest.raises(ValueError, match="prior_results"):  # the static run has no test image 4
        run(dataclasses.replace(chunk, offset=3, out_dir=str(tmp_path / "bad")))
    # APGD through BPDA+EoT on the same chunk, merged per image with the static run and the first adaptive
    # run (whose example 0 is test image 2): it can only lower the worst case.
    apgd = dataclasses.replace(chunk, out_dir=str(tmp_path / "apgd"),
                               adaptive_attacks=("BPDA+EoT APGD-CE", "EoT APGD-CE"), adaptive_l2_eps=(2.0, 4.0),
                               prior_results=(folder, str(tmp_path / "chunk" / "adaptive_inc") + "@2"))
    again = run(apgd)["adaptive_inc"]
    assert set(again["per_attack"]) == {"BPDA+EoT-APGD-CE", "BPDA+EoT-APGD-CE-L2", "BPDA+EoT-APGD-CE-L2-4",
                                        "EoT-APGD-CE", "EoT-APGD-CE-L2", "EoT-APGD-CE-L2-4"}
    assert again["worst_case_per_threat"]["L2 eps=4"] <= again["per_attack"]["EoT-APGD-CE-L2-4"] + 1e-9
    for label in ("Linf eps=0.3", "L2 eps=2"):
        assert again["worst_case_with_prior"][label] <= merged[label] + 1e-9
        assert again["worst_case_with_prior"][label] <= again["worst_case_per_threat"][label] + 1e-9
    # The merge part recomputes the same per-image worst case from the saved folders, every threat included.
    runs = (folder, str(tmp_path / "chunk" / "adaptive_inc") + "@2", str(tmp_path / "apgd" / "adaptive_inc") + "@2")
    merged_again = run(dataclasses.replace(apgd, parts=("merge",), prior_results=runs,
                                           out_dir=str(tmp_path / "merge")))["merged"]["worst_case_per_threat"]
    assert set(merged_again) == {"Linf eps=0.3", "L2 eps=2", "L2 eps=4"}
    for label, value in again["worst_case_with_prior"].items():
        assert abs(merged_again[label] - value) < 1e-9
    assert merged_again["L2 eps=4"] <= merged["L2 eps=4"] + 1e-9
    with pytest.raises(ValueError, match="prior_results"):
        run(dataclasses.replace(apgd, parts=("merge",), prior_results=(), out_dir=str(tmp_path / "bad3")))
    with pytest.raises(ValueError, match="prior_results"):  # that run starts at test image 2, not 3
        run(dataclasses.replace(apgd, prior_results=(str(tmp_path / "chunk" / "adaptive_inc") + "@3",),
                                out_dir=str(tmp_path / "bad")))
    with pytest.raises(ValueError, match="adaptive_attacks"):
        run(dataclasses.replace(apgd, adaptive_attacks=("BPDA+EoT FAB",), out_dir=str(tmp_path / "bad2")))
    assert not os.path.exists(tmp_path / "bad2")
    with pytest.raises(ValueError, match="adaptive_attacks"):
        run(dataclasses.replace(apgd, parts=("figure",), adaptive_attacks=("latent",), out_dir=str(tmp_path / "bad2")))
    with pytest.raises(ValueError, match="adaptive_l2_eps"):
        run(dataclasses.replace(apgd, parts=("figure",), adaptive_l2_eps=(), out_dir=str(tmp_path / "bad2")))
    with pytest.raises(ValueError, match="offset"):
        run(dataclasses.replace(chunk, offset=10_000, out_dir=str(tmp_path / "bad")))
