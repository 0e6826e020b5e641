"""Helper process for the kill/resume test of tfrobust.training.fit.

Not collected by pytest (leading underscore). Trains a tiny dropout MLP on
generated data with a momentum optimizer, a learning-rate schedule and a noisy
input transform (every source of state a resume must reproduce), writes the
final weights to --out, and with --pause_at_epoch sleeps in the middle of that
epoch (after writing --pause_marker) so the test can kill it there.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

NUM_EXAMPLES = 192
BATCH_SIZE = 32
NUM_CLASSES = 4


def make_data():
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(NUM_EXAMPLES, 6, 6, 1)).astype(np.float32)
    w = rng.normal(size=(36, NUM_CLASSES))
    y = np.argmax((x.reshape(NUM_EXAMPLES, -1) - 0.5) @ w, axis=1)
    return x, y.astype(np.int64)


def make_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(24, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(NUM_CLASSES),
    ])


class Noisy:
    """Gaussian input noise from its own seed generator and the global one."""

    name = "noisy"

    def __init__(self):
        self.seed_generator = keras.random.SeedGenerator(11)

    def random_generators(self):
        # Declared, so that fit reseeds it every epoch (exact resume).
        return [self.seed_generator]

    def __call__(self, model, batch):
        del model
        x, y = batch
        shape = keras.ops.shape(x)
        noise = 0.05 * keras.random.normal(shape, seed=self.seed_generator)
        # seed=None draws from Keras' global seed generator.
        return x + noise + 0.01 * keras.random.normal(shape), y


class _Pause(keras.callbacks.Callback):
    def __init__(self, epoch, marker):
        super().__init__()
        self.epoch = epoch
        self.marker = marker
        self.current = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            with open(self.marker, "w") as f:
                f.write("paused")
            time.sleep(600)


def train(checkpoint_dir, epochs, seed=3, pause_at_epoch=None,
          pause_marker=None):
    from tfrobust import training
    x, y = make_data()
    model = make_model(seed)
    steps = -(-NUM_EXAMPLES // BATCH_SIZE)
    schedule = training.PiecewiseByFraction(0.3, total_steps=epochs * steps)
    callbacks = ()
    if pause_at_epoch is not None:
        callbacks = (_Pause(pause_at_epoch, pause_marker),)
    history = training.fit(
        model, (x, y), batch_size=BATCH_SIZE, epochs=epochs,
        optimizer="momentum", learning_rate=schedule, input_transform=Noisy(),
        checkpoint_dir=checkpoint_dir, seed=seed, verbose=0,
        callbacks=callbacks)
    return model, history


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint_dir")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--out")
    parser.add_argument("--pause_at_epoch", type=int)
    parser.add_argument("--pause_marker")
    args = parser.parse_args()
    model, history = train(args.checkpoint_dir, args.epochs,
                           pause_at_epoch=args.pause_at_epoch,
                           pause_marker=args.pause_marker)
    if args.out:
        np.savez(args.out, initial_epoch=history.initial_epoch,
                 epochs_seen=np.array(history.epoch),
                 *model.get_weights())


if __name__ == "__main__":
    main()
