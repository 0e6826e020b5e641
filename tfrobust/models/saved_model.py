"""Loading a saved classifier: a `.keras` archive or a SavedModel directory.

    model = load_model("model.keras")          # a keras.Model
    model = load_model("exported/")            # SavedModelClassifier (logits)

`tfrobust.load_model` (the public entry point) registers every tfrobust
layer, model and defense first and calls `load_model` here. A SavedModel
(written by `model.export(path)`) becomes `SavedModelClassifier`, a callable
returning logits that every attack accepts.

Errors say what is wrong with the path: `FileNotFoundError` only when it
does not exist; a file that exists but cannot be read as a Keras archive
(truncated, not a zip, `config.json` missing, weights HDF5 truncated) is a
`ValueError` saying which, never Keras' "File not found".
"""

import inspect
import io
import json
import os
import zipfile

__all__ = ["SavedModelClassifier", "export_with_knobs", "load_model"]

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


class SavedModelClassifier:
    """A SavedModel's serving function as a logits model.

    Args:
        path: a SavedModel directory (e.g. written by `model.export(path)`).
        call_endpoint: the endpoint to call ("serve").
        output_key: for endpoints returning a dict, the key of the logits
            (default: the only entry, else "logits", else "output_0").

    Call arguments:
        x: float tensor `[B, ...]`.
        training: unused (a SavedModel's endpoint is fixed at export).

    Returns:
        The logits tensor.
    """

    def __init__(self, path, call_endpoint="serve", output_key=None):
        import keras

        self.path = path
        self.layer = keras.layers.TFSMLayer(path, call_endpoint=call_endpoint)
        self.output_key = output_key

    def __call__(self, x, training=False):
        del training
        out = self.layer(x)
        if isinstance(out, dict):
            key = self.output_key
            if key is None:
                key = next(iter(out)) if len(out) == 1 else ("logits" if "logits" in out else "output_0")
            if key not in out:
                raise ValueError(
                    f"Expected the SavedModel to return logits under one of {sorted(out)}. "
                    f"Received: output_key={key!r}"
                )
            out = out[key]
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out

    def __repr__(self):
        return f"SavedModelClassifier({self.path!r})"


def _hdf5_problem(data, what):
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r"):
            return None
    except OSError as err:  # h5py reports truncation and bad signatures as OSError
        return f"{what} is not a readable HDF5 file ({err})"


