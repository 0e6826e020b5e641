"""`tf.distribute` for per-example work: batches dealt to replicas, results in data order.

Example:

```python
from tfrobust import distribute
from tfrobust.training import make_strategy

strategy = make_strategy("mirrored")          # or "multi_worker" (TF_CONFIG)
streams = distribute.BatchStreams.of([attack])
outputs = distribute.run_batches(
    strategy, lambda x, y: attack(model, x, y), [(x0, y0), (x1, y1), ...],
    streams=streams)                          # [(x_adv0,), (x_adv1,), ...]
```

Used by `tfrobust.evaluation.evaluate(..., strategy=)`,
`evaluation.auto_attack(..., strategy=)`, `smoothing.Smooth.certify_batch`
and `smoothing.SmoothedClassifier.predict_dataset`; `map_batches` is the
one call for code that runs with or without a strategy, `stream_batches`
its lazy variant for the engine (the caller's own random work on each
output on streams after the batches').

**How the work is split.** A replica runs whole batches, never a slice of
one: global step k gives batch `k * R + r` to replica r (R replicas in sync,
over all workers), inside one compiled `strategy.run`; the outputs are
gathered with `strategy.gather` (across workers too, so every worker holds
every result) and put back in batch order. A replica therefore computes
exactly what the single-device run computes on that batch (same shapes,
same traces, same batch composition), which is what makes per-example
results identical; splitting a batch over replicas would change the batch
an attack sees and with it its batch-shaped random draws.

**Random streams.** Attacks draw from the generators they declare
(`random_generators()`). `BatchStreams` puts each declared generator, before
batch b, at a state derived only from its state at the start of the run and
from b (a skip of `b * 2**40` samples: a batch never reaches the next one's
stream). So which replica or worker runs a batch, and in what order, does
not change what it draws; the single-device path uses the same streams.
Batch 0 starts at the generator's current state (a one-batch run draws what
a direct call draws); afterwards each generator is left at the stream of
batch N, so the next run draws new numbers, whichever path ran.

**Writing.** Under `MultiWorkerMirroredStrategy` only the chief writes
(`is_chief`); `output_dir` gives the others a private temporary folder,
removed on exit (TensorFlow's documented pattern for multi-worker saving).
"""

import atexit
import contextlib
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

__all__ = ["BatchStreams", "is_chief", "map_batches", "output_dir", "run_batches", "stream_batches",
           "write_dir"]

# Samples skipped between the streams of consecutive batches (2**40 samples
# is far more than any attack draws on one batch; 2**23 batches fit in int64).
_STRIDE = 2**40


def _keras_seed_generator_type():
    import keras

    return keras.random.SeedGenerator


class BatchStreams:
    """Per-batch random streams of a set of generators.

    Args:
        generators: `tf.random.Generator`s and `keras.random.SeedGenerator`s
            (others are ignored). Their current states are the run's start.

    Create it (or the generators) outside any `strategy.scope()`: a
    generator created inside a strategy scope mixes the replica id into its
    key, so its draws would depend on the replica.
    """

    def __init__(self, generators=()):
        seed_generator = _keras_seed_generator_type()
        self._generators, seen = [], set()
        for g in generators:
            if isinstance(g, (tf.random.Generator, seed_generator)) and id(g) not in seen:
                seen.add(id(g))
                self._generators.append(g)
        self._initial = [np.asarray(self._variable(g).numpy()) for g in self._generators]

    @classmethod
    def of(cls, objects):
        """The streams of everything `objects` declare (see `tfrobust._random.generators_of`)."""
        from tfrobust import _random

        return cls(_random.generators_of(list(objects)))

    def __len__(self):
        return len(self._generators)

    @staticmethod
    def _variable(g):
        return g.state

    def states(self, batch):
        """The generators' states `[...]` (NumPy) at the start of batch `batch`."""
        out = []
        for g, s0 in zip(self._generators, self._initial):
            if isinstance(g, tf.random.Generator):
                scratch = tf.random.Generator.from_state(s0, alg=g.algorithm)
                if batch:
                    scratch.skip(int(batch) * _STRIDE)
                out.append(np.asarray(scratch.state.numpy()))
            else:
                # A Keras seed generator's draws are (s0, s1 + k): moving s0
                # by the batch gives disjoint seeds.
                out.append((s0 + np.array([batch, 0], s0.dtype)).astype(s0.dtype))
        return out

    def assign(self, states):
        """Sets every generator to `states` (eagerly, or inside a replica's function)."""
        for g, s in zip(self._generators, states):
            self._variable(g).assign(s)

    def enter(self, batch):
        """Positions every generator at the start of batch `batch` (eager)."""
        if self._generators:
            self.assign(self.states(batch))

    def finish(self, num_batches):
        """Leaves the generators at the stream after the last batch."""
        self.enter(num_batches)


