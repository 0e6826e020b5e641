"""tfrobust.data: registry, lookup order, tfds fallback, cache, the real
MNIST / CIFAR-10 files, the embedded digits and the tf.data pipeline."""

import gzip
import os
import struct

import numpy as np
import pytest

from tfrobust import data
from tfrobust.data import loader

# The real probe, kept before the fixture below replaces it in every test.
NETWORK_ERROR = loader._network_error


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No environment data dir and no real tfds call unless a test says so."""
    monkeypatch.delenv("TFROBUST_DATA_DIR", raising=False)

    def no_network(name, split):
        raise AssertionError("tests must not reach tensorflow_datasets")

    monkeypatch.setattr(loader, "_tfds_load", no_network)
    # tfds holds nothing and the network "is up", unless a test says so: the
    # probe must never run for real here.
    monkeypatch.setattr(loader, "_tfds_prepared", lambda name: False)
    monkeypatch.setattr(loader, "_network_error", lambda url: None)
    data.clear_cache()
    yield
    data.clear_cache()


def write_mnist_test(folder, images, labels):
    os.makedirs(folder, exist_ok=True)
    for name, array, magic in (("t10k-images-idx3-ubyte", images, 2051),
                               ("t10k-labels-idx1-ubyte", labels, 2049)):
        header = struct.pack(">I", magic)
        header += b"".join(struct.pack(">I", d) for d in array.shape)
        with gzip.open(os.path.join(folder, name + ".gz"), "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())


def tiny_mnist(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), np.uint8),
            rng.integers(0, 10, n).astype(np.uint8))


# ---------------------------------------------------------------- registry

def test_registry():
    assert data.DATASETS == ("mnist", "cifar10", "gtsrb", "digits")
    assert [data.num_classes(n) for n in data.DATASETS] == [10, 10, 43, 10]
    assert [data.input_shape(n) for n in data.DATASETS] == [
        (28, 28, 1), (32, 32, 3), (32, 32, 3), (8, 8, 1)]


@pytest.mark.parametrize("fn", [data.num_classes, data.input_shape])
def test_unknown_name(fn):
    with pytest.raises(ValueError, match=r"`name` to be one of .*'gtsrb'.*name='svhn'"):
        fn("svhn")


def test_unknown_name_and_split_in_load():
    with pytest.raises(ValueError, match="name='imagenet'"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match=r"`split` to be one of 'train', 'test'.*"
                                         r"split='validation'"):
        data.load("digits", "validation")


# ------------------------------------------------------------ real files

def _check_real(x, y, shape, k=10):
    assert x.shape == shape and x.dtype == np.float32
    assert y.shape == shape[:1] and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are whole multiples of 1/255.
    np.testing.assert_allclose(x[:50] * 255, np.round(x[:50] * 255), atol=1e-4)
    counts = np.bincount(y, minlength=k)
    assert len(counts) == k
    # Roughly uniform: every class within 30% of N/K (true counts are ~10%).
    np.testing.assert_allclose(counts, len(y) / k, rtol=0.3)


def test_real_mnist(data_dir):
    x, y = data.load("mnist", "test", data_dir=data_dir)
    _check_real(x, y, (8000, 28, 28, 1))
    x, y = data.load("mnist", "train", data_dir=data_dir)
    _check_real(x, y, (17435, 28, 28, 1))


def test_real_cifar10_from_tar_gz(data_dir):
    x, y = data.load("cifar10", "train", data_dir=data_dir)
    _check_real(x, y, (5085, 32, 32, 3))
    x, y = data.load("cifar10", "test", data_dir=data_dir)
    _check_real(x, y, (817, 32, 32, 3))


def test_real_files_found_through_env_and_directly(data_dir, monkeypatch):
    monkeypatch.setenv("TFROBUST_DATA_DIR", data_dir)
    x_env, y_env = data.load("mnist", "test")
    data.clear_cache()
    monkeypatch.delenv("TFROBUST_DATA_DIR")
    x_dir, y_dir = data.load("mnist", "test", data_dir=os.path.join(data_dir, "mnist"))
    np.testing.assert_array_equal(x_env, x_dir)
    np.testing.assert_array_equal(y_env, y_dir)


def test_cache_is_shared_and_read_only(data_dir):
    x1, y1 = data.load("cifar10", "test", data_dir=data_dir)
    x2, y2 = data.load("cifar10", "test", data_dir=data_dir)
    assert x1 is x2 and y1 is y2
    with pytest.raises(ValueError, match="read-only"):
        x1[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        y1[0] = 3


# --------------------------------------------------------- lookup order

def test_cache_notices_rewritten_files(tmp_path):
    write_mnist_test(tmp_path, *tiny_mnist(5))
    assert len(data.load("mnist", "test", data_dir=tmp_path)[0]) == 5
    write_mnist_test(tmp_path, *tiny_mnist(6))
    assert len(data.load("mnist", "test", data_dir=tmp_path)[0]) == 6


def test_data_dir_then_env(tmp_path, monkeypatch):
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    os.makedirs(arg_dir)
    images, labels = tiny_mnist(4, seed=1)
    write_mnist_test(env_dir / "mnist", images, labels)
    monkeypatch.setenv("TFROBUST_DATA_DIR", str(env_dir))
    # data_dir holds nothing, so the env var's folder is used ...
    x, y = data.load("mnist", "test", data_dir=arg_dir)
    np.testing.assert_array_equal(y, labels)
    # ... until data_dir holds the split, which then wins.
    images2, labels2 = tiny_mnist(7, seed=2)
    write_mnist_test(arg_dir, images2, labels2)
    x, y = data.load("mnist", "test", data_dir=arg_dir)
    np.testing.assert_array_equal(y, labels2)


def test_named_subfolder_preferred(tmp_path):
    write_mnist_test(tmp_path, *tiny_mnist(3))
    write_mnist_test(tmp_path / "mnist", *tiny_mnist(4))
    assert len(data.load("mnist", "test", data_dir=tmp_path)[1]) == 4


def test_missing_data_dir(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"Expected `data_dir` .*Received: "
                                                r"data_dir='.*missing'"):
        data.load("mnist", "test", data_dir=missing)


def test_tfds_fallback_attempted_and_failure_explained(tmp_path, monkeypatch):
    calls = []

    def failing(name, split):
        calls.append((name, split))
        raise ConnectionError("no network")

    monkeypatch.setattr(loader, "_tfds_load", failing)
    with pytest.raises(FileNotFoundError) as info:
        data.load("cifar10", "test", data_dir=tmp_path)
    assert calls == [("cifar10", "test")]
    message = str(info.value)
    for expected in (str(tmp_path), os.path.join(str(tmp_path), "cifar10"),
                     "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz",
                     "TFROBUST_DATA_DIR is not set", "ConnectionError: no network",
                     "pass data_dir", "download"):
        assert expected in message
    assert isinstance(info.value.__cause__, ConnectionError)


def test_download_false_skips_tfds(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "_tfds_load", lambda *a: pytest.fail("called"))
    with pytest.raises(FileNotFoundError,
                       match=r"(?s)t10k-images-idx3-ubyte.*disabled"):
        data.load("mnist", "test", data_dir=tmp_path, download=False)


def test_tfds_fallback_result_is_converted(monkeypatch):
    images = np.random.default_rng(3).integers(0, 256, (6, 28, 28, 1), np.uint8)
    labels = np.arange(6)
    monkeypatch.setattr(loader, "_tfds_load", lambda name, split: (images, labels))
    x, y = data.load("mnist", "train")
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images / np.float32(255))
    np.testing.assert_array_equal(y, labels)


def test_offline_fails_fast_and_says_how_to_point_at_local_files(monkeypatch):
    # Issue 9, item 12: offline, tfds used to retry for ~205 s before this
    # error. Now one probe decides, and tfds is never called.
    import time

    probed = []

    def offline(url):
        probed.append(url)
        return "cannot reach storage.googleapis.com:443: gaierror: Name or service not known"

    monkeypatch.setattr(loader, "_network_error", offline)
    monkeypatch.setattr(loader, "_tfds_load", lambda *a: pytest.fail("tfds called offline"))
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist", "test")
    assert time.monotonic() - start < 5
    assert probed == [loader._DOWNLOAD_URLS["mnist"]]
    message = str(info.value)
    for expected in ("network looks unavailable", "storage.googleapis.com:443",
                     "data_dir=<folder", "--data_dir=<folder>", "TFROBUST_DATA_DIR=<folder>",
                     "t10k-images-idx3-ubyte", "<folder>/mnist/"):
        assert expected in message, (expected, message)


def test_tfds_prepared_copy_needs_no_network(monkeypatch):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    monkeypatch.setattr(loader, "_tfds_prepared", lambda name: True)
    monkeypatch.setattr(loader, "_network_error", lambda url: pytest.fail("probed"))
    monkeypatch.setattr(loader, "_tfds_load", lambda name, split: (images, np.array([3, 4])))
    _, y = data.load("cifar10", "test")
    assert y.tolist() == [3, 4]


def test_download_must_be_a_bool():
    with pytest.raises(ValueError, match=r"`download` to be a bool.*download='no'"):
        data.load("mnist", "test", download="no")


class _Conn:
    def close(self):
        pass


def test_network_probe_one_short_attempt(monkeypatch):
    # The probe itself, with socket.create_connection replaced: never the network.
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    calls = []

    def refused(address, timeout):
        calls.append((address, timeout))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(loader.socket, "create_connection", refused)
    reason = NETWORK_ERROR("https://www.cs.toronto.edu/~kriz/x.tar.gz")
    assert calls == [(("www.cs.toronto.edu", 443), loader.NETWORK_TIMEOUT)]
    assert "cannot reach www.cs.toronto.edu:443" in reason and "refused" in reason

    monkeypatch.setattr(loader.socket, "create_connection", lambda a, timeout: _Conn())
    assert NETWORK_ERROR("https://storage.googleapis.com/x") is None

    def hangs(address, timeout):
        import time
        time.sleep(2)
        return _Conn()

    monkeypatch.setattr(loader.socket, "create_connection", hangs)
    reason = NETWORK_ERROR("https://storage.googleapis.com/x", timeout=0.1)
    assert "no answer within 0.1 s" in reason


def test_network_probe_goes_to_the_proxy(monkeypatch):
    for var in ("http_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert loader._probe_address("https://storage.googleapis.com/x") == ("proxy.example", 3128)
    monkeypatch.setenv("no_proxy", "storage.googleapis.com")
    monkeypatch.setenv("NO_PROXY", "storage.googleapis.com")
    assert loader._probe_address("https://storage.googleapis.com/x") == (
        "storage.googleapis.com", 443)


# ------------------------------------------------------------------ digits

def test_digits_split():
    x_tr, y_tr = data.load("digits", "train")
    x_te, y_te = data.load("digits", "test")
    assert x_tr.shape == (1438, 8, 8, 1) and x_te.shape == (359, 8, 8, 1)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert x_tr.max() == 1.0 and x_tr.min() == 0.0
    np.testing.assert_array_equal(x_tr * 16, np.round(x_tr * 16))
    # Stratified: every class is split 80/20 up to rounding.
    n_tr, n_te = np.bincount(y_tr, minlength=10), np.bincount(y_te, minlength=10)
    assert np.all(np.abs(n_tr - 0.8 * (n_tr + n_te)) <= 0.5)
    # Disjoint and complete: the two splits together are the 1,797 images.
    from sklearn.datasets import load_digits
    bunch = load_digits()
    everything = {(int(t), bytes(im.astype(np.uint8))) for im, t in
                  zip(bunch.images, bunch.target)}
    parts = [(int(t), bytes((im[..., 0] * 16).astype(np.uint8))) for x, y in
             ((x_tr, y_tr), (x_te, y_te)) for im, t in zip(x, y)]
    assert len(parts) == 1797 and set(parts) == everything
    # Deterministic: the same split after the cache is dropped.
    data.clear_cache()
    np.testing.assert_array_equal(data.load("digits", "test")[0], x_te)


# ---------------------------------------------------------------- pipeline

def _indexed(n=37):
    """Images whose every pixel encodes their own index (label = index)."""
    x = np.broadcast_to((np.arange(n, dtype=np.float32) / n)[:, None, None, None],
                        (n, 2, 2, 1)).copy()
    return x, np.arange(n)


def _epoch(ds):
    out = []
    for xb, yb in ds:
        xb, yb = xb.numpy(), yb.numpy()
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(np.round(xb[:, 0, 0, 0] * 37), yb)
        out.append(yb)
    return out


def test_to_dataset_shuffles_every_epoch_reproducibly():
    x, y = _indexed()
    ds = data.to_dataset(x, y, batch_size=8, seed=5)
    first, second = _epoch(ds), _epoch(ds)
    assert [len(b) for b in first] == [8, 8, 8, 8, 5]
    for epoch in (first, second):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(37))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    again = _epoch(data.to_dataset(x, y, batch_size=8, seed=5))
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(first))
    other = _epoch(data.to_dataset(x, y, batch_size=8, seed=6))
    assert not np.array_equal(np.concatenate(other), np.concatenate(first))


def test_to_dataset_options():
    x, y = _indexed()
    ordered = _epoch(data.to_dataset(x, y, batch_size=10, shuffle=False))
    assert np.concatenate(ordered).tolist() == list(range(37))
    dropped = _epoch(data.to_dataset(x, y, batch_size=10, drop_remainder=True))
    assert [len(b) for b in dropped] == [10, 10, 10]
    repeated = data.to_dataset(x, y, batch_size=10, repeat=True, drop_remainder=True)
    assert sum(len(yb) for _, yb in repeated.take(9)) == 90


def test_load_dataset_digits():
    ds = data.load_dataset("digits", "test", batch_size=100, shuffle=False)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [100, 100, 100, 59]
    x, y = data.load("digits", "test")
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(batches[0][0].numpy(), x[:100])


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), r"`batch_size` to be an integer >= 1.*batch_size=0"),
    (dict(batch_size=2.5), r"batch_size=2.5"),
    (dict(batch_size=True), r"batch_size=True"),
    (dict(seed=-1), r"`seed` to be an integer >= 0.*seed=-1"),
    (dict(seed=1.0), r"`seed` to be an integer.*seed=1.0"),
    (dict(shuffle="yes"), r"`shuffle` to be a bool.*shuffle='yes'"),
    (dict(drop_remainder=None), r"`drop_remainder` to be a bool"),
    (dict(repeat=1), r"`repeat` to be a bool"),
])
def test_to_dataset_bad_arguments(kwargs, match):
    x, y = _indexed(4)
    with pytest.raises(ValueError, match=match):
        data.to_dataset(x, y, **kwargs)


@pytest.mark.parametrize("x, y, match", [
    (np.zeros((4, 2, 2)), np.zeros(4, int), r"rank 4.*x.shape=\(4, 2, 2\)"),
    (np.zeros((4, 2, 2, 1), np.uint8), np.zeros(4, int), r"float.*x.dtype=uint8"),
    (np.zeros((0, 2, 2, 1)), np.zeros(0, int), r"at least one image"),
    (np.zeros((4, 2, 2, 1)), np.zeros(3, int), r"y.shape=\(3,\)"),
    (np.zeros((4, 2, 2, 1)), np.zeros(4), r"y.dtype=float64"),
    (np.full((4, 2, 2, 1), np.nan), np.zeros(4, int), r"finite"),
    (np.full((4, 2, 2, 1), 255.0), np.zeros(4, int), r"\[0, 1\].*255"),
    (np.zeros((4, 2, 2, 1)), -np.ones(4, int), r"non-negative labels"),
])
def test_to_dataset_bad_arrays(x, y, match):
    with pytest.raises(ValueError, match=match):
        data.to_dataset(x, y)
