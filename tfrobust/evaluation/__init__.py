"""Robust-accuracy evaluation: the engine, sanity checks, reports, the attack app.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks.pgd import FGSM, PGD
from tfrobust.evaluation import evaluate

result = evaluate(model, (x, y), [FGSM(0.1), PGD(threats.LpBall(np.inf, 0.1), seed=0)])
print(result.robust_accuracy)        # {"Linf eps=0.1": worst case over both}
result.save("reports/run")           # report.json, report.md, results.npz
```

`evaluate` runs the sanity checks of Athalye et al. (2018) and auto-attack
(`tfrobust.evaluation.sanity`) and warns with `RobustnessWarning`.
"""

import importlib

# Name -> submodule; loaded on first use so that `tfrobust.evaluation.registry`
# (used to validate command lines) does not pull in TensorFlow.
_EXPORTS = {
    "load_model": "app",
    "run_attack_app": "app",
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
    "check_gradients": "sanity",
    "check_large_eps": "sanity",
    "check_one_step_vs_iterative": "sanity",
    "check_randomness": "sanity",
}

__all__ = [
    "ATTACKS",
    "AttackRecord",
    "AttackResult",
    "EvaluationResult",
    "RobustAccuracyCurve",
    "RobustnessWarning",
    "SanityFlag",
    "ThreatResult",
    "check_black_box_vs_white_box",
    "check_gradients",
    "check_large_eps",
    "check_one_step_vs_iterative",
    "check_randomness",
    "evaluate",
    "load_model",
    "make_attack",
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
