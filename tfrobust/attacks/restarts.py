"""`Restarts`: the best of n runs of any attack, per example.

Example:

```python
import numpy as np
from tfrobust import threats
from tfrobust.attacks import PGD, Restarts

attack = Restarts(PGD(threats.LpBall(np.inf, 0.1), steps=10, seed=0), n=5)
```
"""

import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import WrapsAttack
from tfrobust.attacks.base import is_adversarial
from tfrobust.attacks.base import resolve_loss
from tfrobust.attacks.pgd import _keep_best
from tfrobust.attacks.pgd import finite_objective

__all__ = ["Restarts"]


class Restarts(WrapsAttack, Attack):
    """Runs any attack `n` times and keeps the best result per example.

    The best is an adversarial result if any run succeeded (the first such
    run), otherwise the run with the highest loss (the wrapped attack's loss
    when it has one, cross-entropy otherwise; negated when targeted).

    Args:
        attack: an `Attack`.
        n: number of runs (>= 1).

    Its capabilities (`black_box`, `uses_eot`, `randomized`, `steps`, the
    random generators and `validate`) are the wrapped attack's.

    Raises:
        ValueError: if `attack` is not an `Attack` or `n < 1`.
    """

    def __init__(self, attack, n):
        if not isinstance(attack, Attack):
            raise ValueError(f"Expected `attack` to be a tfrobust Attack. Received: attack={attack!r}")
        super().__init__(attack.threat, bounds=attack.bounds, validate=attack.validate)
        self.attack = attack
        self.n = _validate.check_int(n, name="n", minimum=1)
        self._loss_fn = resolve_loss(getattr(attack, "loss", None) or "ce")

    black_box = property(lambda self: self.attack.black_box)

    def get_config(self):
        config = super().get_config()
        config.update(attack=self.attack.get_config(), n=self.n)
        return config

    def _run(self, model, x, y, targeted):
        sign = -1.0 if targeted else 1.0
        best = None
        for _ in range(self.n):
            x_adv = self.attack._finalize(x, self.attack._run(model, x, y, targeted))
            logits = model(x_adv)
            obj = finite_objective(sign * tf.cast(self._loss_fn(logits, y), tf.float32), logits)
            best = _keep_best(best, (x_adv, obj, is_adversarial(logits, y, targeted)), x)
        return best[0]
