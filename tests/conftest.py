"""Shared pytest set-up: quiet TensorFlow, fixed seeds, the local data dir."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    import keras
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def data_dir():
    """The directory of real MNIST / CIFAR-10 files (TFROBUST_DATA_DIR)."""
    path = os.environ.get("TFROBUST_DATA_DIR")
    if not path or not os.path.isdir(path):
        pytest.skip("TFROBUST_DATA_DIR is not set to a directory of real data")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
