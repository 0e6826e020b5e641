"""Robust-accuracy evaluation: attacks, certificates, sanity checks, reports, the attack app.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks.pgd import FGSM, PGD
from tfrobust.evaluation import certificates, evaluate

result = evaluate(model, (x, y), [FGSM(0.1), PGD(threats.LpBall(np.inf, 0.1), seed=0)])
print(result.robust_accuracy)        # {"Linf eps=0.1": worst case over both}
result.save("reports/run")           # report.json, report.md, results.npz, PNGs

cert = certificates.mlp1layer_certificate(mlp, x, p=2)
result = evaluate(mlp, (x, y), [PGD(threats.LpBall(2, 0.5), seed=0)],
                  threats=[(2, 0.1), (2, 0.3)], certificates={"cross_lipschitz": cert})
```

`evaluate` runs the attacks (`run`), aggregates the worst case per threat
(`aggregate`, keyed by `LpBall`), compares certificates with the attacks on
the same examples (`certificates`: certified accuracy is a lower bound,
attacks give an upper bound; `certified_vs_empirical` does both at the same
L2 radii in one call) and runs the sanity checks (`sanity`); each
flag warns with `RobustnessWarning` and goes to the report. A check that
cannot run on a model becomes a flag "check could not run: <reason>".

Declared flags (the engine reads them, never guesses from other names):

- attacks (`tfrobust.attacks.base.Attack`): `black_box` (uses only the
  model's outputs), `uses_eot` (averages over the model's randomness
  itself), `randomized` (draws random numbers), `steps` (iterations; 1
  marks a one-step attack); wrapper attacks (`Restarts`, `TransferAttack`)
  declare those of the attack they wrap. Other attack callables default to
  False/None.
- models (any callable; e.g. a future `tfrobust.defenses.Defense`):
  `randomized = True` when the forward pass is random (the randomness check
  flags it without EoT even if two calls happen to agree),
  `optimizes_at_inference = True` when the forward pass runs an
  optimization (`check_dynamic` flags it and asks for an adaptive attack),
  and `uses_eot = True` on a wrapper that averages over the randomness
  (`tfrobust.models.wrappers.EoT`). Undeclared flags read as False.
  The evaluation never imports `tfrobust.defenses`.

Non-finite logits at an adversarial point are counted per attack
(`AttackResult.nonfinite`), shown in every report and flagged; they never
count as misclassifications.
"""

import importlib

# Name -> submodule; loaded on first use so that `tfrobust.evaluation.registry`
# (used to validate command lines) does not pull in TensorFlow. No exported
# name may equal a submodule's: importing the submodule would rebind the
# package attribute to the module (hence `autoattack` for `auto_attack`).
_EXPORTS = {
    "load_model": "app",
    "run_attack_app": "app",
    "AutoAttackResult": "autoattack",
    "auto_attack": "autoattack",
    "auto_attack_sequence": "autoattack",
    "ABSTAIN": "certificates",
    "Certificate": "certificates",
    "CertificateResult": "certificates",
    "certified_accuracy": "certificates",
    "mlp1layer_certificate": "certificates",
    "certified_vs_empirical": "certified_empirical",
    "default_l2_attacks": "certified_empirical",
    "RobustAccuracyCurve": "engine",
    "evaluate": "engine",
    "robust_accuracy_curve": "engine",
    "ATTACKS": "registry",
    "make_attack": "registry",
    "AttackResult": "result",
    "EvaluationResult": "result",
    "ThreatResult": "result",
    "AttackRecord": "sanity",
    "RobustnessWarning": "sanity",
    "SanityFlag": "sanity",
    "check_black_box_vs_white_box": "sanity",
    "check_certified_vs_empirical": "sanity",
    "check_dynamic": "sanity",
    "check_gradients": "sanity",
    "check_large_eps": "sanity",
    "check_nonfinite": "sanity",
    "check_one_step_vs_iterative": "sanity",
    "check_randomness": "sanity",
}

__all__ = [
    "AutoAttackResult",
    "auto_attack",
    "auto_attack_sequence",
    "ABSTAIN",
    "ATTACKS",
    "AttackRecord",
    "AttackResult",
    "Certificate",
    "CertificateResult",
    "EvaluationResult",
    "RobustAccuracyCurve",
    "RobustnessWarning",
    "SanityFlag",
    "ThreatResult",
    "check_black_box_vs_white_box",
    "check_certified_vs_empirical",
    "check_dynamic",
    "check_gradients",
    "check_large_eps",
    "check_nonfinite",
    "check_one_step_vs_iterative",
    "check_randomness",
    "certified_accuracy",
    "certified_vs_empirical",
    "default_l2_attacks",
    "evaluate",
    "load_model",
    "make_attack",
    "mlp1layer_certificate",
    "robust_accuracy_curve",
    "run_attack_app",
]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | set(globals()))
