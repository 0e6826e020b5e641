"""Running every sanity check of an evaluation; a check that raises becomes a flag.

A check that cannot run on a model (for example `check_large_eps`'s
compiled PGD on a defense whose forward pass creates variables) must not
end the evaluation: it is reported as a `SanityFlag` under its own name
whose message starts with "check could not run:", and the other checks
still run.
"""

from tfrobust.evaluation.sanity.comparisons import check_black_box_vs_white_box
from tfrobust.evaluation.sanity.comparisons import check_one_step_vs_iterative
from tfrobust.evaluation.sanity.dynamic import check_dynamic
from tfrobust.evaluation.sanity.flags import AttackRecord
from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.flags import emit
from tfrobust.evaluation.sanity.model_checks import check_gradients
from tfrobust.evaluation.sanity.model_checks import check_large_eps
from tfrobust.evaluation.sanity.model_checks import check_randomness
from tfrobust.evaluation.sanity.outcomes import check_certified_vs_empirical
from tfrobust.evaluation.sanity.outcomes import check_nonfinite

__all__ = ["attack_records", "guarded", "run_checks"]

_COULD_NOT_RUN_REMEDY = (
    "the evaluation is incomplete without this check: make the model callable inside "
    "tf.function (no variables created per call; inner optimisation written functionally), "
    "or run the check by hand on an attackable form of the model (its BPDA/EoT wrapper), and "
    "do not trust the robust accuracy until it passes."
)


def guarded(name, check, *, warn=True):
    """Runs `check()`; an exception becomes a "check could not run" `SanityFlag`."""
    try:
        return check()
    except Exception as err:  # noqa: BLE001 - any failure of a check is reported, never fatal
        reason = f"{type(err).__name__}: {err}".strip()
        # TensorFlow's errors from compiled code open with "in user code:"
        # and a stack; the cause is the last line.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        text = f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__
        return emit(SanityFlag(name, f"check could not run: {text}", _COULD_NOT_RUN_REMEDY,
                               {"error": type(err).__name__, "reason": reason[:2000]}), warn)


def attack_records(results, threats):
    """The `AttackRecord`s checks 3 and 4 compare: `(budget, everyone)`.

    Attacks of exactly a threat compete (budget); so do unbounded
    minimization attacks of its norm, but only against black-box ones
    (everyone): a minimal-norm search (DeepFool, C&W) may legitimately lose
    to FGSM at a given eps, since it does not spend the budget.
    """
    budget, everyone = [], []
    for t in threats.values():
        for name, acc in t.per_attack.items():
            a = results[name]
            record = AttackRecord(name, t.threat, acc, a.steps, a.black_box)
            if a.threat == t.threat:
                budget.append(record)
            if a.threat is None or a.threat == t.threat:
                everyone.append(record)
    return budget, everyone


def run_checks(model, attacks, results, threats, x, y, *, bounds, seed, clean_nonfinite=0,
               certificates=(), warn=True):
    """All sanity checks of one evaluation; returns the list of raised flags.

    Args:
        model: the evaluated model.
        attacks: the attack objects.
        results: dict name -> `AttackResult`.
        threats: the `ThreatTable`.
        x, y: the subset the model-calling checks use.
        bounds: `(lo, hi)`.
        seed: seed of `check_large_eps`'s attack.
        clean_nonfinite: clean inputs with non-finite logits.
        certificates: `CertificateResult`s compared with the attacks.
        warn: emit `RobustnessWarning`s.
    """
    budget, everyone = attack_records(results, threats)
    n = next(iter(results.values())).broken.shape[0] if results else 0
    checks = [
        ("randomness", lambda: check_randomness(model, x, attacks=list(attacks), warn=warn)),
        ("gradients", lambda: check_gradients(model, x, y, warn=warn)),
        ("one_step_vs_iterative", lambda: check_one_step_vs_iterative(budget, warn=warn)),
        ("black_box_vs_white_box", lambda: check_black_box_vs_white_box(everyone, warn=warn)),
        ("large_eps", lambda: check_large_eps(model, x, y, bounds=bounds, seed=seed, warn=warn)),
        ("dynamic", lambda: check_dynamic(model, x, warn=warn)),
        ("nonfinite", lambda: check_nonfinite({k: a.nonfinite_count for k, a in results.items()}, n,
                                              clean_count=clean_nonfinite, warn=warn)),
        ("certified_vs_empirical", lambda: check_certified_vs_empirical(certificates, warn=warn)),
    ]
    flags = [guarded(name, check, warn=warn) for name, check in checks]
    return [f for f in flags if f is not None]
