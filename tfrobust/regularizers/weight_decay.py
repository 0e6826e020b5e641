"""L2 weight decay on kernels as a training extra loss.

Example:

```python
from tfrobust import models, regularizers

model = models.mlp1layer((8, 8, 1), 10, hidden_units=32)
wd = regularizers.WeightDecay(5e-4)   # fit(..., extra_losses=[wd])
penalty = wd(model)                   # λ Σ ½‖W‖² over the kernels
```
"""

import keras
import tensorflow as tf

from tfrobust import _validate

__all__ = ["WeightDecay"]


@keras.saving.register_keras_serializable(package="tfrobust")
class WeightDecay:
    """L2 weight decay on kernels as a training extra loss: `λ Σ ½‖W‖²`.

    Like the original (which decays the variables named `weights`), only
    kernels of Dense and convolution layers are decayed: variables whose
    name contains "kernel". Biases, BatchNorm parameters and other weights
    are left alone.

    Called as `fn(model, x, y, logits)` (the `tfrobust.training.fit`
    extra-loss protocol); only `model` is used.

    Args:
        lmbd: non-negative float λ.

    Raises:
        ValueError: on a negative or non-finite `lmbd`.
    """

    name = "weight_decay"
    __name__ = "weight_decay"

    def __init__(self, lmbd):
        self.lmbd = _validate.check_float(lmbd, name="lmbd", minimum=0.0)

    @tf.autograph.experimental.do_not_convert
    def __call__(self, model, x=None, y=None, logits=None):
        kernels = [
            v for v in model.trainable_variables
            if "kernel" in v.name.split("/")[-1]
        ]
        if not kernels:
            return tf.constant(0.0)
        total = tf.add_n([0.5 * tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels])
        return self.lmbd * total

    def get_config(self):
        return {"lmbd": self.lmbd}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"WeightDecay(lmbd={self.lmbd!r})"
