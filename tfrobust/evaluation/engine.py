"""The robust-accuracy engine: one model, one dataset, several attacks.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks.pgd import FGSM, PGD
from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
from tfrobust.evaluation import evaluate

result = evaluate(model, (x, y), {
    "fgsm": FGSM(0.1),
    "pgd": PGD(threats.LpBall(np.inf, 0.1), steps=40, seed=0),
    "cw": CarliniWagnerL2(steps=100),
}, threats=[threats.LpBall(2, e) for e in (0.5, 1.0, 2.0)])
print(result.summary())
result.save("reports/run1")
```

The examples are attacked batch by batch (each attack compiles its own loop
once per batch shape; a short last batch is padded with its own examples so
that it reuses that trace). Every verdict comes from the model: an example
counts as robust to an attack if the model classifies it correctly both
clean and at the attack's `x_adv`.
"""

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust.attacks.base import MinimizationAttack
from tfrobust.evaluation import inputs
from tfrobust.evaluation import result as result_lib
from tfrobust.evaluation import sanity

__all__ = ["RobustAccuracyCurve", "evaluate", "robust_accuracy_curve"]

_SANITY_SUBSET = 100


def _norms(delta):
    flat = delta.reshape(delta.shape[0], -1).astype(np.float64)
    return {"l1": np.abs(flat).sum(1), "l2": np.sqrt((flat**2).sum(1)), "linf": np.abs(flat).max(1)}


def _run_attack(attack, model, x, y, targeted):
    """One batch: returns `(x_adv, min_norm or None)` as NumPy arrays."""
    if not isinstance(attack, MinimizationAttack):
        return np.asarray(attack(model, x, y, targeted=targeted)), None
    # One minimization gives both the smallest perturbation and the result
    # under the budget (as MinimizationAttack.__call__ would return it).
    res = attack.minimize(model, x, y, targeted=targeted)
    x_adv = res.x_adv
    threat = attack.threat
    if threat is not None:
        x = tf.convert_to_tensor(x)
        within = result_lib.inside(np.asarray(threat.norm(x_adv - x)), float(threat.eps))
        x_adv = tf.where(within.reshape((-1,) + (1,) * (x.shape.rank - 1)), x_adv, x)
        lo, hi = attack.bounds
        x_adv = tf.clip_by_value(x + threat.project_with_box(x, x_adv - x, attack.bounds), lo, hi)
    return np.asarray(x_adv), np.asarray(res.norm)


def _predict(model, x):
    return np.asarray(tf.argmax(model(tf.constant(x)), axis=-1, output_type=tf.int64))


