"""Trains RBF-CNN's template layer on a dataset and writes its files
(`apps/train_rbf_layer.py`)."""

import json
import os
import time

import numpy as np

from tfrobust import _validate


def train_rbf_layer(*, dataset="mnist", data_dir=None, n_train=None, out="rbf_layer/templates.npz",
                    method="em", em_config=None, num_templates=64, epochs=50, batch_size=250, seed=0,
                    verbose=1):
    """Loads the training split, learns templates, writes `.npz` + `.json` + `.png`.

    Args:
        dataset: a name of `tfrobust.data` ("mnist", "cifar10", ...).
        data_dir: local dataset folder (else $TFROBUST_DATA_DIR, then tfds).
        n_train: use the first `n_train` training images (None: all).
        out: the template file to write (the folder is created first).
        method: "em" (v1, numba; `em_config` an `EMConfig`, default the
            original settings of the dataset) or "gradient" (v2).
        num_templates, epochs, batch_size, seed: the v2 trainer's settings.
        verbose: progress output.

    Returns:
        A dict summary (templates, seconds, files), also printed as JSON.
    """
    from tfrobust import data, rbf

    method = _validate.check_choice(method, name="method", choices=("em", "gradient"))
    n_train = _validate.check_int(n_train, name="n_train", minimum=1, allow_none=True)
    directory = os.path.dirname(os.fspath(out))
    if directory:
        os.makedirs(directory, exist_ok=True)  # fail before the work, not after
    x, _ = data.load(dataset, "train", data_dir=data_dir)
    x = x[:n_train] if n_train else x
    start = time.time()
    if method == "em":
        config = em_config or (rbf.EMConfig.cifar10() if dataset == "cifar10" else rbf.EMConfig())
        templates = rbf.train_templates(np.asarray(x), config=config, verbose=verbose)
    else:
        templates = rbf.train_templates_gradient(x, num_templates=num_templates, epochs=epochs,
                                                 batch_size=batch_size, seed=seed, verbose=verbose)
    seconds = time.time() - start
    files = rbf.save_templates(out, templates)
    summary = {"dataset": dataset, "n_train": int(len(x)), "method": method,
               "templates": templates.num_templates, "seconds": round(seconds, 1), "files": files}
    print(json.dumps(summary))
    return summary
