"""Per-point worst cases over several `test_rCNN` runs (`--combine`).

An attack battery often does not fit in one call (a costly adaptive attack
on a second machine, more attacks added later). Each run saves its
per-example verdicts in `points.npz`; the worst case of a view is the
per-point minimum over every run's attacks on the images all of them cover
(the first n, since every run evaluates a prefix of the test split).
"""

import json
import os

import numpy as np

from tfrobust import _validate


def load_points(out_dir):
    """The per-example arrays of one run.

    Raises:
        FileNotFoundError: when `out_dir` has no points.npz.
        ValueError: when the file is not a readable `.npz` with a `y` array.
    """
    path = os.path.join(out_dir, "points.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected `combine` folders written by test_rCNN (with points.npz). "
                                f"Received: {out_dir!r} without points.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            points = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile / pickle / format errors all mean the same to a user
        raise ValueError(f"Expected {path!r} to be a points.npz of test_rCNN. Received: unreadable ({e})") from None
    if "y" not in points:
        raise _validate.error("combine", "points.npz files with a `y` array", path)
    return points


def combine(out_dirs):
    """Per-point worst cases per view and threat over the runs in `out_dirs`.

    Returns:
        `{view: {threat: {"n", "robust", "attacks"}}}`, where view is `static`
        or `deployed (beta2 = b)`; `attacks` names the rows combined as
        `run: attack` (`run` is the folder's index in `out_dirs`).

    Raises:
        ValueError: when `out_dirs` is empty or the runs' labels disagree on
            their common images (different data or test split).
    """
    if not out_dirs:
        raise _validate.error("combine", "at least one test_rCNN output folder", out_dirs)
    runs = [load_points(d) for d in out_dirs]
    n = min(len(r["y"]) for r in runs)
    for d, r in zip(out_dirs, runs):
        if not np.array_equal(r["y"][:n], runs[0]["y"][:n]):
            raise _validate.error("combine", f"runs on the same test images (labels of the first {n} agree)", d)
    return {view: {t: {"n": int(len(r["robust"])), "robust": float(np.mean(r["robust"])), "attacks": r["attacks"]}
                   for t, r in per.items()} for view, per in per_point(runs).items()}


def per_point(runs):
    """Per-point minima of the verdict arrays of `runs` (dicts as in
    points.npz), per view and threat, on the images all rows cover.

    Returns:
        `{view: {threat: {"robust": bool [n], "attacks": ["run: attack"],
        "kinds": {"static" | "judged" | "adaptive": count}}}}`.
    """
    views = {}
    for i, run in enumerate(runs):
        for key, robust in run.items():
            kind, view, threat, attack = _parse(key)
            if view is None:
                continue
            row = views.setdefault(view, {}).setdefault(threat, {"robust": None, "attacks": [], "kinds": {}})
            row["robust"] = robust if row["robust"] is None else _and(row["robust"], robust)
            row["attacks"].append(f"{i}: {attack}")
            row["kinds"][kind] = row["kinds"].get(kind, 0) + 1
    return views


def deployed_view(beta2):
    """The view name of the deployed model at `beta2` (judged static
    examples and adaptive attacks together)."""
    return f"deployed (beta2 = {beta2})"


def _parse(key):
    parts = key.split("/", 3)
    if parts[0] == "static" and len(parts) == 3:
        return "static", "static", parts[1], parts[2]
    if parts[0] == "judged" and len(parts) == 4:
        return "judged", deployed_view(parts[1]), parts[2], parts[3]
    if parts[0] == "adaptive" and len(parts) in (3, 4):  # 3: runs from before adaptive_attacks
        return "adaptive", deployed_view(parts[1]), parts[2], parts[3] if len(parts) == 4 else "BPDA+EoT PGD"
    return None, None, None, None


def _and(a, b):
    n = min(len(a), len(b))  # the images both cover
    return a[:n] & b[:n]


def write_combined(out_dirs, out_dir):
    """Writes `combined.json` and `combined.md` in `out_dir`; returns the dict."""
    combined = combine(out_dirs)
    os.makedirs(out_dir, exist_ok=True)
    lines = ["Per-point worst cases over the runs " + ", ".join(f"{i}: `{os.path.basename(os.path.normpath(d))}`"
                                                                  for i, d in enumerate(out_dirs)), "",
             "| view | threat | images | robust accuracy | rows combined |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {view} | {t} | {r['n']} | {100 * r['robust']:.1f} | {len(r['attacks'])} |"
              for view, per in combined.items() for t, r in per.items()]
    with open(os.path.join(out_dir, "combined.json"), "w") as f:
        json.dump({"runs": list(out_dirs), "views": combined}, f, indent=1)
    with open(os.path.join(out_dir, "combined.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return combined
