"""Distribution strategies by name, and the chief/worker roles they imply.

Every app builds its strategy with `make_strategy(name)` and creates its model
under `strategy.scope()` before calling `tfrobust.training.fit`; the loop then
runs each step through `strategy.run` and reduces the results, so the same code
trains on one CPU, several local GPUs or several machines.
"""

import json
import os

import tensorflow as tf

VALID_NAMES = ("default", "mirrored", "one_device", "multi_worker")


def _valid_names_text():
    return ("'default', 'mirrored' (or 'mirrored:DEVICE,DEVICE,...'), "
            "'one_device' (or 'one_device:DEVICE', e.g. 'one_device:/gpu:0') "
            "and 'multi_worker'")


def _parse_device(spec, name):
    """Returns the canonical name of a local logical device, or raises."""
    try:
        wanted = tf.DeviceSpec.from_string(spec)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"Expected a device such as '/gpu:0' or '/cpu:0'. "
            f"Received: name={name!r} ({e})") from None
    device_type = (wanted.device_type or "").upper()
    index = wanted.device_index if wanted.device_index is not None else 0
    for device in tf.config.list_logical_devices():
        found = tf.DeviceSpec.from_string(device.name)
        if found.device_type == device_type and found.device_index == index:
            return device.name
    available = [d.name for d in tf.config.list_logical_devices()]
    raise ValueError(
        f"Expected a device that exists on this machine (one of "
        f"{available}). Received: name={name!r}")


def _default_device():
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return gpus[0].name
    return tf.config.list_logical_devices("CPU")[0].name


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "Expected the TF_CONFIG environment variable to describe the "
            "cluster for the 'multi_worker' strategy, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}. '
            "Received: TF_CONFIG is not set")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(
            "Expected TF_CONFIG to be valid JSON. Received: "
            f"TF_CONFIG={raw!r} ({e})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(
            "Expected TF_CONFIG to hold a non-empty 'cluster' mapping of job "
            f"names to address lists. Received: TF_CONFIG={raw!r}")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) for a in addresses)):
            raise ValueError(
                f"Expected cluster job {job!r} in TF_CONFIG to be a non-empty "
                f"list of 'host:port' strings. Received: TF_CONFIG={raw!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            "Expected TF_CONFIG to hold a 'task' with 'type' and 'index'. "
            f"Received: TF_CONFIG={raw!r}")
    job = task["type"]
    index = task["index"]
    if job not in cluster or not isinstance(index, int) or not (
            0 <= index < len(cluster[job])):
        raise ValueError(
            "Expected TF_CONFIG's task to name a job of its cluster and an "
            f"index inside that job. Received: TF_CONFIG={raw!r}")


def make_strategy(name="default"):
    """Creates a `tf.distribute.Strategy` from its name.

    Create the model (and anything else holding variables) under the returned
    strategy's `scope()`, then pass the strategy to `fit`.

    Args:
        name: One of `"default"` (the current strategy,
            `tf.distribute.get_strategy()`), `"mirrored"` (synchronous
            data parallelism over all local GPUs; on a CPU-only machine it
            runs on the CPU; `"mirrored:/gpu:0,/gpu:1"` names the
            devices), `"one_device"` (the first GPU, else the CPU;
            `"one_device:/gpu:1"` names the device) or `"multi_worker"`
            (`MultiWorkerMirroredStrategy`, cluster read from the `TF_CONFIG`
            environment variable). Case-insensitive.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: if `name` is unknown (TPU strategies are not supported),
            if the device named after `one_device:` does not exist, or if
            `multi_worker` is requested while `TF_CONFIG` is missing or
            invalid.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"Expected name to be a string, one of {_valid_names_text()}. "
            f"Received: name={name!r}")
    key = name.strip()
    lowered = key.lower()
    if lowered == "default":
        return tf.distribute.get_strategy()
    if lowered == "mirrored":
        return tf.distribute.MirroredStrategy()
    if lowered.startswith("mirrored:"):
        devices = [d.strip() for d in key[len("mirrored:"):].split(",")]
        if not all(devices):
            raise ValueError(
                "Expected a comma-separated device list after 'mirrored:', "
                f"e.g. 'mirrored:/gpu:0,/gpu:1'. Received: name={name!r}")
        return tf.distribute.MirroredStrategy(
            [_parse_device(d, name) for d in devices])
    if lowered == "one_device":
        return tf.distribute.OneDeviceStrategy(_default_device())
    if lowered.startswith("one_device:"):
        return tf.distribute.OneDeviceStrategy(
            _parse_device(key[len("one_device:"):], name))
    if lowered == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(
        f"Expected name to be one of {_valid_names_text()} (TPU strategies "
        f"are not supported). Received: name={name!r}")


def is_chief(strategy):
    """Whether this process should write checkpoints, logs and summaries.

    Single-machine strategies always are; under a multi-worker strategy only
    the chief (or worker 0 when the cluster has no chief) is.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended,
                                       "_in_multi_worker_mode",
                                       lambda: False)():
        return True
    task_type = resolver.task_type
    task_id = resolver.task_id
    if task_type is None or task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
