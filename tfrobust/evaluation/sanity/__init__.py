"""Checks against a false sense of robustness, each with its remedy.

Example:

```python
from tfrobust.evaluation import sanity

flag = sanity.check_gradients(model, x, y)        # None when all is well
if flag is not None:
    print(flag.message, flag.remedy)
```

Each check is a small function that returns a `SanityFlag` (or `None` when
the check passes) and, unless `warn=False`, emits a `RobustnessWarning`
naming the remedy. `tfrobust.evaluation.evaluate` runs all of them through
`run_checks`, which turns a check that raises into a flag "check could not
run: <reason>" instead of ending the evaluation. The first five encode the
warning signs of Athalye, Carlini & Wagner (2018, Section 3.1: randomness
without EoT, masked gradients, one-step attacks beating iterative ones,
black-box attacks beating white-box ones, unbounded attacks failing to reach
100% success) and the same "flags" auto-attack raises; the others flag
inference that optimizes or depends on the batch (`check_dynamic`),
non-finite outputs at adversarial points (`check_nonfinite`) and
certificates above attacks (`check_certified_vs_empirical`).

Models declare what the checks need (see `tfrobust.evaluation`):
`randomized`, `optimizes_at_inference` and `uses_eot` (bools).

References:
    Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of
    Security", ICML 2018. Croce & Hein, "Reliable evaluation of adversarial
    robustness with an ensemble of diverse parameter-free attacks", ICML 2020.
    Carlini et al., "On Evaluating Adversarial Robustness", arXiv:1902.06705.
"""

from tfrobust.evaluation.sanity.comparisons import check_black_box_vs_white_box
from tfrobust.evaluation.sanity.comparisons import check_one_step_vs_iterative
from tfrobust.evaluation.sanity.dynamic import check_dynamic
from tfrobust.evaluation.sanity.flags import AttackRecord
from tfrobust.evaluation.sanity.flags import RobustnessWarning
from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.model_checks import check_gradients
from tfrobust.evaluation.sanity.model_checks import check_large_eps
from tfrobust.evaluation.sanity.model_checks import check_randomness
from tfrobust.evaluation.sanity.model_checks import uses_eot
from tfrobust.evaluation.sanity.outcomes import check_certified_vs_empirical
from tfrobust.evaluation.sanity.outcomes import check_nonfinite
from tfrobust.evaluation.sanity.runner import guarded
from tfrobust.evaluation.sanity.runner import run_checks

__all__ = [
    "AttackRecord",
    "RobustnessWarning",
    "SanityFlag",
    "check_black_box_vs_white_box",
    "check_certified_vs_empirical",
    "check_dynamic",
    "check_gradients",
    "check_large_eps",
    "check_nonfinite",
    "check_one_step_vs_iterative",
    "check_randomness",
    "guarded",
    "run_checks",
    "uses_eot",
]
