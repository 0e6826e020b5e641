"""Evaluation of the Robust Manifold Defense on MNIST (`apps/eval_manifold_defense.py`).

Parts (each writes its own folder under `out_dir`; `summary.json` collects them):

- `static`: the plain classifier and invert-and-classify (INC) on
  `n_static` test images, clean and under FGSM (L∞ 0.3), PGD (L∞ 0.3, L2 2),
  C&W L2 (budget 2) crafted on the classifier (for INC: the same examples,
  then projected, the paper's grey-box setting) and the substitute
  black-box attack (Papernot et al.; FGSM L∞ 0.3 on a substitute trained on
  the attacked model's labels), worst case per threat
  (`tfrobust.evaluation.evaluate`, reports JSON/MD/PNG).
- `adaptive`: INC on the first `n_adaptive` images under every static
  attack plus the `adaptive_attacks`: BPDA+EoT PGD and/or APGD (CE or DLR
  loss, Croce & Hein's step-size schedule, which needs no tuning per
  budget) through the projection at L∞ 0.3 and L2 2, APGD-CE through EoT
  of the *unrolled* projection ("EoT APGD-CE": the copy is differentiated
  through its optimisation steps, the white-box check), and the
  DefenseGAN-style latent attack ("latent", L2 4, the break's in-bounds
  radius), worst case per threat over all of them. The attacks
  differentiate a cheaper copy of the defense (`attack_inc_steps`,
  `attack_inc_restarts`); every adversarial point is judged by the full
  defense. With `prior_results` (folders of earlier runs of the same
  defense, e.g. the `static_inc` folder of a static run or the
  `adaptive_inc` folder of another adaptive run, each `folder@first` when
  its example 0 is test image `first`) the static attacks are not run
  again: the per-example results of every earlier attack on the same
  images are read from their `results.npz`, and the worst case per threat
  (every threat of every run) per image over all of them
  (`worst_case_with_prior`) is added to the summary. `offset` starts every part at that test image instead of the
  first, so that a long adaptive evaluation can run as chunks of disjoint
  images.
- `overpowered`: the overpowered attack's success rate (pairs within L2
  `op_eps` classified differently) on each classifier given (plain, PGD,
  PGD+OP), and the non-overpowered variant from projections of real images.
- `robust`: robust accuracy of the adversarially trained classifiers under
  L2 PGD (eps 1.5 and 2.5, 100 steps, random start: `eval_network.py
  --eps 2.5 --num-steps 100 --random-step`).
- `figure`: originals, their projections, attacked images (the first
  BPDA+EoT / EoT attack of `adaptive_attacks`, at the first L2 budget of
  `adaptive_l2_eps`) and their projections, as `projections.png`.
- `bpda` (not among the defaults): only clean and BPDA+EoT PGD L2 2 on the
  first `n_adaptive` images (`bpda_inc`), a cheap adaptive row, e.g. to
  compare generators.
- `merge` (not among the defaults): no attack; the per-image worst case
  per threat over the `prior_results` on the `n_adaptive` images from
  `offset` (`summary["merged"]`), e.g. after runs made separately.

With `strategy` (a `tfrobust.training.make_strategy` name other than
"default") the classifiers are loaded under its scope and the evaluations
of plain classifiers (`static` on the plain classifier, `robust`) deal whole
batches to its replicas (`evaluate(..., strategy=)`: the per-example
results of the plain run); the parts that attack the defense, whose
forward pass is an optimisation, run on this process's device. Only the
chief writes files.
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate

PARTS = ("static", "adaptive", "overpowered", "robust", "figure")
EXTRA_PARTS = ("bpda", "merge")
#: Choices of `adaptive_attacks`; each but "latent" runs at L∞ 0.3 and L2 2.
ADAPTIVE = ("BPDA+EoT PGD", "BPDA+EoT APGD-CE", "BPDA+EoT APGD-DLR", "EoT APGD-CE", "latent")


@dataclasses.dataclass
class ManifoldEvalConfig:
    classifier: str = "runs/clf_plain/model.keras"
    generator: str = "runs/vae/generator.keras"
    robust_models: tuple = ()            # "name=path" of adversarially trained classifiers
    data_dir: str = None
    out_dir: str = "runs/manifold_eval"
    parts: tuple = PARTS
    n_static: int = 500
    n_adaptive: int = 50
    inc_steps: int = 1000                # the original MNIST INC: 1000 momentum steps, lr 100, one start
    inc_restarts: int = 1
    inc_learning_rate: float = 100.0
    inc_optimizer: str = "momentum"
    attack_inc_steps: int = 200
    attack_inc_restarts: int = 1
    eot: int = 4
    pgd_steps: int = 40
    bpda_steps: int = 40                 # steps of every BPDA+EoT attack
    adaptive_attacks: tuple = ("BPDA+EoT PGD", "latent")
    adaptive_l2_eps: tuple = (2.0,)      # L2 budgets of the view attacks (4: the latent attack's radius)
    cw_steps: int = 200
    cw_search: int = 5
    latent_copies: int = 100
    latent_noise: int = 100
    latent_steps: int = 10000
    substitute_seed: int = 150
    substitute_rounds: int = 6
    substitute_epochs: int = 10
    op_pairs: int = 200
    op_steps: int = 500
    op_eps: float = 1.5
    robust_eps: tuple = (1.5, 2.5)
    robust_steps: int = 100
    batch_size: int = 100
    seed: int = 0
    offset: int = 0                      # index of the first evaluated test image
    prior_results: tuple = ()            # earlier runs' result folders ("folder[@first]"): see the docstring
    strategy: str = "default"            # of the plain-classifier evaluations; see the module docstring


def _named_models(specs):
    out = {}
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if not sep or not name or not path:
            raise ValueError(f"Expected `robust_models` entries 'name=path'. Received: {spec!r}")
        out[name] = path
    return out


def _substitute(x_seed, config, oracle=None):
    from tfrobust import attacks
    from tfrobust.models import manifold

    # Papernot et al.'s MNIST substitute is a small CNN; the DefenseGAN-break
    # classifier is one, and differs from the attacked architecture.
    return attacks.SubstituteAttack(attacks.FGSM(0.3), manifold.defensegan_mnist_classifier(), x_seed,
                                    rounds=config.substitute_rounds, epochs=config.substitute_epochs,
                                    oracle=oracle, seed=config.seed)


def _static_attacks(classifier, config, substitute):
    from tfrobust import attacks, threats

    inf, l2 = threats.LpBall(np.inf, 0.3), threats.LpBall(2, 2.0)
    crafted = {
        "FGSM": attacks.FGSM(0.3, validate="cheap"),
        "PGD": attacks.PGD(inf, steps=config.pgd_steps, seed=config.seed, validate="cheap"),
        "PGD-L2": attacks.PGD(l2, steps=config.pgd_steps, seed=config.seed, validate="cheap"),
        "CW-L2": attacks.CarliniWagnerL2(l2, binary_search_steps=config.cw_search, steps=config.cw_steps,
                                         validate="cheap"),
    }
    return crafted, {**{k: attacks.TransferAttack(classifier, a) for k, a in crafted.items()},
                     "substitute-FGSM": substitute}


def _save(result, out_dir, name):
    path = os.path.join(out_dir, name)
    result.save(path)
    return {"clean_accuracy": result.clean_accuracy, "per_attack": dict(result.attack_accuracy),
            "worst_case_per_threat": dict(result.robust_accuracy), "n": int(result.n_examples),
            "sanity_flags": [str(f) for f in result.sanity_flags]}


def _load_prior(spec, y, start):
    """Per-example results of an earlier run (`spec` = "folder" or "folder@first",
    its example 0 being test image `first`) on test images `start` to `start + len(y)`."""
    folder, sep, first = str(spec).rpartition("@")
    if not sep or not first.isdigit():
        folder, first = str(spec), "0"
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    arrays = np.load(os.path.join(folder, "results.npz"))
    lo = start - int(first)
    if lo < 0 or not np.array_equal(arrays["y"][lo:lo + len(y)], y):
        raise ValueError(f"Expected every `prior_results` folder to hold the labels of test images {start} to "
                         f"{start + len(y) - 1}. Received: {spec!r} ({arrays['y'].shape[0]} examples from test "
                         f"image {first})")
    part = slice(lo, lo + len(y))
    attacks = {name: {"p": float(a["norm"]), "broken": arrays[f"attack/{name}/broken"][part],
                      "norms": {k: arrays[f"attack/{name}/{k}"][part] for k in ("l2", "linf")}}
               for name, a in report["attacks"].items() if a.get("norm") is not None}
    threats = {label: (float(t["p"]), float(t["eps"])) for label, t in report["threats"].items()}
    return {"clean_correct": arrays["clean_correct"][part], "attacks": attacks, "threats": threats}


def _merge_runs(runs):
    """Worst case per threat over the runs of `_load_prior` (this run included), per image.

    The threats are every run's; an example counts when every run
    classifies it correctly clean (the defense is randomized) and no attack
    of any run judged in the threat's norm broke it within eps.
    """
    from tfrobust.evaluation.labels import inside, norm_key

    threats = {label: t for run in runs for label, t in run["threats"].items()}
    merged = {}
    for label, (p, eps) in sorted(threats.items()):
        robust = np.ones_like(runs[0]["clean_correct"], dtype=bool)
        for run in runs:
            robust &= run["clean_correct"]
            for a in run["attacks"].values():
                if a["p"] == p:
                    robust &= ~(a["broken"] & inside(a["norms"][norm_key(p)], eps))
        merged[label] = float(np.mean(robust))
    return merged


def _view_attacks(copy, unrolled, config):
    """The `adaptive_attacks` but "latent", at L∞ 0.3 (`name`) and each L2 budget of `adaptive_l2_eps`
    (`name-L2` for 2, `name-L2-<eps>` otherwise), crafted on EoT
    over the random starts of `copy` with BPDA (identity backward pass), or of `unrolled` (the
    same copy, differentiable through its steps) without."""
    from tfrobust import attacks, threats

    out, views = {}, {}
    for name in config.adaptive_attacks:
        if name == "latent":
            continue
        bpda = name.startswith("BPDA")
        if bpda not in views:
            views[bpda] = (copy if bpda else unrolled).eot(config.eot, bpda=bpda)
        view = views[bpda]
        balls = [(threats.LpBall(np.inf, 0.3), "")] + [
            (threats.LpBall(2, float(e)), "-L2" if float(e) == 2.0 else f"-L2-{float(e):g}")
            for e in config.adaptive_l2_eps]
        for ball, suffix in balls:
            if name == "BPDA+EoT PGD":
                attack = attacks.PGD(ball, steps=config.bpda_steps, seed=config.seed, validate="cheap")
            else:
                loss = name.rpartition("-")[2].lower()
                attack = attacks.APGD(ball, loss=loss, steps=config.bpda_steps, seed=config.seed,
                                      validate="cheap")
            out[name.replace(" ", "-") + suffix] = attacks.ViewAttack(attack, view)
    return out


def _figure(x, x_hat, x_adv, x_adv_hat, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("original", x), ("projection", x_hat), ("attacked", x_adv), ("its projection", x_adv_hat)]
    n = len(x)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 1.3 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(np.asarray(images[c])[..., 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(config):
    """Runs the requested parts; returns the summary dict (also `summary.json`).

    Raises:
        ValueError: on unknown parts, bad `robust_models` or an unknown `strategy`.
    """
    from tfrobust import distribute, training

    dist = training.make_strategy(config.strategy)
    spread = None if config.strategy.strip().lower() == "default" else dist
    with distribute.output_dir(dist, config.out_dir) as out_dir:
        return _run(dataclasses.replace(config, out_dir=out_dir), dist, spread)


def _run(config, dist, spread):
    import tfrobust
    from tfrobust import attacks, data, threats
    from tfrobust.attacks.latent import LatentAttack
    from tfrobust.defenses import InvertAndClassify
    from tfrobust.evaluation import evaluate
    from tfrobust.experiments.classifier import load_generator

    unknown = set(config.parts) - set(PARTS + EXTRA_PARTS)
    if unknown:
        raise ValueError(f"Expected `parts` among {list(PARTS + EXTRA_PARTS)}. "
                         f"Received: parts={sorted(unknown)}")
    for name in config.adaptive_attacks:
        _validate.check_choice(name, name="adaptive_attacks", choices=ADAPTIVE)
    if "figure" in config.parts and all(a == "latent" for a in config.adaptive_attacks):
        raise ValueError("Expected `adaptive_attacks` to hold an EoT attack for the figure part. "
                         f"Received: adaptive_attacks={list(config.adaptive_attacks)}")
    if "figure" in config.parts and not config.adaptive_l2_eps:
        raise ValueError("Expected `adaptive_l2_eps` to hold an L2 budget for the figure part. "
                         "Received: adaptive_l2_eps=()")
    robust_models = _named_models(config.robust_models)
    os.makedirs(config.out_dir, exist_ok=True)
    summary_path = os.path.join(config.out_dir, "summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    summary["config"] = dataclasses.asdict(config)

    def write():
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=1, default=str)

    x_all, y_all = data.load("mnist", "test", data_dir=config.data_dir)
    n, start = max(config.n_static, config.n_adaptive), config.offset
    if not 0 <= start <= len(x_all) - n:
        raise ValueError(f"Expected `offset` in [0, {len(x_all) - n}] ({n} images of {len(x_all)}). "
                         f"Received: offset={start}")
    x, y = x_all[start:start + n], y_all[start:start + n].astype(np.int64)
    # The attacker's substitute seed images are disjoint from the evaluated ones.
    x_seed = x_all[start + n:start + n + config.substitute_seed]
    with dist.scope():
        classifier = tfrobust.load_model(config.classifier)
    generator = load_generator(config.generator)
    defense = InvertAndClassify(generator, classifier, steps=config.inc_steps, restarts=config.inc_restarts,
                                learning_rate=config.inc_learning_rate, optimizer=config.inc_optimizer,
                                seed=config.seed)
    copy_args = dict(steps=config.attack_inc_steps, restarts=config.attack_inc_restarts,
                     learning_rate=config.inc_learning_rate, optimizer=config.inc_optimizer, seed=config.seed + 1)
    cheap = InvertAndClassify(generator, classifier, **copy_args)
    unrolled = (InvertAndClassify(generator, classifier, differentiable=True, **copy_args)
                if "EoT APGD-CE" in config.adaptive_attacks else None)
    # The substitute of INC learns the labels of the cheaper copy (queries are
    # projections); its adversarial examples are judged by the full defense.
    substitute_inc = _substitute(x_seed, config, oracle=cheap)
    bs = config.batch_size

    if "static" in config.parts:
        t = time.time()
        crafted, on_inc = _static_attacks(classifier, config, substitute_inc)
        xs, ys = x[:config.n_static], y[:config.n_static]
        plain = {**crafted, "substitute-FGSM": _substitute(x_seed, config)}
        if spread is not None:
            # Trained here, eagerly: a replica's compiled step cannot run Keras fit.
            plain["substitute-FGSM"].fit_substitute(classifier)
        summary["static_plain"] = _save(evaluate(classifier, (xs, ys), plain, batch_size=bs, seed=config.seed,
                                                 strategy=spread), config.out_dir, "static_plain")
        summary["static_plain"]["substitute"] = plain["substitute-FGSM"].report._asdict()
        # The defense's inner optimisation makes the engine's sanity checks
        # (which attack the model again) too costly here; its flags are declared.
        summary["static_inc"] = _save(evaluate(defense, (xs, ys), on_inc, batch_size=bs, seed=config.seed,
                                               sanity_checks=False), config.out_dir, "static_inc")
        summary["static_inc"]["substitute"] = substitute_inc.report._asdict()
        summary["static_seconds"] = round(time.time() - t, 1)
        write()

    if "adaptive" in config.parts or "figure" in config.parts:
        t = time.time()
        xa, ya = x[:config.n_adaptive], y[:config.n_adaptive]
        adaptive = _view_attacks(cheap, unrolled, config)
        priors = [_load_prior(spec, ya, start) for spec in config.prior_results]
        if "adaptive" in config.parts:
            on_inc = {} if priors else _static_attacks(classifier, config, substitute_inc)[1]
            if "latent" in config.adaptive_attacks:
                adaptive["latent-L2-4"] = LatentAttack(
                    generator, classifier, threats.LpBall(2, 4.0), projector=cheap, copies=config.latent_copies,
                    noise_samples=config.latent_noise, steps=config.latent_steps, seed=config.seed)
            adaptive = {**on_inc, **adaptive}
        result = evaluate(defense, (xa, ya), adaptive, batch_size=bs, seed=config.seed, sanity_checks=False,
                          keep_adversarials=True)
        if "adaptive" in config.parts:
            summary["adaptive_inc"] = _save(result, config.out_dir, "adaptive_inc")
            if priors:
                summary["adaptive_inc"]["prior_results"] = list(config.prior_results)
                this = _load_prior(os.path.join(config.out_dir, "adaptive_inc"), ya, 0)
                summary["adaptive_inc"]["worst_case_with_prior"] = _merge_runs([this] + priors)
            summary["adaptive_seconds"] = round(time.time() - t, 1)
            write()
        k = min(8, len(xa))
        x_adv = result.attacks[next(a for a in adaptive if "EoT" in a and "-L2" in a)].x_adv[:k]
        _, x_hat = defense.project(xa[:k])
        _, x_adv_hat = defense.project(x_adv)
        _figure(xa[:k], x_hat, x_adv, x_adv_hat, os.path.join(config.out_dir, "projections.png"))

    if "bpda" in config.parts:
        t = time.time()
        l2_attack = attacks.ViewAttack(attacks.PGD(threats.LpBall(2, 2.0), steps=config.bpda_steps,
                                                   seed=config.seed, validate="cheap"),
                                       cheap.eot(config.eot, bpda=True))
        result = evaluate(defense, (x[:config.n_adaptive], y[:config.n_adaptive]),
                          {"BPDA+EoT-PGD-L2": l2_attack}, batch_size=bs, seed=config.seed, sanity_checks=False)
        summary["bpda_inc"] = _save(result, config.out_dir, "bpda_inc")
        summary["bpda_seconds"] = round(time.time() - t, 1)
        write()

    if "merge" in config.parts:
        if not config.prior_results:
            raise ValueError("Expected `prior_results` to name the runs to merge. Received: prior_results=()")
        ya = y[:config.n_adaptive]
        summary["merged"] = {"prior_results": list(config.prior_results), "n": int(len(ya)),
                             "worst_case_per_threat": _merge_runs([_load_prior(p, ya, start)
                                                                   for p in config.prior_results])}
        write()

    if "overpowered" in config.parts:
        t = time.time()
        ops = {}
        models = {"plain": classifier, **{k: tfrobust.load_model(v) for k, v in robust_models.items()}}
        for name, model in models.items():
            op = attacks.OverpoweredAttack(generator, eps=config.op_eps, steps=config.op_steps, seed=config.seed)
            res = op(model, config.op_pairs)
            normal = op.from_images(model, x[:config.op_pairs], defense)
            ops[name] = {"overpowered_success_rate": res.success_rate,
                         "overpowered_median_distance": float(np.median(np.asarray(res.distance))),
                         "non_overpowered_success_rate": normal.success_rate,
                         "pairs": config.op_pairs, "eps": config.op_eps, "steps": config.op_steps}
        summary["overpowered"] = ops
        summary["overpowered_seconds"] = round(time.time() - t, 1)
        write()

    if "robust" in config.parts:
        rob = {}
        xs, ys = x[:config.n_static], y[:config.n_static]
        for name, path in {"plain": config.classifier, **robust_models}.items():
            with dist.scope():
                model = tfrobust.load_model(path)
            pgds = {f"PGD-L2-{e}": attacks.PGD(threats.LpBall(2, e), steps=config.robust_steps,
                                                step_size=2.0 * e / config.robust_steps, seed=config.seed)
                    for e in config.robust_eps}
            rob[name] = _save(evaluate(model, (xs, ys), pgds, batch_size=bs, seed=config.seed, strategy=spread),
                              config.out_dir, f"robust_{name}")
        summary["robust"] = rob
        write()
    write()
    return summary
