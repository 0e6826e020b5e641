"""Template learning for RBF-CNN: the non-parametric hard EM (numba, v1),
the gradient-trained alternative (TensorFlow, v2), and template files.

Example:

```python
from tfrobust import data, rbf
from tfrobust.layers import RBFLayer

x, _ = data.load("mnist", "train")
templates = rbf.train_templates(x[:17435], verbose=1)
rbf.save_templates("rbf/mnist_templates.npz", templates)   # + .json, .png
layer = RBFLayer.load("rbf/mnist_templates.npz")
```

NumPy arrays in and out; `tfrobust.layers.RBFLayer` consumes them.
"""

from tfrobust.rbf.em import (EMConfig, Templates, accumulate_numpy, e_step, e_step_numpy, extract_patches,
                             train_templates)
from tfrobust.rbf.gradient import train_templates_gradient
from tfrobust.rbf.io import load_original, load_templates, plot_templates, save_templates

__all__ = ["EMConfig", "Templates", "accumulate_numpy", "e_step", "e_step_numpy", "extract_patches", "load_original",
           "load_templates", "plot_templates", "save_templates", "train_templates",
           "train_templates_gradient"]
