"""tfrobust.data readers on tiny genuine files written here: MNIST IDX,
CIFAR-10 binary and python versions (folders and .tar.gz), GTSRB layout, and
every kind of corrupt or inconsistent file."""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tfrobust import data
from tfrobust.data import cifar, mnist

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No environment data dir, no download, no cache across tests."""
    monkeypatch.delenv("TFROBUST_DATA_DIR", raising=False)
    data.clear_cache()
    yield
    data.clear_cache()


# ---------------------------------------------------------------- writers

def idx_bytes(array, magic):
    header = struct.pack(">I", magic)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_mnist(folder, split, images, labels, gz=True, raw=None):
    """Writes the split's two IDX files; `raw` overrides their bytes."""
    os.makedirs(folder, exist_ok=True)
    stem = "train" if split == "train" else "t10k"
    contents = {
        f"{stem}-images-idx3-ubyte": idx_bytes(images, 2051),
        f"{stem}-labels-idx1-ubyte": idx_bytes(labels, 2049),
    }
    contents.update(raw or {})
    for name, blob in contents.items():
        path = os.path.join(folder, name + (".gz" if gz else ""))
        opener = gzip.open if gz else open
        with opener(path, "wb") as f:
            f.write(blob)


def cifar_records(images, labels):
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1)


def _s(b):  # A Python 2 `str`, as cPickle wrote it.
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<I", len(b)) + b


def _i(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    return b"J" + struct.pack("<i", v)


def py2_batch_pickle(images, labels):
    """Protocol-2 bytes laid out as Python 2's cPickle wrote CIFAR batches."""
    pixels = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    n = len(images)
    dtype = (b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1) + b"\x87R("
             + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
             + _i(0) + b"\x85" + _s(b"b") + b"\x87R(" + _i(1) + b"J"
             + struct.pack("<i", n) + b"M" + struct.pack("<H", 3072)
             + b"\x86" + dtype + b"\x89" + _s(pixels.tobytes()) + b"tb")
    labels_list = b"](" + b"".join(_i(int(v)) for v in labels) + b"e"
    names = b"](" + b"".join(_s(b"img%d.png" % k) for k in range(n)) + b"e"
    return (b"\x80\x02}(" + _s(b"batch_label") + _s(b"batch 1 of 5")
            + _s(b"data") + array + _s(b"labels") + labels_list
            + _s(b"filenames") + names + b"u.")


def cifar_split(n_per_batch=3, batches=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batches, n_per_batch, 32, 32, 3), np.uint8)
    labels = rng.integers(0, 10, (batches, n_per_batch)).astype(np.uint8)
    return images, labels


_BATCH_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_members(images, labels, binary=True, prefix=""):
    if binary:
        folder = prefix + "cifar-10-batches-bin/"
        return {folder + n + ".bin": cifar_records(im, lb).tobytes()
                for n, im, lb in zip(_BATCH_NAMES, images, labels)}
    folder = prefix + "cifar-10-batches-py/"
    return {folder + n: py2_batch_pickle(im, lb)
            for n, im, lb in zip(_BATCH_NAMES, images, labels)}


def write_tree(root, members):
    for name, blob in members.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(blob)


def write_tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


# ------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_roundtrip(tmp_path, gz):
    images = RNG.integers(0, 256, (7, 28, 28), np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 8, 7], np.uint8)
    write_mnist(tmp_path / "mnist", "test", images, labels, gz=gz)
    x, y = data.load("mnist", "test", data_dir=tmp_path)
    assert x.shape == (7, 28, 28, 1) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.round(x[..., 0] * 255), images)
    np.testing.assert_array_equal(y, labels)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4))
def test_read_idx_roundtrip_any_shape(tmp_path_factory, shape):
    array = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 256
    magic = 0x0800 + len(shape)
    path = tmp_path_factory.mktemp("idx") / "a-idx"
    path.write_bytes(idx_bytes(array.astype(np.uint8), magic))
    np.testing.assert_array_equal(mnist.read_idx(str(path), magic), array)


