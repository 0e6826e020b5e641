"""`fit`: the one training loop of tfrobust.

Example:

```python
strategy = tfrobust.training.make_strategy("mirrored")
with strategy.scope():
    model = tfrobust.models.mlp1layer((28, 28, 1), 10)
history = tfrobust.training.fit(
    model, (x, y), batch_size=128, epochs=10, optimizer="momentum",
    learning_rate=0.2, checkpoint_dir="ckpt", log_dir="logs",
    strategy=strategy)
```
"""

import numbers
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfrobust.training import checkpoints
from tfrobust.training import evaluation as evaluate_lib
from tfrobust.training import inputs
from tfrobust.training import randomness
from tfrobust.training import schedules
from tfrobust.training import steps as steps_lib
from tfrobust.training.strategy import is_chief


class History(dict):
    """Per-epoch training results: a dict of lists, one entry per epoch.

    Keys: `"loss"` (total objective), `"ce"`, `"regularization"` (sum of
    `model.losses`), one key per extra loss, `"accuracy"` (on the training
    batches after `input_transform`), `"lr"`, `"epoch_time"` (seconds),
    `"eval_accuracy"` and `"eval_ce"` (None in epochs without evaluation).
    `epoch` lists the 0-based epoch of each entry (a resumed run includes the
    epochs recorded before the interruption when `history.json` is there);
    `initial_epoch` is the number of epochs restored from a checkpoint.
    """

    def __init__(self, epoch=(), values=None, initial_epoch=0):
        super().__init__(values or {})
        self.epoch = list(epoch)
        self.initial_epoch = initial_epoch

    @property
    def history(self):
        """Keras-style alias: the dict itself."""
        return self

    def append(self, epoch, logs):
        for key, value in logs.items():
            self.setdefault(key, [None] * len(self.epoch)).append(value)
        for key, values in self.items():
            if key not in logs:
                values.append(None)
        self.epoch.append(epoch)


def _check_int(value, arg, minimum, allow_none=False):
    if allow_none and value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise ValueError(
            f"Expected {arg} to be an integer >= {minimum}"
            f"{' or None' if allow_none else ''}. Received: {arg}={value!r}")
    return int(value)


def _check_model(model):
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "Expected model to be a keras.Model (or keras.layers.Layer) "
            "returning logits. Received: model of type "
            f"{type(model).__name__}")


def _check_strategy_match(model, strategy):
    variables = model.trainable_variables
    if not variables:
        raise ValueError(
            "Expected model to have trainable variables. Received: a model "
            "without any (is it built and trainable?)")
    variable = getattr(variables[0], "value", variables[0])
    if not strategy.extended.variable_created_in_scope(variable):
        raise ValueError(
            "Expected model to be created under strategy.scope() of the "
            f"strategy passed to fit. Received: strategy={strategy!r} while "
            "the model's variables belong to another strategy; create the "
            "model inside `with strategy.scope():`")


def _make_optimizer(optimizer, learning_rate, strategy):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        owner = getattr(optimizer, "_distribution_strategy", strategy)
        if owner is not strategy:
            raise ValueError(
                "Expected the optimizer instance to be created under "
                "strategy.scope() of the strategy passed to fit (or pass its "
                f"name). Received: optimizer={optimizer!r}")
        return optimizer
    if (not isinstance(optimizer, str)
            or optimizer.lower() not in schedules.OPTIMIZER_NAMES):
        raise ValueError(
            f"Expected optimizer to be one of {schedules.OPTIMIZER_NAMES} or "
            f"a keras.optimizers.Optimizer. Received: optimizer={optimizer!r}")
    with strategy.scope():
        return schedules.make_optimizer(optimizer, learning_rate)


def _check_callbacks(callbacks):
    callbacks = list(callbacks or ())
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise ValueError(
                "Expected callbacks to be keras.callbacks.Callback instances. "
                f"Received: {callback!r}")
    return callbacks


def _current_lr(optimizer):
    return float(np.asarray(keras.ops.convert_to_numpy(
        optimizer.learning_rate)))


def _build(model, source, strategy):
    """Runs the model on one example (building it if needed); returns K.

    A built model fed by a dataset is not run: reading a batch would advance
    the dataset's own shuffling state.
    """
    if source.arrays is None and model.built:
        return None
    sample = source.sample()
    with strategy.scope():
        logits = model(sample, training=False)
    if len(logits.shape) != 2:
        raise ValueError(
            "Expected model to return logits of shape [B, K]. Received: "
            f"output shape {tuple(logits.shape)}")
    return int(logits.shape[-1])


def _scalar_metadata():
    # What `tf.summary.scalar` writes, without needing the tensorboard
    # package at training time (TensorBoard reads these as scalars).
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata


