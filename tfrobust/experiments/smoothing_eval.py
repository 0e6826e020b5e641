"""Attack evaluation of smoothed inference (`apps/eval_smoothing.py`), the SIAM `run_attack.py`.

Steps, on the first `n_test` test images:

1. The engine (`tfrobust.evaluation.evaluate`) on the smoothed classifier
   (prediction vote, sigma and m_test of the run) against the white-box
   attacks of `tfrobust.smoothing.attacks` (PGD on one noisy pass, EPGD over
   `m_attack` passes, PGD on the soft smoothed classifier), with its sanity
   checks; its report goes to `out_dir/engine`.
2. The grid of the paper's ablation: for each sigma, the attacks are re-run
   at that sigma (the attacker knows the noise level), then every input set
   (clean and each attack's x_adv) gets `max(m_grid)` noisy passes of the
   base; each vote rule (prediction, weighted, soft) is applied to the first
   m passes for every m of the grid (the votes of `SmoothedClassifier`,
   computed from the same passes so that they differ only by the rule).
   "none" is the base alone: no input noise, one pass. Robust accuracy is
   the per-example worst case over the attacks.
3. Black-box rows: PGD transferred from a separately trained source model
   (one noisy pass and soft-smoothed source), and NAttack (gradient-free,
   querying the smoothed classifier itself) on `n_nattack` images.

With `strategy` (a `tfrobust.training.make_strategy` name other than
"default") the base is loaded under the strategy's scope and step 1, the
engine's white-box attacks, deals whole batches to its replicas
(`evaluate(..., strategy=)`); the smoothed classifier the attacks query
draws its own noise in an order that depends on how the batches are dealt,
so these rows are valid but not identical to the plain run's. The grid and black-box
rows run on this process's device, and only the chief writes files.
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate

VOTES = ("none", "prediction", "weighted", "soft")


@dataclasses.dataclass
class SmoothingEvalConfig:
    model: str = "runs/smoothing/model.keras"
    dataset: str = "cifar10"
    data_dir: str = None
    out_dir: str = "runs/smoothing_eval"
    n_test: int = 100
    eps: float = None                  # pixels; default 8/255 (CIFAR-10), 0.3 (MNIST)
    attacks: tuple = ("pgd", "epgd", "pgd_smoothed")
    steps: int = 7
    m_attack: int = 8                  # passes of EPGD / the smoothed views (the original's m_train)
    sigma: float = None                # pixels; default the model's
    m_test: int = None                 # default the model's
    m_grid: tuple = (1, 4, 16)
    sigma_grid: tuple = None           # pixels; default (0.5, 1, 1.5) x sigma
    transfer: str = None               # a source model.keras (trained separately)
    n_nattack: int = 20
    nattack_steps: int = 30
    nattack_samples: int = 50
    nattack_m: int = 4
    sanity_checks: bool = True
    batch_size: int = 100
    seed: int = 0
    strategy: str = "default"          # of step 1 (the engine's attacks); see the module docstring


def _load(path, strategy=None):
    import contextlib

    import keras

    import tfrobust.layers  # noqa: F401  (registers the noise layers)
    import tfrobust.smoothing.classifier  # noqa: F401

    if not os.path.exists(path):
        raise FileNotFoundError(f"Expected `model` to be a saved model.keras. Received: {path}")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return keras.saving.load_model(path, compile=False)


def _split(model):
    """(base, sigma, n) of a saved SmoothedClassifier, or (model, 0, 1) of a plain base."""
    from tfrobust.smoothing.classifier import SmoothedClassifier

    if isinstance(model, SmoothedClassifier):
        return model.base, float(model.sigma.numpy()), int(model.n.numpy())
    return model, 0.0, 1


def vote_predictions(logits, vote):
    """Smoothed predictions `[B]` from the noisy logits `[m, B, K]` of m passes.

    The rules of `SmoothedClassifier` (first class wins ties, as argmax):
    prediction = most frequent top-1 class, weighted = largest sum of
    2^-rank, soft = largest mean logit.
    """
    _validate.check_choice(vote, name="vote", choices=VOTES[1:])
    k = logits.shape[-1]
    if vote == "soft":
        return np.argmax(logits.mean(axis=0), axis=-1)
    if vote == "prediction":
        counts = np.eye(k)[np.argmax(logits, axis=-1)].sum(axis=0)
        return np.argmax(counts, axis=-1)
    ranks = np.argsort(np.argsort(-logits, axis=-1, kind="stable"), axis=-1, kind="stable")
    return np.argmax((2.0 ** -ranks).sum(axis=0), axis=-1)


def noisy_logits(base, x, sigma, passes, *, batch_size, seed):
    """`[passes, N, K]` logits of `base(x + sigma * eps)`, one base call per pass and batch.

    One call per pass keeps the original's one weight sample per pass for
    PNI / CPNI bases.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(passes):
        parts = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            noise = rng.standard_normal(xb.shape).astype(np.float32) if sigma > 0 else 0.0
            parts.append(np.asarray(base(tf.constant(xb + sigma * noise), training=False)))
        out.append(np.concatenate(parts))
    return np.stack(out)


