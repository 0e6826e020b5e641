"""Tests of fit's extension points: whole-element input transforms with
example indices, experiment state in the checkpoint, replaceable (soft)
losses, gradient clipping, building on the transformed sample, and exact
resume of adversarial training with a random-start attack."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust import threats
from tfrobust import training
from tfrobust import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _train_script  # noqa: E402

NUM_CLASSES = 3


def _toy_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 2, 2, 1)).astype(np.float32)
    w = rng.normal(size=(4, NUM_CLASSES))
    y = np.argmax((x.reshape(n, -1) - 0.5) @ w, axis=1).astype(np.int64)
    return x, y


def _model(seed=1, use_bias=True):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((2, 2, 1)), keras.layers.Flatten(),
        keras.layers.Dense(8, activation="tanh", use_bias=use_bias),
        keras.layers.Dense(NUM_CLASSES, use_bias=use_bias)])


def _assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


# rCNN+-style training: a per-example noise table, filled by a callback at
# the end of epoch 1 and looked up through example indices, lives in the
# checkpoint, so a resumed run continues with it.

class _TableNoise:
    name = "table_noise"

    def __init__(self, table):
        self.table = table
        self.seed_generator = keras.random.SeedGenerator(4)

    def random_generators(self):
        return [self.seed_generator]

    def __call__(self, model, batch):
        x, y, index = batch
        noise = 0.01 * keras.random.normal(tf.shape(x), seed=self.seed_generator)
        return tf.clip_by_value(x + tf.gather(self.table, index) + noise, 0.0, 1.0), y


class _FillTable(keras.callbacks.Callback):
    """At the end of epoch `at`: table = 0.05 * sign(dCE/dx) per example."""

    def __init__(self, table, x, y, at):
        super().__init__()
        self.table, self.x, self.y, self.at = table, x, y, at

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.at:
            return
        x = tf.constant(self.x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras.losses.sparse_categorical_crossentropy(
                self.y, self.model(x), from_logits=True)
        self.table.assign(0.05 * tf.sign(tape.gradient(loss, x)))


def _rcnn_fit(model, table, epochs, checkpoint_dir=None):
    x, y = _train_script.make_data()
    return training.fit(
        model, (x, y), batch_size=32, epochs=epochs, with_index=True,
        optimizer="momentum", learning_rate=0.1,
        input_transform=_TableNoise(table), state={"noise_table": table},
        callbacks=[_FillTable(table, x, y, at=1)], checkpoint_dir=checkpoint_dir,
        seed=2, verbose=0)


def test_noise_table_filled_mid_training_resumes_exactly(tmp_path):
    x, _ = _train_script.make_data()

    def table():
        return tf.Variable(tf.zeros_like(x), trainable=False)

    straight, straight_table = _train_script.make_model(3), table()
    _rcnn_fit(straight, straight_table, 4)
    assert np.any(straight_table.numpy() != 0)
    ckpt = str(tmp_path / "ckpt")
    _rcnn_fit(_train_script.make_model(3), table(), 2, ckpt)
    # A new process: other initial weights, an empty table, a fresh callback.
    resumed, resumed_table = _train_script.make_model(8), table()
    history = _rcnn_fit(resumed, resumed_table, 4, ckpt)
    assert history.initial_epoch == 2 and history.epoch == [0, 1, 2, 3]
    np.testing.assert_array_equal(resumed_table.numpy(), straight_table.numpy())
    _assert_same_weights(straight, resumed)


def _pgd_fit(model, epochs, checkpoint_dir=None):
    x, y = _train_script.make_data()
    pgd = attacks.PGD(threats.LpBall(np.inf, 0.1), steps=3, random_start=True, seed=0)
    return training.fit(
        model, (x[:96], y[:96]), batch_size=32, epochs=epochs, optimizer="momentum",
        learning_rate=0.1, input_transform=transforms.Adversarial(pgd),
        checkpoint_dir=checkpoint_dir, seed=1, verbose=0)


def test_pgd_random_start_adversarial_training_resumes_to_identical_weights(tmp_path):
    # Issue 8 item 2: the attack's lazily created generator was not reseeded,
    # and 2 epochs straight vs 1 + resume differed by up to 7.4e-3.
    straight = _train_script.make_model(3)
    _pgd_fit(straight, 2)
    ckpt = str(tmp_path / "ckpt")
    _pgd_fit(_train_script.make_model(3), 1, ckpt)
    resumed = _train_script.make_model(6)
    assert _pgd_fit(resumed, 2, ckpt).initial_epoch == 1
    _assert_same_weights(straight, resumed)


def test_soft_targets_and_replaced_loss_match_the_default_objective():
    x, y = _toy_data()

    def one_hot(model, batch):
        x, y = batch
        return x, tf.one_hot(y, NUM_CLASSES)

    def per_example_ce(y, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)

    def mean_ce(y, logits):
        return tf.reduce_mean(per_example_ce(y, logits))

    reference = _model()
    h0 = training.fit(reference, (x, y), batch_size=16, epochs=2, verbose=0)
    for kwargs in ({"input_transform": one_hot, "loss_fn": "soft_cross_entropy"},
                   {"input_transform": one_hot},
                   {"loss_fn": per_example_ce},
                   {"loss_fn": mean_ce}):
        model = _model()
        history = training.fit(model, (x, y), batch_size=16, epochs=2, verbose=0, **kwargs)
        for u, v in zip(reference.get_weights(), model.get_weights()):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-6, err_msg=str(kwargs))
        np.testing.assert_allclose(history["ce"], h0["ce"], rtol=1e-5)
        np.testing.assert_allclose(history["accuracy"], h0["accuracy"])


def test_label_smoothing_by_clipping_trains_on_soft_targets():
    x, y = _toy_data()

    def smooth(model, batch):
        x, y = batch
        return x, tf.clip_by_value(tf.one_hot(y, NUM_CLASSES), 0.1, 0.9)

    hard, smoothed = _model(), _model()
    training.fit(hard, (x, y), batch_size=16, epochs=6, learning_rate=0.5, verbose=0)
    history = training.fit(smoothed, (x, y), batch_size=16, epochs=6, learning_rate=0.5,
                           input_transform=smooth, loss_fn="soft_cross_entropy", verbose=0)
    assert history["ce"][-1] < history["ce"][0]
    # Clipped targets keep the logits from growing as large.
    assert np.abs(smoothed(x).numpy()).max() < np.abs(hard(x).numpy()).max()
    y_soft = np.clip(np.eye(NUM_CLASSES)[y], 0.1, 0.9).astype(np.float32)
    # Soft targets may also come with the data.
    training.fit(_model(), (x, y_soft), batch_size=16, epochs=1, verbose=0)


def test_sample_weights_from_the_transform():
    x, y = _toy_data()

    def zero_weight(model, batch):
        x, y = batch
        return {"x": x, "y": y, "sample_weight": tf.zeros_like(y, tf.float32)}

    model = _model()
    before = model.get_weights()
    history = training.fit(model, (x, y), batch_size=16, epochs=1, input_transform=zero_weight,
                           optimizer="sgd", verbose=0)
    assert history["ce"] == [0.0]
    for u, v in zip(before, model.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_grad_clip_norm_bounds_each_update():
    x, y = _toy_data()
    model = _model()
    before = model.get_weights()
    training.fit(model, (x, y), batch_size=48, epochs=1, optimizer="sgd",
                 learning_rate=1.0, grad_clip_norm=1e-3, verbose=0)
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(model.get_weights(), before)))
    np.testing.assert_allclose(step, 1e-3, rtol=1e-3)
    unclipped = _model()
    training.fit(unclipped, (x, y), batch_size=48, epochs=1, optimizer="sgd",
                 learning_rate=1.0, verbose=0)
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(unclipped.get_weights(), before)))
    assert step > 1e-2


def test_model_is_built_on_the_transformed_sample():
    x, y = _toy_data()

    def to_rgb(model, batch):
        x, y = batch
        return tf.concat([x, x, x], axis=-1), y

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(8),
                              keras.layers.Dense(NUM_CLASSES)])
    for data in ((x, y), tf.data.Dataset.from_tensor_slices((x, y)).batch(16)):
        training.fit(model, data, batch_size=16, epochs=1, input_transform=to_rgb, verbose=0)
        assert model.layers[1].kernel.shape == (12, 8)


def test_dict_dataset_with_indices_reaches_the_transform():
    x, y = _toy_data()
    seen = []

    def check(model, batch):
        seen.append(sorted(batch))
        return batch["x"], batch["y"]

    dicts = tf.data.Dataset.from_tensor_slices({"x": x, "y": y, "index": np.arange(48)}).batch(16)
    pairs = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    a, b, c = _model(), _model(), _model()
    training.fit(a, dicts, epochs=2, input_transform=check, verbose=0)
    training.fit(b, dicts, epochs=2, verbose=0)
    training.fit(c, pairs, epochs=2, verbose=0)
    assert seen[0] == ["index", "x", "y"]
    _assert_same_weights(a, c)
    _assert_same_weights(b, c)


@pytest.mark.parametrize("data, kwargs, match", [
    ("scaled", {}, r"inside bounds=\(0, 1\)"),
    ("scaled_ds", {}, r"images of train_data inside bounds=\(0, 1\)"),
    ("bad_labels_ds", {}, r"labels of train_data in \[0, 3\).*from 3 to 3"),
    ("late_bad_labels_ds", {}, r"labels of train_data in \[0, 3\).*step 2"),
    (None, {"eval_data": "bad_labels_ds"}, r"labels of eval_data in \[0, 3\)"),
    (None, {"eval_data": "scaled"}, "eval_data inside bounds"),
    (None, {"bounds": (1.0, 0.0)}, "bounds"),
    (None, {"grad_clip_norm": 0.0}, "grad_clip_norm"),
    (None, {"grad_clip_norm": "1"}, "grad_clip_norm"),
    (None, {"loss_fn": "mse"}, "loss_fn"),
    (None, {"loss_fn": 3}, "loss_fn"),
    (None, {"state": {"t": np.zeros(3)}}, "state"),
    (None, {"state": [tf.Variable(0.0)]}, "state"),
    (None, {"with_index": 1}, "with_index"),
    ("dataset", {"with_index": True}, "with_index"),
    (None, {"input_transform": lambda model, x, y: (x, y)}, "input_transform.*batch"),
    (None, {"input_transform": lambda model, batch: batch[0]}, "input_transform"),
    (None, {"loss_fn": lambda y, logits: tf.zeros((2, 2))}, "loss_fn"),
])
def test_bad_inputs_raise_clear_errors(data, kwargs, match):
    x, y = _toy_data(n=8)
    labels = np.full(8, NUM_CLASSES)
    late = np.concatenate([y[:4], labels[:4]])
    named = {
        None: (x, y),
        "scaled": (255 * x, y),
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        "scaled_ds": tf.data.Dataset.from_tensor_slices((255 * x, y)).batch(4),
        "bad_labels_ds": tf.data.Dataset.from_tensor_slices((x, labels)).batch(4),
        "late_bad_labels_ds": tf.data.Dataset.from_tensor_slices((x, late)).batch(4),
    }
    data = named[data]
    kwargs = {k: named.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        training.fit(_model(), data, batch_size=4, epochs=1, verbose=0, **kwargs)


def test_declared_input_range_and_no_check():
    x, y = _toy_data(n=8)
    training.fit(_model(), (255 * x, y), batch_size=4, epochs=1, bounds=(0, 255), verbose=0)
    training.fit(_model(), (255 * x, y), batch_size=4, epochs=1, bounds=None, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((255 * x, y)).batch(4)
    training.fit(_model(), ds, epochs=1, bounds=(0, 255), verbose=0)


def test_undeclared_generator_of_a_transform_gives_a_warning():
    class Undeclared:
        def __init__(self):
            self.noise = keras.random.SeedGenerator(0)

        def __call__(self, model, batch):
            x, y = batch
            return x + 0.01 * keras.random.normal(tf.shape(x), seed=self.noise), y

    x, y = _toy_data(n=8)
    with pytest.warns(RuntimeWarning, match=r"\['noise'\].*random_generators"):
        training.fit(_model(), (x, y), batch_size=4, epochs=1, verbose=0,
                     input_transform=Undeclared(), bounds=None)
