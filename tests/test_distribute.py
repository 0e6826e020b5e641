"""Tests of tfrobust.distribute: evaluate and fit over replicas and workers give the single-device results.

Each strategy run is its own process (tests/_distribute_script.py): two
MirroredStrategy objects in one process can clash over collective keys, and
a multi-worker cluster needs one process per worker. The single-device
reference runs in the test process. Every child process is bounded by a
timeout and killed in `finally`.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import distribute

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS_DIR, "_distribute_script.py")
sys.path.insert(0, TESTS_DIR)
import _distribute_script  # noqa: E402

TIMEOUT = 240


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(TESTS_DIR), env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    # One thread per op: the children share two cores (inter-op threads stay,
    # the two replicas' collectives of one process run concurrently).
    env["TF_NUM_INTRAOP_THREADS"] = "1"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def reference():
    """The single-device run (strategy=None) of the helper script."""
    weights, per_example, _ = _distribute_script.run(None)
    return weights, per_example


def _check_same(result_file, reference):
    weights, per_example = reference
    got = np.load(result_file)
    for i, w in enumerate(weights):
        np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=0, atol=1e-5)
    for key, value in per_example.items():
        if key.endswith("pred"):
            np.testing.assert_array_equal(got[key], value, err_msg=key)  # per example, identical
        else:
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-5, err_msg=key)


def _check_smoothing(result_file):
    """Smoothing under the strategy gave the plain run's outputs (tests/_distribute_script.py)."""
    got = np.load(result_file)
    # Smooth.certify_batch: the counts of strategy=None.
    assert got["smooth_plain_counts"].sum() == 8 * 32
    np.testing.assert_array_equal(got["smooth_dist_counts"], got["smooth_plain_counts"])
    np.testing.assert_array_equal(got["smooth_dist_radius"], got["smooth_plain_radius"])
    # SmoothedClassifier.predict_dataset: the scores and classes of
    # strategy=None, and the noise changed some votes.
    votes = np.exp(got["smoothed_plain_scores"])
    assert votes.shape == (10, 4) and np.all(votes.max(axis=1) < 1 + 1e-6) and np.any(votes.max(axis=1) < 0.99)
    np.testing.assert_allclose(votes.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got["smoothed_dist_scores"], got["smoothed_plain_scores"])
    np.testing.assert_array_equal(got["smoothed_dist_top2"], got["smoothed_plain_top2"])
    # evaluate() attacking the randomized SmoothedClassifier: the plain run's x_adv and predictions.
    np.testing.assert_array_equal(got["engine_dist_xadv"], got["engine_plain_xadv"])
    np.testing.assert_array_equal(got["engine_dist_pred"], got["engine_plain_pred"])


def _start(args, log, env):
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, SCRIPT, *args], env=env, stdout=f,
                                stderr=subprocess.STDOUT)


def _log(path):
    with open(path, errors="replace") as f:
        return f.read()[-3000:]


def _stop(processes):
    for p in processes:
        if p.poll() is None:
            p.kill()
    for p in processes:
        p.wait(timeout=30)


def _wait(processes, logs, timeout=TIMEOUT):
    deadline = time.time() + timeout
    for p, log in zip(processes, logs):
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out:\n{_log(log)}")
        assert p.returncode == 0, _log(log)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def test_two_logical_devices_match_one_device(tmp_path, reference):
    log = tmp_path / "log"
    p = _start(["--strategy=mirrored2", f"--out_dir={tmp_path}"], log, _env())
    try:
        _wait([p], [log])
    finally:
        _stop([p])
    with open(tmp_path / "task.json") as f:
        assert json.load(f)["replicas"] == 2
    _check_same(tmp_path / "result.npz", reference)
    _check_smoothing(tmp_path / "result.npz")


