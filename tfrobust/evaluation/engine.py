"""The robust-accuracy engine: one model, one dataset, attacks and certificates.

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

`evaluate` is three steps, each in its own module: running the attacks
(`run.py`: batch by batch, one attack after the other, per-example
results), aggregating per threat (`aggregate.py`: the worst case over the
attacks judged in each `LpBall`'s norm) and the sanity checks
(`sanity/runner.py`: a check that raises becomes a flag). Certificates
(`certificates.py`) are compared with the attacks on the same examples.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.evaluation import aggregate
from tfrobust.evaluation import certificates as cert_lib
from tfrobust.evaluation import inputs
from tfrobust.evaluation import run
from tfrobust.evaluation import sanity
from tfrobust.evaluation.result import EvaluationResult

__all__ = ["RobustAccuracyCurve", "evaluate", "robust_accuracy_curve"]

_SANITY_SUBSET = 100


class _Data(NamedTuple):
    batches: list
    y: np.ndarray
    y_target: object
    clean_pred: np.ndarray
    clean_nonfinite: int
    num_classes: int
    x: object
    subset: tuple
    certified: dict


def _clean_logits(model, x):
    logits = tf.convert_to_tensor(model(tf.constant(x)))
    if logits.shape.rank != 2:
        raise ValueError(f"Expected the model to return logits [B, K]. Received: shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(
            "Expected the model to return logits of at least 2 classes (one logit can never be "
            f"misclassified by argmax). Received: shape {tuple(logits.shape)}"
        )
    return logits


def _read_data(model, data, *, batch_size, bounds, targets, rng, keep_x, certifiers):
    """Checks and batches the data, runs the clean pass and the per-batch certifiers."""
    batches, ys, y_targets, preds, xs, sub_x, sub_y = [], [], [], [], [], [], []
    certified = {name: [] for name in certifiers}
    full, offset, num_classes, bad = None, 0, None, 0
    targeted = targets is not None
    for xb, yb in inputs.batches(data, batch_size, bounds):
        if full is None:
            inputs.check_model_input(model, xb.shape)
        n = xb.shape[0]
        full = full or n
        x_run = inputs.pad(xb, full) if n < full else xb
        logits = _clean_logits(model, x_run)
        num_classes = logits.shape[1]
        pred, nonfinite = run.predictions(logits)
        inputs.check_labels(yb, num_classes, "data")
        tb = inputs.batch_targets(targets, yb, num_classes, rng, offset)
        if targeted:
            if tb.min() < 0 or tb.max() >= num_classes:
                raise ValueError(
                    f"Expected `targets` in [0, {num_classes}). Received: targets in [{tb.min()}, {tb.max()}]"
                )
            y_targets.append(tb)
        y_run = inputs.pad(tb if targeted else yb, full)
        batches.append(run.Batch(xb, yb, x_run, y_run, n))
        ys.append(yb)
        preds.append(pred[:n])
        bad += int(nonfinite[:n].sum())
        if keep_x:
            xs.append(xb)
        if sum(len(s) for s in sub_y) < _SANITY_SUBSET:
            sub_x.append(xb)
            sub_y.append(yb)
        for name, certify in certifiers.items():
            certified[name].append(_check_certificate(certify(xb, yb), n, f"certificates[{name!r}]"))
        offset += n
    if full is None:
        raise ValueError("Expected `data` to hold at least one example. Received: an empty dataset")
    return _Data(
        batches, np.concatenate(ys), np.concatenate(y_targets) if targeted else None,
        np.concatenate(preds), bad, int(num_classes), np.concatenate(xs) if keep_x else None,
        (np.concatenate(sub_x)[:_SANITY_SUBSET], np.concatenate(sub_y)[:_SANITY_SUBSET]),
        {name: cert_lib.Certificate.concatenate(parts) for name, parts in certified.items()},
    )


def _check_certificate(cert, n, where):
    if not isinstance(cert, cert_lib.Certificate) or len(cert) != n:
        raise ValueError(
            f"Expected {where} to be a Certificate of the {n} examples evaluated. "
            f"Received: {cert!r}"
        )
    return cert


def _split_certificates(certificates):
    """`(given, certifiers)`: ready `Certificate`s and callables `(x, y) -> Certificate`."""
    if certificates is None:
        return {}, {}
    if isinstance(certificates, cert_lib.Certificate) or callable(certificates):
        certificates = [certificates]
    items = (list(certificates.items()) if isinstance(certificates, dict)
             else [(f"certificate-{i + 1}", c) for i, c in enumerate(certificates)])
    given, certifiers = {}, {}
    for name, c in items:
        if isinstance(c, cert_lib.Certificate):
            given[name] = c
        elif callable(c):
            certifiers[name] = c
        else:
            raise ValueError(
                "Expected `certificates` to hold Certificate objects or callables "
                f"(x, y) -> Certificate. Received: {name}={c!r}"
            )
    return given, certifiers


def _radii(cert, threats, radii):
    if radii is not None:
        return radii
    eps = sorted({t.eps for t in threats.values() if t.p == cert.p})
    if eps:
        return [0.0] + [e for e in eps if e > 0]
    finite = cert.radius[np.isfinite(cert.radius)]
    return list(np.linspace(0.0, float(finite.max()) if finite.size else 1.0, 6))


def evaluate(model, data, attacks, *, threats=None, targets=None, batch_size=256,
             bounds=(0.0, 1.0), seed=0, sanity_checks=True, keep_adversarials=False,
             certificates=None, certificate_radii=None, on_attack_result=None, verbose=1,
             strategy=None):
    """Evaluates a model against attacks (and certificates): per-example results, checks.

    For each attack the examples are attacked with their true labels (or
    with `targets`); the model's prediction on `x_adv` decides, and an
    `x_adv` where the model's logits are non-finite is never counted as
    misclassified (the count is reported, and flagged). For each threat
    (the attacks' threats and `threats`, as `LpBall`s) the worst case over
    the attacks judged in its norm is reported (see `aggregate`).

    Args:
        model: callable mapping a float32 NHWC batch to logits `[B, K]`. A
            model may declare `randomized`, `optimizes_at_inference` and
            `uses_eot` (see `tfrobust.evaluation`).
        data: `(x, y)` NumPy arrays (x float in `bounds`, y int `[N]`) or a
            batched `tf.data.Dataset` of `(x, y)`.
        attacks: dict name -> attack, or a list of attacks (named from
            class and threat, e.g. "PGD-Linf-0.1"). tfrobust `Attack`s, or
            callables `(model, x, y, targeted=...) -> x_adv` (kept inside
            their `threat` ∩ box by the engine).
        threats: optional eps grid: `LpBall`s or `(p, eps)` pairs at which
            to report the worst case too (e.g. for minimization attacks).
        targets: None (untargeted), "random" (a random class other than the
            label, seeded), an int class, or an int array `[N]`.
        batch_size: examples per attack call (for array data).
        bounds: `(lo, hi)` input domain; every attack must use it.
        seed: seed of random targets and of the sanity checks' attack.
        sanity_checks: run the checks of `tfrobust.evaluation.sanity`
            (they warn with `RobustnessWarning` and go to the report; a
            check that cannot run is reported, never fatal).
        keep_adversarials: keep `x` and each attack's `x_adv` in the result.
        certificates: optional dict name -> `certificates.Certificate` of
            the N examples (in data order), or -> callable `(x, y) ->
            Certificate` run per batch; a list is named "certificate-1"...
            Each is reported next to the attacks of its norm.
        certificate_radii: radii of the comparison (default: 0 and the eps
            of the evaluated threats of the certificate's norm).
        on_attack_result: optional callable `(name, partial) -> None`
            called as each attack finishes, with the attack's name and an
            `EvaluationResult` of the attacks finished so far (no sanity
            checks, no certificates), e.g. to write partial results.
        verbose: 0 silent, 1 prints the summary table at the end.
        strategy: optional `tf.distribute.Strategy` (e.g.
            `tfrobust.training.make_strategy("mirrored")` or
            `"multi_worker"`): the attacks' batches are dealt to its
            replicas, each attacking whole batches inside `strategy.run`,
            and the per-example results are gathered back in data order
            (`tfrobust.distribute`). Results equal those of
            `strategy=None` (each batch draws from its own random stream
            in both paths). Create the model under `strategy.scope()` and
            call `evaluate` outside it; attacks must be graph-compatible
            (tfrobust's are). The clean pass, certificates and sanity
            checks run on each process's default device; every worker of
            a multi-worker run returns the full result (let only the
            chief write it: `tfrobust.distribute.output_dir`).
            A replica attacks whole batches of `batch_size` (R per step), so
            with fewer than R batches some replicas idle.

    Returns:
        An `EvaluationResult`.

    Raises:
        ValueError: on a non-callable model, bad data (dtype, shape, NaN,
            outside bounds, an unbatched dataset, images of another shape
            than the model's input, labels outside the model's classes),
            no or non-callable attacks, attacks with other bounds, a grid
            threat of a norm no attack is judged in, bad targets,
            certificates or hyper-parameters.
    """
    if not callable(model):
        raise ValueError(f"Expected `model` to be a callable returning logits. Received: model={model!r}")
    from tfrobust.threats import Box

    box = Box.coerce(bounds)
    bounds = (box.lo, box.hi)
    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    seed = _validate.check_int(seed, name="seed", minimum=0)
    verbose = _validate.check_int(verbose, name="verbose", minimum=0)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise _validate.error("strategy", "a tf.distribute.Strategy or None", strategy)
    sanity_checks = _validate.check_bool(sanity_checks, name="sanity_checks")
    keep_adversarials = _validate.check_bool(keep_adversarials, name="keep_adversarials")
    if on_attack_result is not None and not callable(on_attack_result):
        raise _validate.error("on_attack_result", "a callable or None", on_attack_result)
    named = inputs.name_attacks(attacks, bounds)
    grid = inputs.grid(threats)
    aggregate.check_grid(grid, {inputs.capabilities(a).p for a in named.values()} - {None})
    inputs.check_targets(targets, data)
    given, certifiers = _split_certificates(certificates)

    d = _read_data(model, data, batch_size=batch_size, bounds=bounds, targets=targets,
                   rng=np.random.default_rng(seed), keep_x=keep_adversarials, certifiers=certifiers)
    for name, cert in given.items():
        _check_certificate(cert, d.y.shape[0], f"certificates[{name!r}]")
    clean = d.clean_pred == d.y

    def partial(results, grid=(), checked=False):
        return EvaluationResult(
            y=d.y, y_target=d.y_target, clean_pred=d.clean_pred, attacks=dict(results),
            threats=aggregate.per_threat(results, clean, grid), sanity_flags=[],
            sanity_checks_run=checked, num_classes=d.num_classes, bounds=bounds, x=d.x,
        )

    done = {}

    def progress(attack_result):
        done[attack_result.name] = attack_result
        on_attack_result(attack_result.name, partial(done))

    results = run.run_attacks(model, named, d.batches, y=d.y, y_target=d.y_target, clean=clean,
                              bounds=bounds, keep_adversarials=keep_adversarials,
                              on_result=progress if on_attack_result is not None else None,
                              strategy=strategy)
    result = partial(results, grid, sanity_checks)
    for name, cert in {**given, **d.certified}.items():
        result.certificates[name] = cert_lib.compare(
            name, cert, d.y, _radii(cert, result.threats, certificate_radii),
            adversarial_norm=result.adversarial_norm(cert.p), clean_correct=clean)
    if sanity_checks:
        result.sanity_flags = sanity.run_checks(
            model, named.values(), results, result.threats, *d.subset, bounds=bounds, seed=seed,
            clean_nonfinite=d.clean_nonfinite, certificates=result.certificates.values())
    if verbose:
        print(result.summary())
    return result


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
