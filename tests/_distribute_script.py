"""Helper process of tests/test_distribute.py (not collected: leading underscore).

Trains a tiny MLP for 2 epochs with `tfrobust.training.fit` (checkpoints,
TensorBoard logs) and evaluates it against a random attack on 64 images
with `tfrobust.evaluation.evaluate`, both under the strategy named by
--strategy ("default", "mirrored2": two logical CPUs, or "multi_worker":
cluster from TF_CONFIG), then certifies and predicts with randomized
smoothing, plain and under the strategy. The chief writes `result.npz` (weights and
per-example results) and `task.json` into --out_dir through
`tfrobust.distribute.output_dir`, so other workers write nothing there.
With --pause_marker, the process writes that file at the start of the
second epoch (the first epoch's checkpoint is saved by then) and sleeps, so
that the test can kill it there.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

T0 = time.time()
EPOCHS = 2
BATCH_SIZE = 32
EVAL_BATCH = 16
NUM_CLASSES = 4


def make_data():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(128, 6, 6, 1)).astype(np.float32)
    w = rng.normal(size=(36, NUM_CLASSES))
    y = np.argmax((x.reshape(len(x), -1) - 0.5) @ w, axis=1).astype(np.int64)
    return x, y


def make_model():
    keras.utils.set_random_seed(2)
    return keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(NUM_CLASSES)])


def make_attacks():
    from tfrobust import threats
    from tfrobust.attacks.pgd import PGD

    # Random starts and two restarts (two draws per batch): the per-batch
    # streams are what is tested.
    return {"pgd": PGD(threats.LpBall(np.inf, 0.1), steps=3, restarts=2, seed=3)}


class _Pause(keras.callbacks.Callback):
    def __init__(self, marker):
        super().__init__()
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            with open(self.marker, "w") as f:
                f.write("paused")
            time.sleep(600)


def _phase(name):
    # Progress lines with times: a timed-out test shows where its worker was.
    print(f"{name} at {time.time() - T0:.1f} s ({time.process_time():.1f} s CPU)", flush=True)


def run(strategy, checkpoint_dir=None, log_dir=None, pause_marker=None):
    """`(weights, {name: per-example arrays}, history)` of the fit and the evaluation."""
    from tfrobust import training

    x, y = make_data()
    if strategy is None:
        model = make_model()
    else:
        with strategy.scope():
            model = make_model()
    history = training.fit(
        model, (x, y), batch_size=BATCH_SIZE, epochs=EPOCHS, optimizer="momentum",
        learning_rate=0.3, checkpoint_dir=checkpoint_dir, log_dir=log_dir, seed=1,
        verbose=0, strategy=strategy,
        callbacks=(_Pause(pause_marker),) if pause_marker else ())
    _phase("fit done")
    # Imported after the fit: a worker killed during it never pays for it.
    from tfrobust.evaluation import evaluate

    result = evaluate(model, (x[:64], y[:64]), make_attacks(), batch_size=EVAL_BATCH,
                      sanity_checks=False, verbose=0, strategy=strategy)
    _phase("evaluate done")
    per_example = {"clean_pred": result.clean_pred}
    for name, a in result.attacks.items():
        per_example[f"{name}_pred"] = a.pred
        per_example[f"{name}_linf"] = a.norms["linf"]
        per_example[f"{name}_l2"] = a.norms["l2"]
    return model.get_weights(), per_example, history


def smoothing_both(strategy):
    """Smoothing over two groups of images, plain and over `strategy`, on one base.

    `Smooth.certify_batch` of 8 images in batches of 4 and
    `SmoothedClassifier.predict_dataset` of 10 images in batches of 3 (the
    last batch is smaller: 4 batches, two steps of two replicas), its
    scores and then its top-2 classes (the second run starts where the
    first left the generator).
    """
    from tfrobust.smoothing import Smooth, SmoothedClassifier

    x, _ = make_data()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        base = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(NUM_CLASSES)])
    out = {}
    for name, spread in (("plain", None), ("dist", strategy)):
        smooth = Smooth(base, NUM_CLASSES, 0.5, seed=7)
        res = smooth.certify_batch(x[:8], 8, 32, 0.01, 4, strategy=spread)
        out[f"smooth_{name}_counts"], out[f"smooth_{name}_radius"] = res.counts, res.radius
        smoothed = SmoothedClassifier(base, sigma=0.5, n=16, vote="prediction", seed=7)
        out[f"smoothed_{name}_scores"] = smoothed.predict_dataset(x[:10], batch_size=3, strategy=spread)
        out[f"smoothed_{name}_top2"] = smoothed.predict_dataset(x[:10], batch_size=3, k=2,
                                                                strategy=spread)
        # The engine attacking a randomized model: the model's noise inside
        # the attack and in the final prediction follows the batch too.
        from tfrobust import threats
        from tfrobust.attacks.pgd import PGD
        from tfrobust.evaluation import evaluate

        noisy = SmoothedClassifier(base, sigma=0.5, n=4, vote="soft", seed=11)
        attack = PGD(threats.LpBall(np.inf, 0.1), steps=2, seed=3)
        res = evaluate(noisy, (x[:10], make_data()[1][:10]), {"pgd": attack}, batch_size=3,
                       keep_adversarials=True, sanity_checks=False, verbose=0, strategy=spread)
        out[f"engine_{name}_xadv"] = res.attacks["pgd"].x_adv
        out[f"engine_{name}_pred"] = res.attacks["pgd"].pred
    _phase("smoothing done")
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--checkpoint_dir")
    parser.add_argument("--log_dir")
    parser.add_argument("--pause_marker")
    args = parser.parse_args()
    import tensorflow as tf

    if args.strategy == "mirrored2":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrobust import distribute
    from tfrobust.training import make_strategy

    name = {"mirrored2": "mirrored:/cpu:0,/cpu:1"}.get(args.strategy, args.strategy)
    strategy = make_strategy(name)
    _phase("strategy made")
    weights, per_example, history = run(strategy, args.checkpoint_dir, args.log_dir,
                                        args.pause_marker)
    per_example.update(smoothing_both(strategy))
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    with distribute.output_dir(strategy, args.out_dir) as out:
        np.savez(os.path.join(out, "result.npz"), *weights, **per_example)
        with open(os.path.join(out, "task.json"), "w") as f:
            json.dump({"task": task, "replicas": strategy.num_replicas_in_sync,
                       "initial_epoch": history.initial_epoch}, f)
    print("DONE", task, time.time(), flush=True)


if __name__ == "__main__":
    main()
