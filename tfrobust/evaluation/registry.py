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

__all__ = ["ATTACKS", "BUDGET_ATTACKS", "MINIMIZATION_ATTACKS", "attack_norm", "make_attack", "pair_attacks",
           "parse_eps", "parse_threats"]

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


def parse_threats(threats):
    """Parses threats written `p:eps` (e.g. "inf:0.3,2:2.0,1:15") into (p, eps) pairs.

    Items may also be `(p, eps)` pairs already.

    Several budgets of one norm are written as several items ("inf:0.1,inf:0.3").
    Returns the pairs sorted by norm then eps, without TensorFlow.

    Raises:
        ValueError: on an item that is not `p:eps`, an unknown norm, a negative
            or non-finite eps, or a repeated threat.
    """
    if isinstance(threats, str):
        threats = threats.split(",")
    pairs = []
    for item in threats or ():
        if isinstance(item, str):
            if not item.strip():
                continue
            norm, sep, eps = item.strip().partition(":")
        else:
            try:
                (norm, eps), sep = item, ":"
            except (TypeError, ValueError):
                sep = ""
        if not sep:
            raise ValueError(
                f"Expected `threats` (--threats) as p:eps items, e.g. inf:0.3,2:2.0,1:15. Received: {item!r}")
        p = _validate.check_p(norm, name=f"threats ({item!r})")
        (e,) = parse_eps([eps])
        pairs.append((p, e))
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"Expected distinct threats in `threats` (--threats). Received: threats={threats!r}")
    return sorted(pairs)


def _supports(name, p):
    try:
        attack_norm(name, p)
    except ValueError:
        return False
    return True


def pair_attacks(names, threats):
    """Pairs each attack with the threats of the norms it supports.

    Args:
        names: attack names (`ATTACKS` or "autoattack", expanded per norm).
        threats: (p, eps) pairs, e.g. from `parse_threats`.

    Returns:
        A list of `(name, p, eps_list)`: budget attacks get the budgets of
        their norm, minimization attacks run once per norm (cut to each eps).

    Raises:
        ValueError: on an unknown name, an attack that supports none of the
            threats' norms, or a norm no attack supports.
    """
    norms = sorted({p for p, _ in threats})
    out = []
    for raw in dict.fromkeys(names):
        paired = False
        for p in norms:
            for name in expand_names([raw], p):
                if name not in ATTACKS:
                    attack_norm(name, p)  # raises, naming the known attacks
                if _supports(name, p):
                    out.append((name, p, [e for q, e in threats if q == p]))
                    paired = True
        if not paired:
            raise ValueError(
                f"Expected every attack in `attacks` (--attacks) to support a norm of `threats`. Received: "
                f"{raw!r} with norms {[_p_text(p) for p in norms]}")
    for p in norms:
        if not any(q == p for _, q, _ in out):
            raise ValueError(f"Expected an attack in `attacks` (--attacks) for the {_p_text(p)} threats. "
                             f"Received: attacks={list(names)!r}")
    return out


def _p_text(p):
    return "Linf" if p == np.inf else f"L{p}"


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