def _write_summaries(writer, logs, step):
    if writer is None:
        return
    metadata = _scalar_metadata()
    with writer.as_default():
        for key, value in logs.items():
            if value is not None:
                tf.summary.write(key, tf.constant(value, tf.float32),
                                 step=step, metadata=metadata)
    writer.flush()


def fit(model, train_data, *, epochs, optimizer="sgd", learning_rate=0.1,
        extra_losses=(), input_transform=None, eval_data=None,
        checkpoint_dir=None, log_dir=None, strategy=None, seed=0, verbose=1,
        callbacks=(), max_to_keep=3, steps_per_epoch=None, eval_every=1,
        batch_size=None, eval_batch_size=None, drop_remainder=False):
    """Trains `model` on mean cross-entropy plus extra losses, resumably.

    The objective of each update is the mean sparse softmax cross-entropy of
    the logits, plus every extra loss, plus `model.losses` (Keras weight
    regularizers). One compiled step (`strategy.run` and a sum over replicas)
    applies `input_transform`, the forward pass and the update; each replica's
    share is scaled by the global batch size so the gradient is that of the
    global-batch mean (`tf.nn.compute_average_loss` semantics, exact also for
    an incomplete last batch).

    With `checkpoint_dir`, a checkpoint is written at the end of every epoch
    and, if one is there on start, training resumes after it and reaches the
    same weights as an uninterrupted run: arrays are shuffled per epoch from
    `(seed, epoch)`, and layer seed generators, generator attributes of the
    input transform and extra losses, Keras' global seed generator and
    TensorFlow's global generator are reseeded per epoch from `(seed, epoch)`
    (see `reseed_for_epoch`). A `tf.data.Dataset`
    is read as given; for exact resume its order must not depend on process
    state (or pass a function `epoch -> Dataset`).

    Create the model under `strategy.scope()` before calling `fit`; `fit`
    creates the optimizer under that scope.

    Args:
        model: A Keras model returning logits `[B, K]`.
        train_data: A tuple `(x, y)` of NumPy arrays (then `batch_size` is
            required), a `tf.data.Dataset` of `(x, y)` batches, or a function
            `epoch -> tf.data.Dataset`. Batches are global batches.
        epochs: Total number of epochs (including epochs restored from a
            checkpoint), an integer >= 1.
        optimizer: A name for `make_optimizer` ("sgd", "momentum",
            "nesterov", "adam", "rmsprop") or a Keras optimizer instance
            created under the strategy's scope.
        learning_rate: A number > 0 or a `LearningRateSchedule` (used with
            an optimizer name).
        extra_losses: A dict `name -> fn` or a sequence of functions (named by
            their `name` or `__name__` attribute); `fn(model, x, y, logits)`
            returns an already weighted scalar added to the objective.
        input_transform: Optional `fn(model, x, y) -> (x, y)` applied to each
            training batch inside the compiled step (noise, adversarial
            examples); its output is treated as constant input.
        eval_data: Optional `(x, y)` arrays or dataset, evaluated (accuracy,
            CE) every `eval_every` epochs and after the last epoch.
        checkpoint_dir: Directory of the per-epoch checkpoints and
            `history.json`.
        log_dir: Directory of the TensorBoard event files (per-epoch scalars).
        strategy: A `tf.distribute.Strategy` (default: the current one).
        seed: Integer seed in [0, 2**32) passed to `set_seed`, and of the
            per-epoch shuffling and reseeding.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: `keras.callbacks.Callback` instances (epoch and batch
            hooks; `model.stop_training = True` stops after the epoch).
        max_to_keep: Number of checkpoints kept.
        steps_per_epoch: Batches per epoch; None for one pass. A dataset is
            then repeated and read on across epochs.
        eval_every: Evaluate every this many epochs.
        batch_size: Global batch size for array inputs (ignored for
            datasets, whose batches are used as they come).
        eval_batch_size: Batch size of array `eval_data` (default
            `batch_size`, else 256).
        drop_remainder: Drop the last incomplete batch of array inputs.

    Returns:
        A `History` (dict of per-epoch lists).

    Raises:
        ValueError: on invalid arguments or data (non-integer labels, empty
            data, a model not created under the strategy's scope), or an
            unreadable checkpoint in `checkpoint_dir`.
        FloatingPointError: when the loss becomes NaN or infinite, naming the
            epoch and step.
    """
    epochs = _check_int(epochs, "epochs", 1)
    max_to_keep = _check_int(max_to_keep, "max_to_keep", 1)
    eval_every = _check_int(eval_every, "eval_every", 1)
    steps_per_epoch = _check_int(steps_per_epoch, "steps_per_epoch", 1,
                                 allow_none=True)
    seed = randomness.check_seed(seed)
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(
            f"Expected verbose to be 0, 1 or 2. Received: verbose={verbose!r}")
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            "Expected strategy to be a tf.distribute.Strategy (see "
            f"make_strategy) or None. Received: strategy={strategy!r}")
    _check_model(model)
    named_losses = steps_lib.name_extra_losses(extra_losses)
    if input_transform is not None and not callable(input_transform):
        raise ValueError(
            "Expected input_transform to be a function (model, x, y) -> "
            f"(x, y). Received: input_transform={input_transform!r}")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        learning_rate = schedules.check_learning_rate(learning_rate)
    callbacks = _check_callbacks(callbacks)
    randomness.set_seed(seed)

    source = inputs.TrainSource(
        train_data, batch_size=batch_size, seed=seed,
        steps_per_epoch=steps_per_epoch, drop_remainder=drop_remainder)
    num_classes = _build(model, source, strategy)
    if (source.arrays is not None and num_classes is not None
            and source.arrays[1].max() >= num_classes):
        raise ValueError(
            f"Expected labels in [0, {num_classes}) for a model with "
            f"{num_classes} outputs. Received: max label "
            f"{int(source.arrays[1].max())}")
    _check_strategy_match(model, strategy)
    eval_set = None
    if eval_data is not None:
        eval_set = strategy.experimental_distribute_dataset(
            inputs.eval_dataset(eval_data, eval_batch_size or batch_size
                                or 256))
    optimizer = _make_optimizer(optimizer, learning_rate, strategy)
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

    chief = is_chief(strategy)
    state = checkpoints.TrainingCheckpoint(
        checkpoint_dir, model, optimizer, strategy, chief, max_to_keep)
    initial_epoch = state.restore()
    total_steps = int(state.step.numpy())
    previous = state.load_history(initial_epoch)
    history = History(*previous) if previous else History()
    history.initial_epoch = initial_epoch
    if initial_epoch >= epochs:
        if verbose:
            print(f"Training already finished: checkpoint_dir holds "
                  f"{initial_epoch} epochs (epochs={epochs}).")
        state.close()
        return history
    if initial_epoch and verbose:
        print(f"Resuming from epoch {initial_epoch} of {epochs}.")

    train_step = steps_lib.make_train_step(
        model, optimizer, strategy, named_losses, input_transform)
    eval_step = evaluate_lib.make_eval_step(model, strategy)
    writer = (tf.summary.create_file_writer(log_dir)
              if log_dir is not None and chief else None)
    callback_list = keras.callbacks.CallbackList(
        callbacks, model=model, epochs=epochs, verbose=verbose)
    model.stop_training = False
    persistent_iterator = None
    reseeded = [f for f in (input_transform, *named_losses.values())
                if f is not None]
    callback_list.on_train_begin()
    try:
        for epoch in range(initial_epoch, epochs):
            randomness.reseed_for_epoch(model, seed, epoch, reseeded)
            callback_list.on_epoch_begin(epoch)
            if source.persistent:
                if persistent_iterator is None:
                    persistent_iterator = iter(
                        strategy.experimental_distribute_dataset(
                            source.dataset_for_epoch(epoch)))
                batches = persistent_iterator
                known = steps_per_epoch
            else:
                dataset = source.dataset_for_epoch(epoch)
                known = source.known_steps(dataset)
                batches = iter(strategy.experimental_distribute_dataset(
                    dataset))
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            start = time.time()
            logs, done = steps_lib.run_epoch(
                train_step, batches, known, epoch, verbose, callback_list,
                named_losses)
            if done == 0:
                raise ValueError(
                    "Expected train_data to yield at least one batch per "
                    f"epoch. Received: no batch in epoch {epoch + 1}")
            total_steps += done
            logs["lr"] = _current_lr(optimizer)
            logs["eval_accuracy"] = logs["eval_ce"] = None
            if eval_set is not None and ((epoch + 1) % eval_every == 0
                                         or epoch + 1 == epochs):
                result = evaluate_lib.run_eval(eval_step, eval_set)
                logs["eval_accuracy"] = result["accuracy"]
                logs["eval_ce"] = result["ce"]
            logs["epoch_time"] = time.time() - start
            history.append(epoch, logs)
            state.save(epoch + 1, total_steps)
            state.save_history(history.epoch, dict(history))
            _write_summaries(writer, logs, epoch + 1)
            if verbose:
                steps_lib.print_epoch_end(logs, verbose)
            callback_list.on_epoch_end(epoch, dict(logs))
            if getattr(model, "stop_training", False):
                break
    finally:
        state.close()
        if writer is not None:
            writer.close()
    callback_list.on_train_end()
    return history