def evaluate(model, data, attacks, *, threats=None, targets=None, batch_size=256,
             bounds=(0.0, 1.0), seed=0, sanity_checks=True, keep_adversarials=False, verbose=1):
    """Evaluates a model against attacks: per-example results, worst cases, checks.

    For each attack the examples are attacked with their true labels (or
    with `targets`); the model's prediction on `x_adv` decides. For each
    threat `(p, eps)` (the attacks' threats and `threats`), an example is
    robust only if it is correct clean and no attack judged in norm p (its
    threat's p, or the `norm_p` of a minimization attack without threat)
    produced an adversarial example within eps of it: every attack of that
    threat, attacks of a smaller eps of the same norm, and unbounded
    minimization attacks through `norm > eps`.

    Args:
        model: callable mapping a float32 NHWC batch to logits `[B, K]`.
        data: `(x, y)` NumPy arrays (x float in `bounds`, y int `[N]`) or a
            `tf.data.Dataset` of `(x, y)` batches.
        attacks: dict name -> `Attack`, or a list of attacks (named from
            class and threat, e.g. "PGD-Linf-0.1").
        threats: optional eps grid: `LpBall`s or `(p, eps)` pairs at which
            to report the worst case too (e.g. for minimization attacks).
        targets: None (untargeted), "random" (a random class other than the
            label, seeded), an int class, or an int array `[N]`.
        batch_size: examples per attack call (for array data).
        bounds: `(lo, hi)` input domain; every attack must use it.
        seed: seed of random targets and of the sanity checks' attack.
        sanity_checks: run the five checks of `tfrobust.evaluation.sanity`
            (they warn with `RobustnessWarning` and go to the report).
        keep_adversarials: keep `x` and each attack's `x_adv` in the result.
        verbose: 0 silent, 1 prints the summary table at the end.

    Returns:
        An `EvaluationResult`.

    Raises:
        ValueError: on a non-callable model, bad data (dtype, shape, NaN,
            outside bounds), no or non-Attack attacks, attacks with other
            bounds, a grid threat of a norm no attack is judged in, bad
            targets or hyper-parameters.
    """
    if not callable(model):
        raise ValueError(f"Expected `model` to be a callable returning logits. Received: model={model!r}")
    from tfrobust.threats import Box

    box = Box.coerce(bounds)
    bounds = (box.lo, box.hi)
    batch_size = inputs.check_int(batch_size, "batch_size", 1)
    seed = inputs.check_int(seed, "seed", 0)
    verbose = inputs.check_int(verbose, "verbose", 0)
    named = inputs.name_attacks(attacks, bounds)
    described = {name: inputs.describe(a) for name, a in named.items()}
    grid = inputs.grid_keys(threats)
    norms_judged = {d[1] for d in described.values() if d[1] is not None}
    for p, eps in grid:
        if p not in norms_judged:
            raise ValueError(
                "Expected every threat in `threats` to have an attack judged in its norm. "
                f"Received: {result_lib.threat_label(p, eps)} with attack norms "
                f"{sorted(result_lib.p_label(q) for q in norms_judged)}"
            )
    inputs.check_targets(targets, data)
    targeted = targets is not None
    rng = np.random.default_rng(seed)

    store = {name: {"x_adv": [], "pred": [], "min_norm": [], "norms": []} for name in named}
    seconds = dict.fromkeys(named, 0.0)
    ys, y_targets, clean_preds, xs = [], [], [], []
    subset_x, subset_y = [], []
    full, offset, num_classes = None, 0, None
    for xb, yb in inputs.batches(data, batch_size, bounds):
        n = xb.shape[0]
        full = full or n
        if n < full:
            xb_run, yb_run = inputs.pad(xb, full), inputs.pad(yb, full)
        else:
            xb_run, yb_run = xb, yb
        logits = np.asarray(model(tf.constant(xb_run)))
        if logits.ndim != 2:
            raise ValueError(f"Expected the model to return logits [B, K]. Received: shape {logits.shape}")
        num_classes = logits.shape[1]
        if yb.min() < 0 or yb.max() >= num_classes:
            raise ValueError(f"Expected labels in [0, {num_classes}). Received: y in [{yb.min()}, {yb.max()}]")
        tb = inputs.batch_targets(targets, yb, num_classes, rng, offset)
        if targeted:
            if tb.min() < 0 or tb.max() >= num_classes:
                raise ValueError(
                    f"Expected targets in [0, {num_classes}). Received: targets in [{tb.min()}, {tb.max()}]"
                )
            y_targets.append(tb)
        y_attack = inputs.pad(tb, full) if targeted else yb_run
        for name, attack in named.items():
            start = time.perf_counter()
            x_adv, min_norm = _run_attack(attack, model, tf.constant(xb_run), tf.constant(y_attack), targeted)
            pred = _predict(model, x_adv)
            seconds[name] += time.perf_counter() - start
            entry = store[name]
            entry["pred"].append(pred[:n])
            entry["norms"].append(_norms(x_adv[:n] - xb))
            if min_norm is not None:
                entry["min_norm"].append(min_norm[:n])
            if keep_adversarials:
                entry["x_adv"].append(x_adv[:n])
        ys.append(yb)
        clean_preds.append(np.argmax(logits[:n], -1))
        if keep_adversarials:
            xs.append(xb)
        if sum(len(s) for s in subset_y) < _SANITY_SUBSET:
            subset_x.append(xb)
            subset_y.append(yb)
        offset += n
    if full is None:
        raise ValueError("Expected `data` to hold at least one example. Received: an empty dataset")

    y = np.concatenate(ys)
    y_target = np.concatenate(y_targets) if targeted else None
    clean_pred = np.concatenate(clean_preds)
    clean = clean_pred == y
    results = {}
    for name, attack in named.items():
        entry, (key, p, steps, black_box) = store[name], described[name]
        pred = np.concatenate(entry["pred"])
        if targeted:
            broken = (pred == y_target) & (y_target != y)
        else:
            broken = pred != y
        norms = {k: np.concatenate([b[k] for b in entry["norms"]]).astype(np.float32)
                 for k in result_lib.NORM_KEYS}
        results[name] = result_lib.AttackResult(
            name=name, config=attack.get_config(), threat=key, p=p,
            minimization=isinstance(attack, MinimizationAttack), steps=steps, black_box=black_box,
            broken=broken, robust=clean & ~broken, pred=pred, norms=norms,
            min_norm=np.concatenate(entry["min_norm"]) if entry["min_norm"] else None,
            seconds=seconds[name],
            x_adv=np.concatenate(entry["x_adv"]) if keep_adversarials else None,
        )

    keys = sorted({d[0] for d in described.values() if d[0] is not None} | set(grid))
    threat_results = {}
    for p, eps in keys:
        robust, per_attack = clean.copy(), {}
        for name, a in results.items():
            if a.p != p:
                continue
            hit = a.broken_within(p, eps)
            robust &= ~hit
            per_attack[name] = float(np.mean(clean & ~hit))
        t = result_lib.ThreatResult(p, eps, robust, per_attack)
        threat_results[t.label] = t

    flags = []
    if sanity_checks:
        flags = _sanity(model, named, results, threat_results, described,
                        np.concatenate(subset_x)[:_SANITY_SUBSET],
                        np.concatenate(subset_y)[:_SANITY_SUBSET], bounds, seed)
    result = result_lib.EvaluationResult(
        y=y, y_target=y_target, clean_pred=clean_pred, attacks=results, threats=threat_results,
        sanity_flags=flags, sanity_checks_run=bool(sanity_checks), num_classes=int(num_classes),
        bounds=bounds, x=np.concatenate(xs) if keep_adversarials else None,
    )
    if verbose:
        print(result.summary())
    return result


