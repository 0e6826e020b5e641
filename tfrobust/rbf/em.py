"""The non-parametric hard EM that learns RBF-CNN's templates (v1), in numba.

Example:

```python
from tfrobust import data, rbf

x, _ = data.load("mnist", "train")
templates = rbf.train_templates(x[:17435], verbose=1)     # ~ a few dozen templates
rbf.save_templates("rbf_layer", templates)                 # .npz + .json + .png grid
```

Every 3×3 patch (stride 1, valid padding) of batches of 50 images is
assigned to the template of highest score `l_k = -||z - mu_k||^2 / (2 c_k)
- ln(c_k) / 2`, or, in the non-parametric mode, to a "new template" slot
when `max_k l_k < -2.5 + ln(alpha)`. Every 15 batches an M-step sets each
kept slot's mean and total variance (`c = sum(E[z^2]) - sum(mu^2)`, floored
at 1e-20) from its assigned patches, drops slots with at most
`count_threshold` patches, keeps the new slot only if its share of all
patches exceeds `mem_threshold`, and updates alpha by the original's
feedback rule `alpha += 0.6913 / ((1 + e^S)(1 + e^F)) - 0.05` with `S =
K / desired_templates` and `F = new share / mem_threshold`. After
`non_param_steps` M-steps no new template can appear; training stops after
`total_steps` M-steps. Batches are taken in order over repeated epochs, as
in the original.

The E-step (scores and assignments) runs in parallel over patches with
numba; the statistics are accumulated per slot.

The original MNIST configuration cannot run as shipped: `Local.py` sets
`batchCount = 0` (so the M-step never fires) and lost `countThreshold`
(an AttributeError). As the paper means, and as the earlier commit and
the CIFAR configuration have it, `batch_count=15` and `count_threshold=1`.

References:
    Nandy, Hsu & Lee, "Approximate Manifold Defense Against Multiple
    Adversarial Perturbations", IJCNN 2020 (Section III-A, Eq. 3).
"""

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numba
import numpy as np

from tfrobust import _validate

__all__ = ["EMConfig", "Templates", "train_templates", "e_step", "e_step_numpy", "accumulate_numpy",
           "extract_patches"]

PATCH = 3
_NEW_NODE_SCORE = -2.5
_VARIANCE_FLOOR = 1e-20


@dataclass
class EMConfig:
    """The EM's settings; defaults are the original MNIST ones (fixed)."""

    batch_images: int = 50
    batch_count: int = 15
    total_steps: int = 500
    non_param_steps: int = 250
    desired_templates: float = 10.0
    mem_threshold: float = 0.001
    count_threshold: int = 1
    alpha: float = 1.0

    def validate(self):
        for name in ("batch_images", "batch_count", "total_steps"):
            _validate.check_int(getattr(self, name), name=name, minimum=1)
        _validate.check_int(self.non_param_steps, name="non_param_steps", minimum=0)
        _validate.check_int(self.count_threshold, name="count_threshold", minimum=0)
        _validate.check_float(self.desired_templates, name="desired_templates", minimum=0.0,
                              exclusive_minimum=True)
        _validate.check_float(self.mem_threshold, name="mem_threshold", minimum=0.0, exclusive_minimum=True)
        _validate.check_float(self.alpha, name="alpha")
        return self

    @classmethod
    def cifar10(cls):
        """The original CIFAR-10 settings (175 desired, never parametric)."""
        return cls(non_param_steps=500, desired_templates=175.0)


@dataclass
class Templates:
    """Learned templates: `means [K, 3, 3, C]`, `variances [K]` (c_k), and
    the training history (template count and alpha after each M-step)."""

    means: np.ndarray
    variances: np.ndarray
    parameterization: str = "variance"
    history: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def num_templates(self):
        return int(self.means.shape[0])


def extract_patches(images):
    """All 3×3 patches of `images [N, H, W, C]` as rows `[N (H-2)(W-2), 9 C]`
    (row-major over (dy, dx, c), the layout of `means.reshape(K, -1)`)."""
    n, h, w, c = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (PATCH, PATCH), axis=(1, 2))
    # [N, H-2, W-2, C, 3, 3] -> [N, H-2, W-2, 3, 3, C]
    windows = np.moveaxis(windows, 3, -1)
    return np.ascontiguousarray(windows.reshape(n * (h - 2) * (w - 2), PATCH * PATCH * c), dtype=np.float64)


