"""Compiled, batched clean accuracy and cross-entropy of a model."""

import tensorflow as tf

from tfrobust.training import inputs


def make_eval_step(model, strategy):
    """A compiled step returning summed correct count, CE and example count.

    The replica results are summed over replicas, so the caller divides by the
    count once at the end (exact also for an incomplete last batch).
    """

    def replica_step(x, y):
        y = tf.cast(y, tf.int64)
        logits = model(x, training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.float32)
        return {"correct": tf.reduce_sum(correct), "ce": tf.reduce_sum(ce),
                "count": tf.cast(tf.shape(y)[0], tf.float32)}

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        per_replica = strategy.run(replica_step, args=tuple(batch))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return eval_step


def run_eval(eval_step, distributed_dataset):
    """Runs `eval_step` over a distributed dataset; returns accuracy and CE."""
    totals = {"correct": 0.0, "ce": 0.0, "count": 0.0}
    for batch in distributed_dataset:
        out = eval_step(batch)
        for key in totals:
            totals[key] += float(out[key])
    if totals["count"] == 0:
        raise ValueError("Expected the evaluation data to be non-empty. "
                         "Received: an empty dataset")
    return {"accuracy": totals["correct"] / totals["count"],
            "ce": totals["ce"] / totals["count"]}


def evaluate(model, data, *, batch_size=256, strategy=None):
    """Clean accuracy and mean cross-entropy of `model` on `data`.

    Args:
        model: A Keras model (or layer) mapping images to logits `[B, K]`.
        data: A tuple `(x, y)` of NumPy arrays (float images, integer labels)
            or a `tf.data.Dataset` of `(x, y)` batches.
        batch_size: Batch size used for arrays.
        strategy: The `tf.distribute.Strategy` the model was created under;
            defaults to the current one.

    Returns:
        A dict with floats `"accuracy"` (in [0, 1]) and `"ce"`.

    Raises:
        ValueError: on malformed or empty data.
    """
    strategy = strategy or tf.distribute.get_strategy()
    dataset = inputs.eval_dataset(data, batch_size, arg="data")
    step = make_eval_step(model, strategy)
    return run_eval(step, strategy.experimental_distribute_dataset(dataset))


def evaluate_accuracy(model, data, *, batch_size=256, strategy=None):
    """Clean accuracy of `model` on `data` (compiled and batched).

    Args:
        model: A Keras model (or layer) mapping images to logits `[B, K]`.
        data: A tuple `(x, y)` of NumPy arrays or a `tf.data.Dataset` of
            `(x, y)` batches.
        batch_size: Batch size used for arrays.
        strategy: The strategy the model was created under (default: the
            current one).

    Returns:
        The fraction of correctly classified examples, a float in [0, 1].

    Raises:
        ValueError: on malformed or empty data.
    """
    return evaluate(model, data, batch_size=batch_size,
                    strategy=strategy)["accuracy"]
