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
    "evaluation",
    "experiments",
    "layers",
    "losses",
    "models",
    "regularizers",
    "testing",
    "threats",
    "training",
)

__all__ = list(_SUBMODULES) + ["__version__", "load_model"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(path, **kwargs):
    """`keras.saving.load_model` with every tfrobust layer registered first.

    Keras finds custom classes through its registry, which is filled when
    their modules are imported; the lazy top-level import would otherwise
    leave a saved tfrobust model unloadable in a fresh process.
    """
    import keras

    importlib.import_module(f"{__name__}.layers")
    importlib.import_module(f"{__name__}.models")
    return keras.saving.load_model(path, **kwargs)


def __dir__():
    return sorted(__all__)
