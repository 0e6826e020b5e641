"""Certifies a saved classifier by randomized smoothing on a dataset (`apps/certify.py`).

Example:

```python
from tfrobust.experiments.certify import certify_dataset

summary = certify_dataset(model="runs/cnn/model.keras", dataset="mnist", sigma=0.25,
                          n0=100, n=100_000, alpha=0.001, batch_size=1000,
                          n_examples=100, out_dir="runs/certify")
print(summary["certified_accuracy"])        # {"0.5": ..., ...}
```

Writes, in `out_dir`:

- `certify.tsv`: Cohen et al.'s columns `idx label predict radius correct
  time` (one row per image, `predict = -1` where CERTIFY abstains, `time`
  in seconds: a block's wall time shared by its images, since they are
  certified together; `radius` rounded down to 6 decimals), written block
  by block as the run goes;
- `certified_accuracy.png`: certified accuracy against the L2 radius;
- `certificate.npz`: idx, y, pred, radius (exact), p_lower and the counts;
- `summary.json`: the settings, the certified accuracy at `radii`, the
  abstention count and the throughput (noisy forward passes per second).
"""

import json
import os
import time

import numpy as np

from tfrobust import _validate

__all__ = ["TSV_COLUMNS", "certify_dataset", "read_tsv"]

#: The columns of Cohen et al.'s certify.py output.
TSV_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
# At most this many progress-bar updates (blocks of images) per run.
_UPDATES = 20


