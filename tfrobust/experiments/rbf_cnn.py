"""rCNN and rCNN+ training (`apps/train_rCNN.py`), the original recipes.

MNIST (the original `mnist/train_rCNN*.py`): the frozen RBF + reconstruction
front end (beta1 = 125 in training, 25 at test), the C&W 4-conv CNN, label
smoothing by clipping (`clip(onehot, 0.1 / 9, 0.9)`), Adam 1e-3 halved every
20 epochs (rCNN) or 25 (rCNN+), batch 128, 150 epochs; rCNN+ adds 30
Gaussian and 30 adversarial-noise copies per batch (`transforms.rcnn_plus`)
with the BIM table made after epoch 25. The original's tiny Adam `decay`
(1e-6 per step) is left out: next to the halving it changes the rate by
under 1% over a run.

CIFAR-10 (`classifier="vgg16_cifar"`, the original `cifar10/train_rCNN*.py`
VGG-16): the same front end and recipe; any builder of `tfrobust.models`
can take the CNN's place, and `optimizer` any name of `training.fit`.
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate
from tfrobust.experiments._data import load_splits


@dataclasses.dataclass
class RCNNConfig:
    dataset: str = "mnist"
    data_dir: str = None
    templates: str = "rbf_layer/templates.npz"
    out_dir: str = "runs/rcnn"
    plus: bool = False
    n_train: int = None
    n_eval: int = 1000
    epochs: int = 150
    batch_size: int = 128
    learning_rate: float = 1e-3
    halve_every: int = None          # default: 20 (rCNN) or 25 (rCNN+)
    beta1_train: float = 125.0
    beta1_test: float = 25.0
    sigma: float = 0.35
    eps_range: tuple = (0.15, 0.4)
    adv_noise_epoch: int = 25
    adv_noise_eps: float = 0.3
    adv_noise_steps: int = 10
    seed: int = 0
    strategy: str = "default"
    classifier: str = "cw_mnist_cnn"  # a name of `tfrobust.models.MODELS`
    optimizer: str = "adam"
    verbose: int = 1


def _smoothed(y, num_classes):
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    return np.clip(onehot, 0.1 / (num_classes - 1), 0.9)


def build_rcnn(templates, input_shape, num_classes, *, beta1=125.0, seed=0, classifier="cw_mnist_cnn"):
    """The rCNN model: RBF-CNN front end from `templates` + a classifier
    of `tfrobust.models` by name (default the C&W CNN of MNIST)."""
    from tfrobust import models
    from tfrobust.defenses.rbf_cnn import RBFCNN

    classifier = models.get_model(classifier, input_shape, num_classes)
    return RBFCNN.from_templates(templates, classifier, beta1=beta1, beta2=0.0, samples=1, seed=seed)


def train_rcnn(config):
    """Trains rCNN / rCNN+ and writes `model.keras`, `metrics.json` and
    checkpoints (a killed run resumes from its last epoch).

    Returns:
        The metrics dict.
    """
    import tensorflow as tf

    from tfrobust import attacks, threats, training
    from tfrobust.transforms.rcnn_plus import AdversarialNoiseTable, RCNNPlusNoise

    config = dataclasses.replace(config)
    _validate.check_int(config.epochs, name="epochs", minimum=1)
    os.makedirs(config.out_dir, exist_ok=True)
    x, y, x_test, y_test, num_classes = load_splits(config)
    strategy = training.make_strategy(config.strategy)
    with strategy.scope():
        model = build_rcnn(config.templates, x.shape[1:], num_classes, beta1=config.beta1_train,
                           seed=config.seed, classifier=config.classifier)
        model.build((None,) + x.shape[1:])
    steps = int(np.ceil(len(x) / config.batch_size))
    halve = config.halve_every or (25 if config.plus else 20)
    boundaries = list(range(halve, config.epochs, halve))
    lr = (training.StepDecay(config.learning_rate, boundaries, 0.5, steps) if boundaries
          else config.learning_rate)
    kwargs, callbacks = {}, []
    if config.plus:
        table = tf.Variable(tf.zeros(x.shape, tf.float32), trainable=False, name="adv_noise_table")
        filled = tf.Variable(False, trainable=False, name="adv_noise_filled")
        kwargs["input_transform"] = RCNNPlusNoise(table, filled, sigma=config.sigma,
                                                  eps_range=config.eps_range, seed=config.seed)
        kwargs["state"] = {"adv_noise_table": table, "adv_noise_filled": filled}
        # BIM's own default (Kurakin's min(255 eps + 4, 1.25 * 255 eps) = 80
        # steps at 0.3) would cost 8 epochs of training for one table.
        bim = attacks.BIM(threats.LpBall(np.inf, config.adv_noise_eps), steps=config.adv_noise_steps)
        callbacks.append(AdversarialNoiseTable(table, filled, x, y, bim, fill_epoch=config.adv_noise_epoch,
                                               verbose=config.verbose))
    start = time.time()
    history = training.fit(
        model, (x, _smoothed(y, num_classes)), epochs=config.epochs, batch_size=config.batch_size,
        optimizer=config.optimizer, learning_rate=lr, eval_data=(x_test, y_test),
        checkpoint_dir=os.path.join(config.out_dir, "checkpoints"), log_dir=os.path.join(config.out_dir, "logs"),
        strategy=strategy, seed=config.seed, verbose=config.verbose, callbacks=callbacks, **kwargs)
    model.set_knobs(beta1=config.beta1_test)
    # Only the chief writes into out_dir (multi-worker: the others write to
    # a temporary folder, TensorFlow's pattern).
    from tfrobust import distribute

    out_dir = distribute.write_dir(strategy, config.out_dir)
    model.save(os.path.join(out_dir, "model.keras"))
    metrics = {"config": dataclasses.asdict(config), "n_train": int(len(x)),
               "train_seconds_this_process": round(time.time() - start, 1),
               "history": {k: list(v) for k, v in history.items()}}
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=str)
    return metrics
