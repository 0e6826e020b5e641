"""The library side of `apps/attack.py`: load a saved model, attack, write files.

    run_attack_app("model.keras", dataset="mnist", attacks=("fgsm", "pgd", "cw"),
                   norm="inf", eps=(0.1, 0.3), n_examples=1000, out_dir="out")

writes `adv_<attack>_<eps>.npz` (x_adv, y, predictions) for every attack and
eps, and the report (`report.json`, `report.md`, `results.npz`,
`robust_accuracy.png`). Minimization attacks run once, unbounded, and are
cut to each eps afterwards (the same as one budgeted run per eps).

`out_dir` is checked and created before any work. Each attack's `adv_*.npz`
files are written as soon as that attack finishes, with `partial.json` (the
report of the attacks finished so far, replaced atomically), so a crash in
a later attack keeps what was done; the final report removes `partial.json`.

Distribution: with a `strategy` other than "default", the model is loaded
under that `tf.distribute` strategy's scope and `evaluate` deals the attack
batches to its replicas (`tfrobust.distribute`; per-example results equal
the single-device run). Under "multi_worker" only the chief writes
`out_dir`; the other workers write to a temporary folder that is removed.
A model whose own forward pass is random (e.g. with `eot_samples`) draws
per replica, so its results then depend on the replica count.
"""

import json
import os

import numpy as np

__all__ = ["SavedModelClassifier", "load_model", "run_attack_app"]


def __getattr__(name):
    # SavedModelClassifier moved to tfrobust.models.saved_model (one loader
    # for the library and the apps); resolved on use so that importing this
    # module still loads no TensorFlow.
    if name == "SavedModelClassifier":
        from tfrobust.models.saved_model import SavedModelClassifier

        return SavedModelClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(path):
    """Loads a `.keras` file (or `.h5`) or a SavedModel directory as a logits model.

    `tfrobust.load_model` with errors named after the app's `--model` flag.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if it is neither a readable Keras file nor a SavedModel
            directory (the message says why).
    """
    import tfrobust

    return tfrobust.load_model(path, argument="model", compile=False)


def _file_name(attack, eps):
    text = "unbounded" if eps is None else f"{eps:g}"
    return f"adv_{attack}_{text}.npz"


def _write_adversarials(result, out_dir, files, name=None):
    """Writes the `adv_*.npz` files of one attack (or all)."""
    for key, e, file_name in files:
        if name is not None and key != name:
            continue
        x_adv, pred = result.adversarial_examples(key, eps=e)
        arrays = {"x_adv": x_adv.astype(np.float32), "y": result.y, "predictions": pred}
        if result.y_target is not None:
            arrays["y_target"] = result.y_target
        np.savez_compressed(os.path.join(out_dir, file_name), **arrays)


def _write_partial(out_dir, files):
    """A callback writing each attack's files and `partial.json` as soon as it finishes."""

    def on_attack_result(name, partial):
        _write_adversarials(partial, out_dir, files, name)
        path = os.path.join(out_dir, "partial.json")
        with open(path + ".tmp", "w") as f:
            json.dump(partial.to_dict(), f, indent=2, allow_nan=False)
        os.replace(path + ".tmp", path)  # never a half-written file

    return on_attack_result


