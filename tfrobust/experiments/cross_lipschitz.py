"""The Cross-Lipschitz experiment of Hein & Andriushchenko (NIPS 2017).

One library function, `run(config)`, does what the original `worker.py` did:
train a one-hidden-layer network or a ResNet with one of four regularizers
(Cross-Lipschitz, weight decay, dropout, none), optionally with the paper's
adversarial training, then measure test error and the per-example minimal
adversarial L2 change: an upper bound from the box-constrained attack with
binary search and, for the one-hidden-layer network, a formal lower bound
from Theorem 2.1. `apps/worker.py` only parses flags into a `WorkerConfig`.

Example:

    from tfrobust.experiments import cross_lipschitz as cl
    config = cl.WorkerConfig(dataset="digits", n_epochs=20, lr=0.2, lmbd=1e-3)
    metrics = cl.run(config)
    print(metrics["test_error"], metrics["upper_bound_median"])

References:
    Hein & Andriushchenko, "Formal Guarantees on the Robustness of a Classifier
    against Adversarial Manipulation", NIPS 2017.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import tfrobust
from tfrobust import _validate
from tfrobust import data as data_lib
from tfrobust import models
from tfrobust import regularizers
from tfrobust import training
from tfrobust.data import augmentation
from tfrobust.experiments.minimal_l2 import UPPER_ATTACKS
from tfrobust.experiments.minimal_l2 import attack_spec
from tfrobust.experiments.minimal_l2 import robustness_bounds
from tfrobust.experiments.minimal_l2 import spec_key
from tfrobust.experiments.minimal_l2 import summarize_bounds
from tfrobust.transforms import BoxedLinearAdversarialTransform

NN_TYPES = ("mlp1layer", "resnet")
REG_TYPES = ("cross_lipschitz", "weight_decay", "dropout", "no")
OPT_METHODS = ("sgd", "momentum", "adam")
DATASETS = ("mnist", "cifar10", "gtsrb", "digits")
# The original monitors robustness every 15 epochs on 100 random test points.
MONITOR_EVERY = 15
MONITOR_POINTS = 100
# Input dropout of the original MLP under the dropout regularizer (keep 0.9).
INPUT_KEEP = 0.9
# Training-time robustness figures use the original's attack alone (cheap);
# `evaluate_run` takes the minimum over `WorkerConfig.upper_attacks`.
MONITOR_ATTACKS = ("boxed_linear",)


@dataclasses.dataclass
class WorkerConfig:
    """Every setting of one Cross-Lipschitz run; defaults are the original's.

    The names mirror the original `worker.py` flags. `gpu_number` and
    `gpu_memory` are applied by the app before TensorFlow starts.
    """

    experiment_name: str = "test"
    nn_type: str = "mlp1layer"
    dataset: str = "cifar10"
    reg_type: str = "cross_lipschitz"
    opt_method: str = "sgd"
    n_epochs: int = 200
    lr: float = 0.2
    lmbd: float = 0.1
    keep_hidden: float = 0.5
    batch_size: int = 128
    augm_flag: bool = False
    adv_train_flag: bool = False
    continue_train: bool = False
    eval_robustness: bool = False
    data_dir: str | None = None
    exp_dir: str = "exps"
    strategy: str = "default"
    seed: int = 5
    n_eval: int | None = None
    n_train: int | None = None
    # Test images for the per-epoch accuracy (default: all; the final test
    # error always uses the whole test split).
    n_epoch_eval: int | None = None
    # Test points of the training-time robustness monitor (the original's
    # 100; 0 turns it off, e.g. when eval_after_train supersedes it).
    monitor_points: int = MONITOR_POINTS
    # Run the --eval_robustness evaluation (n_eval points, upper_attacks)
    # right after training, on the model in memory.
    eval_after_train: bool = False
    # Attacks whose per-example minimum is the upper bound of eval_robustness.
    upper_attacks: tuple = UPPER_ATTACKS
    # 2: one line per epoch (logs stay readable); 1: a progress bar.
    verbose: int = 2

    def validate(self):
        """Raises ValueError naming the first bad setting."""
        choices = {
            "nn_type": NN_TYPES,
            "reg_type": REG_TYPES,
            "opt_method": OPT_METHODS,
            "dataset": DATASETS,
        }
        for name, valid in choices.items():
            _validate.check_choice(getattr(self, name), name=name, choices=valid)
        for name in ("n_epochs", "batch_size"):
            _validate.check_int(getattr(self, name), name=name, minimum=1)
        for name in ("n_train", "n_eval", "n_epoch_eval"):
            _validate.check_int(getattr(self, name), name=name, minimum=1, allow_none=True)
        _validate.check_int(self.monitor_points, name="monitor_points", minimum=0)
        _validate.check_bool(self.eval_after_train, name="eval_after_train")
        attack_spec(self.upper_attacks)
        _validate.check_float(self.lr, name="lr", minimum=0.0, exclusive_minimum=True)
        _validate.check_float(self.lmbd, name="lmbd", minimum=0.0)
        _validate.check_float(self.keep_hidden, name="keep_hidden", minimum=0.0,
                              exclusive_minimum=True, maximum=1.0)
        if not self.experiment_name or os.sep in self.experiment_name:
            raise ValueError(
                "Expected a non-empty experiment_name without path separators. "
                f"Received: experiment_name={self.experiment_name!r}"
            )

    def hyperparameter_string(self):
        """The run's folder name: every setting that changes the trained model."""
        return (
            f"reg={self.reg_type}-lmbd={self.lmbd:g}-lr={self.lr:g}"
            f"-opt={self.opt_method}-bs={self.batch_size}-ep={self.n_epochs}"
            f"-keep={self.keep_hidden:g}-augm={int(self.augm_flag)}"
            f"-adv={int(self.adv_train_flag)}-seed={self.seed}"
            + (f"-ntrain={self.n_train}" if self.n_train else "")
        )

    def run_dir(self):
        return os.path.join(
            self.exp_dir,
            self.experiment_name,
            self.dataset,
            self.nn_type,
            self.hyperparameter_string(),
        )