@numba.njit(parallel=True, cache=True)
def _assign(patches, means, variances, log_alpha, allow_new):
    n, d = patches.shape
    k = means.shape[0]
    out = np.empty(n, np.int64)
    half_log = 0.5 * np.log(variances)
    for i in numba.prange(n):
        best, best_k = -np.inf, k  # k: the new-template slot
        for j in range(k):
            dist = 0.0
            for t in range(d):
                diff = patches[i, t] - means[j, t]
                dist += diff * diff
            score = -dist / (2.0 * variances[j]) - half_log[j]
            if score > best:
                best, best_k = score, j
        if allow_new and best < _NEW_NODE_SCORE + log_alpha:
            best_k = k
        out[i] = best_k
    return out


@numba.njit(cache=True)
def _accumulate(patches, assignment, sums, squares, counts):
    n, d = patches.shape
    for i in range(n):
        j = assignment[i]
        counts[j] += 1.0
        for t in range(d):
            v = patches[i, t]
            sums[j, t] += v
            squares[j, t] += v * v


def e_step(patches, means, variances, alpha, allow_new=True):
    """Slot of every patch: the best template, or `K` (a new one).

    Args:
        patches: `[N, D]` float64.
        means: `[K, D]`; variances: `[K]` (> 0).
        alpha: the current alpha (<= 0: no new template).
        allow_new: False in the parametric mode.

    Returns:
        int64 `[N]` in `[0, K]`.
    """
    allow = bool(allow_new) and alpha > 0
    log_alpha = math.log(alpha) if alpha > 0 else -np.inf
    if means.shape[0] == 0:
        return np.full(len(patches), 0 if allow else -1, np.int64)
    return _assign(patches, means, variances, log_alpha, allow)


