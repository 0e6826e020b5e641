"""The compiled train step of `fit` and the Python loop over one epoch."""

import collections

import keras
import numpy as np
import tensorflow as tf

from tfrobust.training import inputs
from tfrobust.training import objectives

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


def _data_term(loss, y, logits, sample_weight, local_n, global_n, share):
    """The replica's share of the global-batch mean of the data loss."""
    value = tf.cast(loss(y, logits), tf.float32)
    if value.shape.rank == 0:
        if sample_weight is not None:
            raise ValueError(
                "Expected loss_fn to return per-example losses [B] when the "
                "input transform gives sample weights. Received: a scalar")
        return tf.where(local_n > 0, value * share, 0.0)
    if value.shape.rank != 1:
        raise ValueError(
            "Expected loss_fn to return a scalar or per-example losses [B]. "
            f"Received: shape {value.shape}")
    if sample_weight is not None:
        value = value * tf.cast(sample_weight, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(value), global_n)


def correct_count(y, logits):
    """Examples whose argmax matches the label (or the target's argmax)."""
    predicted = tf.argmax(logits, axis=-1)
    target = (tf.argmax(y, axis=-1) if objectives.is_soft(y)
              else tf.cast(y, tf.int64))
    return tf.reduce_sum(tf.cast(tf.equal(predicted, target), tf.float32))


def _clip_global(gradients, variables, clip_norm, num_replicas):
    """Clips the all-replica gradient by its global norm.

    The optimizer sums the replicas' gradients; clipping each replica's part
    would bound the wrong norm. So the parts are summed here, clipped, and
    handed back as equal shares whose sum is the clipped gradient.
    """
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    grads = [g for g, _ in pairs]
    if num_replicas > 1:
        context = tf.distribute.get_replica_context()
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads, norm = tf.clip_by_global_norm(grads, clip_norm)
    if num_replicas > 1:
        grads = [g / num_replicas for g in grads]
    return grads, [v for _, v in pairs], norm


def make_train_step(model, optimizer, strategy, extra_losses,
                    input_transform, loss=None, *, bounds=None,
                    check_data=False, num_classes=None, grad_clip_norm=None):
    """The compiled update: transform, forward, loss, gradient, apply.

    Each replica scales its share by the global batch size (summed over
    replicas), so the optimizer's sum of replica gradients is the gradient of
    the global-batch mean; a batch-mean extra loss is weighted by the
    replica's fraction of the batch and `model.losses` by 1/replicas.

    Args:
        model, optimizer, strategy: as in `fit`.
        extra_losses: ordered dict `name -> fn(model, x, y, logits)`.
        input_transform: None or `fn(model, element) -> (x, y[, w])`.
        loss: `fn(y, logits) -> [B] or scalar` (default cross-entropy).
        bounds: declared input range checked in the graph when
            `check_data` (None: no range check).
        check_data: check each raw batch (pixel range, labels in [0, K)).
        num_classes: K, when known before the forward pass.
        grad_clip_norm: clip the global gradient norm to this value.
    """
    num_replicas = strategy.num_replicas_in_sync
    loss = loss or objectives.cross_entropy

    def replica_step(element):
        x, y = inputs.split(element)
        if check_data:
            x, y = inputs.assert_element(x, y, num_classes, bounds,
                                         "train_data")
            element = _replace_xy(element, x, y)
        sample_weight = None
        if input_transform is not None:
            x, y, sample_weight = inputs.split_transformed(
                input_transform(model, element))
        context = tf.distribute.get_replica_context()
        local_n = tf.cast(tf.shape(y)[0], tf.float32)
        global_n = context.all_reduce(tf.distribute.ReduceOp.SUM, local_n)
        share = tf.math.divide_no_nan(local_n, global_n)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            if check_data and num_classes is None:
                # K is known only now; check the (transformed) labels.
                _, y = inputs.assert_element(x, y, int(logits.shape[-1]),
                                             None, "train_data")
            data = _data_term(loss, y, logits, sample_weight, local_n,
                              global_n, share)
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
            total = data + regularization
            for value in terms.values():
                total = total + value
        gradients = tape.gradient(total, variables)
        if grad_clip_norm is not None:
            gradients, variables, _ = _clip_global(
                gradients, variables, grad_clip_norm, num_replicas)
        optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": total, "ce": data, "regularization": regularization,
                **terms, "correct": correct_count(y, logits),
                "count": local_n}

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return train_step


def _replace_xy(element, x, y):
    if isinstance(element, dict):
        return {**element, "x": x, "y": y}
    return (x, y, *element[2:])


def call_step(step, batch, epoch, step_index):
    """Runs a compiled step; a failed data check becomes a ValueError."""
    try:
        return step(batch)
    except tf.errors.InvalidArgumentError as e:
        error = inputs.data_error(e)
        if error is None:
            raise
        where = "" if epoch is None else (
            f" (epoch {epoch + 1}, step {step_index + 1})")
        raise ValueError(f"{error}{where}") from None


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
        out = {k: float(v) for k, v in call_step(
            train_step, batch, epoch, step).items()}
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
