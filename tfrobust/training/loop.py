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

import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfrobust import _validate
from tfrobust.training import arguments
from tfrobust.training import checkpoints
from tfrobust.training import evaluation as evaluate_lib
from tfrobust.training import inputs
from tfrobust.training import objectives
from tfrobust.training import randomness
from tfrobust.training import schedules
from tfrobust.training import steps as steps_lib
from tfrobust.training.strategy import is_chief


class History(dict):
    """Per-epoch training results: a dict of lists, one entry per epoch.

    Keys: `"loss"` (total objective), `"ce"` (the data loss: cross-entropy
    or `loss_fn`'s value), `"regularization"` (sum of
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


def _current_lr(optimizer):
    return float(np.asarray(keras.ops.convert_to_numpy(
        optimizer.learning_rate)))


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
        loss_fn=None, extra_losses=(), input_transform=None, state=None,
        grad_clip_norm=None, bounds=(0.0, 1.0), with_index=False,
        eval_data=None, checkpoint_dir=None, log_dir=None, strategy=None,
        seed=0, verbose=1, callbacks=(), max_to_keep=3, steps_per_epoch=None,
        eval_every=1, batch_size=None, eval_batch_size=None,
        drop_remainder=False):
    """Trains `model` on a replaceable loss plus extra losses, resumably.

    The objective of each update is the data loss `loss_fn(y, logits)`
    (default: mean softmax cross-entropy, on integer labels or soft targets),
    plus every extra loss, plus `model.losses` (Keras weight regularizers).
    One compiled step (`strategy.run` and a sum over replicas) applies
    `input_transform`, the forward pass and the update; each replica's share
    is scaled by the global batch size so the gradient is that of the
    global-batch mean (`tf.nn.compute_average_loss` semantics, exact also for
    an incomplete last batch).

    **The input transform contract.** `input_transform(model, batch)`
    receives the whole training element as the data yields it (a tuple
    `(x, y, *aux)` or a dict with keys "x", "y" and any others, e.g.
    "index") inside the compiled step, and returns `(x, y)`,
    `(x, y, sample_weight)` or a dict with keys "x", "y" and optionally
    "sample_weight"; its output is treated as constant input. The model is
    built on the transformed sample, so a transform may change the input
    shape. (An old-style `fn(model, x, y)` is refused with a message showing
    the one-line wrapper.)

    With `checkpoint_dir`, a checkpoint is written at the end of every epoch
    (after the callbacks' `on_epoch_end`, so state they update is in it) and,
    if one is there on start, training resumes after it and reaches the
    same weights as an uninterrupted run: arrays are shuffled per epoch from
    `(seed, epoch)`, and the declared random generators (layer seed
    generators, and those the input transform and losses declare with
    `random_generators()`, e.g. an attack's), Keras' global seed generator
    and TensorFlow's global generator are reseeded per epoch from
    `(seed, epoch)` (see `reseed_for_epoch`). If the latest checkpoint is
    damaged, training resumes from the newest intact earlier one, with a
    warning. A `tf.data.Dataset` is read as given; for exact resume its order
    must not depend on process state (or pass a function `epoch -> Dataset`).

    Create the model under `strategy.scope()` before calling `fit`; `fit`
    creates the optimizer under that scope.

    Args:
        model: A Keras model returning logits `[B, K]`.
        train_data: `(x, y, *aux)` NumPy arrays or a dict of arrays with
            keys "x" and "y" (then `batch_size` is required), a
            `tf.data.Dataset` of such batches, or a function
            `epoch -> tf.data.Dataset`. Batches are global batches. `y` is
            integer labels `[B]` or float targets `[B, K]`.
        epochs: Total number of epochs (including epochs restored from a
            checkpoint), an integer >= 1.
        optimizer: A name for `make_optimizer` ("sgd", "momentum",
            "nesterov", "adam", "rmsprop") or a Keras optimizer instance
            created under the strategy's scope.
        learning_rate: A number > 0 or a `LearningRateSchedule` (used with
            an optimizer name).
        loss_fn: The data loss: None or "cross_entropy" (hard or soft
            labels), "soft_cross_entropy" (float targets `[B, K]` only), or
            `fn(y, logits)` returning per-example losses `[B]` (averaged
            over the global batch, weighted by the transform's sample
            weights) or a scalar batch mean. Reported as "ce" in the
            history.
        extra_losses: A dict `name -> fn` or a sequence of functions (named by
            their `name` or `__name__` attribute); `fn(model, x, y, logits)`
            returns an already weighted scalar added to the objective.
        input_transform: Optional `fn(model, batch)`, see above.
        state: Optional dict `name -> tf.Variable` (or nests of variables):
            experiment state (e.g. a per-example noise table filled by a
            callback) saved in every checkpoint and restored on resume.
        grad_clip_norm: Optional number > 0: the gradient (of the whole
            global batch) is clipped to this global L2 norm before each
            update.
        bounds: The declared input range `(lo, hi)` of the training and
            evaluation images (arrays are checked up front, dataset batches
            in the step), or None for no check.
        with_index: For array `train_data`: give each element the examples'
            row numbers (int64 `[B]`), appended to the tuple or under
            "index" in a dict.
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
        ValueError: on invalid arguments or data (non-integer labels, labels
            outside [0, K), pixels outside `bounds`, empty data, a model not
            created under the strategy's scope), or a checkpoint directory
            from which no checkpoint can be restored.
        FloatingPointError: when the loss becomes NaN or infinite, naming the
            epoch and step.
    """
    epochs = _validate.check_int(epochs, name="epochs", minimum=1)
    max_to_keep = _validate.check_int(max_to_keep, name="max_to_keep",
                                      minimum=1)
    eval_every = _validate.check_int(eval_every, name="eval_every", minimum=1)
    steps_per_epoch = _validate.check_int(
        steps_per_epoch, name="steps_per_epoch", minimum=1, allow_none=True)
    seed = randomness.check_seed(seed)
    verbose = _validate.check_int(verbose, name="verbose", minimum=0, maximum=2)
    grad_clip_norm = _validate.check_float(
        grad_clip_norm, name="grad_clip_norm", minimum=0.0,
        exclusive_minimum=True, allow_none=True)
    bounds = inputs.check_bounds(bounds)
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            "Expected strategy to be a tf.distribute.Strategy (see "
            f"make_strategy) or None. Received: strategy={strategy!r}")
    arguments.check_model(model)
    named_losses = steps_lib.name_extra_losses(extra_losses)
    loss = objectives.resolve_loss(loss_fn)
    input_transform = arguments.check_transform(input_transform)
    state = arguments.check_state(state)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        learning_rate = schedules.check_learning_rate(learning_rate)
    callbacks = arguments.check_callbacks(callbacks)
    randomness.set_seed(seed)

    source = inputs.TrainSource(
        train_data, batch_size=batch_size, seed=seed,
        steps_per_epoch=steps_per_epoch, drop_remainder=drop_remainder,
        bounds=bounds, with_index=with_index)
    num_classes = arguments.build_model(model, source, strategy, input_transform)
    if source.arrays is not None and source.arrays[1].ndim == 1 and (
            source.arrays[1].max() >= num_classes):
        raise ValueError(
            f"Expected labels in [0, {num_classes}) for a model with "
            f"{num_classes} outputs. Received: max label "
            f"{int(source.arrays[1].max())}")
    if source.arrays is not None and source.arrays[1].ndim == 2 and (
            source.arrays[1].shape[1] != num_classes):
        raise ValueError(
            f"Expected soft targets with {num_classes} columns for a model "
            f"with {num_classes} outputs. Received: train_data targets of "
            f"shape {source.arrays[1].shape}")
    arguments.check_strategy_match(model, strategy)
    eval_set = None
    if eval_data is not None:
        eval_set = strategy.experimental_distribute_dataset(
            inputs.eval_dataset(eval_data, eval_batch_size or batch_size
                                or 256, bounds=bounds))
    optimizer = arguments.make_optimizer(optimizer, learning_rate, strategy)
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

    chief = is_chief(strategy)
    checkpoint = checkpoints.TrainingCheckpoint(
        checkpoint_dir, model, optimizer, strategy, chief, max_to_keep,
        state=state)
    initial_epoch = checkpoint.restore()
    total_steps = int(checkpoint.step.numpy())
    previous = checkpoint.load_history(initial_epoch)
    history = History(*previous) if previous else History()
    history.initial_epoch = initial_epoch
    if initial_epoch >= epochs:
        if verbose:
            print(f"Training already finished: checkpoint_dir holds "
                  f"{initial_epoch} epochs (epochs={epochs}).")
        checkpoint.close()
        return history
    if initial_epoch and verbose:
        print(f"Resuming from epoch {initial_epoch} of {epochs}.")

    train_step = steps_lib.make_train_step(
        model, optimizer, strategy, named_losses, input_transform, loss,
        bounds=bounds, check_data=source.arrays is None,
        num_classes=num_classes, grad_clip_norm=grad_clip_norm)
    eval_step = evaluate_lib.make_eval_step(model, strategy, bounds=bounds)
    writer = (tf.summary.create_file_writer(log_dir)
              if log_dir is not None and chief else None)
    callback_list = keras.callbacks.CallbackList(
        callbacks, model=model, epochs=epochs, verbose=verbose)
    model.stop_training = False
    persistent_iterator = None
    reseeded = [f for f in (input_transform, loss, *named_losses.values())
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
            _write_summaries(writer, logs, epoch + 1)
            if verbose:
                steps_lib.print_epoch_end(logs, verbose)
            # Callbacks run before the checkpoint, so that the experiment
            # state they update at the end of an epoch is saved with it.
            callback_list.on_epoch_end(epoch, dict(logs))
            history.append(epoch, logs)
            checkpoint.save(epoch + 1, total_steps)
            checkpoint.save_history(history.epoch, dict(history))
            if getattr(model, "stop_training", False):
                break
    finally:
        checkpoint.close()
        if writer is not None:
            writer.close()
    callback_list.on_train_end()
    return history