def read_tsv(path):
    """The rows of a `certify.tsv` as a dict of NumPy arrays (one per column)."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        if tuple(header) != TSV_COLUMNS:
            raise ValueError(f"Expected a certify.tsv with columns {TSV_COLUMNS}. Received: {header} in {path!r}")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    cols = list(zip(*rows)) if rows else [()] * len(TSV_COLUMNS)
    types = (np.int64, np.int64, np.int64, np.float64, np.int64, np.float64)
    return {name: np.asarray(col, t) for name, col, t in zip(TSV_COLUMNS, cols, types)}


def _indices(total, skip, n_examples):
    idx = np.arange(0, total, skip)
    return idx[:n_examples] if n_examples is not None else idx


def certify_dataset(*, model, dataset="mnist", split="test", data_dir=None, sigma=0.25, n0=100,
                    n=100_000, alpha=0.001, batch_size=1000, n_examples=None, skip=1, out_dir="certify",
                    radii=(0.25, 0.5, 0.75, 1.0), knobs=None, seed=0, share_noise=False, strategy="default",
                    verbose=1):
    """Certifies every `skip`-th image of a dataset split with `Smooth.certify_batch`.

    Args:
        model: a path (a `.keras` file or a SavedModel folder, RBF-CNN
            models included) or a loaded model returning scores `[B, K]`.
        dataset, split, data_dir: the data (`tfrobust.data.load`).
        sigma: noise level (> 0) of the smoothed classifier.
        n0, n, alpha: selection samples, estimation samples and failure
            probability of CERTIFY (Cohen et al.: 100, 100,000, 0.001).
        batch_size: noisy examples per base call.
        n_examples: certify at most this many images (after `skip`).
        skip: certify images 0, skip, 2 skip, ... (Cohen et al.'s `--skip`).
        out_dir: output folder (created).
        radii: radii of the summary's certified accuracy.
        knobs: optional dict passed to the loaded model's `set_knobs` (e.g.
            `{"samples": 1}` for an RBF-CNN: one stochastic reconstruction
            per noisy sample; the base classifier may itself be random).
        seed: noise seed.
        share_noise: images certified together share their noise draws
            (`Smooth(share_noise=True)`: each certificate keeps its
            guarantee; the images' outcomes are no longer independent).
        strategy: `tfrobust.training.make_strategy` name (or a strategy):
            the noisy batches of `Smooth.certify_batch` are dealt to its
            replicas; the model loads under its scope, and only the chief
            writes `out_dir` (other workers write to a removed temporary folder).
        verbose: 1 shows a progress bar, 0 is silent.

    Returns:
        The summary dict (also written to `summary.json`).

    Raises:
        ValueError: on bad settings, a model whose class count differs from
            the dataset's, or any error of `Smooth.certify_batch`.
        FileNotFoundError: if the model or the data is missing.
    """
    import keras

    import tfrobust
    from tfrobust import data
    from tfrobust.evaluation import certificates
    from tfrobust.smoothing import Smooth

    skip = _validate.check_int(skip, name="skip", minimum=1)
    n_examples = _validate.check_int(n_examples, name="n_examples", minimum=1, allow_none=True)
    verbose = _validate.check_int(verbose, name="verbose", minimum=0)
    radii = [_validate.check_float(r, name="radii", minimum=0.0) for r in radii]
    from tfrobust.evaluation.report import ensure_out_dir

    from tfrobust import distribute, training

    ensure_out_dir(out_dir)  # a bad folder fails before the work, not after
    dist = training.make_strategy(strategy) if isinstance(strategy, str) else strategy
    out_dir = distribute.write_dir(dist, out_dir)
    name = model if isinstance(model, str) else getattr(model, "name", repr(model))
    if isinstance(model, (str, os.PathLike)):
        with dist.scope():
            model = tfrobust.load_model(os.fspath(model), argument="model", compile=False)
    if knobs:
        if not callable(getattr(model, "set_knobs", None)):
            raise _validate.error("knobs", "knobs only for a model with set_knobs (e.g. an RBF-CNN)", knobs)
        model.set_knobs(**knobs)
    num_classes = data.num_classes(dataset)
    smooth = Smooth(model, num_classes, sigma, seed=seed, share_noise=share_noise)
    # Validates n0, n, alpha, batch_size before any data is read or work done.
    for arg, value, lo in (("n", n, 1), ("n0", n0, 1), ("batch_size", batch_size, 1)):
        _validate.check_int(value, name=arg, minimum=lo)
    if n0 > n:
        raise _validate.error("n0", f"at most n={n}", n0)
    smooth._check_alpha(alpha)
    x, y = data.load(dataset, split, data_dir=data_dir)
    idx = _indices(len(x), skip, n_examples)
    k = int(np.asarray(model(x[:1])).shape[-1])
    if k != num_classes:
        raise ValueError(f"Expected the model to return {num_classes} scores for {dataset!r}. "
                         f"Received: {k} from {name!r}")
    tsv_path = os.path.join(out_dir, "certify.tsv")
    # Blocks of images certified together: enough images that even the n0
    # selection samples fill a base call of batch_size, few enough that the
    # progress bar moves.
    block = int(min(len(idx), batch_size, max(-(-batch_size // n0), -(-len(idx) // _UPDATES))))
    progress = keras.utils.Progbar(len(idx), unit_name="image") if verbose else None
    results, began = [], time.perf_counter()
    with open(tsv_path, "w") as f:
        f.write("\t".join(TSV_COLUMNS) + "\n")
        for start in range(0, len(idx), block):
            rows = idx[start:start + block]
            r = smooth.certify_batch(x[rows], n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                                     strategy=None if strategy == "default" else dist)
            results.append(r)
            for i, label, pred, rad, t in zip(rows, y[rows], r.pred, r.radius, r.time):
                # Rounded down, so the file never claims more than was certified.
                f.write(f"{i}\t{label}\t{pred}\t{np.floor(rad * 1e6) / 1e6:.6f}\t{int(pred == label)}\t{t:.4f}\n")
            f.flush()
            if progress is not None:
                progress.add(len(rows), values=[("certified", float(np.mean(r.pred == y[rows])))])
    seconds = time.perf_counter() - began
    pred = np.concatenate([r.pred for r in results])
    cert = certificates.Certificate.concatenate([r.to_certificate() for r in results])
    labels = y[idx].astype(np.int64)
    grid = sorted(set([0.0] + radii))
    comparison = certificates.compare(f"sigma={sigma:g}", cert, labels, grid)
    npz = os.path.join(out_dir, "certificate.npz")
    np.savez(npz, idx=idx, y=labels, pred=pred, radius=np.concatenate([r.radius for r in results]),
             p_lower=np.concatenate([r.p_lower for r in results]),
             counts=np.concatenate([r.counts for r in results]))
    png = os.path.join(out_dir, "certified_accuracy.png")
    certificates.plot_curves([(f"sigma={sigma:g}, n={n}", comparison, None)], png, p=2,
                             title=f"{dataset}: randomized smoothing, {len(idx)} images")
    summary = {
        "model": str(name), "dataset": dataset, "split": split, "sigma": sigma, "n0": n0, "n": n,
        "alpha": alpha, "batch_size": batch_size, "skip": skip, "knobs": dict(knobs or {}), "n_examples": int(len(idx)),
        "seed": seed, "share_noise": bool(share_noise),
        "certified_accuracy": {f"{r:g}": float(a) for r, a in zip(grid, comparison.certified_accuracy)},
        "smoothed_accuracy": float(np.mean(pred == labels)),
        "abstained": int(np.sum(pred == -1)),
        "max_certifiable_radius": float(smooth.sigma * _max_z(n, alpha)),
        "seconds": round(seconds, 2),
        "noisy_passes_per_second": float(len(idx) * (n0 + n) / seconds),
        "files": {"tsv": tsv_path, "npz": npz, "png": png, "json": os.path.join(out_dir, "summary.json")},
    }
    with open(summary["files"]["json"], "w") as f:
        json.dump(summary, f, indent=2)
    if verbose:
        print(json.dumps(summary))
    return summary


def _max_z(n, alpha):
    """Phi^-1 of the bound at n / n: no image can be certified beyond sigma times this."""
    from tfrobust.smoothing import stats

    return float(np.asarray(stats.certified_radius(stats.lower_confidence_bound(n, n, alpha), 1.0)))
