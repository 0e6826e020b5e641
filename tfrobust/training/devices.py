"""GPU selection and memory flags shared by the apps."""

import tensorflow as tf

from tfrobust import _validate


def configure_devices(gpu_number="3", gpu_memory=0.05):
    """Applies the original's `--gpu_number` and `--gpu_memory` flags.

    Must run before TensorFlow touches a GPU. TF 1's per-process memory
    fraction has no TF 2 equivalent that works without knowing the card's
    size, so a fraction below 1 turns on memory growth (take memory as
    needed) instead of reserving the whole card. A requested GPU that does
    not exist falls back to the first one with a warning, rather than
    silently training on the CPU as the original would.
    """
    gpu_memory = _validate.check_float(gpu_memory, name="gpu_memory", minimum=0.0,
                                       exclusive_minimum=True, maximum=1.0)
    try:
        wanted = [int(i) for i in str(gpu_number).split(",") if i.strip()]
    except ValueError:
        raise ValueError(
            "Expected gpu_number to be comma-separated GPU indices. "
            f"Received: gpu_number={gpu_number!r}"
        ) from None
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return []
    chosen = [gpus[i] for i in wanted if 0 <= i < len(gpus)]
    if not chosen:
        print(
            f"warning: gpu_number={gpu_number!r} not among the {len(gpus)} "
            "visible GPUs; using GPU 0"
        )
        chosen = gpus[:1]
    tf.config.set_visible_devices(chosen, "GPU")
    if gpu_memory < 1:
        for gpu in chosen:
            tf.config.experimental.set_memory_growth(gpu, True)
    return chosen
