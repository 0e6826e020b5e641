"""Substitute-model black-box attack (Papernot et al. 2017): learn the target from its labels, transfer.

Example:

```python
import keras
import numpy as np
from tfrobust import threats
from tfrobust.attacks import FGSM, SubstituteAttack

def net():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])

oracle = net()                                     # the black box: only its labels are read
x_seed = np.random.default_rng(0).uniform(size=(20, 8, 8, 1)).astype("float32")
attack = SubstituteAttack(FGSM(0.3), net(), x_seed, rounds=2, epochs=2, seed=0)
x_adv = attack(oracle, x_seed[:4])                 # trains the substitute on the oracle, then FGSM on it
print(attack.report.agreement)                     # substitute/oracle label agreement per round
```

The attacker holds a small set of unlabeled inputs (`x_seed`; Papernot et
al. use 150 MNIST test images), queries the target for its labels and
trains a differentiable substitute on them. Jacobian-based dataset
augmentation then adds, for every point `x` of the set, the point
`clip(x + λ_ρ sign(∂F_{O(x)}(x) / ∂x))` where `F` is the substitute, `O(x)`
the oracle's label and `λ = 0.1`, and the substitute is trained again on
the doubled set; after `rounds` (ρ) rounds the white-box attack (FGSM,
BIM) is run on the substitute and its result transferred to the target
(`TransferAttack`). With `tau`, λ's sign flips every `tau` rounds (the
paper's periodic step size).

The target is queried only for labels (argmax of its output), in batches:
`len(x_seed) · 2^(rounds − 1)` queries in all. The substitute is trained
once, on the first call (or by `fit_substitute`), and reused.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _random
from tfrobust import _validate
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import WrapsAttack
from tfrobust.attacks.transfer import TransferAttack

__all__ = ["SubstituteAttack", "SubstituteReport", "jacobian_augmentation"]


class SubstituteReport(NamedTuple):
    """How the substitute was trained.

    Attributes:
        queries: number of oracle label queries.
        set_sizes: size of the substitute's training set in each round.
        agreement: per round, the fraction of the round's training set on
            which the trained substitute predicts the oracle's label.
    """

    queries: int
    set_sizes: list
    agreement: list


# Batches of several sizes (the last one, growing sets) share one trace.
@tf.function(reduce_retracing=True)
def _jacobian_step(substitute, x, labels, lam, lo, hi):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = substitute(x, training=False)
        picked = tf.gather(logits, labels, axis=1, batch_dims=1)
    grad = tape.gradient(picked, x)
    return tf.clip_by_value(x + lam * tf.sign(grad), lo, hi)


def jacobian_augmentation(substitute, x, labels, lam=0.1, *, bounds=(0.0, 1.0), batch_size=256):
    """The new points `clip(x + lam · sign(∂F_label(x)/∂x))` of one augmentation round.

    Args:
        substitute: callable returning logits `[B, K]`.
        x: float array `[N, ...]` in `bounds`.
        labels: int array `[N]`, the oracle's labels.
        lam: the step λ (its sign gives the direction).
        bounds: `(lo, hi)`.
        batch_size: points per gradient call.

    Returns:
        A float32 NumPy array shaped like `x`.
    """
    lo, hi = _validate.check_pair(bounds, name="bounds")
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(_jacobian_step(
            substitute, tf.constant(x[i:i + batch_size], tf.float32), tf.constant(labels[i:i + batch_size], tf.int32),
            tf.constant(lam, tf.float32), tf.constant(lo, tf.float32), tf.constant(hi, tf.float32))))
    return np.concatenate(out).astype(np.float32)


def _oracle_labels(oracle, x, batch_size):
    return np.concatenate([np.argmax(np.asarray(oracle(tf.constant(x[i:i + batch_size]))), axis=-1)
                           for i in range(0, len(x), batch_size)]).astype(np.int64)


class SubstituteAttack(WrapsAttack, Attack):
    """Papernot et al.'s black-box attack: train a substitute on the target's labels, transfer.

    Args:
        attack: the white-box `Attack` run on the substitute (FGSM, BIM, ...).
        substitute: an untrained Keras model returning logits (it is
            compiled and trained in place).
        x_seed: float array `[N, ...]` in `bounds`, the attacker's initial
            unlabeled inputs (N >= 1).
        rounds: substitute training rounds ρ (6 in the paper).
        lam: augmentation step λ (0.1).
        tau: flip λ's sign every `tau` rounds (None: never).
        epochs: training epochs per round (10).
        batch_size: training and query batch size.
        learning_rate: Adam learning rate of the substitute.
        oracle: optional callable queried for the labels instead of the
            attacked model (e.g. a cheaper copy of an expensive defense);
            the substitute is then trained once, on the first call.
        seed: seed of the substitute's training (shuffling).

    Call arguments:
        model: the target (the oracle; only its labels are read).
        x, y, targeted: as for every attack.

    Raises:
        ValueError: on bad arguments.

    References:
        Papernot, McDaniel, Goodfellow, Jha, Celik & Swami, "Practical
        Black-Box Attacks against Machine Learning", AsiaCCS 2017.
    """

    black_box = True

    def __init__(self, attack, substitute, x_seed, *, rounds=6, lam=0.1, tau=None, epochs=10, batch_size=128,
                 learning_rate=1e-3, oracle=None, seed=0):
        if not isinstance(attack, Attack):
            raise _validate.error("attack", "a tfrobust Attack", attack)
        if not isinstance(substitute, keras.Model):
            raise _validate.error("substitute", "an untrained keras.Model returning logits", substitute)
        x_seed = np.asarray(x_seed, dtype=np.float32)
        lo, hi = attack.bounds
        if x_seed.ndim < 2 or x_seed.shape[0] == 0 or not np.all(np.isfinite(x_seed)) or \
                x_seed.min() < lo or x_seed.max() > hi:
            raise ValueError(f"Expected `x_seed` to be a non-empty finite float batch in [{lo}, {hi}]. "
                             f"Received: x_seed.shape={x_seed.shape}")
        super().__init__(attack.threat, bounds=attack.bounds, validate=attack.validate)
        self.attack, self.substitute, self.x_seed = attack, substitute, x_seed
        self.rounds = _validate.check_int(rounds, name="rounds", minimum=1)
        self.lam = _validate.check_float(lam, name="lam", minimum=0.0)
        self.tau = _validate.check_int(tau, name="tau", minimum=1, allow_none=True)
        self.epochs = _validate.check_int(epochs, name="epochs", minimum=1)
        self.batch_size = _validate.check_int(batch_size, name="batch_size", minimum=1)
        self.learning_rate = _validate.check_float(learning_rate, name="learning_rate", minimum=0.0,
                                                   exclusive_minimum=True)
        self.seed = _random.check_seed(seed)
        if oracle is not None and not callable(oracle):
            raise _validate.error("oracle", "None or a callable returning logits", oracle)
        self.oracle = oracle
        self.report = None
        self._trained_on = None

    def get_config(self):
        config = super().get_config()
        config.update(attack=self.attack.get_config(), rounds=self.rounds, lam=self.lam, tau=self.tau,
                      epochs=self.epochs, n_seed=int(len(self.x_seed)), seed=self.seed)
        return config

    def fit_substitute(self, oracle):
        """Trains the substitute on `oracle`'s labels with Jacobian augmentation.

        Returns:
            A `SubstituteReport` (also kept as `self.report`).
        """
        if not callable(oracle):
            raise _validate.error("oracle", "a callable returning logits", oracle)
        keras.utils.set_random_seed(self.seed)
        self.substitute.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        s = self.x_seed
        labels = _oracle_labels(oracle, s, self.batch_size)
        queries, sizes, agreement = len(s), [], []
        for rho in range(self.rounds):
            self.substitute.fit(s, labels, epochs=self.epochs, batch_size=self.batch_size, shuffle=True, verbose=0)
            pred = _oracle_labels(self.substitute, s, self.batch_size)
            sizes.append(int(len(s)))
            agreement.append(float(np.mean(pred == labels)))
            if rho + 1 == self.rounds:
                break
            lam = self.lam * (-1.0) ** (rho // self.tau) if self.tau else self.lam
            new = jacobian_augmentation(self.substitute, s, labels, lam, bounds=self.bounds,
                                        batch_size=self.batch_size)
            new_labels = _oracle_labels(oracle, new, self.batch_size)
            queries += len(new)
            s, labels = np.concatenate([s, new]), np.concatenate([labels, new_labels])
        self.report = SubstituteReport(queries, sizes, agreement)
        self._trained_on = oracle
        return self.report

    def _run(self, model, x, y, targeted):
        if self.oracle is not None:
            if self._trained_on is not self.oracle:
                self.fit_substitute(self.oracle)
        else:
            target = getattr(model, "model", model)  # the base class wraps the target per call
            if self._trained_on is not target:
                self.fit_substitute(model)
                self._trained_on = target
        return TransferAttack(self.substitute, self.attack)._run(model, x, y, targeted)
