"""Smoothed inference and randomized-smoothing certification.

Example:

```python
import keras
import numpy as np
from tfrobust.smoothing import Smooth, SmoothedClassifier

base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                         keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
scores = SmoothedClassifier(base, sigma=0.25, n=32, vote="soft")(x)   # [4, 10]
smooth = Smooth(base, num_classes=10, sigma=0.25)
label, radius = smooth.certify(x[0], n0=100, n=1000, alpha=0.001, batch_size=500)
```

`SmoothedClassifier` (classifier.py) is the smoothed-inference defense of
Nemcovsky et al.: Monte-Carlo votes over Gaussian input noise as a Keras
model. `Smooth` (smooth.py) is Cohen et al.'s certification: PREDICT and
CERTIFY with the statistics of stats.py.
"""

import importlib

_EXPORTS = {
    "SmoothedClassifier": "classifier",
    "VOTES": "classifier",
    "ABSTAIN": "smooth",
    "CertifyResult": "smooth",
    "Smooth": "smooth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | set(globals()))
