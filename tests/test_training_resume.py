"""Tests of fit's checkpoints: exact resume (also after SIGKILL), corrupt
checkpoints, history persistence, and equality across replicas."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import training

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS_DIR, "_train_script.py")
sys.path.insert(0, TESTS_DIR)
import _train_script  # noqa: E402

EPOCHS = 4


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(TESTS_DIR), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""  # The same (CPU) kernels everywhere.
    return env


def _wait_for(path, process, log, timeout=240):
    start = time.time()
    while not os.path.exists(path):
        if process.poll() is not None:
            with open(log, errors="replace") as f:
                out = f.read()
            pytest.fail(f"training process ended early:\n{out[-3000:]}")
        if time.time() - start > timeout:
            process.kill()
            pytest.fail(f"timed out waiting for {path}")
        time.sleep(0.1)


def _start(args, log):
    with open(log, "wb") as log_file:
        return subprocess.Popen([sys.executable, SCRIPT, *args], env=_env(),
                                stdout=log_file, stderr=subprocess.STDOUT)


def _finish(process, log, timeout=300):
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        with open(log, errors="replace") as f:
            pytest.fail(f"training process failed:\n{f.read()[-3000:]}")


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    marker = str(tmp_path / "paused")
    logs = {k: str(tmp_path / f"{k}.log") for k in ("ref", "victim", "rest")}
    victim = _start(["--checkpoint_dir", ckpt, "--epochs", str(EPOCHS),
                     "--pause_at_epoch", "2", "--pause_marker", marker],
                    logs["victim"])
    reference = None
    if tf.config.list_physical_devices("GPU"):
        # The helpers run on the CPU; so must the reference then.
        reference = _start(["--epochs", str(EPOCHS), "--out",
                            str(tmp_path / "reference.npz")], logs["ref"])
    else:
        # The uninterrupted reference run, in this process meanwhile.
        model, _ = _train_script.train(None, EPOCHS)
        np.savez(tmp_path / "reference.npz", initial_epoch=0,
                 *model.get_weights())
    try:
        _wait_for(os.path.join(ckpt, "ckpt-2.index"), victim, logs["victim"])
        # Mid-epoch 3: its weights have changed in memory only.
        _wait_for(marker, victim, logs["victim"])
        assert victim.poll() is None
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(ckpt, "ckpt-3.index"))
    resumed = _start(["--checkpoint_dir", ckpt, "--epochs", str(EPOCHS),
                      "--out", str(tmp_path / "resumed.npz")], logs["rest"])
    _finish(resumed, logs["rest"])
    if reference is not None:
        _finish(reference, logs["ref"])
    result = np.load(tmp_path / "resumed.npz")
    expected = np.load(tmp_path / "reference.npz")
    assert int(result["initial_epoch"]) == 2
    assert int(expected["initial_epoch"]) == 0
    assert result["epochs_seen"].tolist() == list(range(EPOCHS))
    names = [k for k in expected.files if k.startswith("arr_")]
    assert len(names) == 4
    for name in names:
        np.testing.assert_allclose(result[name], expected[name], rtol=0,
                                   atol=1e-6)
    assert os.path.exists(os.path.join(ckpt, "ckpt-4.index"))


def test_continued_run_matches_uninterrupted_run_in_process(tmp_path):
    x, y = _train_script.make_data()
    kwargs = dict(batch_size=32, optimizer="adam", learning_rate=0.01,
                  input_transform=_train_script.Noisy(), seed=9, verbose=0,
                  eval_data=(x[:40], y[:40]))
    straight = _train_script.make_model(2)
    full = training.fit(straight, (x, y), epochs=2, **kwargs)
    ckpt = str(tmp_path / "ckpt")
    first = _train_script.make_model(2)
    training.fit(first, (x, y), epochs=1, checkpoint_dir=ckpt, **kwargs)
    # A fresh model object (other initial weights) picks up the checkpoint.
    second = _train_script.make_model(5)
    history = training.fit(second, (x, y), epochs=2, checkpoint_dir=ckpt,
                           **kwargs)
    assert history.initial_epoch == 1 and history.epoch == [0, 1]
    for a, b in zip(straight.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(history["loss"], full["loss"], rtol=1e-6)
    assert history["eval_accuracy"] == pytest.approx(full["eval_accuracy"])
    with open(os.path.join(ckpt, "history.json")) as f:
        assert json.load(f)["epoch"] == [0, 1]
    # Nothing left to do: the weights stay, the history is returned.
    before = second.get_weights()
    again = training.fit(second, (x, y), epochs=1, checkpoint_dir=ckpt,
                         **kwargs)
    assert again.initial_epoch == 2 and again.epoch == [0, 1]
    for a, b in zip(before, second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_max_to_keep_limits_checkpoints(tmp_path):
    x, y = _train_script.make_data()
    ckpt = tmp_path / "ckpt"
    training.fit(_train_script.make_model(1), (x[:64], y[:64]),
                 batch_size=32, epochs=3, checkpoint_dir=str(ckpt),
                 max_to_keep=2, verbose=0)
    kept = sorted(p.name for p in ckpt.glob("ckpt-*.index"))
    assert kept == ["ckpt-2.index", "ckpt-3.index"]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    x, y = _train_script.make_data()
    ckpt = tmp_path_factory.mktemp("orig") / "ckpt"
    training.fit(_train_script.make_model(1), (x[:64], y[:64]),
                 batch_size=32, epochs=1, checkpoint_dir=str(ckpt),
                 verbose=0)
    return ckpt


def _garbage(name):
    def mutate(path):
        (path / name).write_bytes(b"\x00garbage, not a checkpoint\x01")
    return mutate


def _truncate(name):
    def mutate(path):
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[:len(data) // 2])
    return mutate


@pytest.mark.parametrize("mutate", [
    _garbage("ckpt-1.index"),
    _garbage("ckpt-1.data-00000-of-00001"),
    _truncate("ckpt-1.data-00000-of-00001"),
    _garbage("checkpoint"),
    lambda path: (path / "ckpt-1.data-00000-of-00001").unlink(),
    None,  # Intact, but written for another architecture.
], ids=["index", "data", "truncated", "state", "missing", "other_model"])
def test_corrupt_checkpoint_raises_and_keeps_files(trained_checkpoint,
                                                   tmp_path, mutate):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    model = _train_script.make_model(1)
    if mutate is None:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((6, 6, 1)), keras.layers.Flatten(),
            keras.layers.Dense(5), keras.layers.Dense(4)])
    else:
        mutate(ckpt)
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    x, y = _train_script.make_data()
    with pytest.raises(ValueError, match="checkpoint_dir=.*ckpt"):
        training.fit(model, (x, y), batch_size=32, epochs=2,
                     checkpoint_dir=str(ckpt), verbose=0)
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_checkpoint_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    x, y = _train_script.make_data()
    with pytest.raises(ValueError, match="directory"):
        training.fit(_train_script.make_model(1), (x, y), batch_size=32,
                     epochs=1, checkpoint_dir=str(path), verbose=0)


_TWO_REPLICAS = textwrap.dedent("""
    import os
    import numpy as np, keras, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrobust import training
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(23, 5)).astype("float32")
    y = rng.integers(0, 3, 23)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([
            keras.Input((5,)),
            keras.layers.Dense(6, activation="tanh",
                               kernel_regularizer=keras.regularizers.L2(0.1)),
            keras.layers.Dense(3)])

    def logit_l2(model, x, y, logits):
        return 0.1 * tf.reduce_mean(tf.square(logits))

    # With TFROBUST_TEST_CLIP set, the global gradient (summed over the
    # replicas) must be clipped, not each replica's part. One strategy pair
    # per process: a second MirroredStrategy in one process can reuse the
    # first one's collective keys.
    clip = float(os.environ["TFROBUST_TEST_CLIP"]) if os.environ.get(
        "TFROBUST_TEST_CLIP") else None
    results = []
    for name in ["default", "mirrored:/cpu:0,/cpu:1"]:
        strategy = training.make_strategy(name)
        with strategy.scope():
            model = build()
        # Batches of 7 split 4 + 3 over two replicas; the last one is 2.
        history = training.fit(
            model, (x, y), batch_size=7, epochs=2, strategy=strategy,
            extra_losses=[logit_l2], optimizer="momentum",
            learning_rate=0.5, grad_clip_norm=clip, verbose=0)
        results.append((strategy.num_replicas_in_sync, history["loss"],
                        model.get_weights()))
    (n0, loss0, w0), (n1, loss1, w1) = results
    assert (n0, n1) == (1, 2), (n0, n1)
    np.testing.assert_allclose(loss0, loss1, rtol=1e-5)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    print("SAME")
""")


@pytest.mark.parametrize("clip", [None, "0.05"])
def test_two_replicas_match_one_with_uneven_batches(clip):
    env = _env()
    if clip is not None:
        env["TFROBUST_TEST_CLIP"] = clip
    run = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "SAME" in run.stdout, (
        run.stdout[-3000:] + run.stderr[-3000:])
