"""Compiled, batched clean accuracy and cross-entropy of a model."""

import tensorflow as tf

from tfrobust.training import inputs
from tfrobust.training import objectives
from tfrobust.training import steps


def make_eval_step(model, strategy, *, bounds=None, arg="eval_data"):
    """A compiled step returning summed correct count, CE and example count.

    The replica results are summed over replicas, so the caller divides by the
    count once at the end (exact also for an incomplete last batch). Each
    batch is checked in the graph (labels in [0, K), pixels inside `bounds`
    unless None), see `run_eval`.
    """

    def replica_step(x, y):
        logits = model(x, training=False)
        x, y = inputs.assert_element(x, y, int(logits.shape[-1]), bounds, arg)
        ce = objectives.cross_entropy(y, logits)
        return {"correct": steps.correct_count(y, logits),
                "ce": tf.reduce_sum(ce),
                "count": tf.cast(tf.shape(y)[0], tf.float32)}

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        per_replica = strategy.run(replica_step, args=tuple(batch))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return eval_step


def run_eval(eval_step, distributed_dataset):
    """Runs `eval_step` over a distributed dataset; returns accuracy and CE.

    Raises:
        ValueError: on an empty dataset, or a batch that fails the step's
            data checks (naming the argument).
    """
    totals = {"correct": 0.0, "ce": 0.0, "count": 0.0}
    for batch in distributed_dataset:
        out = steps.call_step(eval_step, batch, None, None)
        for key in totals:
            totals[key] += float(out[key])
    if totals["count"] == 0:
        raise ValueError("Expected the evaluation data to be non-empty. "
                         "Received: an empty dataset")
    return {"accuracy": totals["correct"] / totals["count"],
            "ce": totals["ce"] / totals["count"]}


def evaluate_clean(model, data, *, batch_size=256, strategy=None,
             bounds=(0.0, 1.0)):
    """Clean accuracy and mean cross-entropy of `model` on `data`.

    Args:
        model: A Keras model (or layer) mapping images to logits `[B, K]`.
        data: A tuple `(x, y)` of NumPy arrays (float images, integer labels)
            or a `tf.data.Dataset` of `(x, y)` batches.
        batch_size: Batch size used for arrays.
        strategy: The `tf.distribute.Strategy` the model was created under;
            defaults to the current one.
        bounds: The declared input range `(lo, hi)` of the images (None: not
            checked).

    Returns:
        A dict with floats `"accuracy"` (in [0, 1]) and `"ce"`.

    Raises:
        ValueError: on malformed or empty data, pixels outside `bounds`, or
            labels outside [0, K).
    """
    strategy = strategy or tf.distribute.get_strategy()
    bounds = inputs.check_bounds(bounds)
    dataset = inputs.eval_dataset(data, batch_size, arg="data", bounds=bounds)
    step = make_eval_step(model, strategy, bounds=bounds, arg="data")
    return run_eval(step, strategy.experimental_distribute_dataset(dataset))


def evaluate_accuracy(model, data, *, batch_size=256, strategy=None,
                      bounds=(0.0, 1.0)):
    """Clean accuracy of `model` on `data` (compiled and batched).

    Args:
        model: A Keras model (or layer) mapping images to logits `[B, K]`.
        data: A tuple `(x, y)` of NumPy arrays or a `tf.data.Dataset` of
            `(x, y)` batches.
        batch_size: Batch size used for arrays.
        strategy: The strategy the model was created under (default: the
            current one).
        bounds: The declared input range of the images (None: not checked).

    Returns:
        The fraction of correctly classified examples, a float in [0, 1].

    Raises:
        ValueError: on malformed or empty data.
    """
    return evaluate_clean(model, data, batch_size=batch_size, strategy=strategy,
                    bounds=bounds)["accuracy"]