def build_model(config, input_shape, num_classes):
    """The paper's network for `config` (call under the strategy's scope)."""
    dropout = config.reg_type == "dropout"
    if config.nn_type == "mlp1layer":
        return models.mlp1layer(
            input_shape,
            num_classes,
            input_dropout=(1.0 - INPUT_KEEP) if dropout else 0.0,
            hidden_dropout=(1.0 - config.keep_hidden) if dropout else 0.0,
        )
    return models.preact_resnet32(
        input_shape,
        num_classes,
        dropout=(1.0 - config.keep_hidden) if dropout else 0.0,
    )


def extra_losses(config):
    """The regularizer of `config` as training-loop extra losses."""
    if config.reg_type == "cross_lipschitz":
        return [regularizers.CrossLipschitz(config.lmbd)]
    if config.reg_type == "weight_decay":
        return [regularizers.WeightDecay(config.lmbd)]
    return []


def _training_dataset(config, x, y):
    """`epoch -> Dataset` of shuffled batches, augmented when asked.

    Each epoch's order and augmentation draws depend only on (seed, epoch),
    so a run resumed from a checkpoint sees exactly the batches an
    uninterrupted run would have seen.
    """

    def make(epoch):
        epoch_seed = config.seed * 100003 + int(epoch)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(len(x), seed=epoch_seed, reshuffle_each_iteration=False)
        # The original drops the remainder of each epoch's permutation.
        ds = ds.batch(config.batch_size, drop_remainder=True)
        if config.augm_flag:
            seeds = tf.data.Dataset.random(seed=epoch_seed).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda xy, seed: (
                    augmentation.augment_batch(xy[0], config.dataset, seed),
                    xy[1],
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return ds.prefetch(tf.data.AUTOTUNE)

    return make


def _eval_inputs(config, x):
    return augmentation.center_crop(x, config.dataset) if config.augm_flag else x


def _monitor_subset(config, x_test, y_test, n):
    rng = np.random.default_rng(config.seed)
    idx = rng.choice(len(x_test), size=min(n, len(x_test)), replace=False)
    return x_test[idx], y_test[idx]


def run(config):
    """Trains (or, with `eval_robustness`, evaluates) one experiment.

    Training writes to `config.run_dir()`: `checkpoints/` (resumed with
    `continue_train`), `logs/` (TensorBoard), `model.keras`, `saved_model/`
    (SavedModel export), `metrics.json` and `history.json`. Evaluation writes
    `bounds.npz` (per-example upper and lower bounds) and
    `robustness.json`.

    Returns:
        A dict of metrics (test error, bound summaries, paths).

    Raises:
        ValueError: bad settings, or existing checkpoints without
            `continue_train` (nothing is overwritten silently).
        FileNotFoundError: missing data, or `eval_robustness` without a
            trained model.
    """
    config.validate()
    if config.eval_robustness:
        return evaluate_run(config)
    return train(config)


def train(config):
    run_dir = config.run_dir()
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if _has_checkpoint(ckpt_dir) and not config.continue_train:
        raise ValueError(
            f"Expected no checkpoints in {ckpt_dir} unless continue_train is "
            "set. Received: continue_train=False. Pass --continue_train to "
            "resume, or choose another --experiment_name."
        )
    x_train, y_train = data_lib.load(config.dataset, "train", config.data_dir)
    if config.n_train is not None:
        x_train, y_train = x_train[: config.n_train], y_train[: config.n_train]
    x_test, y_test = data_lib.load(config.dataset, "test", config.data_dir)
    num_classes = data_lib.num_classes(config.dataset)
    input_shape = x_train.shape[1:]
    if config.augm_flag:
        input_shape = augmentation.cropped_shape(config.dataset, input_shape)
    x_test_in = _eval_inputs(config, x_test)
    if len(x_train) < config.batch_size:
        raise ValueError(
            f"Expected batch_size <= number of training images "
            f"({len(x_train)}). Received: batch_size={config.batch_size}"
        )

    training.set_seed(config.seed)
    strategy = training.make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config, input_shape, num_classes)
    steps_per_epoch = len(x_train) // config.batch_size
    schedule = training.PiecewiseByFraction(
        config.lr, total_steps=config.n_epochs * steps_per_epoch
    )
    transform = (
        BoxedLinearAdversarialTransform(alpha_adv=0.5)
        if config.adv_train_flag
        else None
    )
    x_mon, y_mon = _monitor_subset(config, x_test_in, y_test, config.monitor_points)
    # The run's bookkeeping lives in the checkpoint with the weights, so a
    # killed run resumed with continue_train reports the whole run.
    bookkeeping = _Bookkeeping()

    def monitor(epoch, model_):
        # The original's epoch % 15 == 1 with 1-based epochs.
        if not config.monitor_points or (epoch % MONITOR_EVERY != 0 and epoch != config.n_epochs - 1):
            return
        b = robustness_bounds(model_, x_mon, config.dataset, lower=False, attacks=MONITOR_ATTACKS)
        s = summarize_bounds(b, y_mon)
        s["epoch"] = epoch + 1
        bookkeeping.add_monitor_record(s)
        if config.verbose:
            print(
                f"epoch {epoch + 1}: boxed-linear upper bound on the minimal L2 change, "
                f"mean over {s['n_correct']} correct of {len(y_mon)} test points: "
                f"{_fmt(s.get('upper_bound_mean'))}"
            )

    history = training.fit(
        model,
        _training_dataset(config, x_train, y_train),
        epochs=config.n_epochs,
        optimizer=config.opt_method,
        learning_rate=schedule,
        extra_losses=extra_losses(config),
        input_transform=transform,
        eval_data=(x_test_in[: config.n_epoch_eval], y_test[: config.n_epoch_eval]),
        checkpoint_dir=ckpt_dir,
        log_dir=os.path.join(run_dir, "logs"),
        strategy=strategy,
        seed=config.seed,
        verbose=config.verbose,
        state=bookkeeping.state,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: monitor(epoch, model)
            ),
            # Last, so that the monitoring time is counted.
            bookkeeping.timer(),
        ],
    )
    train_seconds = bookkeeping.seconds()
    monitor_log = bookkeeping.monitor_log()
    test_acc = training.evaluate_accuracy(model, (x_test_in, y_test))
    model_path = os.path.join(run_dir, "model.keras")
    # Only the chief writes into run_dir (multi-worker: the others write to
    # a temporary folder, TensorFlow's pattern).
    from tfrobust import distribute

    out_dir = distribute.write_dir(strategy, run_dir)
    model.save(os.path.join(out_dir, "model.keras"))
    model.export(os.path.join(out_dir, "saved_model"), verbose=False)

    if config.eval_after_train:
        final = evaluate_run(config, run_dir=out_dir, model=model)
    elif config.monitor_points:
        final = summarize_bounds(robustness_bounds(model, x_mon, config.dataset, attacks=MONITOR_ATTACKS), y_mon)
    else:
        final = None
    metrics = {
        "config": dataclasses.asdict(config),
        "test_error": 1.0 - float(test_acc),
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "train_seconds": train_seconds,
        "robustness_monitor": monitor_log,
        "robustness_final": final,
        "model_path": model_path,
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(_jsonable(history), f, indent=2)
    if config.verbose:
        _print_summary(metrics)
    return metrics


def evaluate_run(config, run_dir=None, batch_size=None, model=None):
    """Per-example upper and lower bounds of a trained experiment.

    Args:
        config: the run's `WorkerConfig` (dataset, data_dir, n_eval, ...).
        run_dir: the run's folder; defaults to `config.run_dir()`.
        batch_size: evaluation chunk; defaults to `config.batch_size`.
        model: the trained model, if in memory (default: `model.keras`).
    """
    run_dir = run_dir or config.run_dir()
    batch_size = batch_size or config.batch_size
    model_path = os.path.join(run_dir, "model.keras")
    if model is None and not os.path.exists(model_path):
        raise FileNotFoundError(
            f"Expected a trained model at {model_path}. Train it first with "
            "the same flags but without --eval_robustness."
        )
    if model is None:
        model = tfrobust.load_model(model_path)
    x_test, y_test = data_lib.load(config.dataset, "test", config.data_dir)
    x_test = _eval_inputs(config, x_test)
    if config.n_eval is not None:
        x_test, y_test = x_test[: config.n_eval], y_test[: config.n_eval]
    started = time.time()
    b = robustness_bounds(model, x_test, config.dataset, batch_size, attacks=config.upper_attacks)
    np.savez(os.path.join(run_dir, "bounds.npz"), y=y_test, **b)
    summary = summarize_bounds(b, y_test)
    summary["test_error"] = float(np.mean(b["pred"] != y_test))
    summary["upper_attack_spec"] = spec_key(config.upper_attacks)
    summary["eval_seconds"] = time.time() - started
    with open(os.path.join(run_dir, "robustness.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if config.verbose:
        print(f"test error on {summary['n_points']} points: {100 * summary['test_error']:.2f}%; "
              f"evaluation time {summary['eval_seconds']:.0f} s")
        names = summary.get("upper_attacks", [])
        _print_bounds(summary, "minimum over " + ", ".join(names))
        for name in names:
            print(f"    {name}: median {_fmt(summary.get(f'upper_{name}_median'))}, "
                  f"smallest on {summary.get(f'upper_{name}_best')} points")
    return summary


class _Bookkeeping:
    """Training time and robustness-monitor records, kept in the checkpoint.

    `state` goes to `fit(state=...)`; the timer callback adds the time since
    the last mark at every epoch end (before that epoch's checkpoint), so a
    resumed run continues the count of the killed one.
    """

    def __init__(self):
        self.state = {
            "train_seconds": tf.Variable(0.0, dtype=tf.float64, trainable=False),
            "robustness_monitor": tf.Variable("[]", dtype=tf.string, trainable=False),
        }
        self._mark = time.time()

    def add_monitor_record(self, record):
        records = self.monitor_log()
        records.append(record)
        self.state["robustness_monitor"].assign(json.dumps(records))

    def monitor_log(self):
        return json.loads(self.state["robustness_monitor"].numpy().decode())

    def timer(self):
        def on_epoch_end(epoch, logs):
            now = time.time()
            self.state["train_seconds"].assign_add(now - self._mark)
            self._mark = now

        return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)

    def seconds(self):
        """The whole run's training time, up to now."""
        return float(self.state["train_seconds"].numpy()) + time.time() - self._mark


def _has_checkpoint(ckpt_dir):
    return tf.train.latest_checkpoint(ckpt_dir) is not None


def _jsonable(history):
    if hasattr(history, "history"):
        history = history.history
    out = {}
    for key, values in dict(history).items():
        out[key] = [float(v) for v in np.ravel(values)]
    return out


def _fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_summary(metrics):
    print(
        f"clean test accuracy: {100 * (1 - metrics['test_error']):.2f}% "
        f"(test error {100 * metrics['test_error']:.2f}%, {metrics['n_test']} test images); "
        f"training time {metrics['train_seconds']:.0f} s"
    )
    final = metrics["robustness_final"]
    if final is not None and not metrics["config"]["eval_after_train"]:  # that printed its own
        _print_bounds(final, "boxed-linear attack")


def _print_bounds(summary, upper_label):
    """Rounded, labelled bound figures of a `summarize_bounds` dict."""
    print(
        f"minimal adversarial L2 change on {summary['n_correct']} correctly classified of "
        f"{summary['n_points']} test points:"
    )
    print(
        f"  upper bound ({upper_label}): median {_fmt(summary.get('upper_bound_median'))}, "
        f"mean {_fmt(summary.get('upper_bound_mean'))}, "
        f"no adversarial example found for {summary.get('upper_bound_failed', 0)}"
    )
    if "lower_bound_median" in summary:
        print(
            f"  certified lower bound (Theorem 2.1, float32 allowance): median "
            f"{_fmt(summary['lower_bound_median'])}, mean {_fmt(summary.get('lower_bound_mean'))}"
        )
