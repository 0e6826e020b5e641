"""Figures and the seed-aggregated table of the Cross-Lipschitz report.

`plot_by_mode` draws certified (solid) and attack (dashed, same colour)
accuracy against the L2 radius, one panel per training mode (network and
adversarial training or not), one colour per regularizer (its strongest
setting; or every setting, shaded by strength), λ in the labels, the legend
outside the axes. `grid_summary`
averages a λ grid over seeds (mean ± std of each run's median bounds and
its test error), `grid_table` prints it as Markdown and `plot_grid` draws
median bound against test error per regularizer with error bars over
seeds: the comparison of Hein & Andriushchenko's figures.

Rows are those of `cl_report.evaluate_runs` (one per run).
"""

import numpy as np

from tfrobust.evaluation import certificates

__all__ = ["grid_summary", "grid_table", "label", "plot_by_mode", "plot_grid", "setting"]

_NAMES = {"no": "none", "weight_decay": "weight decay", "dropout": "dropout",
          "cross_lipschitz": "Cross-Lipschitz"}
# One colour family per regularizer; shades run light (weak) to dark (strong).
_CMAPS = {"no": "Greys", "weight_decay": "Blues", "dropout": "Greens", "cross_lipschitz": "Reds"}
_ORDER = ("no", "weight_decay", "dropout", "cross_lipschitz")


def setting(row):
    """`(reg_type, strength)`: λ, or the dropout keep rate, or 0 for none."""
    if row["reg_type"] == "dropout":
        return "dropout", float(row["keep_hidden"])
    if row["reg_type"] == "no":
        return "no", 0.0
    return row["reg_type"], float(row["lmbd"])


def label(row):
    """A short legend label with the regularizer's strength."""
    reg, strength = setting(row)
    if reg == "no":
        return "none"
    if reg == "dropout":
        return f"dropout keep={strength:g}"
    return f"{_NAMES[reg]} λ={strength:g}"


def _mode_key(mode):
    # The one-hidden-layer network (the certified one) first.
    return (not mode.startswith("one hidden"), mode)


def _mode(row):
    net = {"mlp1layer": "one hidden layer", "resnet": "ResNet-32"}.get(row["nn_type"], row["nn_type"])
    return f"{net}, {'adversarial' if row['adv_train'] else 'plain'} training"


def _colours(settings):
    """A colour per `(reg, strength)`: the regularizer's colour map, shaded by rank."""
    import matplotlib

    colours = {}
    for reg in _ORDER:
        values = sorted({s for r, s in settings if r == reg})
        if reg == "dropout":
            values = values[::-1]  # a lower keep rate is the stronger one
        cmap = matplotlib.colormaps[_CMAPS[reg]]
        for i, value in enumerate(values):
            shade = 0.8 if reg == "no" else 0.45 + 0.5 * (i + 1) / (len(values) + 1)
            colours[(reg, value)] = cmap(shade)
    return colours


def _dark(reg):
    import matplotlib

    return matplotlib.colormaps[_CMAPS[reg]](0.8)


def _sort_key(item):
    reg, strength = item
    return _ORDER.index(reg), -strength if reg == "dropout" else strength


def _strongest(chosen):
    """Per regularizer, its strongest setting only (highest λ, lowest keep)."""
    best = {}
    for reg, strength in chosen:
        key = -strength if reg == "dropout" else strength
        if reg not in best or key > best[reg][0]:
            best[reg] = (key, (reg, strength))
    return {pair: chosen[pair] for _, pair in best.values()}


