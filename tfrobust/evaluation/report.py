"""Writes an `EvaluationResult` as JSON, Markdown, NumPy arrays and PNG plots.

    result.save("reports/mnist_pgd")   # report.json, report.md, results.npz,
                                       # robust_accuracy.png (several eps/norm),
                                       # certified_vs_empirical.png (certificates)

This module reads results but is not imported by `result.py` at import
time (only inside `EvaluationResult.save`), so the two do not form a cycle.
"""

import json
import math
import os

import numpy as np

from tfrobust.evaluation import labels

__all__ = ["ensure_out_dir", "markdown", "npz_arrays", "plot_certified_vs_empirical",
           "plot_robust_accuracy", "save"]


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
        "perturbations of clean-correct examples. Non-finite counts the adversarial "
        "points where the model's logits were NaN or Inf (never counted as misclassified).",
        "",
        "| attack | threat | robust accuracy | median L1 | median L2 | median Linf | non-finite | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in result.attacks.items():
        med = a.median_norms(clean)
        threat = a.threat_text()
        if a.min_norm is not None:
            threat += f" (median min norm {_fmt(float(np.median(a.min_norm[clean])) if clean.any() else math.nan)})"
        lines.append(
            f"| {name} | {threat} | {a.robust_accuracy:.4f} | {_fmt(med['l1'])} | "
            f"{_fmt(med['l2'])} | {_fmt(med['linf'])} | {a.nonfinite_count} | {a.seconds:.2f} |"
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
        for t in result.threats.values():
            per = ", ".join(f"{n} {acc:.4f}" for n, acc in t.per_attack.items())
            lines.append(f"| {t.label} | {t.robust_accuracy:.4f} | {per} |")
    lines += _certificate_lines(result)
    lines += ["", "## Sanity checks", ""]
    if not result.sanity_checks_run:
        lines.append("Not run.")
    elif not result.sanity_flags:
        lines.append("All passed (randomness, gradients, one-step vs iterative, "
                     "black-box vs white-box, large eps, dynamic inference, non-finite "
                     "outputs, certified vs empirical).")
    for flag in result.sanity_flags:
        lines.append(f"- **{flag.check}**: {flag.message} *Remedy:* {flag.remedy}")
    return "\n".join(lines) + "\n"


def _certificate_lines(result):
    if not result.certificates:
        return []
    lines = [
        "",
        "## Certified (lower) vs empirical (upper) robust accuracy",
        "",
        "On the same examples: certified accuracy counts an example at radius r when the "
        "certified prediction is correct with radius >= r (a lower bound on the true robust "
        "accuracy); empirical robust accuracy is the worst case of the attacks judged in the "
        "same norm (an upper bound). Certified must never exceed empirical.",
        "",
        "| certificate | radius | certified accuracy | empirical robust accuracy |",
        "| --- | --- | --- | --- |",
    ]
    for name, c in result.certificates.items():
        emp = c.empirical_accuracy if c.empirical_accuracy is not None else [None] * len(c.radii)
        for r, lo, up in zip(c.radii, c.certified_accuracy, emp):
            lines.append(f"| {name} | {labels.p_label(c.p)} {r:g} | {lo:.4f} | "
                         f"{'-' if up is None else f'{up:.4f}'} |")
    for name, c in result.certificates.items():
        lines.append("")
        lines.append(f"- {name}: {int(c.certificate.abstained.sum())} abstentions, "
                     f"{c.contradictions} examples certified beyond an adversarial example found.")
    return lines


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
    for t in result.threats.values():
        arrays[f"threat/{t.label}/robust"] = t.robust
    for name, c in result.certificates.items():
        arrays[f"certificate/{name}/pred"] = c.certificate.pred
        arrays[f"certificate/{name}/radius"] = c.certificate.radius
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
            norms = np.sort(a.norms[labels.norm_key(p)][a.broken & clean])
            eps_max = max(t.eps for t in result.threats.values() if t.p == p)
            grid = np.linspace(0.0, eps_max, 101)
            broken = np.array([np.sum(labels.inside(norms, e)) for e in grid])
            curves[name] = (grid, (clean.sum() - broken) / result.n_examples)
        else:
            family = _type_name(a.config) or name
            loss = a.config.get("loss") if isinstance(a.config, dict) else None
            family = f"{family} ({loss})" if isinstance(loss, str) else family
            eps_list, accs = curves.setdefault(family, ([], []))
            eps_list.append(a.threat.eps)
            accs.append(a.robust_accuracy)
    return curves


def plot_robust_accuracy(result, path):
    """Robust accuracy per norm: one panel per norm.

    A norm with several eps gets curves (worst case and each attack family)
    vs eps; a norm with one eps, in a run of several norms, gets bars (each
    attack and the worst case) at that eps.

    Returns:
        True if a figure was written (some norm has two or more eps, or the
        run has several norms).
    """
    norms = {}
    for t in result.threats.values():
        norms.setdefault(t.p, []).append(t)
    norms = {p: sorted(ts, key=lambda t: t.eps) for p, ts in norms.items()}
    if not any(len(ts) > 1 for ts in norms.values()) and len(norms) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 4), squeeze=False)
    for ax, (p, ts) in zip(axes[0], sorted(norms.items())):
        if len(ts) == 1:
            _bars(ax, result, ts[0])
            continue
        ax.plot([t.eps for t in ts], [t.robust_accuracy for t in ts], "k-o", lw=2,
                label="worst case")
        for label, (eps_list, accs) in _families(result, p).items():
            order = np.argsort(eps_list)
            style = "-" if len(eps_list) > 20 else "--s"
            ax.plot(np.asarray(eps_list)[order], np.asarray(accs)[order], style, alpha=0.8,
                    label=label)
        ax.axhline(result.clean_accuracy, color="gray", ls=":", label="clean")
        ax.set_xlabel(f"eps ({labels.p_label(p)})")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _bars(ax, result, t):
    """Per-attack and worst-case robust accuracy at one threat (`ThreatResult`), as bars."""
    names = list(t.per_attack) + ["worst case"]
    values = list(t.per_attack.values()) + [t.robust_accuracy]
    ax.barh(names, values, color=["C0"] * len(t.per_attack) + ["k"])
    ax.axvline(result.clean_accuracy, color="gray", ls=":", label="clean")
    ax.set_xlim(0.0, 1.02)
    ax.set_xlabel("robust accuracy")
    ax.set_title(t.label)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8)


