"""Tests of tfrobust.training.fit: objective, transforms, inputs, errors.

Schedules, optimizers and strategies are in test_training_schedules.py;
checkpoints, kill/resume and TensorBoard logs in test_training_resume.py.
"""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import training
from tfrobust.training import inputs

NUM_CLASSES = 3


def _toy_data(n=96, seed=0):
    """A linearly separable 3-class problem on 2x2x1 'images'."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 2, 2, 1)).astype(np.float32)
    w = rng.normal(size=(4, NUM_CLASSES))
    y = np.argmax((x.reshape(n, -1) - 0.5) @ w, axis=1).astype(np.int64)
    return x, y


def _model(hidden=8, use_bias=True, seed=1, regularizer=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((2, 2, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="tanh", use_bias=use_bias,
                           kernel_regularizer=regularizer),
        keras.layers.Dense(NUM_CLASSES, use_bias=use_bias),
    ])


def _fit(model, data=None, **kwargs):
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("verbose", 0)
    if data is None:
        data = _toy_data()
    if isinstance(data, tuple):
        kwargs.setdefault("batch_size", 32)
    return training.fit(model, data, **kwargs)


def _weights_close(a, b, atol):
    return all(np.allclose(u, v, atol=atol, rtol=0)
               for u, v in zip(a.get_weights(), b.get_weights()))


def test_loss_decreases_on_learnable_problem():
    history = _fit(_model(), epochs=5, optimizer="momentum",
                   learning_rate=0.2)
    loss = history["loss"]
    assert len(loss) == 5 and history.epoch == list(range(5))
    assert loss[-1] < 0.7 * loss[0], loss
    assert history["accuracy"][-1] > history["accuracy"][0]


def test_accuracy_improves_on_real_mnist(data_dir):
    from tfrobust import data
    x, y = data.load("mnist", "train", data_dir)
    x_test, y_test = data.load("mnist", "test", data_dir)
    x, y, x_test, y_test = x[:500], y[:500], x_test[:500], y_test[:500]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    before = training.evaluate_accuracy(model, (x_test, y_test))
    history = training.fit(model, (x, y), batch_size=50, epochs=4,
                           optimizer="momentum", learning_rate=0.05,
                           eval_data=(x_test, y_test), verbose=0)
    after = training.evaluate_accuracy(model, (x_test, y_test))
    # An untrained net is near chance (0.1); four epochs on 500 images
    # take a one-hidden-layer net far above it.
    assert after > before + 0.3, (before, after)
    assert history["eval_accuracy"][-1] == pytest.approx(after, abs=1e-6)


def test_matches_keras_model_fit_on_the_same_batches():
    x, y = _toy_data()
    ours = _model(regularizer=keras.regularizers.L2(0.01))
    reference = _model(regularizer=keras.regularizers.L2(0.01))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    history = _fit(ours, dataset, optimizer="momentum", learning_rate=0.3)
    reference.compile(
        keras.optimizers.SGD(0.3, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras_history = reference.fit(x, y, batch_size=20, epochs=2,
                                  shuffle=False, verbose=0)
    # Same objective (mean CE + weight penalty), same updates.
    assert _weights_close(ours, reference, atol=1e-6)
    np.testing.assert_allclose(history["loss"],
                               keras_history.history["loss"], rtol=1e-5)


def test_constant_extra_loss_shifts_reported_loss_exactly():
    base = _model()
    shifted = _model()
    h0 = _fit(base)
    def const(model, x, y, logits):
        return 0.7

    h1 = _fit(shifted, extra_losses={"const": const})
    # A constant has no gradient: identical training, loss shifted by 0.7.
    assert _weights_close(base, shifted, atol=0)
    np.testing.assert_allclose(h1["loss"], np.add(h0["loss"], 0.7),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(h1["const"], 0.7, rtol=0, atol=1e-6)
    np.testing.assert_allclose(h1["ce"], h0["ce"], rtol=0, atol=1e-6)


def test_logit_penalty_gives_smaller_logits():
    def logit_l2(model, x, y, logits):
        return 0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(logits), -1))

    x, y = _toy_data()
    plain, penalized = _model(), _model()
    _fit(plain, (x, y), epochs=4, learning_rate=0.5)
    history = _fit(penalized, (x, y), epochs=4, learning_rate=0.5,
                   extra_losses=[logit_l2])
    assert "logit_l2" in history
    np.testing.assert_allclose(
        history["loss"],
        np.add(history["ce"], history["logit_l2"]), rtol=1e-5)
    norm_plain = np.mean(np.square(plain(x)))
    norm_penalized = np.mean(np.square(penalized(x)))
    assert norm_penalized < 0.5 * norm_plain, (norm_penalized, norm_plain)


def test_model_losses_are_added():
    model = _model(regularizer=keras.regularizers.L2(0.05))
    history = _fit(model)
    assert min(history["regularization"]) > 0
    np.testing.assert_allclose(
        history["loss"], np.add(history["ce"], history["regularization"]),
        rtol=1e-5)


def test_input_transform_is_applied_inside_compiled_step():
    seen_eagerly = []

    def zero_inputs(model, batch):
        x, y = batch
        seen_eagerly.append(tf.executing_eagerly())
        return tf.zeros_like(x), y

    zeroed = _model(use_bias=False)
    first_kernel = zeroed.layers[1].kernel.numpy().copy()
    _fit(zeroed, input_transform=zero_inputs, learning_rate=0.5)
    # Once eagerly to build the model on the transformed sample, then traced.
    assert seen_eagerly[0] and not any(seen_eagerly[1:])
    assert len(seen_eagerly) > 1
    # Zero inputs give the first (bias-free) layer zero gradients, and
    # tanh(0) = 0 gives the second one zero gradients as well.
    np.testing.assert_array_equal(zeroed.layers[1].kernel.numpy(),
                                  first_kernel)
    untouched = _model(use_bias=False)
    _fit(untouched, learning_rate=0.5)
    assert not np.allclose(untouched.layers[1].kernel.numpy(), first_kernel)


def test_input_transform_may_change_the_batch():
    def double(model, batch):
        x, y = batch
        return tf.concat([x, x], 0), tf.concat([y, y], 0)

    a, b = _model(), _model()
    _fit(a)
    _fit(b, input_transform=double)
    # A duplicated batch has the same mean loss, hence the same update.
    assert _weights_close(a, b, atol=1e-6)


def test_dataset_and_function_inputs_match_arrays_with_same_order():
    x, y = _toy_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    m1, m2 = _model(), _model()
    _fit(m1, ds, epochs=2)
    def by_epoch(epoch):
        return ds

    _fit(m2, by_epoch, epochs=2)
    assert _weights_close(m1, m2, atol=0)


def test_steps_per_epoch_reads_a_dataset_on_across_epochs():
    x, y = _toy_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # 3 batches
    counted = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            counted.append(batch)

    optimizer = keras.optimizers.SGD(0.1)
    _fit(_model(), ds, epochs=3, steps_per_epoch=2, optimizer=optimizer,
         callbacks=[Count()])
    assert int(optimizer.iterations.numpy()) == 6
    assert counted == [0, 1] * 3


def test_array_epochs_are_permutations_and_drop_remainder():
    x, y = _toy_data(n=100)
    optimizer = keras.optimizers.SGD(0.1)
    _fit(_model(), (x, y), batch_size=32, drop_remainder=True, epochs=2,
         optimizer=optimizer)
    assert int(optimizer.iterations.numpy()) == 2 * (100 // 32)
    ds0 = inputs.TrainSource(
        (x, y), batch_size=32, seed=5, steps_per_epoch=None,
        drop_remainder=False).dataset_for_epoch(0)
    labels = np.concatenate([b.numpy() for _, b in ds0])
    assert sorted(labels.tolist()) == sorted(y.tolist())
    assert not np.array_equal(labels, y)


def test_callback_can_stop_training():
    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            assert "loss" in logs
            self.model.stop_training = True

    history = _fit(_model(), epochs=5, callbacks=[StopAfterFirst()])
    assert history.epoch == [0]


def test_eval_every_summaries_and_progress(tmp_path, capsys):
    history = _fit(_model(), epochs=3, eval_every=2, verbose=2,
                   eval_data=_toy_data(n=20, seed=3),
                   log_dir=str(tmp_path / "logs"))
    # Evaluated every second epoch and after the last one.
    evaluated = [a is not None for a in history["eval_accuracy"]]
    assert evaluated == [False, True, True]
    out = capsys.readouterr().out
    assert "Epoch 3/3" in out and "eval_accuracy" in out
    files = glob.glob(os.path.join(tmp_path, "logs", "events.out.tfevents*"))
    assert files
    steps = {}
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            steps.setdefault(value.tag, []).append(event.step)
    for tag in ("loss", "ce", "accuracy", "lr", "epoch_time"):
        assert steps.get(tag) == [1, 2, 3], (tag, steps)
    assert steps.get("eval_accuracy") == [2, 3]


def test_evaluate_accuracy_matches_numpy():
    x, y = _toy_data(n=45, seed=4)
    model = _model()
    expected = np.mean(np.argmax(model(x).numpy(), -1) == y)
    assert training.evaluate_accuracy(model, (x, y), batch_size=7) == (
        pytest.approx(expected, abs=1e-9))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    assert training.evaluate_accuracy(model, ds) == pytest.approx(
        expected, abs=1e-9)
    result = training.evaluate_clean(model, (x, y))
    ce = np.mean(keras.losses.sparse_categorical_crossentropy(
        y, model(x), from_logits=True))
    assert result["ce"] == pytest.approx(float(ce), rel=1e-5)


def test_nan_loss_stops_with_epoch_and_step():
    def nan_loss(model, x, y, logits):
        return tf.constant(np.nan)

    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        _fit(_model(), extra_losses=[nan_loss])


def test_mirrored_strategy_matches_default_for_one_step():
    x, y = _toy_data()
    default = _model()
    _fit(default, (x, y), epochs=1, steps_per_epoch=1)
    strategy = training.make_strategy("mirrored")
    with strategy.scope():
        mirrored = _model()
    _fit(mirrored, (x, y), epochs=1, steps_per_epoch=1, strategy=strategy)
    assert _weights_close(default, mirrored, atol=1e-6)
    assert not _weights_close(default, _model(), atol=1e-6)


def test_model_from_another_strategy_is_rejected():
    strategy = tf.distribute.MirroredStrategy()
    with pytest.raises(ValueError, match="strategy.scope"):
        _fit(_model(), strategy=strategy)


def _bad(x=None, y=None):
    good_x, good_y = _toy_data(n=8)
    return (good_x if x is None else x, good_y if y is None else y)


@pytest.mark.parametrize("data, kwargs, match", [
    (None, {"epochs": 0}, "epochs"),
    (None, {"epochs": 1.5}, "epochs"),
    (None, {"epochs": True}, "epochs"),
    (_bad(x=np.zeros((0, 2, 2, 1), np.float32), y=np.zeros(0, np.int64)),
     {}, "at least one example"),
    (_bad(y=np.zeros(8, np.float32)), {}, "integer"),
    (_bad(y=np.zeros(7, np.int64)), {}, r"shape \(8,\)"),
    (_bad(y=np.full(8, NUM_CLASSES)), {}, "labels in"),
    (_bad(y=np.full(8, -1)), {}, ">= 0"),
    (_bad(x=np.full((8, 2, 2, 1), np.nan, np.float32)), {}, "finite"),
    (_bad(x=np.zeros((8, 2, 2, 1), np.int64)), {}, "floating"),
    (_bad(x=np.zeros(8, np.float32)), {}, "rank"),
    (None, {"batch_size": None}, "batch_size"),
    (None, {"batch_size": 0}, "batch_size"),
    (None, {"optimizer": "lbfgs"}, "optimizer"),
    (None, {"optimizer": 3}, "optimizer"),
    (None, {"learning_rate": -0.1}, "learning_rate"),
    (None, {"learning_rate": float("nan")}, "learning_rate"),
    (None, {"seed": -1}, "seed"),
    (None, {"verbose": 3}, "verbose"),
    (None, {"steps_per_epoch": 0}, "steps_per_epoch"),
    (None, {"max_to_keep": 0}, "max_to_keep"),
    (None, {"eval_every": 0}, "eval_every"),
    (None, {"extra_losses": [lambda m, x, y, z: 0.0] * 2}, "distinct"),
    (None, {"extra_losses": {"loss": lambda m, x, y, z: 0.0}}, "other than"),
    (None, {"extra_losses": {"a": 3.0}}, "function"),
    (None, {"extra_losses": 3.0}, "extra_losses"),
    (None, {"extra_losses": {"v": lambda m, x, y, z: tf.ones(2)}},
     "scalar"),
    (None, {"input_transform": 3}, "input_transform"),
    (None, {"callbacks": [lambda: None]}, "callbacks"),
    (None, {"strategy": "mirrored"}, "strategy"),
    (None, {"eval_data": "test"}, "eval_data"),
    ("not data", {}, "train_data"),
    (tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.float32))
    ).batch(2), {}, "integer"),
    (tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.int64))
    ).batch(2).take(0), {}, "non-empty"),
    (tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.int64))
    ).batch(2).filter(lambda x, y: False), {}, "at least one batch"),
    (tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 2, 2, 1), np.float32), np.zeros(4, np.int64))
    ).batch(2).repeat(), {}, "steps_per_epoch"),
    (tf.data.Dataset.from_tensor_slices(
        np.zeros((4, 2, 2, 1), np.float32)).batch(2), {}, r"\(x, y\)"),
])
def test_bad_inputs_raise_clear_errors(data, kwargs, match):
    if data is None:
        data = _toy_data(n=8)
    kwargs = dict(kwargs)
    if isinstance(data, tuple):
        kwargs.setdefault("batch_size", 4)
    with pytest.raises(ValueError, match=match):
        training.fit(_model(), data, **{"epochs": 1, "verbose": 0, **kwargs})


def test_non_keras_model_is_rejected():
    with pytest.raises(ValueError, match="keras.Model"):
        training.fit(lambda x: x, _toy_data(n=8), batch_size=4, epochs=1)
