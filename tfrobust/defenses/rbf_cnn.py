"""RBF-CNN (Nandy, Hsu & Lee 2020): a classifier behind the RBF templates'
reconstruction, with m-sample inference and its adaptive-attack surrogate.

Example:

```python
import numpy as np
from tfrobust import models, rbf, threats
from tfrobust.attacks import PGD
from tfrobust.defenses import RBFCNN

templates = rbf.load_templates("rbf/mnist.npz")
defense = RBFCNN.from_templates(templates, models.mnist_cnn((28, 28, 1), 10),
                                beta1=25.0, beta2=1.75, samples=10)
probs_logits = defense(x)                       # log of the mean of 10 softmaxes
defense.set_knobs(beta2=0.0, samples=1)         # run-time knobs, no retraining
# The paper's adaptive attack: BPDA through the beta2 = 0 reconstruction + EoT.
x_adv = PGD(threats.LpBall(np.inf, 0.3), steps=40)(defense.eot(50, bpda=True), x, y)
```

Inference (Eq. 5) averages the softmax outputs of `samples` stochastic
reconstructions; the samples are folded into the batch (one call, no Python
loop over samples) and the result is returned as log-probabilities, so
that argmax and every logit-based loss keep their meaning. In training
(`training=True`) one reconstruction is classified and its logits returned.
`randomized` is declared True since beta2 can be raised at any time.
"""

import keras
import tensorflow as tf

from tfrobust import _validate
from tfrobust.defenses.base import Defense
from tfrobust.layers.rbf import RBFLayer, ReconstructionLayer

__all__ = ["RBFCNN"]


@keras.saving.register_keras_serializable(package="tfrobust")
class RBFCNN(Defense):
    """RBF + reconstruction front end, then any classifier.

    Args:
        classifier: a Keras model mapping reconstructions to logits.
        reconstruction: a `tfrobust.layers.ReconstructionLayer` (it owns the
            `RBFLayer`).
        samples: m, the number of stochastic reconstructions averaged at
            inference (paper: 10). A non-trainable variable: change it with
            `set_knobs(samples=...)`.

    Call arguments:
        inputs: images `[B, H, W, C]` in [0, 1].
        training: one reconstruction, raw logits (for `fit`).

    Returns:
        Inference: `log(mean_m softmax(classifier(reconstruction_m(x))))`
        `[B, K]`; training: the classifier's logits.
    """

    randomized = True
    optimizes_at_inference = False

    def __init__(self, classifier, reconstruction, *, samples=10, **kwargs):
        super().__init__(classifier, **kwargs)
        if not isinstance(reconstruction, ReconstructionLayer):
            raise _validate.error("reconstruction", "a tfrobust.layers.ReconstructionLayer", reconstruction)
        self.reconstruction = reconstruction
        self._samples = _validate.check_int(samples, name="samples", minimum=1)
        self.samples = self.add_weight(name="samples", shape=(), dtype="int32", trainable=False,
                                       initializer=keras.initializers.Constant(self._samples))

    @classmethod
    def from_templates(cls, templates, classifier, *, beta1=25.0, beta2=0.0, samples=10, seed=None, **kwargs):
        """An RBF-CNN from `tfrobust.rbf.Templates` (or a template file path)."""
        if isinstance(templates, str):
            layer = RBFLayer.load(templates)
        else:
            layer = RBFLayer.from_templates(templates.means, templates.variances,
                                            parameterization=templates.parameterization)
        reconstruction = ReconstructionLayer(layer, beta1=beta1, beta2=beta2, seed=seed)
        return cls(classifier, reconstruction, samples=samples, **kwargs)

    def build(self, input_shape):
        self._image_shape = tuple(input_shape[1:])
        if not self.reconstruction.built:
            self.reconstruction.build(input_shape)
        super().build(input_shape)

    def set_knobs(self, *, beta1=None, beta2=None, samples=None):
        """Changes beta1, beta2 and m at run time (validated)."""
        self.reconstruction.set_knobs(beta1=beta1, beta2=beta2)
        if samples is not None:
            self.samples.assign(_validate.check_int(samples, name="samples", minimum=1))

    def purify(self, x, training=False):
        del training
        return self.reconstruction(x)

    def surrogate(self, x, x_purified, state=()):
        # The paper's BPDA: differentiate the reconstruction with z_j = mu_j
        # (beta2 = 0); the RBF layer itself is differentiable.
        del x_purified, state
        return self.reconstruction(x, beta2=0.0)

    def call(self, inputs, training=False, beta2=None, samples=None):
        """See the class docstring; `beta2` and `samples` override the
        layer's knobs for this call only (tensors allowed, e.g. from a
        serving signature), without changing its variables."""
        if training:
            return self.classifier(self.reconstruction(inputs, beta2=beta2), training=True)
        x = tf.convert_to_tensor(inputs)
        m = tf.convert_to_tensor(self.samples if samples is None else samples, dtype=tf.int32)
        batch = tf.shape(x)[0]
        # [m * B, ...], sample-major; the template weights once per image.
        logits = self.classifier(self.reconstruction(x, beta2=beta2, samples=m), training=False)
        # The class count stays static, so callers can read logits.shape[-1].
        k = logits.shape[-1] if logits.shape[-1] is not None else tf.shape(logits)[-1]
        probs = tf.reshape(tf.nn.softmax(logits), [m, batch, k])
        return tf.math.log(tf.reduce_mean(probs, axis=0) + 1e-12)

    def export_with_knobs(self, path, input_shape=None):
        """Writes a SavedModel with two endpoints: `serve(x)` (the current
        knobs) and `serve_knobs(x, beta2, samples)`, so that a deployed
        model's robustness / accuracy trade-off (the paper's Table VII) is
        chosen per request.

        Args:
            path: the SavedModel folder to write.
            input_shape: `(H, W, C)` (default: the shape the model was built on).
        """
        from tfrobust.models.saved_model import export_with_knobs

        shape = input_shape if input_shape is not None else getattr(self, "_image_shape", None)
        return export_with_knobs(self, path, [("beta2", tf.float32), ("samples", tf.int32)], shape)

    def get_config(self):
        config = super().get_config()
        config.update(reconstruction=keras.saving.serialize_keras_object(self.reconstruction),
                      samples=self._samples)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        config["reconstruction"] = keras.saving.deserialize_keras_object(config["reconstruction"])
        return cls(**config)
