"""The compiled train step of `fit` and the Python loop over one epoch."""

import collections

import keras
import numpy as np
import tensorflow as tf

RESERVED_NAMES = ("loss", "ce", "regularization", "accuracy", "lr",
                  "epoch_time", "eval_accuracy", "eval_ce", "count", "correct")


def name_extra_losses(extra_losses):
    """Returns an ordered dict `name -> fn` from a dict or a sequence."""
    if extra_losses is None:
        return collections.OrderedDict()
    if callable(extra_losses) and not isinstance(extra_losses, dict):
        extra_losses = [extra_losses]
    if isinstance(extra_losses, dict):
        items = list(extra_losses.items())
    elif isinstance(extra_losses, (list, tuple)):
        items = []
        for fn in extra_losses:
            name = getattr(fn, "name", None) or getattr(fn, "__name__", None)
            if not isinstance(name, str):
                raise ValueError(
                    "Expected each extra loss to have a `name` or `__name__` "
                    f"attribute (or pass a dict name -> fn). Received: {fn!r}")
            items.append((name, fn))
    else:
        raise ValueError(
            "Expected extra_losses to be a dict name -> fn or a sequence of "
            f"named functions. Received: extra_losses={extra_losses!r}")
    named = collections.OrderedDict()
    for name, fn in items:
        if not isinstance(name, str) or not name:
            raise ValueError(
                "Expected extra loss names to be non-empty strings. "
                f"Received: name={name!r}")
        if not callable(fn):
            raise ValueError(
                "Expected each extra loss to be a function (model, x, y, "
                f"logits) -> scalar. Received: {name}={fn!r}")
        if name in RESERVED_NAMES:
            raise ValueError(
                f"Expected extra loss names other than {RESERVED_NAMES}. "
                f"Received: name={name!r}")
        if name in named:
            raise ValueError(
                "Expected distinct extra loss names (pass a dict to name "
                f"them). Received: name={name!r} twice")
        named[name] = fn
    return named


def make_train_step(model, optimizer, strategy, extra_losses,
                    input_transform):
    """The compiled update: transform, forward, loss, gradient, apply.

    Each replica scales its share by the global batch size (summed over
    replicas), so the optimizer's sum of replica gradients is the gradient of
    the global-batch mean; a batch-mean extra loss is weighted by the
    replica's fraction of the batch and `model.losses` by 1/replicas.
    """
    num_replicas = strategy.num_replicas_in_sync

    def replica_step(x, y):
        if input_transform is not None:
            x, y = input_transform(model, x, y)
        y = tf.cast(y, tf.int64)
        context = tf.distribute.get_replica_context()
        local_n = tf.cast(tf.shape(y)[0], tf.float32)
        global_n = context.all_reduce(tf.distribute.ReduceOp.SUM, local_n)
        share = tf.math.divide_no_nan(local_n, global_n)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            ce = tf.math.divide_no_nan(tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=y, logits=tf.cast(logits, tf.float32))), global_n)
            terms = {}
            for name, fn in extra_losses.items():
                value = tf.cast(fn(model, x, y, logits), tf.float32)
                if value.shape.rank != 0:
                    raise ValueError(
                        f"Expected extra loss {name!r} to return a scalar. "
                        f"Received: shape {value.shape}")
                # An empty replica batch may give NaN; it has no share.
                terms[name] = tf.where(local_n > 0, value * share, 0.0)
            regularization = tf.constant(0.0)
            if model.losses:
                regularization = tf.add_n(
                    [tf.cast(v, tf.float32) for v in model.losses]
                ) / num_replicas
            total = ce + regularization
            for value in terms.values():
                total = total + value
        gradients = tape.gradient(total, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, axis=-1), y), tf.float32))
        return {"loss": total, "ce": ce, "regularization": regularization,
                **terms, "correct": correct, "count": local_n}

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=tuple(batch))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return train_step


def run_epoch(train_step, batches, known_steps, epoch, verbose,
              callback_list, extra_losses):
    """Runs one epoch of updates; returns (epoch means, number of steps).

    Raises:
        FloatingPointError: when the loss is NaN or infinite.
    """
    keys = ["loss", "ce", "regularization", *extra_losses]
    sums = dict.fromkeys(keys, 0.0)
    correct = count = 0.0
    progbar = None
    if verbose == 1:
        progbar = keras.utils.Progbar(known_steps, verbose=1,
                                      stateful_metrics=keys + ["accuracy"])
    step = 0
    while known_steps is None or step < known_steps:
        try:
            batch = next(batches)
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        callback_list.on_train_batch_begin(step)
        out = {k: float(v) for k, v in train_step(batch).items()}
        if not np.isfinite(out["loss"]):
            raise FloatingPointError(
                f"Expected a finite training loss. Received: loss="
                f"{out['loss']} at epoch {epoch + 1}, step {step + 1} "
                f"(terms: { {k: out[k] for k in keys} }). Lower the learning "
                "rate or check the data; the last finished epoch's checkpoint "
                "is kept.")
        n = out["count"]
        count += n
        correct += out["correct"]
        for key in keys:
            # Step values are global-batch means; weight them by batch size.
            sums[key] += out[key] * n
        step += 1
        means = {k: sums[k] / count if count else 0.0 for k in keys}
        means["accuracy"] = correct / count if count else 0.0
        callback_list.on_train_batch_end(step - 1, dict(means))
        if progbar is not None:
            progbar.update(step, list(means.items()))
    if step == 0:
        return {}, 0
    if progbar is not None and known_steps is None:
        progbar.update(step, list(means.items()), finalize=True)
    return means, step


def print_epoch_end(logs, verbose):
    shown = ["lr", "eval_accuracy", "eval_ce", "epoch_time"]
    if verbose == 2:
        shown = [k for k in logs if k not in shown] + shown
    parts = [f"{k}: {logs[k]:.4g}" for k in shown if logs.get(k) is not None]
    print(" - ".join(parts))
