"""The one training loop of tfrobust: strategies, schedules, resumable `fit`.

`fit(model, train_data, epochs=...)` trains a logits model under any
`tf.distribute` strategy, with per-epoch checkpoints from which an
interrupted run resumes to exactly the weights of an uninterrupted one.
Its extension points:

- `input_transform(model, batch)`: called in the compiled step with the
  whole element (`(x, y, *aux)` or a dict such as `{"x", "y", "index"}`;
  `with_index=True` adds row numbers to array data); returns `(x, y)`,
  `(x, y, sample_weight)` or a dict. The model is built on its output.
  Ready-made transforms (adversarial training, the boxed-linear step) live
  in `tfrobust.transforms`, so training itself imports no attack.
- `loss_fn(y, logits)`: the data loss, per-example `[B]` or a scalar;
  default cross-entropy on integer labels or soft targets `[B, K]`
  ("soft_cross_entropy" to require the latter).
- `extra_losses`: `fn(model, x, y, logits)` penalties (Cross-Lipschitz).
- `state={name: tf.Variable}`: experiment variables (a per-example noise
  table, bookkeeping) saved in every checkpoint and restored on resume;
  callbacks' `on_epoch_end` runs before the epoch's checkpoint.
- Declared randomness: every epoch, `fit` reseeds the generators that
  `tfrobust._random.generators_of` finds on the model (Keras seed
  generators) and that the transform and losses declare with
  `random_generators()` (an attack's, via `transforms.Adversarial`).
- `grad_clip_norm`: global-norm clipping of the whole-batch gradient;
  `bounds=(0., 1.)`: the declared input range, checked on the data.
"""

from tfrobust.training.devices import configure_devices
from tfrobust.training.evaluation import evaluate_clean
from tfrobust.training.evaluation import evaluate_accuracy
from tfrobust.training.loop import History
from tfrobust.training.loop import fit
from tfrobust.training.objectives import cross_entropy
from tfrobust.training.objectives import soft_cross_entropy
from tfrobust.training.randomness import reseed_for_epoch
from tfrobust.training.randomness import set_seed
from tfrobust.training.schedules import PiecewiseByFraction
from tfrobust.training.schedules import StepDecay
from tfrobust.training.schedules import make_optimizer
from tfrobust.training.strategy import make_strategy

__all__ = [
    "configure_devices",
    "cross_entropy",
    "History",
    "PiecewiseByFraction",
    "StepDecay",
    "evaluate_clean",
    "evaluate_accuracy",
    "fit",
    "make_optimizer",
    "make_strategy",
    "reseed_for_epoch",
    "set_seed",
    "soft_cross_entropy",
]
