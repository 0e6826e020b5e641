"""Writes an `EvaluationResult` as JSON, Markdown, NumPy arrays and a PNG plot.

    result.save("reports/mnist_pgd")   # report.json, report.md, results.npz,
                                       # robust_accuracy.png (several eps/norm)
"""

import json
import math
import os

import numpy as np

from tfrobust.evaluation import result as result_lib

__all__ = ["markdown", "npz_arrays", "plot_robust_accuracy", "save"]


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def markdown(result):
    """The report as Markdown: clean accuracy, attacks table, worst cases, flags."""
    clean = result.clean_correct
    lines = [
        "# Robustness evaluation",
        "",
        f"- examples: {result.n_examples}",
        f"- clean accuracy: {result.clean_accuracy:.4f}",
        f"- mode: {'targeted' if result.y_target is not None else 'untargeted'}",
        "",
        "## Attacks",
        "",
        "Robust accuracy counts an example as robust if it is classified correctly "
        "both clean and under the attack. Median norms are over the successful "
        "perturbations of clean-correct examples.",
        "",
        "| attack | threat | robust accuracy | median L1 | median L2 | median Linf | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in result.attacks.items():
        med = a.median_norms(clean)
        threat = a.threat_text()
        if a.min_norm is not None:
            threat += f" (median min norm {_fmt(float(np.median(a.min_norm[clean])) if clean.any() else math.nan)})"
        lines.append(
            f"| {name} | {threat} | {a.robust_accuracy:.4f} | {_fmt(med['l1'])} | "
            f"{_fmt(med['l2'])} | {_fmt(med['linf'])} | {a.seconds:.2f} |"
        )
    if result.threats:
        lines += [
            "",
            "## Worst case per threat",
            "",
            "An example is robust to a threat only if no attack judged in that norm "
            "found an adversarial example inside the ball.",
            "",
            "| threat | robust accuracy | attacks (robust accuracy on this threat) |",
            "| --- | --- | --- |",
        ]
        for label, t in result.threats.items():
            per = ", ".join(f"{n} {acc:.4f}" for n, acc in t.per_attack.items())
            lines.append(f"| {label} | {t.robust_accuracy:.4f} | {per} |")
    lines += ["", "## Sanity checks", ""]
    if not result.sanity_checks_run:
        lines.append("Not run.")
    elif not result.sanity_flags:
        lines.append("All passed (randomness, gradients, one-step vs iterative, "
                     "black-box vs white-box, large eps).")
    for flag in result.sanity_flags:
        lines.append(f"- **{flag.check}**: {flag.message} *Remedy:* {flag.remedy}")
    return "\n".join(lines) + "\n"


def npz_arrays(result):
    """The per-example arrays, keyed `y`, `attack/<name>/robust`, `threat/<label>/robust`..."""
    arrays = {"y": result.y, "clean_pred": result.clean_pred, "clean_correct": result.clean_correct}
    if result.y_target is not None:
        arrays["y_target"] = result.y_target
    for name, a in result.attacks.items():
        prefix = f"attack/{name}/"
        arrays[prefix + "robust"] = a.robust
        arrays[prefix + "broken"] = a.broken
        arrays[prefix + "pred"] = a.pred
        for key, values in a.norms.items():
            arrays[prefix + key] = values
        if a.min_norm is not None:
            arrays[prefix + "min_norm"] = a.min_norm
    for label, t in result.threats.items():
        arrays[f"threat/{label}/robust"] = t.robust
    return arrays


def _families(result, p):
    """Per-attack curves to draw for norm p: {label: (eps list, accuracies)}."""
    clean = result.clean_correct
    curves = {}
    for name, a in result.attacks.items():
        if a.p != p:
            continue
        if a.threat is None:
            # An unbounded minimization attack gives a whole curve.
            norms = np.sort(a.norms[result_lib.norm_key(p)][a.broken & clean])
            eps_max = max(t.eps for t in result.threats.values() if t.p == p)
            grid = np.linspace(0.0, eps_max, 101)
            broken = np.searchsorted(norms, grid * (1 + 1e-5) + 1e-6, side="right")
            curves[name] = (grid, (clean.sum() - broken) / result.n_examples)
        else:
            family = result_lib.type_name(a.config) or name
            loss = a.config.get("loss") if isinstance(a.config, dict) else None
            family = f"{family} ({loss})" if isinstance(loss, str) else family
            eps_list, accs = curves.setdefault(family, ([], []))
            eps_list.append(a.threat[1])
            accs.append(a.robust_accuracy)
    return curves


def plot_robust_accuracy(result, path):
    """Robust accuracy vs eps, one panel per norm with several eps.

    Returns:
        True if a figure was written (some norm has two or more eps).
    """
    norms = {}
    for t in result.threats.values():
        norms.setdefault(t.p, []).append(t)
    norms = {p: sorted(ts, key=lambda t: t.eps) for p, ts in norms.items() if len(ts) > 1}
    if not norms:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 4), squeeze=False)
    for ax, (p, ts) in zip(axes[0], sorted(norms.items())):
        ax.plot([t.eps for t in ts], [t.robust_accuracy for t in ts], "k-o", lw=2,
                label="worst case")
        for label, (eps_list, accs) in _families(result, p).items():
            order = np.argsort(eps_list)
            style = "-" if len(eps_list) > 20 else "--s"
            ax.plot(np.asarray(eps_list)[order], np.asarray(accs)[order], style, alpha=0.8,
                    label=label)
        ax.axhline(result.clean_accuracy, color="gray", ls=":", label="clean")
        ax.set_xlabel(f"eps ({result_lib.p_label(p)})")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def save(result, out_dir):
    """Writes the report files into `out_dir` (created if needed).

    Returns:
        dict of the written paths: "json", "markdown", "npz" and, when some
        norm has several eps, "png".
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "json": os.path.join(out_dir, "report.json"),
        "markdown": os.path.join(out_dir, "report.md"),
        "npz": os.path.join(out_dir, "results.npz"),
    }
    with open(paths["json"], "w") as f:
        json.dump(result.to_dict(), f, indent=2, allow_nan=False)
    with open(paths["markdown"], "w") as f:
        f.write(markdown(result))
    np.savez_compressed(paths["npz"], **npz_arrays(result))
    png = os.path.join(out_dir, "robust_accuracy.png")
    if plot_robust_accuracy(result, png):
        paths["png"] = png
    return paths
