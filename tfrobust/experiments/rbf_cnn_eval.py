"""rCNN / rCNN+ evaluation (`apps/test_rCNN.py`, mirrors `test_script.py`):
clean accuracy with m samples, then the paper's attack battery per threat.

Two views of one trained model:
- **static**: beta2 = 0 and m = 1, a deterministic, differentiable model
  attacked by FGSM, PGD, MI-FGSM, APGD-CE, APGD-T, FAB-T, Square, C&W (L2)
  and EAD (L1) with exact gradients (the paper's "static" column, plus the
  AutoAttack members);
- **randomized**: the deployed model (beta2 > 0, m samples), attacked
  adaptively by PGD through BPDA (the beta2 = 0 reconstruction's gradient)
  with EoT over `eot_samples` draws, and judged on its m-sample prediction.

Robust accuracy is reported per attack and as the worst case over all
attacks of a threat (the honest number; the paper reports per-attack ones).
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
    cw_steps: int = 200
    eot_samples: int = 50
    adaptive_steps: int = 20
    beta2_sweep: tuple = (0.0, 1.0, 1.75)
    batch_size: int = 250
    seed: int = 0
    # tf.distribute strategy name of the static attacks (the randomized
    # BPDA+EoT view stays on one device: the model's own sampling is not
    # split into per-batch streams); only the chief writes out_dir.
    strategy: str = "default"


class _AttackOn:
    """An attack run on a fixed view of the model (e.g. its BPDA+EoT
    version) while the engine judges the deployed model."""

    def __init__(self, attack, view):
        self.attack, self.view = attack, view
        self.threat, self.bounds = attack.threat, attack.bounds
        self.black_box, self.uses_eot = attack.black_box, True
        self.randomized, self.steps = attack.randomized, attack.steps

    def __call__(self, model, x, y=None, *, targeted=False):
        del model
        return self.attack(self.view, x, y, targeted=targeted)

    def get_config(self):
        return dict(self.attack.get_config(), view=type(self.view).__name__, adaptive=True)


def _static_attacks(p, eps, config):
    from tfrobust import attacks, threats
    from tfrobust.attacks.apgd import APGD, APGDT
    from tfrobust.attacks.fab import FABT
    from tfrobust.attacks.square import Square

    ball, seed, steps = threats.LpBall(p, eps), config.seed, config.steps
    out = {
        "FGSM": attacks.FGSM(eps, p),
        f"PGD-{steps}": attacks.PGD(ball, steps=steps, seed=seed),
        "MI-FGSM": attacks.MIFGSM(ball, steps=steps),
        "APGD-CE": APGD(ball, steps=config.auto_steps, seed=seed),
        "APGD-T": APGDT(ball, steps=config.auto_steps, n_target_classes=9, seed=seed),
        "FAB-T": FABT(ball, steps=config.auto_steps, n_target_classes=9, seed=seed),
    }
    if p != 1:
        out["Square"] = Square(ball, n_queries=config.square_queries, seed=seed)
    if p == 2:
        out["CW"] = attacks.CarliniWagnerL2(ball, binary_search_steps=5, steps=config.cw_steps)
    if p == 1:
        out["EAD"] = attacks.EAD(ball, binary_search_steps=5, steps=config.cw_steps)
    return out


def _accuracy(model, x, y, batch_size):
    pred = np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size])), -1)
                           for i in range(0, len(x), batch_size)])
    return float(np.mean(pred == y))


def evaluate_rcnn(config):
    """Runs the evaluation; writes `results.json` and `results.md` in `out_dir`.

    Returns:
        The results dict.
    """
    from tfrobust import distribute, training

    dist = training.make_strategy(config.strategy)
    spread = None if config.strategy.strip().lower() == "default" else dist
    with distribute.output_dir(dist, config.out_dir) as out_dir:
        return _evaluate_rcnn(dataclasses.replace(config, out_dir=out_dir), dist, spread)


def _evaluate_rcnn(config, dist, spread):
    import tfrobust
    from tfrobust import attacks, data, threats
    from tfrobust.evaluation import evaluate

    os.makedirs(config.out_dir, exist_ok=True)
    for name in config.threats:
        _validate.check_choice(name, name="threats", choices=tuple(THREATS))
    with dist.scope():
        model = tfrobust.load_model(config.model)
    x, y = data.load(config.dataset, "test", data_dir=config.data_dir)
    x, y = x[:config.n_eval], y[:config.n_eval].astype(np.int64)
    results = {"model": config.model, "n_eval": int(len(x)), "n_adaptive": int(min(config.n_adaptive, len(x))),
               "config": dataclasses.asdict(config), "clean": {}, "static": {}, "adaptive": {}}
    start = time.time()
    for beta2 in config.beta2_sweep:
        model.set_knobs(beta1=config.beta1, beta2=beta2, samples=config.samples if beta2 > 0 else 1)
        results["clean"][str(beta2)] = _accuracy(model, x, y, config.batch_size)
    # Static view: deterministic, exact gradients.
    model.set_knobs(beta2=0.0, samples=1)
    for name in config.threats:
        p, eps = THREATS[name]
        report = evaluate(model, (x, y), _static_attacks(p, eps, config),
                          batch_size=config.batch_size, seed=config.seed, sanity_checks=False, verbose=1,
                          strategy=spread)
        results["static"][name] = _summary(report)
        _write(config.out_dir, results)  # a crash later keeps what is done
    # Randomized view: BPDA + EoT against the m-sample model.
    model.set_knobs(beta2=config.beta2, samples=config.samples)
    n = results["n_adaptive"]
    view = model.eot(config.eot_samples, bpda=True)
    for name in config.threats:
        p, eps = THREATS[name]
        pgd = attacks.PGD(threats.LpBall(p, eps), steps=config.adaptive_steps, seed=config.seed)
        report = evaluate(model, (x[:n], y[:n]), {"BPDA+EoT PGD": _AttackOn(pgd, view)},
                          batch_size=max(1, config.batch_size // 5), seed=config.seed, sanity_checks=False,
                          verbose=1)
        results["adaptive"][name] = _summary(report)
        _write(config.out_dir, results)
    results["seconds"] = round(time.time() - start, 1)
    _write(config.out_dir, results)
    print(markdown(results))
    return results


def _write(out_dir, results):
    for name, text in (("results.json", json.dumps(results, indent=1, default=str)),
                       ("results.md", markdown(results))):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))


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
    for view in ("static", "adaptive"):
        for threat, summary in results[view].items():
            lines += ["", f"**{view}, {threat} ({THREATS[threat][1]})**", "", "| attack | robust accuracy |",
                      "| --- | --- |"]
            lines += [f"| {name} | {100 * acc:.1f} |" for name, acc in summary["per_attack"].items()]
            lines += [f"| worst case ({key}) | {100 * acc:.1f} |" for key, acc in summary["worst_case"].items()]
    return "\n".join(lines) + "\n"
