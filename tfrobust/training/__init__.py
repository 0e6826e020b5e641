"""The one training loop of tfrobust: strategies, schedules, resumable `fit`.

`fit(model, train_data, epochs=...)` trains a logits model on mean
cross-entropy plus optional extra losses (e.g. the Cross-Lipschitz penalty)
and an in-step input transform (noise, adversarial examples), under any
`tf.distribute` strategy, with per-epoch checkpoints from which an interrupted
run resumes to exactly the weights of an uninterrupted one.
"""

from tfrobust.training.devices import configure_devices
from tfrobust.training.evaluation import evaluate
from tfrobust.training.evaluation import evaluate_accuracy
from tfrobust.training.loop import History
from tfrobust.training.loop import fit
from tfrobust.training.randomness import reseed_for_epoch
from tfrobust.training.randomness import set_seed
from tfrobust.training.schedules import PiecewiseByFraction
from tfrobust.training.schedules import StepDecay
from tfrobust.training.schedules import make_optimizer
from tfrobust.training.strategy import make_strategy

__all__ = [
    "configure_devices",
    "History",
    "PiecewiseByFraction",
    "StepDecay",
    "evaluate",
    "evaluate_accuracy",
    "fit",
    "make_optimizer",
    "make_strategy",
    "reseed_for_epoch",
    "set_seed",
]
