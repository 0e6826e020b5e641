"""Classifier training for the Robust Manifold Defense (`apps/train_classifier.py`).

Three modes, after `adv-mnist/adv_train.py`:

- `plain`: cross-entropy on clean images;
- `pgd`: PGD adversarial training (the original: L2, eps 1.5, 40 steps of
  2·eps/steps, random start; also the Madry L∞ baseline with
  `norm="inf", eps=0.3, steps=40, step_size=0.01`);
- `pgd_op`: `pgd` plus the overpowered-attack term every `op_every` epochs
  (`tfrobust.transforms.manifold`), which needs a generator.

Writes `model.keras`, `metrics.json` (history, the clean and PGD test
accuracy of the final model), TensorBoard logs and per-epoch checkpoints;
a killed run started again with the same arguments resumes after its last
finished epoch. The original keeps the checkpoint of best adversarial
validation accuracy; here the final model is kept (the history shows the
per-epoch clean accuracy).
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfrobust import _validate
from tfrobust.experiments._data import load_splits

__all__ = ["ClassifierConfig", "load_generator", "train_classifier"]

MODES = ("plain", "pgd", "pgd_op")


@dataclasses.dataclass
class ClassifierConfig:
    dataset: str = "mnist"
    data_dir: str = None
    model: str = "madry_mnist_cnn"
    mode: str = "plain"
    norm: str = "2"
    eps: float = None               # default: 1.5 (L2), 0.3 (L∞)
    steps: int = 40
    step_size: float = None         # default: 2 * eps / steps
    random_start: bool = True
    generator: str = None           # .keras / SavedModel path, or a registry name (untrained)
    op_weight: float = 1e-2
    op_every: int = 5
    op_pairs: int = 50
    op_steps: int = 500
    op_eps: float = None
    init_from: str = None           # .keras classifier whose weights start the run (`--resume baseline_best`)
    epochs: int = 10
    batch_size: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    n_train: int = None
    n_eval: int = 1000
    eval_steps: int = 100           # PGD steps of the final robust-accuracy check
    out_dir: str = "runs/classifier"
    seed: int = 0
    strategy: str = "default"
    verbose: int = 2


def load_generator(spec):
    """A generator from a saved model path or a registry name.

    A saved VAE (a model with a `decoder`) gives its decoder.

    Raises:
        ValueError: on an unknown name or an unreadable file.
    """
    from tfrobust.models import registry

    if spec in registry.GENERATORS:
        return registry.get_generator(spec)
    if not os.path.exists(spec):
        raise ValueError(f"Expected `generator` to be a saved generator (.keras or SavedModel) or one of "
                         f"{list(registry.GENERATORS)}. Received: generator={spec!r}")
    import tfrobust

    model = tfrobust.load_model(spec)
    return getattr(model, "decoder", model)


def _resolved(config):
    config = dataclasses.replace(config)
    config.mode = _validate.check_choice(config.mode, name="mode", choices=MODES)
    p = _validate.check_p(config.norm, name="norm")
    config.norm = "inf" if p == np.inf else str(int(p))
    if config.eps is None:
        config.eps = {"inf": 0.3, "2": 1.5, "1": 10.0}[config.norm]
    _validate.check_float(config.eps, name="eps", minimum=0.0)
    _validate.check_int(config.epochs, name="epochs", minimum=1)
    _validate.check_int(config.steps, name="steps", minimum=1)
    _validate.check_int(config.batch_size, name="batch_size", minimum=1)
    if config.mode == "pgd_op" and not config.generator:
        raise ValueError("Expected `generator` (a saved generator or a registry name) with mode='pgd_op'. "
                         "Received: generator=None")
    if config.mode == "pgd_op":
        from tfrobust.models import registry

        if config.generator not in registry.GENERATORS and not os.path.exists(config.generator):
            raise ValueError("Expected `generator` to be a saved generator (.keras or SavedModel) or one of "
                             f"{list(registry.GENERATORS)}. Received: generator={config.generator!r}")
    if config.mode == "pgd_op" and config.norm != "2":
        raise ValueError("Expected norm='2' with mode='pgd_op' (the overpowered attack's budget is an L2 "
                         f"distance). Received: norm={config.norm!r}")
    return config


def _robust_accuracy(model, x, y, config, p):
    from tfrobust import threats
    from tfrobust.attacks import PGD

    # The original logs adversarial test accuracy with PGD without random start.
    attack = PGD(threats.LpBall(p, config.eps), steps=config.eval_steps,
                 step_size=2.5 * config.eps / config.eval_steps, random_start=False)
    correct = []
    for i in range(0, len(x), 250):
        x_adv = attack(model, x[i:i + 250], y[i:i + 250])
        correct.append(np.argmax(np.asarray(model(x_adv)), -1) == y[i:i + 250])
    return float(np.mean(np.concatenate(correct)))


def train_classifier(config):
    """Trains one classifier (see the module docstring); returns the metrics dict.

    Raises:
        ValueError: on a bad configuration or missing data.
    """
    import keras

    from tfrobust import training
    from tfrobust.models import registry
    from tfrobust.transforms.manifold import manifold_adversarial_training

    config = _resolved(config)
    os.makedirs(config.out_dir, exist_ok=True)
    x, y, x_test, y_test, num_classes = load_splits(config)
    p = _validate.check_p(config.norm, name="norm")
    strategy = training.make_strategy(config.strategy)
    with strategy.scope():
        model = registry.get_model(config.model, x.shape[1:], num_classes)
        if config.init_from:
            start = keras.saving.load_model(config.init_from)
            model.set_weights(start.get_weights())
    hooks = {}
    if config.mode != "plain":
        generator = load_generator(config.generator) if config.mode == "pgd_op" else None
        hooks = manifold_adversarial_training(
            generator, eps=config.eps, steps=config.steps, norm=p, step_size=config.step_size,
            op_weight=config.op_weight, op_every=config.op_every, op_pairs=config.op_pairs,
            op_steps=config.op_steps, op_eps=config.op_eps, random_start=config.random_start, seed=config.seed,
            verbose=config.verbose)
    start_time = time.time()
    history = training.fit(
        model, (x, y), epochs=config.epochs, batch_size=config.batch_size, optimizer=config.optimizer,
        learning_rate=config.learning_rate, eval_data=(x_test, y_test),
        checkpoint_dir=os.path.join(config.out_dir, "checkpoints"), log_dir=os.path.join(config.out_dir, "logs"),
        strategy=strategy, seed=config.seed, verbose=config.verbose, **hooks)
    model.save(os.path.join(config.out_dir, "model.keras"))
    clean = float(np.mean(np.argmax(np.asarray(model.predict(x_test, verbose=0)), -1) == y_test))
    metrics = {
        "config": dataclasses.asdict(config), "n_train": int(len(x)), "n_eval": int(len(x_test)),
        "train_seconds_this_process": round(time.time() - start_time, 1),
        "test_accuracy": clean,
        f"pgd{config.eval_steps}_accuracy_eps{config.eps}": _robust_accuracy(model, x_test, y_test, config, p),
        "history": {k: list(v) for k, v in history.items()},
    }
    if hooks.get("extra_losses"):
        metrics["overpowered_last_success_rate"] = hooks["extra_losses"][0].last_success_rate
    with open(os.path.join(config.out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=str)
    return metrics
