"""rCNN / rCNN+ evaluation (`apps/test_rCNN.py`, mirrors `test_script.py`):
clean accuracy with m samples, then the paper's attack battery per threat.

Two views of one trained model:
- **static**: beta2 = 0 and m = 1, a deterministic, differentiable model
  attacked by FGSM, PGD, MI-FGSM, APGD-CE, APGD-T, FAB-T, Square, C&W (L2;
  at L∞ the C&W margin loss maximized by PGD), DAA (L∞) and EAD (L1) with
  exact gradients (the paper's "static" column, plus the AutoAttack members);
- **randomized**: the deployed model (beta2 > 0, m samples), attacked
  adaptively by PGD through BPDA (the beta2 = 0 reconstruction's gradient)
  with EoT over `eot_samples` draws (the paper's attack; `adaptive_attacks`
  adds APGD-CE and EoT through the randomized model's own gradient), and
  judged on its m-sample prediction.

Robust accuracy is reported per attack and as the worst case over all
attacks of a threat (the honest number; the paper reports per-attack ones).
For the deployed model the worst case is taken per point over the adaptive
attacks and the static examples judged at its beta2, on the images both cover. Every
run saves its per-example verdicts in `points.npz` (`static/<threat>/<attack>`,
`judged/<beta2>/<threat>/<attack>`, `adaptive/<beta2>/<threat>/<attack>`, `y`), so
that `rbf_cnn_points.combine` can take worst cases over several runs.

The static adversarial examples are also judged by the randomized model at
each beta2 > 0 of the sweep (the paper's Table VII protocol: examples made
with z_j = mu_j, classified by the m-sample model), and the adaptive attack
can run at several beta2 (`adaptive_beta2`). Black-box rows: SPSA on the
static view and, with `transfer_from` (an undefended CNN), PGD / FGSM /
C&W / EAD made on that CNN (the paper's "(Black-box)" rows). A model without RBF knobs (a plain or Madry
CNN) gets the static battery only, so the baselines share one protocol.
A threat is `linf`, `l2`, `l1` (the paper's 0.3, 2.0, 15) or `name:eps`
(e.g. `linf:0.35`, Table IV).
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate

THREATS = {"linf": (np.inf, 0.3), "l2": (2, 2.0), "l1": (1, 15.0)}


@dataclasses.dataclass
class EvalConfig:
    model: str = "runs/rcnn/model.keras"
    dataset: str = "mnist"
    data_dir: str = None
    out_dir: str = "runs/rcnn/test"
    n_eval: int = 1000
    n_adaptive: int = 200
    threats: tuple = ("linf", "l2", "l1")
    beta1: float = 25.0
    beta2: float = 1.75
    samples: int = 10
    steps: int = 40
    auto_steps: int = 100            # APGD-CE, APGD-T, FAB-T (AutoAttack's 100)
    square_queries: int = 1000
    cw_steps: int = 200              # C&W L2 / EAD; C&W at L∞ runs `steps` PGD steps
    daa_steps: int = 200             # DAA (L∞): the paper's 200 steps of eps / 30
    daa_restarts: int = 1            # the DAA paper uses 50 on MNIST
    eot_samples: int = 50
    adaptive_steps: int = 20
    beta2_sweep: tuple = (0.0, 1.0, 1.75)
    adaptive_beta2: tuple = None     # default: (beta2,)
    # Adaptive attacks on the deployed model: PGD or APGD-CE, through BPDA
    # (the paper's: the beta2 = 0 reconstruction's gradient) or through the
    # randomized model itself (its reconstruction is differentiable).
    adaptive_attacks: tuple = ("BPDA+EoT PGD",)
    # Reconstructions per model call in the adaptive attacks (images x EoT
    # draws x m): bounds their memory (CIFAR's 237 templates need ~512 on 24 GB).
    eot_batch: int = 4096
    attacks: tuple = None            # static attacks to run (None: all); names as in the results
    auto_targets: int = 9            # target classes of APGD-T / FAB-T
    spsa_steps: int = 0              # 0: no SPSA (paper: 100 steps of 8192 evaluations)
    spsa_samples: int = 128
    transfer_from: str = None        # an undefended classifier (.keras) for the transfer rows
    figures: bool = False            # Fig. 3 (reconstructions) and Fig. 5 (saliency, needs transfer_from)
    batch_size: int = 250
    seed: int = 0
    # tf.distribute strategy name of the static attacks (the randomized
    # BPDA+EoT view stays on one device: the model's own sampling is not
    # split into per-batch streams); only the chief writes out_dir.
    strategy: str = "default"


def parse_threat(name):
    """`(p, eps)` of a threat name: `linf`, `l2`, `l1` or `name:eps`.

    Raises:
        ValueError: on an unknown norm or a bad eps.
    """
    norm, _, eps = str(name).partition(":")
    p, default = THREATS[_validate.check_choice(norm, name="threats", choices=tuple(THREATS))]
    if not eps:
        return p, default
    try:
        value = float(eps)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise _validate.error("threats", "a norm or norm:eps with eps > 0 (e.g. linf:0.35)", name)
    return p, value


def _deterministic(model):
    return lambda z: model.classifier(model.reconstruction(z, beta2=0.0), training=False)


def _white_box(ball, p, eps, config):
    from tfrobust import attacks

    steps = config.steps
    out = {"FGSM": attacks.FGSM(eps, p), f"PGD-{steps}": attacks.PGD(ball, steps=steps, seed=config.seed)}
    if p == np.inf:
        # The L∞ "CW" of the paper's Table I: no attack code ships with the
        # original, and C&W's L∞ attack is usually run, as in Madry et al.'s
        # MNIST challenge, as PGD on the C&W margin of the logits. Stopping
        # once the whole batch is adversarial returns the same examples
        # (the first adversarial iterate is kept either way).
        out["CW"] = attacks.PGD(ball, steps=steps, loss="margin", seed=config.seed, early_stop=True)
    if p == 2:
        out["CW"] = attacks.CarliniWagnerL2(ball, binary_search_steps=5, steps=config.cw_steps)
    if p == 1:
        out["EAD"] = attacks.EAD(ball, binary_search_steps=5, steps=config.cw_steps)
    return out


def _static_attacks(model, p, eps, config, source=None):
    from tfrobust import attacks, threats
    from tfrobust.attacks.apgd import APGD, APGDT
    from tfrobust.attacks.daa import DAA
    from tfrobust.attacks.fab import FABT
    from tfrobust.attacks.spsa import SPSA
    from tfrobust.attacks.square import Square
    from tfrobust.attacks.transfer import TransferAttack
    from tfrobust.attacks.view import ViewAttack

    ball, seed, targets = threats.LpBall(p, eps), config.seed, config.auto_targets
    out = _white_box(ball, p, eps, config)
    out.update({
        "MI-FGSM": attacks.MIFGSM(ball, steps=config.steps),
        "APGD-CE": APGD(ball, steps=config.auto_steps, seed=seed),
        "APGD-T": APGDT(ball, steps=config.auto_steps, n_target_classes=targets, seed=seed),
        "FAB-T": FABT(ball, steps=config.auto_steps, n_target_classes=targets, seed=seed),
    })
    if p != 1:
        out["Square"] = Square(ball, n_queries=config.square_queries, seed=seed)
    if p == np.inf:
        # The paper's DAA defaults (blob, cross-entropy, c = 1.1, 200 steps of
        # eps / 30, random start); the kernel couples the examples of a batch.
        out["DAA"] = DAA(ball, steps=config.daa_steps, restarts=config.daa_restarts, seed=seed, early_stop=True)
    if p == np.inf and hasattr(model, "reconstruction"):
        # The RBF-CNN returns log(mean softmax + 1e-12), whose margin loses
        # its gradient where a probability falls below 1e-12: C&W's L∞
        # margin is taken on the static model's raw logits instead.
        out["CW"] = ViewAttack(out["CW"], _deterministic(model))
    if config.spsa_steps:
        spsa = SPSA(ball, steps=config.spsa_steps, samples=config.spsa_samples,
                    chunk_size=min(128, config.spsa_samples), seed=seed)
        # SPSA vectorizes its queries: it queries the stateless beta2 = 0
        # reconstruction (the static model's own outputs, without its
        # variable knob); the engine judges the model itself.
        out["SPSA"] = ViewAttack(spsa, _deterministic(model)) if hasattr(model, "reconstruction") else spsa
    if source is not None:
        # Black-box transfer (the paper's "(Black-box)" rows): made on the
        # undefended CNN, judged on this model.
        out.update({f"{name} (transfer)": TransferAttack(source, attack)
                    for name, attack in _white_box(ball, p, eps, config).items()})
    if config.attacks is not None:
        # "PGD" selects PGD-<steps> (and "PGD (transfer)" its transfer row).
        pgd = f"PGD-{config.steps}"
        out = {name: a for name, a in out.items()
               if name in config.attacks or name.replace(pgd, "PGD") in config.attacks}
    return out


def evaluate_rcnn(config):
    """Runs the evaluation; writes `results.json` and `results.md` in `out_dir`.

    Returns:
        The results dict.
    """
    from tfrobust import distribute, training

    for name in config.threats:  # bad names fail before any output or hours of static attacks
        parse_threat(name)
    for name in config.adaptive_attacks:
        _validate.check_choice(name, name="adaptive_attacks", choices=ADAPTIVE)
    dist = training.make_strategy(config.strategy)
    spread = None if config.strategy.strip().lower() == "default" else dist
    with distribute.output_dir(dist, config.out_dir) as out_dir:
        return _evaluate_rcnn(dataclasses.replace(config, out_dir=out_dir), dist, spread)


def _evaluate_rcnn(config, dist, spread):
    import tfrobust
    from tfrobust import data, threats
    from tfrobust.evaluation import evaluate

    os.makedirs(config.out_dir, exist_ok=True)
    parsed = {name: parse_threat(name) for name in config.threats}
    with dist.scope():
        model = tfrobust.load_model(config.model)
    source = tfrobust.load_model(config.transfer_from) if config.transfer_from else None
    knobs = hasattr(model, "set_knobs")  # an RBF-CNN; else a plain classifier (baseline rows)
    x, y = data.load(config.dataset, "test", data_dir=config.data_dir)
    x, y = x[:config.n_eval], y[:config.n_eval].astype(np.int64)
    n = int(min(config.n_adaptive, len(x))) if knobs else 0
    results = {"model": config.model, "n_eval": int(len(x)), "n_adaptive": n,
               "config": dataclasses.asdict(config), "clean": {}, "static": {}, "static_judged": {},
               "adaptive": {}, "adaptive_beta2": {}, "deployed": {}}
    points = {"y": y}  # per-example robustness, saved as points.npz
    start = time.time()
    sweep = config.beta2_sweep if knobs else ()
    for beta2 in sweep:
        _set(model, config, beta2)
        results["clean"][str(beta2)] = _accuracy(model, x, y, config.batch_size)
    if not knobs:
        results["clean"]["plain"] = _accuracy(model, x, y, config.batch_size)
    # Static view: deterministic, exact gradients.
    if knobs:
        _set(model, config, 0.0)
    kept = {}
    for name, (p, eps) in parsed.items():
        battery = _static_attacks(model, p, eps, config, source)
        if not battery:
            continue
        report = evaluate(model, (x, y), battery, batch_size=config.batch_size, seed=config.seed,
                          sanity_checks=False, verbose=1, strategy=spread, keep_adversarials=True)
        results["static"][name] = _summary(report)
        kept[name] = {a: r.x_adv for a, r in report.attacks.items()}
        points.update({f"static/{name}/{a}": r.robust for a, r in report.attacks.items()})
        _write(config.out_dir, results, points)  # a crash later keeps what is done
    # The static examples judged by the randomized model (Table VII's rows).
    for beta2 in (b for b in sweep if b > 0):
        _set(model, config, beta2)
        judged = results["static_judged"][str(beta2)] = {}
        for name, adv in kept.items():
            judged[name], correct = _judged(model, x, y, adv, config.batch_size)
            points.update({f"judged/{beta2}/{name}/{a}": c for a, c in correct.items()})
    _write(config.out_dir, results, points)
    # Randomized view: EoT (through BPDA or the model) against the m-sample model.
    for beta2 in (config.adaptive_beta2 or (config.beta2,)) if n else ():
        _set(model, config, beta2)
        into = results["adaptive"] if beta2 == config.beta2 else results["adaptive_beta2"].setdefault(str(beta2), {})
        for name, (p, eps) in parsed.items():
            battery = _adaptive_attacks(model, threats.LpBall(p, eps), config)
            report = evaluate(model, (x[:n], y[:n]), battery, batch_size=max(1, config.batch_size // 5),
                              seed=config.seed, sanity_checks=False, verbose=1)
            into[name] = _summary(report)
            points.update({f"adaptive/{beta2}/{name}/{a}": r.robust for a, r in report.attacks.items()})
            results["deployed"].setdefault(str(beta2), {})[name] = _deployed(points, beta2, name)
            _write(config.out_dir, results, points)
    if config.figures:
        from tfrobust.experiments.rbf_cnn_figures import write_figures

        results["figures"] = write_figures(model, source, x, y, kept, config)
    results["seconds"] = round(time.time() - start, 1)
    _write(config.out_dir, results, points)
    print(markdown(results))
    return results


ADAPTIVE = ("BPDA+EoT PGD", "EoT PGD", "BPDA+EoT APGD-CE", "EoT APGD-CE")


def _adaptive_attacks(model, ball, config):
    from tfrobust import attacks
    from tfrobust.attacks.apgd import APGD

    out = {}
    for name in config.adaptive_attacks:
        # Each EoT example is m reconstructions inside the model: chunk the
        # draws so that one call holds at most `eot_batch` of them.
        view = model.eot(config.eot_samples, bpda=name.startswith("BPDA"),
                         max_batch=max(1, config.eot_batch // config.samples))
        # APGD's step-size schedule needs no tuning per budget (PGD's default
        # step 2.5 eps / steps shrinks as steps grow, see the manifold doc).
        attack = (APGD(ball, steps=config.adaptive_steps, seed=config.seed) if name.endswith("APGD-CE")
                  else attacks.PGD(ball, steps=config.adaptive_steps, seed=config.seed))
        out[name] = attacks.ViewAttack(attack, view)
    return out


def _set(model, config, beta2):
    model.set_knobs(beta1=config.beta1, beta2=beta2, samples=config.samples if beta2 > 0 else 1)


def _predict(model, x, batch_size):
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size])), -1)
                           for i in range(0, len(x), batch_size)])


def _accuracy(model, x, y, batch_size):
    return float(np.mean(_predict(model, x, batch_size) == y))


def _judged(model, x, y, adversarials, batch_size):
    """Per-attack and worst-case accuracy of `model` on kept adversarial
    examples (a point counts as robust only if its clean prediction is right too)."""
    clean = _predict(model, x, batch_size) == y
    robust, per_attack, correct = clean.copy(), {}, {}
    for name, x_adv in adversarials.items():
        correct[name] = (_predict(model, x_adv, batch_size) == y) & clean
        per_attack[name] = float(np.mean(correct[name]))
        robust &= correct[name]
    return {"per_attack": per_attack, "worst_case": {"all attacks": float(np.mean(robust))}}, correct


def _deployed(points, beta2, threat):
    """The deployed model's worst case per point on the adaptive attacks'
    images: robust only if every adaptive attack and every static example
    judged at this beta2 failed (each view's number alone is an upper bound
    of this one)."""
    from tfrobust.experiments.rbf_cnn_points import deployed_view, per_point

    row = per_point([points])[deployed_view(beta2)][threat]
    return {"n": int(len(row["robust"])), "adaptive_attacks": row["kinds"].get("adaptive", 0),
            "static_attacks": row["kinds"].get("judged", 0), "robust": float(np.mean(row["robust"]))}


def _write(out_dir, results, points=None):
    for name, text in (("results.json", json.dumps(results, indent=1, default=str)),
                       ("results.md", markdown(results))):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))
    if points is not None:
        # np.savez appends ".npz" to names without it: the temporary name keeps the suffix.
        tmp = os.path.join(out_dir, "points.tmp.npz")
        np.savez_compressed(tmp, **points)
        os.replace(tmp, os.path.join(out_dir, "points.npz"))


def _summary(report):
    per_attack = {name: float(acc) for name, acc in report.attack_accuracy.items()}
    worst = {str(k): float(v) for k, v in report.robust_accuracy.items()}
    return {"clean": float(report.clean_accuracy), "per_attack": per_attack, "worst_case": worst,
            "summary": report.summary()}


def markdown(results):
    lines = [f"Model `{results['model']}`, {results['n_eval']} test images "
             f"(adaptive attacks: the first {results['n_adaptive']}).", "",
             "| beta2 | clean accuracy |", "| --- | --- |"]
    lines += [f"| {b} | {100 * a:.1f} |" for b, a in results["clean"].items()]
    beta2 = results["config"]["beta2"]
    sections = [(f"static (beta2 = 0, m = 1), {t}", v) for t, v in results["static"].items()]
    sections += [(f"static examples judged at beta2 = {b}, {t}", v)
                 for b, per in results.get("static_judged", {}).items() for t, v in per.items()]
    sections += [(f"adaptive (beta2 = {beta2}), {t}", v) for t, v in results["adaptive"].items()]
    sections += [(f"adaptive (beta2 = {b}), {t}", v)
                 for b, per in results.get("adaptive_beta2", {}).items() for t, v in per.items()]
    for title, summary in sections:
        lines += ["", f"**{title} ({_eps_text(title.rsplit(', ', 1)[1])})**", "", "| attack | robust accuracy |",
                  "| --- | --- |"]
        lines += [f"| {name} | {100 * acc:.1f} |" for name, acc in summary["per_attack"].items()]
        lines += [f"| worst case ({key}) | {100 * acc:.1f} |" for key, acc in summary["worst_case"].items()]
    for b, per in results.get("deployed", {}).items():
        for t, d in per.items():
            lines += ["", f"**deployed model (beta2 = {b}), {t} ({_eps_text(t)}), first {d['n']} images:** "
                      f"{100 * d['robust']:.1f}% robust per point over {d['adaptive_attacks']} adaptive attack(s) and "
                      f"the {d['static_attacks']} static attacks' examples judged there"]
    return "\n".join(lines) + "\n"


def _eps_text(threat):
    return f"eps {parse_threat(threat)[1]}"