def _mnist_case(tmp_path, images=None, labels=None, raw=None):
    images = RNG.integers(0, 256, (4, 28, 28), np.uint8) if images is None else images
    labels = np.array([1, 2, 3, 4], np.uint8) if labels is None else labels
    write_mnist(tmp_path, "train", images, labels, raw=raw)
    return lambda: data.load("mnist", "train", data_dir=tmp_path)


def test_mnist_wrong_magic(tmp_path):
    labels_blob = idx_bytes(np.array([1, 2, 3, 4], np.uint8), 2049)
    load = _mnist_case(tmp_path, raw={"train-images-idx3-ubyte": labels_blob})
    with pytest.raises(ValueError,
                       match=r"magic number 2051.*Received: magic number 2049"):
        load()


def test_mnist_truncated_body(tmp_path):
    blob = idx_bytes(RNG.integers(0, 256, (4, 28, 28), np.uint8), 2051)[:-10]
    load = _mnist_case(tmp_path, raw={"train-images-idx3-ubyte": blob})
    with pytest.raises(ValueError, match=r"images-idx3-ubyte.*truncated"):
        load()


def test_mnist_truncated_header(tmp_path):
    load = _mnist_case(tmp_path, raw={"train-labels-idx1-ubyte": b"\x00\x00"})
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte.gz.*truncated"):
        load()


def test_mnist_header_count_mismatch(tmp_path):
    # Header says 3 images, the body holds 4.
    blob = idx_bytes(RNG.integers(0, 256, (4, 28, 28), np.uint8), 2051)
    blob = blob[:4] + struct.pack(">I", 3) + blob[8:]
    load = _mnist_case(tmp_path, raw={"train-images-idx3-ubyte": blob})
    with pytest.raises(ValueError, match="header count does not match"):
        load()


def test_mnist_label_count_differs(tmp_path):
    load = _mnist_case(tmp_path, labels=np.array([1, 2, 3], np.uint8))
    with pytest.raises(ValueError, match=r"as many labels.*3 labels for 4 images"):
        load()


def test_mnist_label_out_of_range(tmp_path):
    load = _mnist_case(tmp_path, labels=np.array([1, 2, 10, 4], np.uint8))
    with pytest.raises(ValueError, match=r"labels in \[0, 10\).*label 10 at index 2"):
        load()


def test_mnist_wrong_image_size(tmp_path):
    load = _mnist_case(tmp_path, images=np.zeros((4, 28, 27), np.uint8))
    with pytest.raises(ValueError, match=r"shape \[N, 28, 28, 1\]"):
        load()


