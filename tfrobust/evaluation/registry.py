"""Attacks by name, for command lines and configs.

    make_attack("pgd", norm="inf", eps=0.3, steps=40)      # PGD, CE loss
    make_attack("pgd_margin", norm=2, eps=1.5)             # PGD, C&W margin
    make_attack("cw", norm=2)                              # unbounded C&W L2

Attacks with a budget (`fgsm`, `bim`, `mifgsm`, `pgd`, `pgd_margin`,
`pgd_dlr`, `apgd_ce`, `apgd_dlr`, `apgd_t`, the gradient-free `spsa`,
`nattack` and `square` (L2, L∞)) need `eps`; minimization attacks (`cw`
for L2, `ead` for L1, `deepfool` for L2 or L∞, `fab` and `fab_t` for any
norm) take an optional `eps` as a budget and otherwise return the smallest
perturbation they find. `None` for `steps` or `step_size` keeps each
paper's default. `autoattack` stands for AutoAttack's standard sequence
(`apgd_ce`, `apgd_t`, `fab_t`, `square`; Square left out for L1): run on
every point, the worst case over them is at least as strong as AutoAttack's
sequential run (`tfrobust.evaluation.auto_attack`, cheaper).
"""

import numpy as np

from tfrobust import _validate

__all__ = ["ATTACKS", "BUDGET_ATTACKS", "MINIMIZATION_ATTACKS", "attack_norm", "make_attack", "parse_eps"]

BUDGET_ATTACKS = ("fgsm", "bim", "mifgsm", "pgd", "pgd_margin", "pgd_dlr", "apgd_ce", "apgd_dlr", "apgd_t",
                  "spsa", "nattack", "square")
MINIMIZATION_ATTACKS = ("cw", "ead", "deepfool", "fab", "fab_t")
ATTACKS = BUDGET_ATTACKS + MINIMIZATION_ATTACKS
AUTOATTACK = ("apgd_ce", "apgd_t", "fab_t", "square")

# Norms each attack is defined for (the others: 1, 2 and inf).
_MIN_NORMS = {"cw": (2,), "ead": (1,), "deepfool": (2, np.inf), "square": (2, np.inf)}


def expand_names(names, norm):
    """Replaces "autoattack" by its members for `norm` (no Square for L1)."""
    p = _norm(norm)
    out = []
    for name in names:
        if name == "autoattack":
            out += [n for n in AUTOATTACK if not (n == "square" and p == 1) and n not in out]
        elif name not in out:
            out.append(name)
    return out


def _norm(norm):
    # _validate parses p without importing TensorFlow, so command lines are
    # checked before TensorFlow loads.
    return _validate.check_p(norm, name="norm")


def attack_norm(name, norm):
    """The norm `name` is judged in under `norm`, checking they are compatible.

    Raises:
        ValueError: on an unknown name, or a minimization attack for another
            norm (e.g. "cw" with norm=inf).
    """
    if name not in ATTACKS:
        raise ValueError(f"Expected an attack name in {list(ATTACKS) + ['autoattack']}. Received: attack={name!r}")
    p = _norm(norm)
    if name in _MIN_NORMS and p not in _MIN_NORMS[name]:
        allowed = ", ".join("inf" if q == np.inf else str(q) for q in _MIN_NORMS[name])
        raise ValueError(
            f"Expected `norm` in ({allowed}) for attack {name!r}. "
            f"Received: norm={'inf' if p == np.inf else p}"
        )
    return p


def parse_eps(eps):
    """Parses a list of budgets (or a comma-separated string) into floats.

    Raises:
        ValueError: on a non-number, a negative or non-finite value, or a
            repeated value.
    """
    if isinstance(eps, str):
        eps = [e for e in eps.split(",") if e.strip()]
    try:
        values = [float(e) for e in (eps or ())]
    except (TypeError, ValueError):
        raise ValueError(f"Expected `eps` (--eps) to be numbers. Received: eps={eps!r}") from None
    if any(not np.isfinite(e) or e < 0 for e in values) or len(set(values)) != len(values):
        raise ValueError(f"Expected `eps` (--eps) to be distinct finite numbers >= 0. Received: eps={eps!r}")
    return values


