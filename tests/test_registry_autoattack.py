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
