"""tfrobust: adversarial robustness for TensorFlow 2 / Keras 3 image classifiers.

The four defenses (RBF-CNN, Cross-Lipschitz, robust manifold defense,
smoothed inference), the attacks that judge them and certification live in
separate subpackages that meet through three small interfaces: a model is a
callable returning logits, a threat is a value (`threats.LpBall`), and an
attack maps `(model, x, y)` to `x_adv`.

Subpackages are imported lazily so that `import tfrobust` stays cheap and a
user who only needs the data readers never pays for building attacks.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "attacks",
    "bounds",
    "data",
    "defenses",
    "evaluation",
    "experiments",
    "layers",
    "losses",
    "models",
    "optim",
    "rbf",
    "regularizers",
    "smoothing",
    "testing",
    "threats",
    "training",
    "transforms",
)

__all__ = list(_SUBMODULES) + ["__version__", "load_model"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(path, **kwargs):
    """Loads a saved classifier: a `.keras` file or a SavedModel directory.

    Every tfrobust layer, model and defense is registered first: Keras finds
    custom classes through its registry, which is filled when their modules
    are imported, and the lazy top-level import would otherwise leave a
    saved tfrobust model unloadable in a fresh process.

    Args:
        path: a `.keras` (or legacy `.h5`) file, or a SavedModel directory
            (`model.export(path)`), which loads as
            `tfrobust.models.saved_model.SavedModelClassifier`, a callable
            returning logits.
        **kwargs: passed to `keras.saving.load_model` for Keras files
            (`compile`, `custom_objects`, `safe_mode`).

    Returns:
        A `keras.Model`, or a `SavedModelClassifier` for a SavedModel.

    Raises:
        FileNotFoundError: only if `path` does not exist.
        ValueError: if `path` is a directory that is not a SavedModel, has
            an unknown suffix, or is a file that exists but is not a readable
            Keras archive (truncated, not a zip, config.json missing, weights
            HDF5 unreadable: the message says which).
    """
    import pkgutil

    for name in ("layers", "models", "models.wrappers", "smoothing.classifier"):
        importlib.import_module(f"{__name__}.{name}")
    # Every defense module registers its class; a defense saved in one
    # process must load in another without the user importing its module.
    defenses = importlib.import_module(f"{__name__}.defenses")
    for info in pkgutil.iter_modules(defenses.__path__):
        importlib.import_module(f"{defenses.__name__}.{info.name}")
    from tfrobust.models import saved_model

    return saved_model.load_model(path, **kwargs)


def __dir__():
    return sorted(__all__)
