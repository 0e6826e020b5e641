"""Tests of the Cross-Lipschitz report's figures and seed-aggregated table."""

import numpy as np
import pytest

from tfrobust.evaluation import certificates
from tfrobust.experiments import cl_figures


def _row(reg, strength, seed, err, upper, lower=None, net="mlp1layer"):
    row = {"run_dir": f"{net}-{reg}-{strength}-{seed}", "nn_type": net, "reg_type": reg,
           "lmbd": 0.0 if reg in ("no", "dropout") else strength, "keep_hidden": strength if reg == "dropout"
           else 0.5, "adv_train": False, "seed": seed, "test_error_full": err,
           "upper_bound_median": upper, "n_points": 20}
    if lower is not None:
        row["lower_bound_median"] = lower
    return row


@pytest.fixture
def rows():
    out = []
    for seed, noise in ((5, 0.0), (6, 0.02), (7, -0.02)):
        out.append(_row("no", 0.0, seed, 0.04 + noise / 10, 1.0 + noise, 0.55 + noise))
        for lmbd in (1e-3, 1e-2):
            out.append(_row("cross_lipschitz", lmbd, seed, 0.04, 1.2 + 10 * lmbd + noise, 0.6 + noise))
        for keep in (0.3, 0.7):
            out.append(_row("dropout", keep, seed, 0.038, 1.3 - keep / 10 + noise, 0.6))
    out.append(_row("weight_decay", 1e-4, 5, 0.05, 0.9, net="resnet"))
    return out


def test_labels_carry_the_strength(rows):
    labels = {cl_figures.label(r) for r in rows}
    assert {"none", "Cross-Lipschitz λ=0.001", "Cross-Lipschitz λ=0.01", "dropout keep=0.3",
            "dropout keep=0.7", "weight decay λ=0.0001"} == labels


def test_grid_summary_is_mean_and_std_over_seeds(rows):
    summary = cl_figures.grid_summary(rows)
    assert len(summary) == 6  # 5 MLP settings + 1 ResNet
    none = next(e for e in summary if e["reg_type"] == "no")
    assert none["n_seeds"] == 3 and none["seeds"] == [5, 6, 7]
    assert none["upper_median_mean"] == pytest.approx(1.0)
    assert none["upper_median_std"] == pytest.approx(np.std([1.0, 1.02, 0.98], ddof=1))
    # The regularizers' order, then increasing strength (dropout: decreasing keep).
    mlp = [(e["reg_type"], e["strength"]) for e in summary if e["mode"].startswith("one hidden")]
    assert mlp == [("no", 0.0), ("dropout", 0.7), ("dropout", 0.3), ("cross_lipschitz", 1e-3),
                   ("cross_lipschitz", 1e-2)]
    resnet = next(e for e in summary if e["mode"].startswith("ResNet"))
    assert "lower_median_mean" not in resnet and resnet["n_seeds"] == 1
    table = cl_figures.grid_table(summary)
    assert "| one hidden layer, plain training | none | 3 | 4.00 ± 0.20 | 1.000 ± 0.020 |" in table
    assert "| ResNet-32, plain training | weight decay λ=0.0001 | 1 | 5.00 | 0.900 | – | – | – |" in table


def test_figures_are_written(rows, tmp_path):
    rng = np.random.default_rng(0)
    series = {}
    for row in rows:
        y = rng.integers(0, 10, size=20)
        norm = rng.uniform(0.5, 1.5, size=20)
        comparison = None
        if "lower_bound_median" in row:
            cert = certificates.Certificate(y, 0.5 * norm, 2)
            comparison = certificates.compare("x", cert, y, [0.0], adversarial_norm=norm,
                                              clean_correct=np.ones(20, bool))
        series[row["run_dir"]] = (comparison, (norm, np.ones(20, bool)))
    cl_figures.plot_by_mode(rows, series, str(tmp_path / "modes.png"))
    cl_figures.plot_by_mode(rows, series, str(tmp_path / "all.png"), strongest=False, seed=6)
    chosen = {cl_figures.setting(r): r for r in rows if r["nn_type"] == "mlp1layer"}
    assert set(cl_figures._strongest(chosen)) == {("no", 0.0), ("dropout", 0.3), ("cross_lipschitz", 1e-2)}
    cl_figures.plot_grid(cl_figures.grid_summary(rows), str(tmp_path / "grid.png"))
    assert (tmp_path / "modes.png").stat().st_size > 10000
    assert (tmp_path / "grid.png").stat().st_size > 10000
    # Distinct colours for the settings of a panel.
    colours = cl_figures._colours({cl_figures.setting(r) for r in rows})
    assert len(set(colours.values())) == len(colours)