def test_multi_worker_killed_worker_resumes_to_the_single_process_results(tmp_path, reference):
    """Two workers on 127.0.0.1; worker 1 is killed after the first epoch's
    checkpoint; both are restarted, resume from it, finish the fit and the
    evaluation, and agree with the uninterrupted single-process run. Only
    the chief writes into the shared folders."""
    ckpt, logs, out = tmp_path / "ckpt", tmp_path / "logs", tmp_path / "out"
    out.mkdir()
    common = ["--strategy=multi_worker", f"--out_dir={out}", f"--checkpoint_dir={ckpt}",
              f"--log_dir={logs}"]
    marker = tmp_path / "paused"
    ports = _free_ports(2)
    first, log_files = [], [tmp_path / f"first{i}.log" for i in range(2)]
    try:
        for i in range(2):
            tmp = tmp_path / f"tmp_first{i}"
            tmp.mkdir()
            extra = [f"--pause_marker={marker}"] if i == 1 else []
            first.append(_start(common + extra, log_files[i],
                                _env(TF_CONFIG=_tf_config(ports, i), TMPDIR=str(tmp))))
        deadline = time.time() + TIMEOUT
        # The marker is written at the start of epoch 2; the chief writes
        # ckpt-1 at the end of epoch 1 (it may still be writing then).
        while not (marker.exists() and (ckpt / "history.json").exists()):
            for p, log in zip(first, log_files):
                assert p.poll() is None, _log(log)
            assert time.time() < deadline, "timed out waiting for the first checkpoint"
            time.sleep(0.2)
        os.kill(first[1].pid, signal.SIGKILL)
    finally:
        _stop(first)
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-1")
    assert not (out / "result.npz").exists()

    ports = _free_ports(2)
    second, log_files = [], [tmp_path / f"second{i}.log" for i in range(2)]
    try:
        for i in range(2):
            tmp = tmp_path / f"tmp_second{i}"
            tmp.mkdir()
            second.append(_start(common, log_files[i],
                                 _env(TF_CONFIG=_tf_config(ports, i), TMPDIR=str(tmp))))
        _wait(second, log_files)
    finally:
        _stop(second)
    with open(out / "task.json") as f:
        task = json.load(f)
    # Written by the chief, which resumed after the first epoch.
    assert task["task"] == {"type": "worker", "index": 0} and task["replicas"] == 2
    assert task["initial_epoch"] == 1
    assert sorted(os.listdir(out)) == ["result.npz", "task.json"]
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-2")
    assert os.listdir(logs)  # the chief's TensorBoard events
    # The non-chief's private checkpoint and output folders are gone.
    assert os.listdir(tmp_path / "tmp_second1") == []
    _check_same(out / "result.npz", reference)
    _check_smoothing(out / "result.npz")  # across two workers too


def test_batch_streams_do_not_depend_on_the_order_batches_run():
    gen = tf.random.Generator.from_seed(5)
    streams = distribute.BatchStreams([gen])
    draws = {}
    for b in (2, 0, 1):
        streams.enter(b)
        draws[b] = gen.normal([3]).numpy()
    again = distribute.BatchStreams([tf.random.Generator.from_seed(5)])
    first = tf.random.Generator.from_seed(5).normal([3]).numpy()
    np.testing.assert_array_equal(draws[0], first)  # batch 0 starts at the current state
    assert not np.array_equal(draws[1], draws[0]) and not np.array_equal(draws[2], draws[1])
    assert [s.tolist() for s in again.states(2)] == [s.tolist() for s in streams.states(2)]
    streams.finish(3)
    np.testing.assert_array_equal(gen.state.numpy(), streams.states(3)[0])