def _attack_all(attack, defense, x, y, batch_size):
    parts = [np.asarray(attack(defense, x[i:i + batch_size], y[i:i + batch_size]))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def grid_table(base, inputs, y, sigma, m_grid, *, batch_size, seed):
    """Accuracy rows for every vote and m at one sigma; `inputs` is name -> x."""
    rows = []
    m_max = max(m_grid)
    per_input = {}
    for j, (name, xs) in enumerate(inputs.items()):
        per_input[name] = noisy_logits(base, xs, sigma, m_max, batch_size=batch_size, seed=seed + j)
    plain = {name: np.argmax(noisy_logits(base, xs, 0.0, 1, batch_size=batch_size, seed=seed)[0], axis=-1)
             for name, xs in inputs.items()}
    attacks = [n for n in inputs if n != "clean"]

    def row(vote, m, preds):
        correct = {name: preds[name] == y for name in inputs}
        worst = np.all([correct[n] for n in ["clean"] + attacks], axis=0)
        out = {"vote": vote, "m": m, "sigma": sigma, "clean": float(correct["clean"].mean()),
               "robust_worst": float(worst.mean())}
        out.update({n: float((correct[n] & correct["clean"]).mean()) for n in attacks})
        return out

    rows.append(row("none", 1, plain))
    for vote in VOTES[1:]:
        for m in m_grid:
            rows.append(row(vote, m, {n: vote_predictions(l[:m], vote) for n, l in per_input.items()}))
    return rows


def _markdown_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) and c != "sigma"
                                       else f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c])
                                       for c in columns) + " |")
    return "\n".join(lines)


def baseline_row(rows, sigma):
    """The "none" (no smoothing) row of the grid at `sigma`.

    The grid has one per sigma (the attacks are re-run at each sigma); the
    first one is the smallest sigma's, not the run's.
    """
    for r in rows:
        if r["vote"] == "none" and abs(r["sigma"] - sigma) < 1e-9:
            return r
    raise ValueError(f"Expected a grid row with vote='none' at sigma={sigma}. Received: sigmas "
                     f"{sorted({r['sigma'] for r in rows if r['vote'] == 'none'})}")


