"""Transfer (black-box) attack: craft on a surrogate model, evaluate on the target.

Example:

```python
import numpy as np
import keras
from tfrobust import threats
from tfrobust.attacks import PGD
from tfrobust.attacks.transfer import TransferAttack, transfer_report

def net():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])

source, target = net(), net()
x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
y = np.zeros(4, "int32")
attack = TransferAttack(source, PGD(threats.LpBall(np.inf, 0.1), steps=10))
x_adv = attack(target, x, y)                 # the target is never differentiated
report = transfer_report(source, target, x_adv, y)
```

The target model is used only to fill `y` with its own predictions when no
labels are given (one query); the adversarial examples are crafted on the
source model alone, with any white-box attack of the library.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import WrapsAttack
from tfrobust.attacks.base import is_adversarial

__all__ = ["TransferAttack", "TransferReport", "transfer_report"]


class TransferReport(NamedTuple):
    """How well adversarial examples crafted on a source model transfer.

    Attributes:
        source_success_rate: fraction of `x_adv` meeting the goal on the
            source model.
        target_success_rate: the same on the target model (the black-box
            attack's success rate).
        transfer_rate: among the examples successful on the source, the
            fraction also successful on the target; NaN when none succeeded
            on the source.
        source_success: bool array `[B]`.
        target_success: bool array `[B]`.
    """

    source_success_rate: float
    target_success_rate: float
    transfer_rate: float
    source_success: np.ndarray
    target_success: np.ndarray


def transfer_report(source_model, target_model, x_adv, y, *, targeted=False):
    """Success rates of `x_adv` on the source and target models, and the transfer rate.

    Args:
        source_model: callable returning logits `[B, K]`.
        target_model: callable returning logits `[B, K]`.
        x_adv: float tensor or array `[B, ...]`, non-empty.
        y: int labels `[B]` (the targets when `targeted`).
        targeted: whether success means reaching `y` instead of leaving it.

    Returns:
        A `TransferReport`.

    Rows where a model's logits are not finite count as unsuccessful on it.

    Raises:
        ValueError: if `x_adv` is empty, `y` does not have shape `[B]`, or
            `targeted` is not a bool.
    """
    targeted = _validate.check_bool(targeted, name="targeted", allow_tensor=True)
    x_adv = tf.convert_to_tensor(x_adv, tf.float32)
    y = tf.convert_to_tensor(y)
    if x_adv.shape.rank is None or x_adv.shape.rank < 2 or x_adv.shape[0] == 0:
        raise ValueError(
            f"Expected `x_adv` to be a non-empty batch of rank >= 2. Received: x_adv.shape={tuple(x_adv.shape)}"
        )
    if not y.dtype.is_integer or y.shape.rank != 1 or y.shape[0] != x_adv.shape[0]:
        raise ValueError(
            f"Expected `y` to be an int tensor of shape [{x_adv.shape[0]}]. "
            f"Received: y.shape={tuple(y.shape)}, y.dtype={y.dtype.name}"
        )
    source = np.asarray(is_adversarial(source_model(x_adv), y, targeted))
    target = np.asarray(is_adversarial(target_model(x_adv), y, targeted))
    transferred = float(np.mean(target[source])) if source.any() else float("nan")
    return TransferReport(float(source.mean()), float(target.mean()), transferred, source, target)


class TransferAttack(WrapsAttack, Attack):
    """Black-box transfer attack: `attack(source_model, ...)` evaluated on the target.

    Calling `TransferAttack(source, attack)(target_model, x, y)` returns
    `attack(source, x, y)`; the target model is never differentiated. When
    `y` is None, the target model's predictions are the labels. The result
    lies in the wrapped attack's threat ∩ box.

    Args:
        source_model: the surrogate, a callable mapping x to logits `[B, K]`
            (for instance a model trained on the target's inputs and
            outputs, or an independently trained model).
        attack: any `tfrobust.attacks.Attack` (usually a white-box one).

    Call arguments:
        model: the target model, a callable returning logits.
        x, y, targeted: as for every attack.

    It is black-box with respect to the target (gradients are taken on the
    surrogate only); its randomness, step count and EoT are the wrapped
    attack's, and so are its random generators. `validate` is the wrapped
    attack's: with "cheap" and labels given, the target is never queried.

    Raises:
        ValueError: if `source_model` is not callable or `attack` is not an
            `Attack`.

    References:
        Papernot et al., "Practical Black-Box Attacks against Machine
        Learning", AsiaCCS 2017. Liu, Chen, Liu & Song, "Delving into
        Transferable Adversarial Examples and Black-box Attacks", ICLR 2017.
    """

    black_box = True

    def __init__(self, source_model, attack):
        if not callable(source_model):
            raise ValueError(
                "Expected `source_model` to be a callable mapping x to logits. "
                f"Received: source_model={source_model!r}"
            )
        if not isinstance(attack, Attack):
            raise ValueError(f"Expected `attack` to be a tfrobust Attack. Received: attack={attack!r}")
        super().__init__(attack.threat, bounds=attack.bounds, validate=attack.validate)
        self.source_model = source_model
        self.attack = attack

    def get_config(self):
        config = super().get_config()
        config.update(
            attack=self.attack.get_config(),
            source_model=getattr(self.source_model, "name", type(self.source_model).__name__),
        )
        return config

    def _run(self, model, x, y, targeted):
        del model  # The target is queried only by the base class, for y.
        return self.attack(self.source_model, x, y, targeted=targeted)

    def run_with_report(self, model, x, y=None, *, targeted=False):
        """Runs the attack against the target `model` and reports the transfer.

        Args:
            model: the target model.
            x, y, targeted: as for `__call__`.

        Returns:
            `(x_adv, report)` with `report` a `TransferReport`; when `y` is
            None the labels are the target model's predictions on `x`.

        Raises:
            ValueError: on bad inputs, as `__call__`.
        """
        model, x, y, targeted = self._validated(model, x, y, targeted)
        x_adv = self._finalize(x, self._run(model, x, y, targeted))
        return x_adv, transfer_report(self.source_model, model, x_adv, y, targeted=targeted)