def test_default_strategy_runs_batches_in_order():
    batches = [(np.full((n, 2), i, np.float32),) for i, n in enumerate([3, 3, 1])]
    out = distribute.run_batches(tf.distribute.get_strategy(), lambda x: 2.0 * x, batches)
    for (got,), (x,) in zip(out, batches):
        np.testing.assert_array_equal(got, 2 * x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        distribute.run_batches("mirrored", lambda x: x, [(np.zeros((1, 1)),)])
    with pytest.raises(ValueError, match="at least one batch"):
        distribute.run_batches(tf.distribute.get_strategy(), lambda x: x, [])
    with pytest.raises(ValueError, match="outside any strategy.scope"), \
            tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        distribute.run_batches(tf.distribute.get_strategy(), lambda x: x, [(np.zeros((1, 1)),)])
    from tfrobust.evaluation import evaluate

    with pytest.raises(ValueError, match="strategy"):
        evaluate(lambda x: x, (np.zeros((1, 2), np.float32), np.zeros(1, int)), [], strategy="mirrored")


def test_smoothed_predict_dataset_plain_path():
    """One batch draws what a direct call draws; batches after it draw new noise; bad arguments."""
    import keras

    from tfrobust.smoothing import SmoothedClassifier

    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).uniform(size=(6, 4)).astype(np.float32)
    direct = SmoothedClassifier(base, sigma=1.0, n=8, vote="soft", seed=4)(x)
    smoothed = SmoothedClassifier(base, sigma=1.0, n=8, vote="soft", seed=4)
    np.testing.assert_allclose(smoothed.predict_dataset(x, batch_size=6), direct, rtol=0, atol=1e-5)
    two = smoothed.predict_dataset(np.concatenate([x, x]), batch_size=6)
    assert not np.allclose(two[:6], two[6:]) and not np.allclose(two[:6], direct)
    with pytest.raises(ValueError, match="strategy"):
        smoothed.predict_dataset(x, strategy="mirrored")
    with pytest.raises(ValueError, match="`x`"):
        smoothed.predict_dataset(np.zeros((2, 4), np.int32))
    with pytest.raises(ValueError, match="batch_size"):
        smoothed.predict_dataset(x, batch_size=0)


def test_auto_attack_with_a_strategy_matches_default():
    """`auto_attack(strategy=)` (one replica, in process): APGD then a random
    Square on what survives, the x_adv of strategy=None."""
    import keras

    from tfrobust import threats
    from tfrobust.attacks import APGD, Square
    from tfrobust.evaluation import auto_attack

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(1).uniform(size=(12, 4, 4, 1)).astype(np.float32)
    y = np.argmax(model(x), axis=-1)
    threat = threats.LpBall(np.inf, 0.05)
    out = {}
    for name, spread in (("plain", None), ("dist", strategy)):
        attacks = [APGD(threat, steps=3, seed=0), Square(threat, n_queries=8, seed=0)]
        out[name] = auto_attack(model, x, y, threat, version=attacks, batch_size=4, strategy=spread)
    assert 0 < out["plain"].robust_accuracy  # Square ran on survivors
    np.testing.assert_array_equal(out["dist"].robust, out["plain"].robust)
    np.testing.assert_allclose(out["dist"].x_adv, out["plain"].x_adv, rtol=0, atol=1e-6)


def test_attack_app_library_with_a_strategy_matches_default(tmp_path):
    """`run_attack_app(strategy="one_device")` goes through the distributed path."""
    import keras

    from tfrobust.evaluation import run_attack_app

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    outs = {}
    for name in ("default", "one_device"):
        result = run_attack_app(model, out_dir=str(tmp_path / name), dataset="digits", n_examples=24,
                                batch_size=8, attacks=("pgd",), eps=(0.1,), steps=2, seed=0,
                                strategy=name, sanity_checks=False, verbose=0)
        outs[name] = np.load(tmp_path / name / "adv_pgd_0.1.npz")
        assert result.attacks["pgd_0.1"].pred.shape == (24,)
    np.testing.assert_array_equal(outs["default"]["predictions"], outs["one_device"]["predictions"])
    np.testing.assert_allclose(outs["default"]["x_adv"], outs["one_device"]["x_adv"], rtol=0, atol=1e-6)
