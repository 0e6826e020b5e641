"""White-box attack on a view of the evaluated model: `ViewAttack(attack, view)`.

A defense whose forward pass is random or not differentiable (a vote over
noisy copies, a projection onto a generator's range, a reconstruction from
templates) is judged on its own output, but attacked through a
differentiable *view* of itself: its BPDA surrogate, an EoT average, one
noisy pass, the static model's raw logits. `ViewAttack` pairs the two, so
that `tfrobust.evaluation.evaluate(defense, data, {"name": ViewAttack(...)})`
crafts on the view and scores every adversarial point on the defense.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks import PGD, ViewAttack
from tfrobust.models.wrappers import EoT

net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
noisy = lambda x: net(x + 0.1 * keras.random.normal(keras.ops.shape(x)))
attack = ViewAttack(PGD(threats.LpBall(np.inf, 0.1), steps=10), EoT(noisy, 4))
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
x_adv = attack(noisy, x, np.zeros(4, "int32"))    # gradients from the EoT view
assert attack.uses_eot and not attack.black_box
```

A source model trained separately from the defense is a transfer attack
(`tfrobust.attacks.TransferAttack`), not a view.
"""

from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import WrapsAttack

__all__ = ["ViewAttack"]


class ViewAttack(WrapsAttack, Attack):
    """Runs `attack` on a fixed view of the defense (its gradient model); the defense judges.

    `ViewAttack(attack, view)(defense, x, y)` returns `attack(view, x, y)`:
    the view is the model whose gradients (or, for a black-box attack,
    queries) the attacker uses, while the engine scores `x_adv` on the
    defense it evaluates. It is white-box when the attack is (the view is
    the defense's own parts).

    Args:
        attack: a tfrobust `Attack`.
        view: callable `x -> logits [B, K]`.
        averages: the view itself averages over the defense's randomness
            without declaring `uses_eot` (e.g. a smoothed classifier with
            n > 1), declared to the engine as EoT.

    Declared flags: `uses_eot` when the attack or the view averages over the
    randomness (an `EoT` view declares it); `black_box`, `randomized` and
    `steps` are the attack's; the random generators are the attack's plus
    the view's seed generators, so `fit` reseeds them.

    Raises:
        ValueError: if `attack` is not an `Attack` or `view` is not callable.
    """

    def __init__(self, attack, view, *, averages=False):
        if not isinstance(attack, Attack):
            raise _validate.error("attack", "a tfrobust Attack", attack)
        if not callable(view):
            raise _validate.error("view", "a callable x -> logits", view)
        super().__init__(attack.threat, bounds=attack.bounds, validate=attack.validate)
        self.attack = attack
        self.view = view
        self.averages = _validate.check_bool(averages, name="averages")

    black_box = property(lambda self: bool(self.attack.black_box))

    @property
    def uses_eot(self):
        from tfrobust.models.wrappers import declared_flag

        return bool(self.attack.uses_eot or declared_flag(self.view, "uses_eot") or self.averages)

    def random_generators(self):
        return list(self.attack.random_generators()) + [self.view]

    def get_config(self):
        config = super().get_config()
        config.update(attack=self.attack.get_config(),
                      view=getattr(self.view, "name", type(self.view).__name__))
        return config

    def _run(self, model, x, y, targeted):
        del model  # judged by the engine; gradients come from the view
        return self.attack(self.view, x, y, targeted=targeted)
