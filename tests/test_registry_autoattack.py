"""The new attacks by name, and `--attacks=autoattack` in the attack app."""

import json
import os

import numpy as np
import pytest

from tfrobust.attacks import APGD, APGDT, FAB, FABT, Square
from tfrobust.evaluation import registry
from tfrobust.evaluation.app import run_attack_app
from tfrobust.testing import small_trained_mnist_model


@pytest.mark.parametrize("name, cls, norm", [
    ("apgd_ce", APGD, "inf"), ("apgd_dlr", APGD, 2), ("apgd_t", APGDT, 1), ("square", Square, 2),
    ("fab", FAB, 1), ("fab_t", FABT, "inf"),
])
def test_make_attack_builds_the_new_attacks(name, cls, norm):
    attack = registry.make_attack(name, norm=norm, eps=0.5, steps=3)
    assert type(attack) is cls
    if name == "apgd_dlr":
        assert attack.loss == "dlr"


def test_autoattack_expands_per_norm_and_square_refuses_l1():
    assert registry.expand_names(["pgd", "autoattack"], "inf") == ["pgd", "apgd_ce", "apgd_t", "fab_t", "square"]
    assert registry.expand_names(["autoattack"], 1) == ["apgd_ce", "apgd_t", "fab_t"]
    with pytest.raises(ValueError, match="norm"):
        registry.attack_norm("square", 1)
    with pytest.raises(ValueError, match="autoattack"):
        registry.attack_norm("apgd", "inf")


def test_attack_app_runs_autoattack(tmp_path):
    trained = small_trained_mnist_model()
    out = str(tmp_path / "aa")
    run_attack_app(trained.model, out_dir=out, dataset="digits", n_examples=16, attacks="autoattack",
                   norm="inf", eps=[0.2], steps=3, batch_size=16)
    report = json.load(open(os.path.join(out, "report.json")))
    text = json.dumps(report)
    for name in ("APGD", "APGDT", "FABT", "Square"):
        assert name in text


def test_parse_threats_reads_p_eps_items_and_pairs():
    assert registry.parse_threats("inf:0.3,2:2.0,1:15") == [(1, 15.0), (2, 2.0), (np.inf, 0.3)]
    assert registry.parse_threats([(2, 1.0), "linf:0.1"]) == [(2, 1.0), (np.inf, 0.1)]
    for bad, message in [("inf", "p:eps"), ("3:0.1", "threats"), ("inf:-1", "eps"),
                         ("inf:0.3,inf:0.3", "distinct")]:
        with pytest.raises(ValueError, match=message):
            registry.parse_threats(bad)


def test_pair_attacks_gives_each_attack_the_norms_it_supports():
    plan = registry.pair_attacks(["autoattack", "cw", "ead"], registry.parse_threats("inf:0.3,2:2.0,1:15"))
    by_norm = {}
    for name, p, eps in plan:
        by_norm.setdefault(p, []).append(name)
        assert eps == {1: [15.0], 2: [2.0], np.inf: [0.3]}[p]
    assert by_norm[np.inf] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert by_norm[2] == ["apgd_ce", "apgd_t", "fab_t", "square", "cw"]
    assert by_norm[1] == ["apgd_ce", "apgd_t", "fab_t", "ead"]  # no Square in L1
    with pytest.raises(ValueError, match="support a norm"):
        registry.pair_attacks(["cw"], [(np.inf, 0.3)])
    with pytest.raises(ValueError, match="for the L1 threats"):
        registry.pair_attacks(["cw"], [(2, 1.0), (1, 5.0)])
    with pytest.raises(ValueError, match="attack name"):
        registry.pair_attacks(["nope"], [(2, 1.0)])
