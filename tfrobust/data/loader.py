"""`load`: finds a dataset split, parses it once per process, caches it.

Lookup order for mnist, cifar10 and gtsrb:

1. the `data_dir` argument,
2. the environment variable `TFROBUST_DATA_DIR`,
3. `tensorflow_datasets` (mnist and cifar10 only, since tfds has no GTSRB):
   its own prepared copy if it has one, else a download.

In each directory the files may lie in `<dir>/<name>/` (`mnist/`,
`cifar10/`, `gtsrb/`) or directly in `<dir>/`. `digits` is embedded and
needs none of this.

Offline, tensorflow_datasets retries a failed download for minutes. So
before it downloads, `load` makes one TCP connection to the download host
(or to the configured HTTP(S) proxy), waiting at most `NETWORK_TIMEOUT`
seconds; if that fails, the `FileNotFoundError` comes at once and says where
to put local files. `download=False` skips tensorflow_datasets entirely.
"""

import collections
import os
import socket
import threading
import urllib.parse
import urllib.request

from tfrobust import _validate
from tfrobust.data import cifar, embedded, gtsrb, mnist, registry

ENV_VAR = "TFROBUST_DATA_DIR"
CACHE_SIZE = 8

_READERS = {"mnist": mnist, "cifar10": cifar, "gtsrb": gtsrb}
_TFDS_NAMES = {"mnist": "mnist", "cifar10": "cifar10"}
# Where tensorflow_datasets (4.x) downloads these from: its MNIST and
# CIFAR-10 builders' URLs. Only the host and port are used, for the probe.
_DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
}
# Seconds the one network probe may take (name lookup included).
NETWORK_TIMEOUT = 3.0

_cache = collections.OrderedDict()
_cache_lock = threading.Lock()


def clear_cache():
    """Forgets every parsed split (frees their memory)."""
    with _cache_lock:
        _cache.clear()


def _tfds_load(name, split):
    """Downloads (or reads tfds' own cache of) one split with tfds.

    Kept as a module-level function so tests can replace it.

    Returns:
        `(images, labels)`: uint8 NHWC images and integer labels.
    """
    import tensorflow_datasets as tfds

    images, labels = tfds.as_numpy(
        tfds.load(_TFDS_NAMES[name], split=split, as_supervised=True,
                  batch_size=-1)
    )
    return images, labels


def _tfds_prepared(name):
    """Whether tensorflow_datasets already holds a prepared copy of `name`
    (then it needs no network). Module-level so tests can replace it."""
    try:
        import tensorflow_datasets as tfds

        return bool(tfds.builder(_TFDS_NAMES[name]).is_prepared())
    except Exception:  # Not installed or an unreadable tfds folder: unknown.
        return False


