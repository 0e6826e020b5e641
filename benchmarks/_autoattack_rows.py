"""The AutoAttack rows of `attacks_vs_peers.py`: APGD, Square and the ensemble vs ART.

Kept apart from the older rows so that each file reads in one sitting; the
rows go through the same `row(...)` builder, warm-up and interleaved timing.

Matching settings. Croce & Hein's APGD starts with step 2·eps; ART's
`AutoProjectedGradientDescent` takes its initial step as `eps_step`, so ART
gets `eps_step = 2 * eps`. Both run one restart of 100 iterations (ART's
AutoAttack default of 5 restarts is overridden to keep budgets equal).
ART's AutoAttack has no FAB and no APGD-T over the top-9 classes; its
ensemble here is ART's own default members at the same budgets (APGD-CE,
APGD-DLR, Square with `--square_queries`; its DeepFool member left out as it
is a minimal-norm attack that AutoAttack does not use). The tfrobust
ensemble is AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square).
An ensemble is judged by what it leaves robust, so "no higher than ART's"
is the strength criterion, time the speed one. Both ensembles' Square
members get `--square_queries` (AutoAttack's standard is 5000).
"""

import numpy as np

from tfrobust import attacks as tfr
from tfrobust.evaluation import auto_attack
from tfrobust.threats import LpBall

__all__ = ["add_rows", "ROBUST_MODEL_ROWS"]

# The rows run again on the adversarially trained model (name prefixes).
ROBUST_MODEL_ROWS = ("PGD-40 Linf", "APGD-CE Linf", "APGD-CE-40 Linf", "APGD-T Linf", "FAB-T Linf",
                     "Square Linf", "AutoAttack Linf",
                     "PGD-40 L2", "APGD-CE L2", "APGD-T L2", "FAB-T L2", "Square L2", "AutoAttack L2")


def _tfr(model, attack):
    return lambda quick: (lambda x, y: attack(model, x, y).numpy())


def _ensemble(model, threat, bs, seed, square_queries, art_members=False):
    # AutoAttack's standard members, with Square at the run's query budget
    # (the same as ART's Square member); or ART's members (APGD-CE,
    # APGD-DLR, Square), the same work on both sides.
    square = tfr.Square(threat, n_queries=square_queries, p_init=0.8, seed=seed)
    members = ["apgd-ce", "apgd-dlr", square] if art_members else ["apgd-ce", "apgd-t", "fab-t", square]

    def run(x, y):
        return auto_attack(model, x, y, threat, version=members, batch_size=bs, seed=seed).x_adv

    return lambda quick: run


def add_rows(row, model, *, n, bs, seed, square_queries, q):
    """Adds the APGD / Square / AutoAttack rows through `row` (see `specs`)."""
    inf = np.inf
    for p, eps, label in ((inf, 0.3, "Linf"), (2, 2.0, "L2")):
        threat = LpBall(p, eps)
        for loss, art_loss in (("ce", "cross_entropy"), ("dlr", "difference_logits_ratio")):
            row(f"APGD-{loss.upper()} {label} (eps {eps:g}, 100 steps, 1 restart)", p, eps, n, bs, "budget",
                _tfr(model, tfr.APGD(threat, loss=loss, steps=100, seed=seed)),
                art=lambda ev, c, b, k, p=p, eps=eps, art_loss=art_loss: ev.AutoProjectedGradientDescent(
                    c, norm=p, eps=eps, eps_step=2 * eps, max_iter=q(k, 100), nb_random_init=1,
                    batch_size=b, loss_type=art_loss, verbose=False),
                with_peers=("art",))
        row(f"APGD-T {label} (eps {eps:g}, 100 steps, 9 targets)", p, eps, n, bs, "budget",
            _tfr(model, tfr.APGDT(threat, steps=100, seed=seed)))
        row(f"FAB-T {label} (eps {eps:g}, 100 steps, 9 targets)", p, eps, n, bs, "budget",
            _tfr(model, tfr.FABT(threat, steps=100, seed=seed, budgeted=True)))
        row(f"Square {label} (eps {eps:g}, {square_queries} queries, p_init 0.8)", p, eps, n, bs, "budget",
            _tfr(model, tfr.Square(threat, n_queries=square_queries, p_init=0.8, seed=seed)),
            art=lambda ev, c, b, k, p=p, eps=eps: ev.SquareAttack(
                c, norm=p, eps=eps, max_iter=q(k, square_queries), p_init=0.8, nb_restarts=1, batch_size=b,
                verbose=False),
            with_peers=("art",))

        def art_ensemble(ev, c, b, k, p=p, eps=eps):
            members = [
                ev.AutoProjectedGradientDescent(c, norm=p, eps=eps, eps_step=2 * eps, max_iter=q(k, 100),
                                                nb_random_init=1, batch_size=b, loss_type=loss, verbose=False)
                for loss in ("cross_entropy", "difference_logits_ratio")
            ] + [ev.SquareAttack(c, norm=p, eps=eps, max_iter=q(k, square_queries), p_init=0.8, nb_restarts=1,
                                 batch_size=b, verbose=False)]
            return ev.AutoAttack(c, norm=p, eps=eps, eps_step=2 * eps, attacks=members, batch_size=b)

        # The sequence builds new attacks (and traces them) per call, so the
        # row has no warm-up: its time includes tracing, a few seconds.
        row(f"AutoAttack {label} (eps {eps:g}; tfrobust: standard; ART: APGD-CE, APGD-DLR, Square)",
            p, eps, n, bs, "budget", _ensemble(model, threat, bs, seed, square_queries), art=art_ensemble,
            with_peers=("art",), warmup=False)
        row(f"AutoAttack {label} with ART's members (eps {eps:g}; both: APGD-CE, APGD-DLR, Square)",
            p, eps, n, bs, "budget", _ensemble(model, threat, bs, seed, square_queries, art_members=True),
            art=art_ensemble, with_peers=("art",), warmup=False)
    # The same number of gradient evaluations: is APGD's schedule worth it?
    row("APGD-CE-40 Linf (eps 0.3, 40 steps; compare PGD-40 Linf)", inf, 0.3, n, bs, "budget",
        _tfr(model, tfr.APGD(LpBall(inf, 0.3), loss="ce", steps=40, seed=seed)))
