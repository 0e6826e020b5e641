"""Checks 7 and 8 on the results: non-finite outputs, certificates above attacks."""

from tfrobust.evaluation.sanity.flags import SanityFlag
from tfrobust.evaluation.sanity.flags import emit as _emit

__all__ = ["check_certified_vs_empirical", "check_nonfinite"]


def check_nonfinite(counts, n_examples, *, clean_count=0, warn=True):
    """Flags adversarial (or clean) points where the model's logits are non-finite.

    Such points are never counted as misclassified by the engine (the
    argmax of a NaN row is meaningless), but a defense that overflows a
    small perturbation away from the data is numerically fragile: that is
    a finding to report, not a broken evaluation.

    Args:
        counts: dict attack name -> number of its adversarial points with
            NaN or Inf logits.
        n_examples: number of examples evaluated.
        clean_count: clean inputs with non-finite logits.
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` "nonfinite", or None.
    """
    bad = {name: int(c) for name, c in counts.items() if c}
    if not bad and not clean_count:
        return None
    text = ", ".join(f"{name} {c}/{n_examples}" for name, c in bad.items())
    if clean_count:
        text = (text + "; " if text else "") + f"clean inputs {int(clean_count)}/{n_examples}"
    return _emit(SanityFlag(
        "nonfinite",
        f"Non-finite outputs at adversarial points: the model returns NaN or Inf logits for "
        f"{text}. They are not counted as misclassified.",
        "the defense is numerically fragile near the data: report it as a finding; find the "
        "operation that overflows (log, division, exp) and attack through a stabilised "
        "surrogate (BPDA) or with a loss on clipped logits to see whether those points are "
        "really robust.",
        {"counts": bad, "clean": int(clean_count), "n_examples": int(n_examples)},
    ), warn)


def check_certified_vs_empirical(comparisons, *, warn=True):
    """Flags certified accuracy above empirical robust accuracy.

    A certificate is a lower bound and an attack an upper bound on the true
    robust accuracy of the same classifier on the same examples, so
    certified accuracy at r can never exceed empirical robust accuracy at
    r, and no example may be both certified at r and broken by an attack
    within r. Either means a bug in the certificate or in the attack
    evaluation (or a certificate of another classifier than the one
    attacked).

    Args:
        comparisons: iterable of `certificates.CertificateResult`.
        warn: emit a `RobustnessWarning` when the check fails.

    Returns:
        A `SanityFlag` "certified_vs_empirical", or None.
    """
    cases = []
    for c in comparisons:
        if c.empirical_accuracy is None:
            continue
        above = [(float(r), float(lo), float(up)) for r, lo, up in
                 zip(c.radii, c.certified_accuracy, c.empirical_accuracy) if lo > up]
        if above or c.contradictions:
            cases.append({"certificate": c.name, "above": above,
                          "contradictions": int(c.contradictions)})
    if not cases:
        return None
    parts = []
    for case in cases:
        text = ", ".join(f"r={r:g}: certified {lo:.4f} > empirical {up:.4f}" for r, lo, up in case["above"])
        if case["contradictions"]:
            text = (text + "; " if text else "") + (
                f"{case['contradictions']} examples certified at a radius where an attack broke them")
        parts.append(f"{case['certificate']} ({text})")
    return _emit(SanityFlag(
        "certified_vs_empirical",
        "Certified accuracy exceeds empirical robust accuracy: " + "; ".join(parts) + ".",
        "a lower bound above an upper bound is a bug: check that the certificate is for the "
        "attacked classifier and its norm, that the certificate rounds down, and that the "
        "attacks' perturbations are measured in the same norm.",
        {"cases": cases},
    ), warn)