def _plot(rows, main_sigma, attacks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for vote, color in zip(VOTES[1:], ("C0", "C1", "C2")):
        sub = [r for r in rows if r["vote"] == vote and r["sigma"] == main_sigma]
        ms = [r["m"] for r in sub]
        axes[0].plot(ms, [r["clean"] for r in sub], "--", color=color, label=f"{vote} clean")
        axes[0].plot(ms, [r["robust_worst"] for r in sub], "-o", color=color, label=f"{vote} worst attack")
        m_max = max(r["m"] for r in rows)
        sub = sorted([r for r in rows if r["vote"] == vote and r["m"] == m_max], key=lambda r: r["sigma"])
        axes[1].plot([r["sigma"] for r in sub], [r["clean"] for r in sub], "--", color=color,
                     label=f"{vote} clean")
        axes[1].plot([r["sigma"] for r in sub], [r["robust_worst"] for r in sub], "-o", color=color,
                     label=f"{vote} worst attack")
    none = baseline_row(rows, main_sigma)
    axes[0].axhline(none["clean"], color="gray", ls="--", lw=0.8, label="no smoothing clean")
    axes[0].axhline(none["robust_worst"], color="gray", lw=0.8, label="no smoothing worst")
    axes[0].set(xscale="log", xlabel="m (noisy passes)", ylabel="accuracy", title=f"sigma = {main_sigma:.4g}")
    axes[1].set(xlabel="sigma (pixels)", ylabel="accuracy", title=f"m = {max(r['m'] for r in rows)}")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"attacks: {', '.join(attacks)} (worst case per example)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_smoothing(config):
    """Runs the evaluation; writes results.json, results.md, grid.png and engine/ to `out_dir`.

    Returns:
        The results dict.

    Raises:
        ValueError: on bad settings (an unknown `strategy` included);
            FileNotFoundError for a missing model.
    """
    from tfrobust import distribute, training

    dist = training.make_strategy(config.strategy)
    spread = None if config.strategy.strip().lower() == "default" else dist
    with distribute.output_dir(dist, config.out_dir) as out_dir:
        return _evaluate_smoothing(dataclasses.replace(config, out_dir=out_dir), dist, spread)


def _evaluate_smoothing(config, dist, spread):
    from tfrobust import data, threats
    from tfrobust.attacks.nattack import NAttack
    from tfrobust.attacks.transfer import TransferAttack
    from tfrobust.evaluation import evaluate
    from tfrobust.experiments.smoothing import DEFAULT_EPS, has_weight_noise
    from tfrobust.smoothing import attacks as sm_attacks
    from tfrobust.smoothing.classifier import SmoothedClassifier

    _validate.check_choice(config.dataset, name="dataset", choices=tuple(sorted(DEFAULT_EPS)))
    n_test = _validate.check_int(config.n_test, name="n_test", minimum=1)
    m_grid = sorted({_validate.check_int(m, name="m_grid", minimum=1) for m in config.m_grid})
    for name in config.attacks:
        _validate.check_choice(name, name="attacks", choices=sm_attacks.ATTACK_NAMES)
    base, sigma0, m0 = _split(_load(config.model, dist))
    sigma = sigma0 if config.sigma is None else _validate.check_float(config.sigma, name="sigma", minimum=0.0)
    m_test = m0 if config.m_test is None else _validate.check_int(config.m_test, name="m_test", minimum=1)
    sigma_grid = config.sigma_grid or (0.5 * sigma, sigma, 1.5 * sigma)
    sigma_grid = sorted({round(float(s), 6) for s in sigma_grid} | {round(sigma, 6)})
    eps = DEFAULT_EPS[config.dataset] if config.eps is None else config.eps
    per_pass = has_weight_noise(base)
    os.makedirs(config.out_dir, exist_ok=True)
    x, y = data.load(config.dataset, "test", data_dir=config.data_dir)
    x, y = x[:n_test], y[:n_test].astype(np.int64)
    chunk = 1 if per_pass else None
    results = {"config": dataclasses.asdict(config), "sigma": sigma, "m_test": m_test, "eps": eps,
               "n_test": int(len(x)), "weight_noise": per_pass, "timing_seconds": {}}

    # 1. The engine, on the prediction-vote classifier of the run.
    start = time.time()
    defense = SmoothedClassifier(base, sigma=sigma, n=m_test, vote="prediction", chunk_size=chunk,
                                 seed=config.seed)
    attacks = sm_attacks.smoothing_attacks(base, sigma, eps, passes=config.m_attack, steps=config.steps,
                                           names=config.attacks, per_pass_calls=per_pass, seed=config.seed)
    engine = evaluate(defense, (x, y), attacks, batch_size=config.batch_size, seed=config.seed,
                      sanity_checks=config.sanity_checks, keep_adversarials=True, verbose=0,
                      strategy=spread)
    engine.save(os.path.join(config.out_dir, "engine"))
    results["engine"] = {"clean_accuracy": float(np.mean(engine.clean_correct)),
                         "robust_accuracy": engine.robust_accuracy,
                         "per_attack": {k: float(v) for k, v in engine.attack_accuracy.items()},
                         "sanity_flags": [f.to_dict() for f in engine.sanity_flags]}
    results["timing_seconds"]["engine"] = round(time.time() - start, 1)

    # 2. The grid over sigma (attacks re-run per sigma) and m, for every vote.
    rows = []
    for s in sigma_grid:
        start = time.time()
        if abs(s - sigma) < 1e-9:
            inputs = {"clean": x, **{n: engine.adversarial_examples(n)[0] for n in attacks}}
        else:
            at_s = sm_attacks.smoothing_attacks(base, s, eps, passes=config.m_attack, steps=config.steps,
                                                names=config.attacks, per_pass_calls=per_pass,
                                                seed=config.seed + 1)
            target = SmoothedClassifier(base, sigma=s, n=m_test, vote="prediction", chunk_size=chunk)
            inputs = {"clean": x, **{n: _attack_all(a, target, x, y, config.batch_size)
                                     for n, a in at_s.items()}}
        rows += grid_table(base, inputs, y, s, m_grid, batch_size=config.batch_size, seed=config.seed + 100)
        results["timing_seconds"][f"grid sigma={s:.4g}"] = round(time.time() - start, 1)
    results["grid"] = rows

    # 3. Black-box rows at the run's sigma and m_test.
    black = []
    if config.transfer:
        start = time.time()
        source, source_sigma, _ = _split(_load(config.transfer))
        views = {"transfer pgd (source: one noisy pass)": sm_attacks.noisy_pass(source, source_sigma, seed=1),
                 "transfer pgd (source: soft smoothed)": SmoothedClassifier(
                     source, sigma=source_sigma, n=config.m_attack, vote="soft", seed=2,
                     chunk_size=1 if has_weight_noise(source) else None)}
        for label, view in views.items():
            attack = TransferAttack(view, sm_attacks.original_pgd(eps, steps=config.steps, seed=config.seed))
            x_adv = _attack_all(attack, defense, x, y, config.batch_size)
            logits = noisy_logits(base, x_adv, sigma, m_test, batch_size=config.batch_size, seed=7)
            clean_logits = noisy_logits(base, x, sigma, m_test, batch_size=config.batch_size, seed=8)
            row = {"attack": label, "n": int(len(x)), "m": m_test}
            for vote in VOTES[1:]:
                ok = (vote_predictions(logits, vote) == y) & (vote_predictions(clean_logits, vote) == y)
                row[vote] = float(ok.mean())
            black.append(row)
        results["timing_seconds"]["transfer"] = round(time.time() - start, 1)
    if config.n_nattack:
        start = time.time()
        n = min(config.n_nattack, len(x))
        target = SmoothedClassifier(base, sigma=sigma, n=config.nattack_m, vote="prediction", chunk_size=chunk,
                                    seed=config.seed + 3)
        nattack = NAttack(threats.LpBall(np.inf, eps), steps=config.nattack_steps,
                          samples=config.nattack_samples, seed=config.seed)
        x_adv = np.asarray(nattack(target, x[:n], y[:n]))
        logits = noisy_logits(base, x_adv, sigma, m_test, batch_size=config.batch_size, seed=9)
        clean_logits = noisy_logits(base, x[:n], sigma, m_test, batch_size=config.batch_size, seed=10)
        row = {"attack": f"NAttack ({config.nattack_steps} steps x {config.nattack_samples} samples, "
                         f"queries the m={config.nattack_m} prediction vote)", "n": int(n), "m": m_test}
        for vote in VOTES[1:]:
            ok = (vote_predictions(logits, vote) == y[:n]) & (vote_predictions(clean_logits, vote) == y[:n])
            row[vote] = float(ok.mean())
        black.append(row)
        results["timing_seconds"]["nattack"] = round(time.time() - start, 1)
    results["black_box"] = black

    attack_cols = list(attacks)
    md = [f"# Smoothed inference: {config.model}", "",
          f"{config.dataset}, first {len(x)} test images, L-inf eps = {eps:.4g}, sigma = {sigma:.4g} (pixels), "
          f"m_test = {m_test}, attacks: {', '.join(attack_cols)} ({config.steps} steps of eps/4, random start; "
          f"EPGD and the smoothed views over {config.m_attack} passes).", "",
          "## Engine (prediction vote)", "", "```", engine.summary(), "```", "",
          "## Grid (accuracy; attacks count only clean-correct examples)", "",
          _markdown_table(rows, ["vote", "m", "sigma", "clean"] + attack_cols + ["robust_worst"])]
    if black:
        md += ["", "## Black-box", "", _markdown_table(black, ["attack", "n", "m"] + list(VOTES[1:]))]
    with open(os.path.join(config.out_dir, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(config.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    _plot(rows, round(sigma, 6), attack_cols, os.path.join(config.out_dir, "grid.png"))
    return results