def _archive_problem(path):
    """Why `path` (an existing file) is not a readable Keras file, or None."""
    if path.endswith((".h5", ".hdf5")):
        with open(path, "rb") as f:
            return _hdf5_problem(f.read(), "the file")
    if not zipfile.is_zipfile(path):
        return (f"it is not a zip file ({os.path.getsize(path)} bytes; a .keras archive is a zip "
                "written by model.save, so the file is truncated or of another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
            if bad is not None:
                return f"the archive member {bad!r} is corrupt (CRC check failed)"
            if "config.json" not in names:
                return f"config.json is missing from the archive (it holds {sorted(names)})"
            try:
                json.loads(archive.read("config.json"))
            except ValueError as err:
                return f"config.json is not valid JSON ({err})"
            for name in names:
                if name.endswith(".h5"):
                    problem = _hdf5_problem(archive.read(name), f"the weights file {name!r} inside it")
                    if problem:
                        return problem
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        return f"the zip archive cannot be read ({type(err).__name__}: {err})"
    return None


def _load_keras_file(path, argument, kwargs):
    import keras

    try:
        return keras.saving.load_model(path, **kwargs)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
        # Keras says "File not found" for any file that is not a zip, and
        # lets h5py's and zipfile's errors through raw: look at the file to
        # say what is really wrong. A readable archive (e.g. with an
        # unregistered class) keeps Keras' own error.
        problem = _archive_problem(path)
        if problem is None:
            raise
        raise ValueError(
            f"Expected `{argument}` to be a readable Keras archive. Received: {argument}={path!r}; "
            f"the file exists but is not a readable Keras archive: {problem}"
        ) from err


def load_model(path, *, argument="path", **kwargs):
    """Loads a `.keras` file (or legacy `.h5`) or a SavedModel directory.

    The tfrobust classes inside the file must be registered first;
    `tfrobust.load_model` does that and is the function to call.

    Args:
        path: a `.keras` / `.h5` file, or a SavedModel directory (with
            `saved_model.pb`, e.g. from `model.export(path)`).
        argument: the name the caller knows `path` by (e.g. "model" for
            `apps/attack.py --model`), used in error messages.
        **kwargs: passed to `keras.saving.load_model` (`compile`,
            `custom_objects`, `safe_mode`); a SavedModel ignores `compile`
            and `safe_mode` and accepts no other.

    Returns:
        A `keras.Model` for a Keras file, a `SavedModelClassifier` for a
        SavedModel directory.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is not a string, is a directory that is not a
            SavedModel, has another suffix, or is a file that exists but is
            not a readable Keras archive (the message says why).
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(f"Expected `{argument}` to be a path. Received: {argument}={path!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Expected `{argument}` to be an existing path. Received: {argument}={path!r} "
            "(no such file or directory)"
        )
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ValueError(
                f"Expected `{argument}` to be a .keras file or a SavedModel directory (with "
                f"saved_model.pb). Received: {argument}={path!r}, a directory without saved_model.pb"
            )
        # `compile` and `safe_mode` mean nothing for a SavedModel (no
        # optimizer state, no Python code to run); anything else is a mistake.
        unused = sorted(set(kwargs) - {"compile", "safe_mode"})
        if unused:
            raise ValueError(
                f"Expected no Keras loading options but `compile` / `safe_mode` for a SavedModel "
                f"directory. Received: {unused}"
            )
        return SavedModelClassifier(path)
    if not path.endswith(_KERAS_SUFFIXES):
        raise ValueError(
            f"Expected `{argument}` to end with .keras or .h5, or to be a SavedModel directory. "
            f"Received: {argument}={path!r}"
        )
    return _load_keras_file(path, argument, kwargs)


def export_with_knobs(model, path, knobs, input_shape):
    """Writes a SavedModel with `serve(x)` and `serve_knobs(x, *knobs)` endpoints.

    A defense whose run-time knobs are call arguments (`model(x, beta2=...,
    samples=...)`, `model(x, sigma=..., n=...)`) keeps them choosable per
    request after export: `serve` uses the model's current knob variables,
    `serve_knobs` takes each knob as a scalar tensor, in the order given,
    without changing the exported variables.

    Args:
        model: a built Keras model whose `call` accepts the knobs as keyword
            arguments (tensors allowed).
        path: the SavedModel folder to write.
        knobs: ordered list of `(name, dtype)` pairs, e.g.
            `[("sigma", tf.float32), ("n", tf.int32)]`.
        input_shape: `(H, W, C)`, the per-example input shape.

    Returns:
        `path`.

    Raises:
        ValueError: if `input_shape` is not three known dimensions.
    """
    import keras
    import tensorflow as tf

    if input_shape is None or len(tuple(input_shape)) != 3 or any(d is None for d in input_shape):
        raise ValueError("Expected `input_shape` (H, W, C), or a model built on images of known shape. "
                         f"Received: input_shape={input_shape!r}")
    names = [name for name, _ in knobs]
    spec = tf.TensorSpec((None,) + tuple(input_shape), tf.float32, name="x")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x), input_signature=[spec])
    def serve_knobs(x, *values):
        return model(x, **dict(zip(names, values)))

    # Named parameters (not `values_0, ...`) in the SavedModel's signature.
    serve_knobs.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ["x"] + names])
    archive.add_endpoint(
        "serve_knobs", serve_knobs,
        input_signature=[spec] + [tf.TensorSpec((), dtype, name=name) for name, dtype in knobs])
    archive.write_out(path)
    return path