def test_mnist_bad_gzip(tmp_path):
    _mnist_case(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"valid gzip file at .*train-images-idx3"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_mnist_missing_companion(tmp_path):
    _mnist_case(tmp_path)
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        data.load("mnist", "train", data_dir=tmp_path)


# ----------------------------------------------------------------- CIFAR-10

def _expected(images, labels, split):
    sel = slice(0, 5) if split == "train" else slice(5, 6)
    return (images[sel].reshape(-1, 32, 32, 3) / np.float32(255),
            labels[sel].reshape(-1).astype(np.int64))


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "py"])
@pytest.mark.parametrize("archived", [True, False], ids=["tar", "dir"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_formats_roundtrip(tmp_path, binary, archived, split):
    images, labels = cifar_split()
    members = cifar_members(images, labels, binary=binary)
    if archived:
        name = "cifar-10-binary.tar.gz" if binary else "cifar-10-python.tar.gz"
        os.makedirs(tmp_path / "cifar10")
        write_tar(tmp_path / "cifar10" / name, members)
    else:
        write_tree(tmp_path / "cifar10", members)
    before = sorted(p for p in tmp_path.rglob("*"))
    x, y = data.load("cifar10", split, data_dir=tmp_path)
    x_ref, y_ref = _expected(images, labels, split)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)
    # Archives are read in memory: nothing was extracted next to them.
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_cifar_pixel_layout(tmp_path):
    # One record whose red plane is 1, green 2, blue 3 except pixel (row 0,
    # col 1) of blue, which is 200: planes are R, G, B, each row-major.
    record = np.concatenate([[4], np.full(1024, 1), np.full(1024, 2),
                             np.full(1024, 3)]).astype(np.uint8)
    record[1 + 2048 + 1] = 200
    write_tree(tmp_path, {f"cifar-10-batches-bin/{n}.bin": record.tobytes()
                          for n in _BATCH_NAMES})
    x, y = data.load("cifar10", "test", data_dir=tmp_path)
    pixels = np.round(x[0] * 255)
    assert y.tolist() == [4]
    assert pixels[5, 5].tolist() == [1, 2, 3]
    assert pixels[0, 1].tolist() == [1, 2, 200]


def test_cifar_archive_with_dot_prefix(tmp_path):
    images, labels = cifar_split()
    write_tar(tmp_path / "cifar-10-binary.tar.gz",
              cifar_members(images, labels, prefix="./"))
    x, _ = data.load("cifar10", "train", data_dir=tmp_path)
    assert x.shape == (15, 32, 32, 3)


def test_cifar_python3_pickle_accepted(tmp_path):
    images, labels = cifar_split(batches=1)
    pixels = images[0].transpose(0, 3, 1, 2).reshape(3, -1)
    blob = pickle.dumps({"data": pixels, "labels": labels[0].tolist()},
                        protocol=4)
    x, y = cifar.parse_pickle(blob, "batch")
    np.testing.assert_array_equal(x, images[0])
    np.testing.assert_array_equal(y, labels[0])


def _repickled_batch(images, labels, protocol, fortran=False):
    """A batch as a user re-saves it with Python 3: bytes keys, as loaded."""
    pixels = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if fortran:
        pixels = np.asfortranarray(pixels)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels.tolist(),
             b"data": pixels, b"filenames": [b"a.png", b""] + [b"x.png"] * (len(images) - 2)}
    return pickle.dumps(batch, protocol=protocol)


