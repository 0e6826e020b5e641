"""Template files: `.npz` arrays + a `.json` description (never pickle),
and a PNG grid of the template means (the paper's Fig. 2)."""

import json
import os
import zipfile

import numpy as np

from tfrobust import _validate

__all__ = ["load_templates", "save_templates", "load_original", "plot_templates"]


def _templates_cls():
    from tfrobust.rbf.em import Templates

    return Templates


def _check(means, variances, parameterization, source):
    means = np.asarray(means)
    variances = np.asarray(variances)
    problem = None
    if means.ndim != 4 or means.shape[1:3] != (3, 3) or len(means) == 0:
        problem = f"means of shape [K, 3, 3, C] with K >= 1, found {means.shape}"
    elif variances.shape != (len(means),):
        problem = f"variances of shape [{len(means)}], found {variances.shape}"
    elif not (np.all(np.isfinite(means)) and np.all(np.isfinite(variances))):
        problem = "finite means and variances, found NaN or Inf"
    elif parameterization == "variance" and np.any(variances <= 0):
        problem = f"variances > 0, found min {variances.min()}"
    if problem:
        raise ValueError(f"Expected {source} to hold {problem}.")
    return means.astype(np.float32), variances.astype(np.float32)


def save_templates(path, templates, *, png=True):
    """Writes `path` (.npz: means, variances, parameterization), the same
    name with `.json` (config, history, K, C) and, with `png`, `.png`.

    Returns:
        The list of files written.
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    means, variances = _check(templates.means, templates.variances, templates.parameterization, "templates")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, means=means, variances=variances, parameterization=np.array(templates.parameterization))
    os.replace(tmp, path)  # atomic: a kill never leaves a half-written file
    stem = path[: -len(".npz")]
    with open(stem + ".json", "w") as f:
        json.dump({"num_templates": int(len(means)), "channels": int(means.shape[-1]),
                   "parameterization": templates.parameterization, "config": templates.config,
                   "history": templates.history}, f, indent=1)
    written = [path, stem + ".json"]
    if png:
        written.append(plot_templates(templates, stem + ".png"))
    return written


def load_templates(path):
    """Reads a file written by `save_templates`, checking what it holds.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if it is not a readable template file (truncated,
            missing arrays, wrong shapes, NaN, variances <= 0), saying which.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    if not os.path.exists(path):
        raise FileNotFoundError(f"Expected a template file (.npz from tfrobust.rbf.save_templates). "
                                f"Received: path={path!r}, which does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"means", "variances"} - set(data.files)
            if missing:
                raise ValueError(f"Expected {path!r} to hold the arrays 'means' and 'variances'; "
                                 f"missing: {sorted(missing)}")
            means, variances = data["means"], data["variances"]
            parameterization = str(data["parameterization"]) if "parameterization" in data.files else "variance"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"Expected {path!r} to be a readable .npz template file; it exists but cannot "
                         f"be read ({type(e).__name__}: {e}); it may be truncated") from None
    _validate.check_choice(parameterization, name="parameterization", choices=("variance", "log_variance"))
    means, variances = _check(means, variances, parameterization, repr(path))
    info = {}
    stem = path[: -len(".npz")] if path.endswith(".npz") else path
    if os.path.exists(stem + ".json"):
        try:
            with open(stem + ".json") as f:
                info = json.load(f)
        except (OSError, ValueError):
            info = {}
    return _templates_cls()(means, variances, parameterization, info.get("history", {}), info.get("config", {}))


def load_original(directory, index=0):
    """Reads the original code's `mean{index}.npy` / `conv{index}.npy`
    (e.g. its shipped `rbf_layer/`), without pickle."""
    means_path = os.path.join(directory, f"mean{index}.npy")
    var_path = os.path.join(directory, f"conv{index}.npy")
    for p in (means_path, var_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"Expected the original template file {p!r}; it does not exist")
    try:
        means = np.load(means_path, allow_pickle=False)
        variances = np.load(var_path, allow_pickle=False).reshape(-1)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"Expected readable .npy files in {directory!r} ({type(e).__name__}: {e})") from None
    means, variances = _check(means, variances, "variance", repr(directory))
    return _templates_cls()(means, variances, "variance", {}, {})


def plot_templates(templates, path, *, columns=None):
    """A PNG grid of the template means (gray for C=1, RGB for C=3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = np.asarray(templates.means)
    k, c = len(means), means.shape[-1]
    columns = columns or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.6, rows * 0.6), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < k:
            image = np.clip(means[i], 0, 1)
            ax.imshow(image[..., 0] if c == 1 else image, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
    fig.suptitle(f"{k} RBF templates (3x3)", fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
