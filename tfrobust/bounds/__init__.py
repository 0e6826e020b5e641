"""Formal lower bounds on the minimal adversarial perturbation.

Example:

```python
import numpy as np
from tfrobust import bounds, models

model = models.mlp1layer((28, 28, 1), 10, hidden_units=64)
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
radii = bounds.mlp1layer_lower_bound(model, x, p=2)   # x must lie in bounds=(0, 1)
```

`tfrobust.evaluation.certificates.mlp1layer_certificate` turns these radii
into a `Certificate` that the evaluation engine reports next to attacks.
"""

from tfrobust.bounds.cross_lipschitz import mlp1layer_lower_bound

__all__ = ["mlp1layer_lower_bound"]
