"""Robustness report over many Cross-Lipschitz runs (`apps/eval_robustness.py`).

For every trained run below a folder, per-example upper bounds (the
box-constrained attack) and certified lower bounds (Theorem 2.1, one-hidden-
layer networks) on the minimal adversarial L2 change are computed on a test
split, saved per run as `bounds.npz`, and summarized in one Markdown table
(test error, mean and median bounds, certified and empirical robust accuracy
at given radii) and one plot of accuracy against radius.

The comparison is the evaluation engine's: the lower bounds become a
`tfrobust.evaluation.certificates.Certificate`, the attack's minimal norms
its empirical counterpart (`certificates.compare`), the figures are
`cl_figures`' (a panel per training mode; bound against test error over
seeds), and `sanity.check_certified_vs_empirical`
flags a run whose certified accuracy exceeds its empirical one.
"""

import glob
import json
import os

import numpy as np

from tfrobust.evaluation import certificates
from tfrobust.evaluation import sanity
from tfrobust.experiments import cl_figures
from tfrobust.experiments import cross_lipschitz as cl
from tfrobust.experiments import minimal_l2


def find_runs(root):
    """Run folders (those holding `model.keras` and `metrics.json`) below root."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Expected a folder of experiments. Received: root={root!r}")
    found = sorted(
        os.path.dirname(p)
        for p in glob.glob(os.path.join(root, "**", "model.keras"), recursive=True)
        if os.path.exists(os.path.join(os.path.dirname(p), "metrics.json"))
    )
    if not found:
        raise FileNotFoundError(
            f"Expected trained runs (model.keras + metrics.json) below {root!r}; "
            "found none. Train with apps/worker.py first."
        )
    return found


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


def load_run_config(run_dir):
    return cl.WorkerConfig(**_metrics(run_dir)["config"])


def compare_bounds(bounds_dict, y, radii, name="run"):
    """Certified (lower bound) next to empirical (attack) accuracy of one run.

    Args:
        bounds_dict: `pred`, `upper` (the attack's minimal L2 norm, inf
            where it failed) and optionally `lower` (certified radii).
        y: int labels.
        radii: L2 radii.
        name: the run's name in flags.

    Returns:
        `(empirical accuracy [R], CertificateResult or None)`.
    """
    pred = np.asarray(bounds_dict["pred"]).astype(np.int64)
    clean = pred == np.asarray(y)
    empirical = certificates.empirical_accuracy(bounds_dict["upper"], clean, radii)
    if "lower" not in bounds_dict:
        return empirical, None
    cert = certificates.Certificate(pred, np.asarray(bounds_dict["lower"], np.float64), 2)
    return empirical, certificates.compare(name, cert, np.asarray(y).astype(np.int64), radii,
                                           adversarial_norm=bounds_dict["upper"], clean_correct=clean)


def _load_bounds(run_dir):
    saved = np.load(os.path.join(run_dir, "bounds.npz"))
    return {k: saved[k] for k in saved.files if k != "y"}, saved["y"]


def evaluate_runs(run_dirs, *, data_dir=None, n_eval=None, radii=(0.1, 0.2, 0.5, 1.0), batch_size=128, verbose=1,
                  attacks=None):
    """Bounds for every run; returns one summary row per run.

    `attacks` (names or `{name: kwargs}`, see `minimal_l2.robustness_bounds`)
    overrides the upper-bound attacks each run recorded (default: all).
    `n_eval=None` reuses each run's saved evaluation, whatever its number
    of points, and otherwise evaluates the run's recorded `n_eval` (the
    whole test split if it has none).
    """
    rows = []
    for run_dir in run_dirs:
        config = load_run_config(run_dir)
        if n_eval is not None:
            config.n_eval = n_eval
        config.verbose = 0
        if data_dir is not None:
            config.data_dir = data_dir
        config.exp_dir = _exp_root(run_dir)
        if attacks is not None:
            config.upper_attacks = attacks
        summary = _cached_summary(run_dir, n_eval, config.upper_attacks)
        if summary is None and n_eval is None and config.n_eval is not None:
            summary = _cached_summary(run_dir, config.n_eval, config.upper_attacks)
        if summary is None:
            summary = cl.evaluate_run(config, run_dir=run_dir, batch_size=batch_size)
        b, y = _load_bounds(run_dir)
        # Summaries are cheap: recomputed from the saved bounds, so a cached
        # evaluation reports every figure the current code knows.
        summary = {**summary, **minimal_l2.summarize_bounds(b, y)}
        run_name = os.path.relpath(run_dir, config.exp_dir)
        empirical, comparison = compare_bounds(b, y, radii, name=run_name)
        metrics = _metrics(run_dir)
        row = {
            "run": run_name,
            "run_dir": run_dir,
            "dataset": config.dataset,
            "nn_type": config.nn_type,
            "reg_type": config.reg_type,
            "lmbd": config.lmbd,
            "keep_hidden": config.keep_hidden,
            "adv_train": config.adv_train_flag,
            "seed": config.seed,
            "n_epochs": config.n_epochs,
            "n_train": metrics.get("n_train"),
            "train_seconds": metrics.get("train_seconds"),
            # On the whole test split; `test_error` is on the n_eval points.
            "test_error_full": metrics["test_error"],
            **summary,
            "radii": list(radii),
            "empirical_robust_acc": [float(v) for v in empirical],
        }
        if comparison is not None:
            row["certified_acc"] = [float(v) for v in comparison.certified_accuracy]
            lower_ok = b["lower"] <= b["upper"] + 1e-6
            row["lower_le_upper_violations"] = int(np.sum(~lower_ok))
            flag = sanity.check_certified_vs_empirical([comparison], warn=bool(verbose))
            row["sanity_flags"] = [] if flag is None else [flag.to_dict()]
        rows.append(row)
        if verbose:
            print(f"{row['run']}: {json.dumps({k: row[k] for k in row if k.endswith(('mean', 'median', 'error'))})}")
    return rows


def _cached_summary(run_dir, n_eval, attacks):
    """The saved evaluation of `run_dir` if it covered the same test points and attacks.

    Bounds are deterministic for a trained model, so a report over many runs
    (or a sweep started again) does not recompute them.
    """
    path = os.path.join(run_dir, "robustness.json")
    if not os.path.exists(path):
        return None
    if os.path.getmtime(path) < os.path.getmtime(os.path.join(run_dir, "model.keras")):
        return None
    with open(path) as f:
        summary = json.load(f)
    same = (n_eval is None or summary.get("n_points") == n_eval) and (
        summary.get("upper_attack_spec") == minimal_l2.spec_key(attacks))
    return summary if same else None


def _exp_root(run_dir):
    # run_dir = exp_dir/experiment_name/dataset/nn_type/hyperparameters
    return os.path.normpath(os.path.join(run_dir, *[os.pardir] * 4))


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows):
    """One row per run: bounds, certified (lower) and attack (upper) accuracy per radius."""
    radii = rows[0]["radii"] if rows else []
    head = ["dataset", "net", "regularizer", "seed", "adv", "test err (all)", "test err (eval)", "upper mean",
            "upper median", "lower mean", "lower median"]
    head += [f"cert. acc @{r:g}" for r in radii] + [f"attack acc @{r:g}" for r in radii]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["dataset"], row["nn_type"], cl_figures.label(row), str(row.get("seed", "")),
            "yes" if row["adv_train"] else "no",
            f"{100 * row.get('test_error_full', row['test_error']):.2f}%",
            f"{100 * row['test_error']:.2f}%",
            _fmt(row.get("upper_bound_mean")), _fmt(row.get("upper_bound_median")),
            _fmt(row.get("lower_bound_mean")), _fmt(row.get("lower_bound_median")),
        ]
        cells += [_fmt(v) for v in row.get("certified_acc", [None] * len(radii))]
        cells += [_fmt(v) for v in row["empirical_robust_acc"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path, max_radius=2.0, seed=None):
    """Certified (solid) and attack (dashed) accuracy against L2 radius, a panel per training mode.

    With several seeds per setting, `seed` picks the runs drawn (default:
    the first run of each setting).
    """
    series = {}
    for row in rows:
        b, y = _load_bounds(row["run_dir"])
        _, comparison = compare_bounds(b, y, [0.0], name=cl_figures.label(row))
        series[row["run_dir"]] = (comparison, (b["upper"], b["pred"] == y))
    cl_figures.plot_by_mode(rows, series, path, max_radius=max_radius, seed=seed)


def report(root, out_dir, *, data_dir=None, n_eval=None, radii=(0.1, 0.2, 0.5, 1.0), batch_size=128, verbose=1,
           attacks=None):
    """Evaluates every run below `root`; writes JSON, Markdown and PNG to out_dir.

    `root` may be a list of folders (one report over several experiments).
    Besides `robustness.{md,json,png}` (one row per run, accuracy against
    radius per training mode), `robustness_grid.{md,json,png}` aggregate
    the runs over seeds (mean ± std of the median bounds and test error per
    regularizer setting; median bound against test error).

    Raises:
        FileNotFoundError: if `root` holds no trained runs.
        ValueError: if `out_dir` is a file or cannot be created (checked
            before any bound is computed).
    """
    from tfrobust.evaluation.report import ensure_out_dir

    roots = [root] if isinstance(root, str) else list(root)
    runs = [run for r in roots for run in find_runs(r)]
    ensure_out_dir(out_dir)  # before hours of bounds, not after
    rows = evaluate_runs(runs, data_dir=data_dir, n_eval=n_eval, radii=radii, batch_size=batch_size, verbose=verbose,
                         attacks=attacks)
    table = markdown_table(rows)
    with open(os.path.join(out_dir, "robustness.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out_dir, "robustness.json"), "w") as f:
        json.dump(rows, f, indent=2)
    plot(rows, os.path.join(out_dir, "robustness.png"))
    summary = cl_figures.grid_summary(rows)
    with open(os.path.join(out_dir, "robustness_grid.md"), "w") as f:
        f.write(cl_figures.grid_table(summary))
    with open(os.path.join(out_dir, "robustness_grid.json"), "w") as f:
        json.dump(summary, f, indent=2)
    cl_figures.plot_grid(summary, os.path.join(out_dir, "robustness_grid.png"))
    if verbose:
        print(table)
        print(cl_figures.grid_table(summary))
    return rows