def make_attack(name, *, norm="inf", eps=None, steps=None, step_size=None, restarts=1, seed=0,
                bounds=(0.0, 1.0)):
    """Builds an attack from its registry name.

    Args:
        name: one of `ATTACKS`.
        norm: "inf", 2 or 1 (strings or numbers).
        eps: the budget; required by budget attacks, optional for
            minimization attacks.
        steps: iterations, or None for the attack's default.
        step_size: step length of PGD-type attacks, or None for the default
            (not used by `fgsm`, `mifgsm` or minimization attacks).
        restarts: random restarts of `pgd*` and `spsa` (the others ignore
            it: they are deterministic from x, or minimization attacks).
        seed: seed of random starts.
        bounds: `(lo, hi)` input domain.

    Returns:
        An `Attack`.

    Raises:
        ValueError: on an unknown name or norm, a missing or negative eps
            for a budget attack, or bad hyper-parameters.
    """
    from tfrobust.attacks import pgd
    from tfrobust.threats import LpBall

    p = attack_norm(name, norm)
    restarts = _validate.check_int(restarts, name="restarts", minimum=1)
    threat = None if eps is None else LpBall(p, eps)
    if name in BUDGET_ATTACKS and threat is None:
        raise ValueError(f"Expected `eps` for attack {name!r}. Received: eps=None")
    if name == "fgsm":
        return pgd.FGSM(threat.eps, p, bounds=bounds)
    if name == "bim":
        return pgd.BIM(threat, steps=steps, step_size=step_size, bounds=bounds)
    if name == "mifgsm":
        return pgd.MIFGSM(threat, **({} if steps is None else {"steps": steps}), bounds=bounds)
    if name.startswith("pgd"):
        loss = {"pgd": "ce", "pgd_margin": "margin", "pgd_dlr": "dlr"}[name]
        return pgd.PGD(threat, **({} if steps is None else {"steps": steps}), step_size=step_size,
                       loss=loss, restarts=int(restarts), bounds=bounds, seed=seed)
    kwargs = {} if steps is None else {"steps": steps}
    if name.startswith("apgd"):
        from tfrobust.attacks.apgd import APGD, APGDT

        if name == "apgd_t":
            return APGDT(threat, **kwargs, restarts=int(restarts), bounds=bounds, seed=seed)
        return APGD(threat, loss=name[len("apgd_"):], **kwargs, restarts=int(restarts), bounds=bounds,
                    seed=seed)
    if name == "square":
        from tfrobust.attacks.square import Square

        return Square(threat, **({} if steps is None else {"n_queries": steps}), restarts=int(restarts),
                      bounds=bounds, seed=seed)
    if name.startswith("fab"):
        from tfrobust.attacks.fab import FAB, FABT

        # FAB needs a threat for its norm; without a budget it minimizes freely.
        fab_threat = threat if threat is not None else LpBall(p, {1: 5.0, 2: 1.0}.get(p, 0.3))
        cls = FABT if name == "fab_t" else FAB
        return cls(fab_threat, **kwargs, restarts=int(restarts), bounds=bounds, seed=seed)
    if name == "spsa":
        from tfrobust.attacks.spsa import SPSA

        return SPSA(threat, **kwargs, restarts=int(restarts), bounds=bounds, seed=seed)
    if name == "nattack":
        from tfrobust.attacks.nattack import NAttack

        return NAttack(threat, **kwargs, bounds=bounds, seed=seed)
    if name == "cw":
        from tfrobust.attacks.carlini_wagner import CarliniWagnerL2

        return CarliniWagnerL2(threat, **kwargs, bounds=bounds)
    if name == "ead":
        from tfrobust.attacks.ead import EAD

        return EAD(threat, **kwargs, bounds=bounds)
    from tfrobust.attacks.deepfool import DeepFool

    return DeepFool(threat, p=p, **kwargs, bounds=bounds)