def _check_strategy(strategy):
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            "Expected strategy to be a tf.distribute.Strategy (see "
            f"tfrobust.training.make_strategy) or None. Received: strategy={strategy!r}")
    if tf.distribute.has_strategy():
        raise ValueError(
            "Expected the distributed run to start outside any strategy.scope() (create the model "
            "inside the scope, then evaluate outside it: random generators made inside a scope "
            "draw per replica). Received: a call inside "
            f"{type(tf.distribute.get_strategy()).__name__}.scope()")
    return strategy


def run_batches(strategy, fn, batches, *, streams=None):
    """Runs `fn` on every batch over the replicas of `strategy`; outputs in batch order.

    Args:
        strategy: a `tf.distribute.Strategy` (Mirrored, OneDevice,
            MultiWorkerMirrored or the default one).
        fn: the replica function, `fn(*tensors) -> tensor or tuple of
            tensors`, each output with the batch as leading axis. It is
            traced inside `tf.function` once per replica (and per input
            shape), so it must be graph-compatible.
        batches: list of tuples of NumPy arrays, all of one batch's arrays
            with the same leading size (sizes may differ between batches).
        streams: optional `BatchStreams`: batch b draws from stream b.

    Returns:
        A list with one tuple of NumPy arrays per batch, in the order of
        `batches`. Every worker of a multi-worker strategy gets all of them.

    Raises:
        ValueError: on a non-strategy, empty `batches`, or a call inside a
            strategy scope.
    """
    strategy = _check_strategy(strategy)
    batches = [tuple(np.asarray(a) for a in b) for b in batches]
    if not batches:
        raise ValueError("Expected at least one batch. Received: batches=[]")
    streams = streams if streams is not None else BatchStreams()
    replicas = strategy.num_replicas_in_sync

    def replica_fn(args, states):
        streams.assign(states)
        out = fn(*args)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    # autograph=False: AutoGraph would transpile every Python function the
    # replica calls (an attack's whole call: ~80 functions, seconds of CPU per
    # run); the compiled functions inside convert themselves, as on the
    # single-device path, and a Python `if` on a tensor fails loudly.
    @tf.function(autograph=False)
    def step(args, states):
        out = strategy.run(replica_fn, args=(args, states))
        # A tuple of per-replica values -> one tensor per output, replicas
        # concatenated in replica-id order on every worker.
        return tuple(strategy.gather(t, axis=0) for t in out)

    results = []
    for start in range(0, len(batches), replicas):
        ids = [start + r for r in range(replicas)]
        # Replicas past the last batch repeat it (their outputs are dropped).
        chosen = [batches[min(i, len(batches) - 1)] for i in ids]
        # Computed here, outside the strategy's scope (they use scratch
        # generators, which must not become distributed variables).
        step_states = [streams.states(i) for i in ids]

        def value_fn(ctx, chosen=chosen, step_states=step_states):
            r = ctx.replica_id_in_sync_group
            return (tuple(tf.constant(a) for a in chosen[r]),
                    [tf.constant(s) for s in step_states[r]])

        args, states = strategy.experimental_distribute_values_from_function(value_fn)
        gathered = [np.asarray(t) for t in step(args, states)]
        sizes = np.cumsum([0] + [len(b[0]) for b in chosen])
        for r, i in enumerate(ids):
            if i < len(batches):
                results.append(tuple(g[sizes[r]:sizes[r + 1]] for g in gathered))
    return results


