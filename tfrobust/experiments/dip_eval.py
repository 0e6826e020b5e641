"""Deep Image Prior defense on CIFAR-10 (`apps/eval_dip.py`).

For a trained classifier and the first `n` test images:

1. clean accuracy of the unprotected classifier, and BIM L-inf (Kurakin et
   al. defaults: one intensity level per step) crafted on it;
2. the early-stopping curve: accuracy of DIP + classifier on the clean and
   on the BIM images after each number of DIP steps in `curve_steps` (one
   fit per image set, read at every step count);
3. the adaptive attack: BIM through `defense.eot(n_eot, bpda=True)` (BPDA
   identity backward pass, EoT over the defense's random networks) at
   `attack_dip_steps`, then the accuracy of a fresh DIP run on its output.

Writes `results.json`, `results.md` and `curve.png` to `out_dir`, and a
figure of originals, BIM images and their reconstructions.

Batch b (of `batch_size` images) draws from random stream b
(`tfrobust.distribute.map_batches`). With `strategy` (a
`tfrobust.training.make_strategy` name other than "default") the
classifier is loaded under its scope and the batches of the BIM crafting,
of the DIP fits and of the adaptive attack are dealt to its replicas (the
outputs of the plain run); only the chief writes files.
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate

__all__ = ["DIPEvalConfig", "evaluate_dip"]


@dataclasses.dataclass
class DIPEvalConfig:
    classifier: str = "runs/cifar_resnet20/model.keras"
    data_dir: str = None
    out_dir: str = "runs/dip_eval"
    n: int = 100
    batch_size: int = 100
    eps: float = 8.0 / 255.0
    bim_steps: int = None               # Kurakin et al.: min(eps + 4, 1.25 eps) levels
    curve_steps: tuple = (10, 25, 50, 100, 200, 400)
    attack_dip_steps: int = 50
    attack_steps: int = 5
    n_eot: int = 2
    learning_rate: float = 0.01
    channels: int = 32
    seed: int = 0
    strategy: str = "default"           # see the module docstring


def _accuracy(logits, y):
    return float(np.mean(np.argmax(np.asarray(logits), -1) == y))


def _batched(fn, x, batch_size):
    return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def _plot(curve, steps, path, clean_plain, bim_plain):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(steps, curve["clean"], "o-", label="DIP, clean")
    ax.plot(steps, curve["bim"], "s-", label="DIP, BIM on the classifier")
    ax.axhline(clean_plain, color="gray", ls="--", lw=1, label="classifier, clean")
    ax.axhline(bim_plain, color="gray", ls=":", lw=1, label="classifier, BIM")
    ax.set_xscale("log")
    ax.set_xlabel("DIP iterations (early stopping)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _per_batch(strategy, fn, arrays, batch_size, random=()):
    """`fn` over the batches of `arrays` (see `map_batches`); each output concatenated."""
    from tfrobust import distribute

    batches = [tuple(a[i:i + batch_size] for a in arrays) for i in range(0, len(arrays[0]), batch_size)]
    outs = distribute.map_batches(strategy, fn, batches, streams=distribute.BatchStreams.of(list(random)))
    return [np.concatenate(parts) for parts in zip(*outs)]


def evaluate_dip(config):
    """Runs the evaluation described in the module docstring.

    Returns:
        The results dict also written to `out_dir/results.json`.

    Raises:
        ValueError: on bad settings (an unknown `strategy` included).
    """
    from tfrobust import distribute, training

    dist = training.make_strategy(config.strategy)
    spread = None if config.strategy.strip().lower() == "default" else dist
    with distribute.output_dir(dist, config.out_dir) as out_dir:
        return _evaluate_dip(dataclasses.replace(config, out_dir=out_dir), dist, spread)


def _evaluate_dip(config, dist, spread):
    import keras

    from tfrobust import data, threats
    from tfrobust.attacks import BIM
    from tfrobust.defenses import DeepImagePrior
    from tfrobust.experiments.generator import save_grid

    n = _validate.check_int(config.n, name="n", minimum=1)
    curve_steps = [_validate.check_int(s, name="curve_steps", minimum=1) for s in config.curve_steps]
    os.makedirs(config.out_dir, exist_ok=True)
    with dist.scope():
        classifier = keras.saving.load_model(config.classifier)
    x, y = data.load("cifar10", "test", config.data_dir)
    x, y = np.asarray(x[:n], np.float32), np.asarray(y[:n])
    keras.utils.set_random_seed(config.seed)
    defense = DeepImagePrior(classifier, steps=config.attack_dip_steps, learning_rate=config.learning_rate,
                             channels=config.channels, seed=config.seed)
    threat = threats.LpBall(np.inf, config.eps)
    results = {"config": dataclasses.asdict(config), "n": n, "timings_s": {}}

    t0 = time.time()
    results["classifier_clean"] = _accuracy(_batched(classifier, x, 256), y)
    bim = BIM(threat, steps=config.bim_steps)
    (x_bim,) = _per_batch(spread, lambda xb, yb: bim(classifier, xb, yb), (x, y), config.batch_size, [bim])
    results["classifier_bim"] = _accuracy(_batched(classifier, x_bim, 256), y)
    results["timings_s"]["bim"] = time.time() - t0

    curve, recon = {}, {}
    for name, images in (("clean", x), ("bim", x_bim)):
        t0 = time.time()
        outs = _per_batch(spread, lambda xb: tuple(defense.reconstruct_at(xb, curve_steps, seed=config.seed + 1)),
                          (images,), config.batch_size)
        curve[name] = [_accuracy(_batched(classifier, o, 256), y) for o in outs]
        curve[name + "_mse_to_input"] = [float(np.mean((o - images) ** 2)) for o in outs]
        recon[name] = outs
        results["timings_s"]["curve_" + name] = time.time() - t0
    results["curve_steps"] = curve_steps
    results["curve"] = curve

    # The adaptive attack at the defense's operating point.
    t0 = time.time()
    attack = BIM(threat, steps=config.attack_steps, step_size=config.eps / config.attack_steps * 2.5,
                 validate="cheap")
    view = defense.eot(config.n_eot, bpda=True)
    (x_adp,) = _per_batch(spread, lambda xb, yb: attack(view, xb, yb), (x, y), config.batch_size,
                          [attack, defense])
    results["timings_s"]["bpda_eot_attack"] = time.time() - t0
    t0 = time.time()
    (rec_adp,) = _per_batch(spread, lambda xb: defense.reconstruct(xb, seed=config.seed + 2), (x_adp,),
                            config.batch_size)
    results["dip_at_attack_steps"] = {
        "steps": config.attack_dip_steps,
        "bpda_eot": _accuracy(_batched(classifier, rec_adp, 256), y),
        "classifier_on_bpda_eot_images": _accuracy(_batched(classifier, x_adp, 256), y),
        "linf": float(np.max(np.abs(x_adp - x)))}
    results["timings_s"]["bpda_eval"] = time.time() - t0

    _plot(curve, curve_steps, os.path.join(config.out_dir, "curve.png"),
          results["classifier_clean"], results["classifier_bim"])
    j = curve_steps.index(config.attack_dip_steps) if config.attack_dip_steps in curve_steps else 0
    save_grid(np.concatenate([x[:8], recon["clean"][j][:8], x_bim[:8], recon["bim"][j][:8]]),
              os.path.join(config.out_dir, "reconstructions.png"), cols=8)
    with open(os.path.join(config.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(config.out_dir, "results.md"), "w") as f:
        f.write(_markdown(results))
    return results


def _markdown(r):
    lines = [f"n = {r['n']} CIFAR-10 test images, eps = {r['config']['eps']:.4f} (L-inf)", "",
             f"- classifier clean: {r['classifier_clean']:.1%}; under BIM: {r['classifier_bim']:.1%}", "",
             "| DIP steps | " + " | ".join(str(s) for s in r["curve_steps"]) + " |",
             "|---|" + "---|" * len(r["curve_steps"])]
    for key, label in (("clean", "DIP + classifier, clean"), ("bim", "DIP + classifier, BIM (transfer)")):
        lines.append(f"| {label} | " + " | ".join(f"{a:.1%}" for a in r["curve"][key]) + " |")
    for key, label in (("clean_mse_to_input", "MSE to input, clean"), ("bim_mse_to_input", "MSE to input, BIM")):
        lines.append(f"| {label} | " + " | ".join(f"{a:.2e}" for a in r["curve"][key]) + " |")
    d = r["dip_at_attack_steps"]
    lines += ["", f"- BPDA+EoT BIM through DIP at {d['steps']} steps: {d['bpda_eot']:.1%} "
              f"(classifier alone on those images: {d['classifier_on_bpda_eot_images']:.1%}, "
              f"max |delta| = {d['linf']:.4f})", ""]
    return "\n".join(lines)
