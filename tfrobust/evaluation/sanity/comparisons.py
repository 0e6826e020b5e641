"""Checks 3 and 4: comparisons between attacks of the same threat."""

from tfrobust.evaluation.sanity.flags import AttackRecord
from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.flags import emit as _emit
from tfrobust.evaluation.sanity.flags import threat_key
from tfrobust.evaluation.sanity.flags import threat_text as _threat_label

__all__ = ["check_black_box_vs_white_box", "check_one_step_vs_iterative"]


# ---------------------------------------------------------------------------
# 3 and 4. Comparisons between attacks of the same threat.


def _by_threat(records):
    groups = {}
    for record in records:
        record = AttackRecord(*record) if not isinstance(record, AttackRecord) else record
        groups.setdefault(threat_key(record.threat), []).append(record)
    return groups


def check_one_step_vs_iterative(records, *, tol=0.0, warn=True):
    """Flags a one-step attack that beats an iterative white-box attack of its threat.

    An iterative attack explores a superset of the one-step attack's
    points; when FGSM does better, the iterative attack is failing (too few
    steps, a bad step size, or gradients that mislead locally).

    Args:
        records: iterable of `AttackRecord` (or tuples in its field order).
        tol: the one-step robust accuracy must be lower by more than `tol`.
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` listing every offending pair, or None.
    """
    pairs = []
    for threat, group in _by_threat(records).items():
        one_step = [r for r in group if r.steps == 1 and not r.black_box]
        iterative = [r for r in group if r.steps is not None and r.steps > 1 and not r.black_box]
        for fast in one_step:
            for slow in iterative:
                if fast.robust_accuracy < slow.robust_accuracy - tol:
                    pairs.append({
                        "threat": _threat_label(threat), "one_step": fast.name,
                        "one_step_accuracy": float(fast.robust_accuracy), "iterative": slow.name,
                        "iterative_accuracy": float(slow.robust_accuracy),
                    })
    if not pairs:
        return None
    text = "; ".join(
        f"{d['one_step']} {d['one_step_accuracy']:.3f} < {d['iterative']} "
        f"{d['iterative_accuracy']:.3f} ({d['threat']})" for d in pairs
    )
    return _emit(SanityFlag(
        "one_step_vs_iterative",
        f"A one-step attack reaches lower robust accuracy than an iterative attack of "
        f"the same threat: {text}.",
        "the iterative attack is failing; increase steps/restarts, check the step "
        "size, or check gradients (use BPDA/EoT if the defense masks or randomizes them).",
        {"pairs": pairs},
    ), warn)


def check_black_box_vs_white_box(records, *, tol=0.0, warn=True):
    """Flags a black-box attack that beats every white-box attack of its threat.

    White-box attacks see strictly more than gradient-free or transfer
    attacks; when those win, the gradients are obfuscated.

    Args:
        records: iterable of `AttackRecord` (or tuples in its field order).
        tol: the black-box accuracy must be lower than the best white-box
            accuracy by more than `tol`.
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` listing every offending threat, or None.
    """
    cases = []
    for threat, group in _by_threat(records).items():
        black = [r for r in group if r.black_box]
        white = [r for r in group if not r.black_box]
        if not black or not white:
            continue
        best_white = min(white, key=lambda r: r.robust_accuracy)
        best_black = min(black, key=lambda r: r.robust_accuracy)
        if best_black.robust_accuracy < best_white.robust_accuracy - tol:
            cases.append({
                "threat": _threat_label(threat), "black_box": best_black.name,
                "black_box_accuracy": float(best_black.robust_accuracy),
                "white_box": best_white.name,
                "white_box_accuracy": float(best_white.robust_accuracy),
            })
    if not cases:
        return None
    text = "; ".join(
        f"{d['black_box']} {d['black_box_accuracy']:.3f} < {d['white_box']} "
        f"{d['white_box_accuracy']:.3f} ({d['threat']})" for d in cases
    )
    return _emit(SanityFlag(
        "black_box_vs_white_box",
        f"A black-box attack beats every white-box attack of the same threat: {text}.",
        "the white-box gradients are obfuscated; use BPDA for non-differentiable "
        "parts, EoT for randomness, a margin loss for saturation, and report the "
        "black-box result meanwhile.",
        {"cases": cases},
    ), warn)
