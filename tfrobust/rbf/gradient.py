"""RBF-CNN v2's numba-free alternative: a fixed number of templates trained
by gradient descent on the winner-take-all patch likelihood.

The loss is `-mean over batch and patch positions of max_k l_k`, with
`l_k` the score of `tfrobust.layers.RBFLayer` in its log-variance form;
Adam, learning rate 0.01 multiplied by 0.75 before each epoch (so the first
epoch runs at 0.0075), batch 250, 50 epochs, data in file order, means
initialised from N(0.5, 0.2) and log-variances from N(0.5, 0.01): the
settings of `RBF_CNN-v2/cifar10/rbf_training.py`.
"""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _validate

__all__ = ["train_templates_gradient"]


def train_templates_gradient(images, *, num_templates=64, epochs=50, batch_size=250, learning_rate=0.01,
                             decay=0.75, seed=0, verbose=0):
    """Trains `num_templates` templates on `images [N, H, W, C]` in [0, 1].

    Returns:
        `tfrobust.rbf.Templates` with `parameterization="log_variance"`
        (`variances` holds `log c_k`) and the per-epoch loss in `history`.

    Raises:
        ValueError: on bad images or arguments.
    """
    from tfrobust.layers.rbf import RBFLayer
    from tfrobust.rbf.em import Templates

    num_templates = _validate.check_int(num_templates, name="num_templates", minimum=1)
    epochs = _validate.check_int(epochs, name="epochs", minimum=1)
    batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
    learning_rate = _validate.check_float(learning_rate, name="learning_rate", minimum=0.0,
                                          exclusive_minimum=True)
    decay = _validate.check_float(decay, name="decay", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] < 3 or images.shape[2] < 3 or len(images) == 0:
        raise _validate.error("images", "a non-empty batch [N, H, W, C] with H, W >= 3", images,
                              received=f"images.shape={images.shape}")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise _validate.error("images", "finite values in [0, 1]", images,
                              received=f"images with min={images.min()} and max={images.max()}")
    keras.utils.set_random_seed(seed)
    layer = RBFLayer(num_templates, parameterization="log_variance")
    layer.build((None,) + images.shape[1:])
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(tf.reduce_max(layer(batch), axis=-1))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables))
        return loss

    history = {"loss": []}
    lr = learning_rate
    start = time.time()
    for epoch in range(epochs):
        lr *= decay  # the original decays before each epoch
        optimizer.learning_rate.assign(lr)
        losses = [float(step(tf.constant(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
        history["loss"].append(float(np.mean(losses)))
        if verbose:
            sys.stdout.write(f"\repoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}, "
                             f"{time.time() - start:.0f} s")
            sys.stdout.flush()
    if verbose:
        sys.stdout.write("\n")
    return Templates(layer.means.numpy(), layer.variances.numpy(), "log_variance", history,
                     {"num_templates": num_templates, "epochs": epochs, "batch_size": batch_size,
                      "learning_rate": learning_rate, "decay": decay, "seed": seed})