def _probe_address(url):
    """The `(host, port)` a download of `url` connects to first: the proxy
    for its scheme when one is configured (and not bypassed), else the
    host itself."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_parts.hostname:
            default = 443 if proxy_parts.scheme == "https" else 80
            return proxy_parts.hostname, proxy_parts.port or default
    return host, port


def _network_error(url, timeout=NETWORK_TIMEOUT):
    """One short connection attempt to the host a download of `url` needs.

    Module-level so tests can replace it (they must never touch the
    network).

    Returns:
        None when a TCP connection opened within `timeout` seconds, else a
        one-line reason (no name resolution, refused, no answer in time).
    """
    host, port = _probe_address(url)
    outcome = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{type(e).__name__}: {e}")

    # A thread bounds the whole attempt: `create_connection`'s timeout does
    # not cover the name lookup, which can hang for long on a broken resolver.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"cannot reach {host}:{port}: no answer within {timeout:g} s"
    if outcome[0] is not None:
        return f"cannot reach {host}:{port}: {outcome[0]}"
    return None


def _signature(files):
    sig = []
    for path in files:
        try:
            st = os.stat(path)
            sig.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            sig.append((path, None, None))
    return tuple(sig)


def _cached(key, read):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    x, y = read()
    # Callers share the cached arrays, so make them immutable.
    x.flags.writeable = False
    y.flags.writeable = False
    with _cache_lock:
        _cache[key] = (x, y)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return x, y


def _roots(data_dir):
    """The (label, directory) pairs to search, in order, and notes on skips."""
    roots, notes = [], []
    if data_dir is None:
        notes.append("data_dir was not given")
    else:
        try:
            data_dir = os.fspath(data_dir)
        except TypeError:
            raise _validate.error("data_dir", "a path (str or os.PathLike) or None",
                                  data_dir) from None
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(
                f"Expected `data_dir` to be an existing directory. Received: "
                f"data_dir={data_dir!r}"
            )
        roots.append((f"data_dir={data_dir!r}", data_dir))
    env = os.environ.get(ENV_VAR)
    if not env:
        notes.append(f"{ENV_VAR} is not set")
    elif not os.path.isdir(env):
        notes.append(f"{ENV_VAR}={env!r} is not a directory")
    else:
        roots.append((f"{ENV_VAR}={env!r}", env))
    return roots, notes


def _not_found(name, split, searched, notes, tfds_error):
    lines = [f"Could not find the {name!r} {split!r} split."]
    lines += [f"  searched {label}: {dirs}" for label, dirs in searched]
    lines += [f"  {note}" for note in notes]
    lines.append(f"  looked for: {', '.join(_READERS[name].searched_names(split))}")
    if name in _TFDS_NAMES:
        lines.append(f"  tensorflow_datasets fallback: {tfds_error}")
    else:
        lines.append("  tensorflow_datasets has no GTSRB, so there is no "
                     "download fallback: get the official GTSRB zips and "
                     "unzip them into <data_dir>/gtsrb/")
    fix = (f"To fix: pass data_dir=<folder with the files> (the apps' "
           f"--data_dir=<folder>), or set {ENV_VAR}=<folder>; the files may lie "
           f"in <folder>/{name}/ or in <folder> itself")
    if name in _TFDS_NAMES:
        fix += (". Or let tensorflow_datasets download them: download=True "
                "(the default) and network access")
    lines.append(fix + ".")
    return FileNotFoundError("\n".join(lines))


def load(name, split, data_dir=None, *, download=True):
    """Loads a dataset split as NumPy arrays.

    Parsed splits are cached per (name, split, files) for the process, so a
    repeated call is free; the returned arrays are read-only views of the
    cache (copy them, `x.copy()`, before modifying in place).

    Args:
        name: one of `DATASETS`: "mnist", "cifar10", "gtsrb" or "digits".
        split: "train" or "test".
        data_dir: a directory holding the dataset's official files, either
            directly or in a subfolder named like the dataset. When None,
            `TFROBUST_DATA_DIR` is searched, then tfds.
        download: whether to fall back to `tensorflow_datasets` when no
            local files are found: its prepared copy if it has one, else a
            download, tried only after one connection to the download host
            (or proxy) succeeded within `NETWORK_TIMEOUT` seconds, so that
            an offline call fails in seconds, not minutes.

    Returns:
        `(x, y)`: x float32 [N, H, W, C] in [0, 1], y int64 [N] in
        [0, num_classes(name)).

    Raises:
        ValueError: on an unknown name or split, or corrupt/inconsistent
            files (the message names the file and the problem).
        FileNotFoundError: if `data_dir` is given but does not exist, or the
            split is nowhere to be found, including offline with nothing
            prepared by tensorflow_datasets (the message lists where it
            looked and how to point at local files).
    """
    name = registry.check_name(name)
    split = registry.check_split(split)
    download = _validate.check_bool(download, name="download")
    roots, notes = _roots(data_dir)
    if name == "digits":
        return _cached(("digits", split, "sklearn"),
                       lambda: embedded.read(split))
    reader = _READERS[name]
    searched = []
    for label, root in roots:
        dirs = [os.path.join(root, name), root]
        searched.append((label, dirs))
        for base in dirs:
            if not os.path.isdir(base):
                continue
            source = reader.locate(base, split)
            if source is not None:
                key = (name, split, os.path.realpath(source.location),
                       _signature(source.files))
                return _cached(key, source.read)
    if name not in _TFDS_NAMES:
        tfds_error = "not available"
    elif not download:
        tfds_error = "disabled (download=False)"
    else:
        key = (name, split, "tensorflow_datasets")
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
        if not _tfds_prepared(name):
            offline = _network_error(_DOWNLOAD_URLS[name])
            if offline is not None:
                tfds_error = (f"no download tried, the network looks unavailable "
                              f"({offline})")
                raise _not_found(name, split, searched, notes, tfds_error)
        try:
            fetched = _tfds_load(name, split)
        except Exception as e:  # A failed download raises many kinds.
            tfds_error = f"tensorflow_datasets.load failed: {type(e).__name__}: {e}"
            raise _not_found(name, split, searched, notes, tfds_error) from e
        return _cached(key, lambda: registry.finalize(
            *fetched, name, "tensorflow_datasets"))
    raise _not_found(name, split, searched, notes, tfds_error)