def map_batches(strategy, fn, batches, *, streams=None):
    """`run_batches` over `strategy`, or (strategy None) the same batches in order on this device.

    Both paths run `fn` compiled (a `tf.function` here; `strategy.run`
    there) and put batch b on random stream b, so they give the same
    outputs; afterwards the generators are left at the stream after the
    last batch (`BatchStreams.finish`).

    Args:
        strategy: a `tf.distribute.Strategy` or None.
        fn, batches, streams: as in `run_batches`.

    Returns:
        A list with one tuple of NumPy arrays per batch, in batch order.

    Raises:
        ValueError: as `run_batches`.
    """
    streams = streams if streams is not None else BatchStreams()
    if strategy is not None:
        out = run_batches(strategy, fn, batches, streams=streams)
    else:
        batches = [tuple(np.asarray(a) for a in b) for b in batches]
        if not batches:
            raise ValueError("Expected at least one batch. Received: batches=[]")
        step = tf.function(fn, reduce_retracing=True, autograph=False)
        out = []
        for i, b in enumerate(batches):
            streams.enter(i)
            r = step(*[tf.constant(a) for a in b])
            out.append(tuple(np.asarray(t) for t in (r if isinstance(r, (tuple, list)) else (r,))))
    streams.finish(len(batches))
    return out


def stream_batches(strategy, fn, batches, *, streams):
    """Yields `fn`'s output per batch, batch i on stream i; the caller's own
    random work on output i (e.g. predicting on it) runs on stream `n + i`.

    The engine's pattern for attacks on a possibly randomized model: the
    attack of batch i draws from stream i and the caller's prediction of
    its result from stream n + i (n batches), on both paths, so neither
    depends on the replica. Without a strategy `fn` is called eagerly per
    batch, lazily between the yields; with one, every batch runs through
    `run_batches` first. Afterwards the streams stand at `2 n`.

    Args:
        strategy: a `tf.distribute.Strategy` or None.
        fn: `fn(*tensors)`, as in `run_batches` (eager calls without a
            strategy, so it may be an attack that compiles itself).
        batches: list of tuples of NumPy arrays.
        streams: `BatchStreams` of every generator involved.

    Yields:
        Without a strategy `fn`'s own output; with one a tuple of NumPy
        arrays (see `run_batches`).
    """
    n = len(batches)
    if strategy is None:
        for i, b in enumerate(batches):
            streams.enter(i)
            out = fn(*[tf.constant(a) for a in b])
            streams.enter(n + i)
            yield out
    elif batches:
        for i, out in enumerate(run_batches(strategy, fn, batches, streams=streams)):
            streams.enter(n + i)
            yield out
    streams.finish(2 * n)


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and reports (see `training.is_chief`)."""
    from tfrobust.training.strategy import is_chief as chief

    return True if strategy is None else chief(strategy)


@contextlib.contextmanager
def output_dir(strategy, path):
    """The folder this process writes to: `path` on the chief, a private temporary one elsewhere.

    Non-chief workers still run the code that writes (so collective ops in
    it stay in step) but into a folder that is removed on exit.
    """
    if is_chief(strategy):
        yield os.fspath(path)
        return
    tmp = tempfile.mkdtemp(prefix="tfrobust_worker_")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_dir(strategy, path):
    """`path` on the chief; elsewhere a private temporary folder, removed when the process exits.

    The function form of `output_dir`, for code that writes in several
    places after training (a model file, its SavedModel, metrics).
    """
    if is_chief(strategy):
        os.makedirs(path, exist_ok=True)
        return os.fspath(path)
    tmp = tempfile.mkdtemp(prefix="tfrobust_worker_")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp
