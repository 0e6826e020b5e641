"""The RBF-CNN paper's figures from an evaluation run (`apps/test_rCNN.py --figures`).

- Fig. 3: clean and attacked images next to their reconstructions
  (beta2 = 0), with the mean L2 distance between clean and attacked inputs
  and between their reconstructions: the reconstruction is meant to shrink
  the second.
- Fig. 5: loss-gradient saliency maps of the RBF-CNN (beta2 = 0, exact
  gradients through the RBF and reconstruction layers) next to those of an
  undefended CNN, one gradient step each, scaled per image and clipped as
  the paper does (no other processing).
"""

import os

import numpy as np

__all__ = ["loss_saliency", "write_figures"]

_SHOWN = 8


def loss_saliency(model, x, y):
    """Per-image input gradient of the cross-entropy, scaled to [-1, 1] by its
    largest absolute value (the paper's "scaling and clipping").

    Args:
        model: a callable returning logits (or log-probabilities).
        x: float32 images `[B, H, W, C]`; y: int labels `[B]`.

    Returns:
        float `[B, H, W, C]` in [-1, 1].
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    grad = tape.gradient(loss, x).numpy()
    scale = np.max(np.abs(grad.reshape(len(grad), -1)), axis=1).reshape(-1, 1, 1, 1)
    return np.clip(grad / np.maximum(scale, 1e-12), -1.0, 1.0)


def _mean_l2(a, b):
    return float(np.mean(np.linalg.norm((a - b).reshape(len(a), -1), axis=1)))


def _fig3(model, x, kept, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recon = lambda t: np.asarray(model.reconstruction(t, beta2=0.0))  # noqa: E731
    rows = [("clean", x), ("reconstruction", recon(x))]
    notes = []
    for threat, adversarials in kept.items():
        name = next((a for a in adversarials if a.startswith("PGD-")), None)
        if name is None:
            continue
        x_adv = adversarials[name][:len(x)]
        r_adv = recon(x_adv)
        rows += [(f"{name} {threat}", x_adv), ("reconstruction", r_adv)]
        notes.append(f"{threat}: input L2 {_mean_l2(x_adv, x):.2f} -> reconstructed {_mean_l2(r_adv, rows[1][1]):.2f}")
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.2 * len(x), 1.25 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(len(x)):
            axes[r, c].imshow(images[c].squeeze(), cmap="gray", vmin=0.0, vmax=1.0)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=6)
    fig.suptitle("; ".join(notes) or "clean images and their reconstructions", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return notes


def _fig5(model, source, x, y, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("image", x, "gray", 0.0), ("undefended CNN", loss_saliency(source, x, y), "seismic", -1.0),
            ("RBF-CNN (beta2 = 0)", loss_saliency(model, x, y), "seismic", -1.0)]
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.2 * len(x), 1.3 * len(rows)), squeeze=False)
    for r, (label, images, cmap, lo) in enumerate(rows):
        for c in range(len(x)):
            axes[r, c].imshow(images[c].squeeze(), cmap=cmap, vmin=lo, vmax=1.0)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=6)
    fig.suptitle("loss gradients w.r.t. the input (scaled per image, clipped to [-1, 1])", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_figures(model, source, x, y, kept, config):
    """Writes `fig3_reconstructions.png` and (with an undefended `source`)
    `fig5_saliency.png` into `config.out_dir`; the model's knobs are set to
    beta2 = 0, m = 1.

    Args:
        model: the RBF-CNN; source: the undefended CNN or None.
        x, y: the evaluated test images and labels; the first 8 are shown.
        kept: threat -> attack name -> adversarial examples of the static view.
        config: the `EvalConfig`.

    Returns:
        dict with the written paths and Fig. 3's distance notes.
    """
    if not hasattr(model, "reconstruction"):
        return {}
    model.set_knobs(beta2=0.0, samples=1)
    x, y = x[:_SHOWN], y[:_SHOWN]
    out = {"fig3": os.path.join(config.out_dir, "fig3_reconstructions.png")}
    out["fig3_notes"] = _fig3(model, x, kept, out["fig3"])
    if source is not None:
        out["fig5"] = os.path.join(config.out_dir, "fig5_saliency.png")
        _fig5(model, source, x, y, out["fig5"])
    return out