def _sanity(model, named, results, threat_results, described, x, y, bounds, seed):
    flags = [
        sanity.check_randomness(model, x, attacks=list(named.values())),
        sanity.check_gradients(model, x, y),
    ]
    budget, everyone = [], []
    for t in threat_results.values():
        for name in t.per_attack:
            key, _, steps, black_box = described[name]
            record = sanity.AttackRecord(name, (t.p, t.eps), t.per_attack[name], steps, black_box)
            # Attacks of exactly this threat compete; so do unbounded
            # minimization attacks of its norm, but only against black-box
            # ones: a minimal-norm search (DeepFool, C&W) may legitimately
            # lose to FGSM at a given eps, since it does not spend the budget.
            if key == (t.p, t.eps):
                budget.append(record)
            if key is None or key == (t.p, t.eps):
                everyone.append(record)
    flags.append(sanity.check_one_step_vs_iterative(budget))
    flags.append(sanity.check_black_box_vs_white_box(everyone))
    flags.append(sanity.check_large_eps(model, x, y, bounds=bounds, seed=seed))
    return [f for f in flags if f is not None]


class RobustAccuracyCurve(NamedTuple):
    """Robust accuracy of one attack family over a list of eps.

    Attributes:
        eps: float `[E]`.
        robust_accuracy: float `[E]`, robust accuracy of the attack built for
            each eps.
        clean_accuracy: the clean accuracy.
        result: the underlying `EvaluationResult` (attacks named "eps=<eps>").
    """

    eps: np.ndarray
    robust_accuracy: np.ndarray
    clean_accuracy: float
    result: object


def robust_accuracy_curve(model, x, y, attack_factory, eps_list, *, targets=None, batch_size=256,
                          bounds=(0.0, 1.0), seed=0, verbose=0):
    """Sweeps eps for one attack family.

    Args:
        model: callable returning logits.
        x: float images in `bounds`.
        y: int labels `[N]`.
        attack_factory: callable `eps -> Attack`.
        eps_list: non-empty sequence of eps >= 0.
        targets, batch_size, bounds, seed, verbose: as in `evaluate`
            (no sanity checks are run).

    Returns:
        A `RobustAccuracyCurve`.

    Raises:
        ValueError: on an empty or negative `eps_list`, a non-callable
            factory, or anything `evaluate` rejects.
    """
    if not callable(attack_factory):
        raise ValueError(f"Expected `attack_factory` to be callable eps -> Attack. Received: {attack_factory!r}")
    eps = np.asarray(list(eps_list), np.float64)
    if eps.ndim != 1 or eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"Expected `eps_list` to be a non-empty list of finite eps >= 0. Received: eps_list={eps_list!r}")
    attacks = {f"eps={e:g}": attack_factory(float(e)) for e in eps}
    if len(attacks) != eps.size:
        raise ValueError(f"Expected distinct values in `eps_list`. Received: eps_list={eps_list!r}")
    result = evaluate(model, (x, y), attacks, targets=targets, batch_size=batch_size, bounds=bounds,
                      seed=seed, sanity_checks=False, verbose=verbose)
    acc = np.array([result.attacks[name].robust_accuracy for name in attacks])
    return RobustAccuracyCurve(eps, acc, result.clean_accuracy, result)