def run_attack_app(model, *, out_dir, dataset="mnist", split="test", data_dir=None, n_examples=None,
                   batch_size=256, attacks=("pgd",), norm="inf", eps=(), threats=None, steps=None, step_size=None,
                   restarts=1, targeted=False, target_class=None, eot_samples=1, strategy="default",
                   seed=0, sanity_checks=True, verbose=1):
    """Attacks a saved model on a dataset and writes adversarial examples and the report.

    `out_dir` is checked and created before any work; each attack's
    `adv_*.npz` files (and `partial.json`) are written as soon as that
    attack finishes (see the module docstring).

    Args:
        model: path of a `.keras` file or a SavedModel directory, or a
            logits model.
        out_dir: output folder.
        dataset: "mnist", "cifar10", "gtsrb" or "digits".
        split: "test" or "train".
        data_dir: folder of the dataset files (default `TFROBUST_DATA_DIR`).
        n_examples: first examples of the split to use (None: all).
        batch_size: examples per attack call.
        attacks: names from `tfrobust.evaluation.registry.ATTACKS`.
        norm: "inf", 2 or 1.
        eps: list of budgets (one run per eps for budget attacks; required
            by them); minimization attacks are cut to each eps.
        threats: instead of `norm` and `eps`, several norms in one run:
            (p, eps) pairs or "p:eps" strings ("inf:0.3,2:2.0,1:15"). Each
            attack runs for the threats of the norms it supports (C&W only
            L2, "autoattack" expanded per norm), and the report gives the
            per-attack and worst-case accuracy per threat. With several
            norms, keys and files name the norm (`adv_pgd_Linf_0.3.npz`).
        steps, step_size, restarts: attack settings (None: paper defaults).
        targeted: targeted attacks towards `target_class`, or towards a
            random other class per example when `target_class` is None.
        target_class: the target of a targeted run.
        eot_samples: wrap the model in `EoT(model, n=eot_samples)` when > 1.
        strategy: `tfrobust.training.make_strategy` name: "default" runs
            on this process's device; any other spreads the attacks over
            the strategy's replicas (see module doc).
        seed: seed of random starts, random targets and the checks.
        sanity_checks: run the sanity checks.
        verbose: 0 or 1.

    Returns:
        The `EvaluationResult`.

    Raises:
        ValueError or FileNotFoundError: on bad arguments, named after their
            flag (an `out_dir` that is a file or cannot be created included).
    """
    from tfrobust import _validate
    from tfrobust import data as data_lib
    from tfrobust.evaluation import registry
    from tfrobust.evaluation.report import ensure_out_dir

    if not out_dir:
        raise ValueError(f"Expected `out_dir` (--out_dir) to be a folder. Received: out_dir={out_dir!r}")
    names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"Expected `attacks` (--attacks) to be distinct names. Received: attacks={attacks!r}")
    if threats:
        if registry.parse_eps(eps):
            raise ValueError(f"Expected either `threats` (--threats) or `eps` (--eps). Received: eps={eps!r}")
        grid = registry.parse_threats(threats)
        plan = registry.pair_attacks(names, grid)
    else:
        p = _validate.check_p(norm, name="norm")
        eps_values = registry.parse_eps(eps)
        plan = [(name, registry.attack_norm(name, p), eps_values) for name in registry.expand_names(names, p)]
        grid = [(p, e) for e in eps_values]
    budget = [n for n, _, e in plan if n in registry.BUDGET_ATTACKS and not e]
    if budget:
        raise ValueError(f"Expected `eps` (--eps) for the budget attacks {budget}. Received: eps=[]")
    eot_samples = _validate.check_int(eot_samples, name="eot_samples", minimum=1)
    n_examples = _validate.check_int(n_examples, name="n_examples", minimum=1, allow_none=True)
    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    if target_class is not None and not targeted:
        raise ValueError("Expected --targeted with `target_class` (--target_class). Received: targeted=False")
    num_classes = data_lib.num_classes(dataset)
    if target_class is not None and not 0 <= int(target_class) < num_classes:
        raise ValueError(
            f"Expected `target_class` (--target_class) in [0, {num_classes}). Received: target_class={target_class!r}"
        )
    if not isinstance(model, str) and not callable(model):
        raise ValueError(f"Expected `model` (--model) to be a path or a callable. Received: model={model!r}")
    # Before any work: a run must not end by losing its results to a bad folder.
    out_dir = ensure_out_dir(out_dir, name="out_dir")

    from tfrobust.evaluation.engine import evaluate
    from tfrobust.training import make_strategy

    from tfrobust import distribute

    dist = make_strategy(strategy)
    spread = None if isinstance(strategy, str) and strategy.strip().lower() == "default" else dist
    out_dir = distribute.write_dir(dist, out_dir)  # the chief's out_dir; a temporary one elsewhere
    if isinstance(model, str):
        with dist.scope():
            model = load_model(model)
    x, y = data_lib.load(dataset, split, data_dir=data_dir)
    if n_examples is not None:
        x, y = x[:n_examples], y[:n_examples]
    if eot_samples > 1:
        from tfrobust.models.wrappers import EoT

        model = EoT(model, n=eot_samples)

    from tfrobust.evaluation import labels
    from tfrobust.threats import LpBall

    several = len({p for p, _ in grid}) > 1
    attack_objs, files = {}, []
    for name, p, eps_values in plan:
        base = f"{name}_{labels.p_label(p)}" if several else name
        if name in registry.BUDGET_ATTACKS:
            for e in eps_values:
                key = f"{base}_{e:g}"
                attack_objs[key] = registry.make_attack(
                    name, norm=p, eps=e, steps=steps, step_size=step_size, restarts=restarts, seed=seed)
                files.append((key, None, _file_name(base, e)))
        else:
            attack_objs[base] = registry.make_attack(name, norm=p, steps=steps, seed=seed)
            for e in eps_values or [None]:
                files.append((base, e, _file_name(base, e)))
    targets = None
    if targeted:
        targets = "random" if target_class is None else int(target_class)
    result = evaluate(model, (x, y), attack_objs, threats=[LpBall(p, e) for p, e in grid], targets=targets,
                      batch_size=batch_size, seed=seed, sanity_checks=sanity_checks,
                      keep_adversarials=True, on_attack_result=_write_partial(out_dir, files),
                      verbose=verbose, strategy=spread)
    result.save(out_dir)
    partial = os.path.join(out_dir, "partial.json")
    if os.path.exists(partial):
        os.remove(partial)  # The full report supersedes it.
    return result
