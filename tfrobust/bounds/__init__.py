"""Formal lower bounds on the minimal adversarial perturbation.

Example:

```python
import numpy as np
from tfrobust import bounds, models

model = models.mlp1layer((28, 28, 1), 10, hidden_units=64)
x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
radii = bounds.mlp1layer_lower_bound(model, x, p=2)
```
"""

from tfrobust.bounds.cross_lipschitz import lower_bound_generic
from tfrobust.bounds.cross_lipschitz import mlp1layer_lower_bound

__all__ = ["lower_bound_generic", "mlp1layer_lower_bound"]
