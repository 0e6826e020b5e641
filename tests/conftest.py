"""Shared pytest set-up: quiet TensorFlow, fixed seeds, the local data dir."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property tests must never fail by chance: every run (CI or not) draws the
# same examples, and no example database carries failures from one machine's
# run into another's. Tests keep their own max_examples; derandomize and
# the database come from this profile.
settings.register_profile(
    "tfrobust",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tfrobust"))


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
