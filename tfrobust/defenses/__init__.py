"""Defenses: models that declare how to attack them.

Example:

```python
import keras
import numpy as np
import tensorflow as tf
from tfrobust import defenses, threats
from tfrobust.attacks import PGD

class Quantize(defenses.Defense):
    def purify(self, x, training=False):
        return tf.round(x * 4.0) / 4.0           # no useful gradient

classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10)])
defense = Quantize(classifier)
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
x_adv = PGD(threats.LpBall(np.inf, 0.1), steps=10)(defense.bpda(), x)
```

`Defense` (in `base.py`) is a `keras.Model` computing
`classifier(purify(x))`, with a BPDA `surrogate` (identity by default),
`bpda()` and `eot(n)` returning attackable callables, and the declared flags
`randomized` and `optimizes_at_inference`. `minimize` (in `inner.py`) runs
an inner optimisation as a `tf.while_loop` over tensors, so a defense that
optimises at inference runs inside a compiled attack.

`RBFCNN` (in `rbf_cnn.py`) is RBF-CNN: the RBF templates' reconstruction in
front of any classifier, m-sample inference, and the beta2 = 0
reconstruction as its BPDA surrogate.
"""

from tfrobust.defenses.base import Attackable
from tfrobust.defenses.base import Defense
from tfrobust.defenses.inner import minimize
from tfrobust.defenses.rbf_cnn import RBFCNN

__all__ = ["Attackable", "Defense", "RBFCNN", "minimize"]
from tfrobust.defenses.manifold import InvertAndClassify  # noqa: E402

__all__ += ["InvertAndClassify"]
from tfrobust.defenses.dip import DeepImagePrior  # noqa: E402

__all__ += ["DeepImagePrior"]
