"""Training-time input transforms for `tfrobust.training.fit`.

Example (PGD adversarial training that resumes exactly):

```python
from tfrobust import attacks, threats, training, transforms

pgd = attacks.PGD(threats.LpBall("inf", 0.1), steps=3, random_start=True,
                  seed=0)
training.fit(model, (x, y), batch_size=128, epochs=10,
             input_transform=transforms.Adversarial(pgd, mix=1.0),
             checkpoint_dir="ckpt")
```

The contract (`fit(input_transform=...)`): a transform is called as
`transform(model, batch)` inside the compiled train step, where `batch` is
the whole dataset element (`(x, y, *aux)` or a dict with keys "x", "y" and
any others, such as "index" from `fit(with_index=True)`), and returns
`(x, y)`, `(x, y, sample_weight)` or a dict with "x", "y" and optionally
"sample_weight". The model is built on the transformed sample. A transform
that draws random numbers declares its generators (or the attacks owning
them) with `random_generators()`, so that `fit` reseeds them every epoch.
`InputTransform` implements the splitting; subclasses write
`apply(model, x, y)`.

This package sits above `attacks` and `training`: transforms may use
attacks, the training loop never imports one.
"""

from tfrobust.transforms.adversarial import Adversarial
from tfrobust.transforms.base import InputTransform
from tfrobust.transforms.boxed_linear import BoxedLinearAdversarialTransform
from tfrobust.transforms.boxed_linear import boxed_linear_training_step
from tfrobust.transforms.manifold import OverpoweredLoss
from tfrobust.transforms.manifold import manifold_adversarial_training
from tfrobust.transforms.rcnn_plus import AdversarialNoiseTable
from tfrobust.transforms.rcnn_plus import RCNNPlusNoise

__all__ = [
    "Adversarial",
    "AdversarialNoiseTable",
    "BoxedLinearAdversarialTransform",
    "InputTransform",
    "OverpoweredLoss",
    "RCNNPlusNoise",
    "boxed_linear_training_step",
    "manifold_adversarial_training",
]