def plot_by_mode(rows, series, path, *, max_radius=2.0, seed=None, strongest=True):
    """Accuracy against L2 radius, one panel per training mode.

    Args:
        rows: report rows.
        series: `{run_dir: (CertificateResult or None, (adversarial_norm,
            clean_correct))}` per row.
        path: the PNG file.
        max_radius: right end of the radius axis.
        seed: draw only runs of this seed (default: the smallest seed).
        strongest: per regularizer only its strongest setting (four
            curves a panel, readable at a glance; the whole grid is
            `plot_grid`'s); False draws every setting.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({_mode(r) for r in rows}, key=_mode_key)
    colours = _colours({setting(r) for r in rows})
    grid = np.linspace(0.0, max_radius, 101)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes) + 2.6, 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        in_mode = [r for r in rows if _mode(r) == mode]
        seeds = sorted({r.get("seed") for r in in_mode if r.get("seed") is not None})
        shown = seed if seed is not None else (seeds[0] if seeds else None)
        chosen = {}
        for row in in_mode:
            if shown is None or row.get("seed") == shown:
                chosen.setdefault(setting(row), row)
        if strongest:
            chosen = _strongest(chosen)
        # Style key first; then one entry (the colour) per setting.
        ax.plot([], [], "-", color="black", lw=1.6, label="certified (lower bound)")
        ax.plot([], [], "--", color="black", lw=1.6, label="attack (upper bound)")
        for key in sorted(chosen, key=_sort_key):
            row = chosen[key]
            comparison, (norm, clean) = series[row["run_dir"]]
            colour = _dark(key[0]) if strongest else colours[key]
            if comparison is not None:
                certified, _ = comparison.curves(grid)
                ax.plot(grid, certified, "-", color=colour, lw=1.6)
            ax.plot(grid, certificates.empirical_accuracy(norm, clean, grid), "--", color=colour, lw=1.6)
            ax.plot([], [], "s", color=colour, ms=6, label=label(row))
        title = mode if shown is None or len(seeds) < 2 else f"{mode} (seed {shown})"
        if strongest:
            title += ", strongest setting of each"
        n_points = sorted({int(r["n_points"]) for r in chosen.values()})
        ax.set_title(f"{title}\n{'/'.join(map(str, n_points))} test points", fontsize=9)
        ax.set_xlabel("L2 radius")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0.0, max_radius)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def grid_summary(rows):
    """Seed-aggregated rows: one per (mode, regularizer, strength).

    Returns:
        A list of dicts with `mode`, `reg_type`, `strength`, `label`,
        `n_seeds` and mean / std over seeds of `test_error` (whole test
        split), `upper_median` and `lower_median` (each run's median over
        its correctly classified evaluation points) and `boxed_ratio` (the
        median ratio of the boxed-linear attack's norm to the upper bound),
        in the regularizers' order and by increasing strength.
    """
    groups = {}
    for row in rows:
        groups.setdefault((_mode(row),) + setting(row), []).append(row)
    out = []
    for (mode, reg, strength), members in groups.items():
        entry = {"mode": mode, "reg_type": reg, "strength": strength, "label": label(members[0]),
                 "n_seeds": len(members), "seeds": sorted(m.get("seed") for m in members)}
        for key, field in (("test_error", "test_error_full"), ("upper_median", "upper_bound_median"),
                           ("lower_median", "lower_bound_median"),
                           ("boxed_ratio", "upper_boxed_linear_ratio_median")):
            values = np.array([np.nan if m.get(field) is None else m[field] for m in members], float)
            if np.all(np.isnan(values)):
                continue
            entry[f"{key}_mean"] = float(np.nanmean(values))
            entry[f"{key}_std"] = float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else 0.0
        out.append(entry)
    out.sort(key=lambda e: _mode_key(e["mode"]) + _sort_key((e["reg_type"], e["strength"])))
    return out


def _pm(entry, key, scale=1.0, digits=3):
    if f"{key}_mean" not in entry:
        return "–"
    mean = f"{scale * entry[key + '_mean']:.{digits}f}"
    return mean if entry["n_seeds"] < 2 else f"{mean} ± {scale * entry[key + '_std']:.{digits}f}"


def grid_table(summary):
    """Markdown: mean ± std over seeds per setting."""
    head = ["training mode", "regularizer", "seeds", "test error (%)", "median upper bound",
            "median lower bound", "lower / upper", "boxed-linear alone / upper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        ratio = "–"
        if "lower_median_mean" in e and e.get("upper_median_mean"):
            ratio = f"{e['lower_median_mean'] / e['upper_median_mean']:.2f}"
        cells = [e["mode"], e["label"], str(e["n_seeds"]), _pm(e, "test_error", 100.0, 2),
                 _pm(e, "upper_median"), _pm(e, "lower_median"), ratio, _pm(e, "boxed_ratio")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_grid(summary, path):
    """Median bound against test error per regularizer, error bars over seeds.

    One panel per bound (upper: the attacks' minimum; lower: certified),
    per training mode; the points of a regularizer are joined in order of
    strength and annotated with it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({e["mode"] for e in summary}, key=_mode_key)
    panels = [(m, k) for m in modes for k in ("upper_median", "lower_median")
              if any(f"{k}_mean" in e for e in summary if e["mode"] == m)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels) + 2.0, 4.2), squeeze=False)
    for ax, (mode, key) in zip(axes[0], panels):
        for reg in _ORDER:
            points = [e for e in summary if e["mode"] == mode and e["reg_type"] == reg and f"{key}_mean" in e]
            if not points:
                continue
            colour = _dark(reg)
            x = [100 * e["test_error_mean"] for e in points]
            ax.errorbar(x, [e[f"{key}_mean"] for e in points],
                        xerr=[100 * e["test_error_std"] for e in points],
                        yerr=[e[f"{key}_std"] for e in points], fmt="o-", color=colour, capsize=3,
                        ms=5, lw=1.2, label=_NAMES[reg])
            for e, xi in zip(points, x):
                if reg != "no":
                    text = f"{e['strength']:g}"
                    ax.annotate(text, (xi, e[f"{key}_mean"]), textcoords="offset points", xytext=(4, 4),
                                fontsize=6.5, color=colour)
        what = "attacks' minimum (upper bound)" if key == "upper_median" else "certified (lower bound)"
        ax.set_title(f"{mode}\n{what}", fontsize=9)
        ax.set_xlabel("test error (%)")
        ax.set_ylabel("median minimal L2 change")
        ax.ticklabel_format(useOffset=False)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                       title="λ or keep rate at the points", title_fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