def e_step_numpy(patches, means, variances, alpha, allow_new=True, *, method="matmul"):
    """The same E-step in plain NumPy (the benchmark's baselines and the
    tests' reference).

    Args:
        method: "matmul" (all distances from one BLAS product through
            `||z||^2 - 2 z.mu + ||mu||^2`) or "direct" (the straightforward
            implementation: `(z - mu)^2` summed, by broadcasting, in chunks
            of patches; the arithmetic of the numba loop).
    """
    _validate.check_choice(method, name="method", choices=("matmul", "direct"))
    allow = bool(allow_new) and alpha > 0
    if means.shape[0] == 0:
        return np.full(len(patches), 0 if allow else -1, np.int64)
    if method == "matmul":
        dist = np.maximum(np.sum(patches**2, 1)[:, None] - 2 * patches @ means.T + np.sum(means**2, 1)[None], 0.0)
    else:
        chunk = max(1, 2**22 // means.size)  # a [chunk, K, D] temporary of ~32 MB
        dist = np.concatenate([np.sum((patches[i:i + chunk, None, :] - means[None]) ** 2, axis=2)
                               for i in range(0, len(patches), chunk)])
    scores = -dist / (2 * variances) - 0.5 * np.log(variances)
    best = np.argmax(scores, axis=1)
    if allow:
        best = np.where(scores.max(1) < _NEW_NODE_SCORE + math.log(alpha), means.shape[0], best)
    return best.astype(np.int64)


def accumulate_numpy(patches, assignment, num_slots):
    """The M-step's statistics in NumPy: per-slot sums, sums of squares and
    counts of the assigned patches (the benchmark's baseline for the numba
    accumulation)."""
    counts = np.bincount(assignment, minlength=num_slots).astype(np.float64)
    sums = np.stack([np.bincount(assignment, weights=col, minlength=num_slots) for col in patches.T], 1)
    squares = np.stack([np.bincount(assignment, weights=col * col, minlength=num_slots) for col in patches.T], 1)
    return sums, squares, counts


def _m_step(sums, squares, counts, config):
    """Kept slots' means and variances, and the new slot's share."""
    total = counts.sum()
    k = len(counts) - 1
    share_new = counts[k] / total if total > 0 else 0.0
    keep = counts > config.count_threshold
    keep[k] = keep[k] and share_new > config.mem_threshold
    safe = np.maximum(counts, 1.0)[:, None]
    means = sums / safe
    variances = np.maximum(np.sum(squares / safe, 1) - np.sum(means**2, 1) + _VARIANCE_FLOOR, _VARIANCE_FLOOR)
    if not (np.all(np.isfinite(means[keep])) and np.all(np.isfinite(variances[keep]))):
        share_new = -1.0  # the original's NaN rule: no new template this time
        keep[k] = False
    return means[keep], variances[keep], share_new


def train_templates(images, *, config=None, max_steps=None, verbose=0, callback=None):
    """Learns templates from `images [N, H, W, C]` in [0, 1] (see the module).

    Args:
        images: float array of images.
        config: an `EMConfig` (default: the original MNIST settings).
        max_steps: stop after this many M-steps (None: `config.total_steps`).
        verbose: 1 prints a progress line with the template count and alpha.
        callback: optional `callback(step, templates)` after each M-step.

    Returns:
        `Templates` (means `[K, 3, 3, C]`, variances `[K]`).

    Raises:
        ValueError: on images that are not a finite float batch in [0, 1]
            with H, W >= 3, or bad settings.
    """
    config = (config or EMConfig()).validate()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] < PATCH or images.shape[2] < PATCH or len(images) == 0:
        raise _validate.error("images", "a non-empty batch [N, H, W, C] with H, W >= 3", images,
                              received=f"images.shape={images.shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.all(np.isfinite(images)) \
            or images.min() < 0 or images.max() > 1:
        raise _validate.error("images", "finite floats in [0, 1]", images,
                              received=f"images of dtype {images.dtype} with min={np.nanmin(images)} "
                                       f"and max={np.nanmax(images)}")
    steps = config.total_steps if max_steps is None else _validate.check_int(max_steps, name="max_steps",
                                                                             minimum=1)
    channels = images.shape[-1]
    dim = PATCH * PATCH * channels
    means = np.zeros((0, dim))
    variances = np.zeros(0)
    alpha = float(config.alpha)
    history = {"templates": [], "alpha": [], "new_share": []}
    start, cursor, step = time.time(), 0, 0
    while step < steps:
        k = len(means)
        sums, squares, counts = np.zeros((k + 1, dim)), np.zeros((k + 1, dim)), np.zeros(k + 1)
        parametric = step >= config.non_param_steps
        for _ in range(config.batch_count):
            batch = images[cursor:cursor + config.batch_images]
            cursor += config.batch_images
            if cursor >= len(images):
                cursor = 0
            patches = extract_patches(batch.astype(np.float64))
            assignment = e_step(patches, means, variances, alpha, allow_new=not parametric)
            if np.any(assignment < 0):
                continue  # no template yet and none may be created
            _accumulate(patches, assignment, sums, squares, counts)
        means, variances, share_new = _m_step(sums, squares, counts, config)
        # The original's feedback rule for alpha, after every M-step.
        s_term = len(means) / config.desired_templates
        f_term = share_new / config.mem_threshold
        alpha += 0.6913 / ((1 + math.exp(min(s_term, 700))) * (1 + math.exp(min(f_term, 700)))) - 0.05
        step += 1
        history["templates"].append(len(means))
        history["alpha"].append(alpha)
        history["new_share"].append(float(share_new))
        if verbose:
            sys.stdout.write(f"\rEM step {step}/{steps}: {len(means)} templates, alpha={alpha:.3f}, "
                             f"{time.time() - start:.0f} s")
            sys.stdout.flush()
        if callback is not None:
            callback(step, _as_templates(means, variances, channels, history, config))
    if verbose:
        sys.stdout.write("\n")
    return _as_templates(means, variances, channels, history, config)


def _as_templates(means, variances, channels, history, config):
    return Templates(means.reshape(-1, PATCH, PATCH, channels).astype(np.float32),
                     variances.astype(np.float32), "variance",
                     {key: list(value) for key, value in history.items()}, asdict(config))