@pytest.mark.parametrize("fortran", [False, True], ids=["C", "F"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_repickled_batch_loads_at_every_protocol(tmp_path, protocol, fortran):
    # Issue 9, item 13: protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    # and protocol 5 arrays as numpy's _frombuffer; both were refused.
    images, labels = cifar_split()
    members = {f"cifar-10-batches-py/{n}": _repickled_batch(im, lb, protocol, fortran)
               for n, im, lb in zip(_BATCH_NAMES, images, labels)}
    write_tree(tmp_path, members)
    x, y = data.load("cifar10", "test", data_dir=tmp_path)
    x_ref, y_ref = _expected(images, labels, "test")
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


class _Reduce:
    """Pickles as `func(*args)`, the way a crafted file calls a global."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _numpy_frombuffer():
    return np.ndarray.__reduce_ex__(np.zeros(2, np.uint8), 5)[0]


@pytest.mark.parametrize("payload, refused", [
    (_Reduce(os.system, ("echo pwned",)), r"(posix|nt)\.system"),
    (_Reduce(eval, ("1 + 1",)), r"(__builtin__|builtins)\.eval"),
    (_Reduce(getattr, (1, "real")), r"(__builtin__|builtins)\.getattr"),
    (_Reduce(__import__("codecs").encode, (5, "latin1")), r"_codecs\.encode\(int, 'latin1'\)"),
    (_Reduce(__import__("codecs").encode, ("abc", "rot13")), r"_codecs\.encode\('abc', 'rot13'\)"),
    (_Reduce(bytes, (10**6,)), r"(__builtin__|builtins)\.bytes\(int\)"),
    (_Reduce(_numpy_frombuffer(), (b"\x00" * 8, np.dtype("O"), (1,), "C")),
     r"_frombuffer\(bytes, dtype\('\|O'\), tuple, 'C'\)"),
    (_Reduce(_numpy_frombuffer(), (b"\x00" * 8, np.dtype("u1"), [8], "C")),
     r"_frombuffer\(bytes, dtype\('\|u1'\), list, 'C'\)"),
    (_Reduce(_numpy_frombuffer(), ("abc", np.dtype("u1"), (3,), "C")), r"_frombuffer\('abc', dtype\('\|u1'\), tuple, 'C'\)"),
])
@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_malicious_pickle_refused_naming_the_global(payload, refused, protocol):
    from tfrobust.data import safe_pickle

    blob = pickle.dumps({b"data": payload, b"labels": [1]}, protocol=protocol)
    with pytest.raises(safe_pickle.DisallowedGlobalError, match=r"test_batch: .*" + refused) as info:
        cifar.parse_pickle(blob, "test_batch")
    assert "refused" in str(info.value)
    assert info.value.global_name.split(".")[-1] in str(info.value)


def test_cifar_record_stream_not_multiple(tmp_path):
    images, labels = cifar_split()
    members = cifar_members(images, labels)
    members["cifar-10-batches-bin/test_batch.bin"] += b"\x00" * 5
    write_tree(tmp_path, members)
    with pytest.raises(ValueError, match=r"test_batch.bin.*3073-byte records"
                                         r"|3073-byte records.*test_batch.bin"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_bad_label_byte(tmp_path):
    images, labels = cifar_split()
    labels[2, 1] = 57
    write_tar(tmp_path / "cifar-10-binary.tar.gz", cifar_members(images, labels))
    with pytest.raises(ValueError, match=r"data_batch_3.bin.*byte 57 in record 1"):
        data.load("cifar10", "train", data_dir=tmp_path)


def test_cifar_archive_missing_member(tmp_path):
    images, labels = cifar_split()
    members = cifar_members(images, labels)
    del members["cifar-10-batches-bin/data_batch_4.bin"]
    write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(ValueError, match=r"cifar-10-binary.tar.gz.*data_batch_4"):
        data.load("cifar10", "train", data_dir=tmp_path)


def test_cifar_corrupt_archive(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match=r"tar archive.*cifar-10-binary.tar.gz"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_folder_missing_batch(tmp_path):
    images, labels = cifar_split()
    members = cifar_members(images, labels)
    del members["cifar-10-batches-bin/data_batch_2.bin"]
    write_tree(tmp_path, members)
    with pytest.raises(FileNotFoundError, match="data_batch_2.bin"):
        data.load("cifar10", "train", data_dir=tmp_path)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.remove, (self.target,))


def test_cifar_pickle_disallowed_global_not_executed(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    images, labels = cifar_split()
    members = cifar_members(images, labels, binary=False)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {b"data": _Evil(str(sentinel)), b"labels": [1]}, protocol=2)
    write_tree(tmp_path, members)
    with pytest.raises(ValueError, match=r"test_batch.*refused"):
        data.load("cifar10", "test", data_dir=tmp_path)
    assert sentinel.exists()


@pytest.mark.parametrize("batch, match", [
    ({b"labels": [1, 2, 3]}, r"keys 'data' and 'labels'"),
    ({b"data": np.zeros((3, 3072), np.uint8)}, r"keys 'data' and 'labels'"),
    ({b"data": np.zeros((3, 3000), np.uint8), b"labels": [1, 2, 3]},
     r"shape \[N, 3072\].*shape=\(3, 3000\)"),
    ({b"data": np.zeros((3, 3072), np.float64), b"labels": [1, 2, 3]},
     r"uint8 array.*dtype=float64"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]},
     r"as many labels.*2 labels for 3 images"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2, 12]},
     r"labels in \[0, 10\)"),
    ([1, 2, 3], r"pickled dict.*list"),
])
def test_cifar_bad_pickle_contents(tmp_path, batch, match):
    images, labels = cifar_split()
    members = cifar_members(images, labels, binary=False)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(batch, protocol=4)
    write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(ValueError, match=match):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_truncated_pickle(tmp_path):
    images, labels = cifar_split()
    blob = py2_batch_pickle(images[5], labels[5])[:-200]
    with pytest.raises(ValueError, match=r"test_batch.*malformed pickle"):
        cifar.parse_pickle(blob, "test_batch")