def _type_name(config):
    return config.get("name") if isinstance(config, dict) else None


def plot_certified_vs_empirical(result, path):
    """Accuracy vs radius: each certificate (solid) next to the attacks (dashed).

    Returns:
        True if a figure was written (the result has certificates).
    """
    from tfrobust.evaluation import certificates

    if not result.certificates:
        return False
    norms = {c.p for c in result.certificates.values()}
    series = [(name, c, None) for name, c in result.certificates.items()]
    certificates.plot_curves(series, path, p=norms.pop() if len(norms) == 1 else 2,
                             title="certified (lower) vs empirical (upper)")
    return True


def ensure_out_dir(out_dir, *, name="out_dir"):
    """Creates the output folder, or says clearly why it cannot be one.

    Raises:
        ValueError: naming `name` and the path if it is empty, an existing
            file, or cannot be created (permissions, a file on the way).
    """
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f"Expected `{name}` to be a folder path. Received: {name}={out_dir!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(
            f"Expected `{name}` to be a folder. Received: {name}={str(out_dir)!r}, which is an "
            "existing file"
        )
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"Expected `{name}` to be a folder that can be created. Received: "
            f"{name}={str(out_dir)!r} ({err.strerror or err})"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"Expected `{name}` to be writable. Received: {name}={str(out_dir)!r}")
    return str(out_dir)


def save(result, out_dir):
    """Writes the report files into `out_dir` (created if needed).

    Returns:
        dict of the written paths: "json", "markdown", "npz" and, when some
        norm has several eps, "png"; "certificates_png" with certificates.

    Raises:
        ValueError: if `out_dir` is a file or cannot be created.
    """
    ensure_out_dir(out_dir)
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
    png = os.path.join(out_dir, "certified_vs_empirical.png")
    if plot_certified_vs_empirical(result, png):
        paths["certificates_png"] = png
    return paths
