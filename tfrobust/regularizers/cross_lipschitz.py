"""Cross-Lipschitz regularization as a training extra loss.

Example:

```python
import numpy as np
from tfrobust import models, regularizers

model = models.mlp1layer((28, 28, 1), 10, hidden_units=64)
x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
omega = regularizers.cross_lipschitz_penalty(model, x)       # any model
omega_cf = regularizers.cross_lipschitz_mlp1layer(model, x)  # closed form
reg = regularizers.CrossLipschitz(1e-4)   # fit(..., extra_losses=[reg])
```

The penalty of Hein & Andriushchenko (2017) on the logits f of a batch of n
inputs with K classes is

    Ω(f) = 1/(n K²) Σ_i Σ_{l,m} ‖∇f_l(x_i) − ∇f_m(x_i)‖²₂
         = 2/(n K²) Σ_i (K Σ_l ‖∇f_l(x_i)‖² − ‖Σ_l ∇f_l(x_i)‖²),

so K input-gradient passes suffice (no loop over the K² pairs). It is not a
per-weight Keras regularizer (that API sees one weight tensor at a time), so
it is offered as a function of `(model, x)` and as an extra-loss callable
`fn(model, x, y, logits)` for `tfrobust.training.fit`. The closed form needs
the exact `models.mlp1layer` architecture, recognised by
`tfrobust.models.unpack_mlp1layer`.
"""

import keras
import tensorflow as tf

from tfrobust import _validate
from tfrobust.models.mlp import is_mlp1layer
from tfrobust.models.mlp import unpack_mlp1layer

__all__ = [
    "CrossLipschitz",
    "auto_form",
    "cross_lipschitz_mlp1layer",
    "cross_lipschitz_penalty",
]

_FORMS = ("auto", "generic", "mlp1layer")
# Cost model of form="auto" for a one-hidden-layer net (d inputs, H hidden,
# K classes, batch n): the closed form costs ~ d H (H + n) (UᵀU and the
# forward pass), the generic form ~ K n d H (K input-gradient passes).
# `benchmarks/cross_lipschitz.py` on the 2-core CPU (d = 784, H = 1024,
# K = 10): generic 46 / 44 / 106 ms and closed 75 / 54 / 77 ms per step at
# n = 32 / 64 / 128, i.e. a closed-form unit of work costs ~0.7 generic
# ones: closed form when 0.7 (H + n) < K n (n > ~77 for that net).
_CLOSED_FORM_COST = 0.7


def _check_x(x):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(
            f"Expected `x` to have a floating dtype. Received: x.dtype={x.dtype.name}"
        )
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(
            f"Expected `x` to be a batch of rank >= 2. Received: x.shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected a non-empty batch. Received: x.shape={tuple(x.shape)}")
    return x


def _penalty_from_grads(grads, num_classes):
    """Ω from per-example input gradients `grads` of shape [n, K, d]."""
    k = tf.cast(num_classes, grads.dtype)
    n = tf.cast(tf.shape(grads)[0], grads.dtype)
    sum_sq = tf.reduce_sum(tf.square(grads), axis=[1, 2])
    sq_sum = tf.reduce_sum(tf.square(tf.reduce_sum(grads, axis=1)), axis=-1)
    return 2.0 * tf.reduce_sum(k * sum_sq - sq_sum) / (n * k * k)


@tf.autograph.experimental.do_not_convert
def cross_lipschitz_penalty(model, x, training=True, per_example=False):
    """Cross-Lipschitz penalty Ω of any differentiable model (generic form).

    The gradients come from one forward pass and K backward passes, the k-th
    being the gradient of the batch sum of logit column k with respect to x,
    exactly as the original `tf.gradients(f[:, k], x)`. For models whose
    examples do not interact this is the per-example gradient. BatchNorm in
    training mode couples the examples through the batch statistics, so the
    batch-sum gradient of example i then also carries terms from the other
    examples' logits (the original's behaviour for its ResNet). Pass
    `per_example=True` for the clean definition: the diagonal blocks
    ∂f(x_i)/∂x_i of the full Jacobian, which with `training=True` costs a
    Jacobian of size [n, K, n, d] (use small batches), and with
    `training=False` uses the cheap `batch_jacobian` (inference-mode layers
    act on each example alone).

    One forward pass serves all K classes, so a dropout mask drawn in
    training mode is shared by the K gradients. The computation is recorded
    by any enclosing `GradientTape` (nested tapes), so Ω can be minimized
    with respect to the weights.

    Args:
        model: callable `model(x, training=...)` returning logits [n, K].
        x: float tensor [n, ...], the batch.
        training: forwarded to the model (dropout, BatchNorm mode).
        per_example: use exact per-example Jacobians (see above).

    Returns:
        Scalar tensor Ω (mean over the batch of the pairwise sum / K²).

    Raises:
        ValueError: if `x` is not a non-empty float batch, or the model does
            not return logits of shape [n, K] with static K.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """
    x = _check_x(x)
    with tf.GradientTape(persistent=not per_example) as tape:
        tape.watch(x)
        logits = model(x, training=training)
    if logits.shape.rank != 2 or logits.shape[-1] is None:
        raise ValueError(
            "Expected the model to return logits of shape [n, K] with a static K. "
            f"Received: logits.shape={tuple(logits.shape)}"
        )
    num_classes = int(logits.shape[-1])
    n = tf.shape(x)[0]
    zero = tf.UnconnectedGradients.ZERO
    if per_example and training:
        jac = tape.jacobian(logits, x, unconnected_gradients=zero)
        jac = tf.reshape(jac, [n, num_classes, n, -1])
        # Diagonal blocks J[i, :, i, :] without materializing an index grid.
        grads = tf.gather(tf.transpose(jac, [0, 2, 1, 3]), tf.range(n), axis=1, batch_dims=1)
    elif per_example:
        grads = tape.batch_jacobian(logits, x, unconnected_gradients=zero)
        grads = tf.reshape(grads, [n, num_classes, -1])
    else:
        grads = []
        for k in range(num_classes):
            seed = tf.one_hot(tf.fill([n], k), num_classes, dtype=logits.dtype)
            g = tape.gradient(logits, x, output_gradients=seed, unconnected_gradients=zero)
            grads.append(tf.reshape(g, [n, -1]))
        grads = tf.stack(grads, axis=1)
        del tape
    return _penalty_from_grads(tf.cast(grads, logits.dtype), num_classes)


@tf.autograph.experimental.do_not_convert
def cross_lipschitz_mlp1layer(model, x, training=True):
    """Closed-form Cross-Lipschitz penalty Ω of a one-hidden-layer network.

    For f(x) = Wᵀ σ(Uᵀ x) with Keras kernels U [d, H] and W [H, K], hidden
    pre-activations h_i = x_i U and ∇f_r(x_i) = U diag(σ'(h_i)) W[:, r], so

        Ω = 2 Σ [(K·WWᵀ − s sᵀ) ⊙ (Σ_i σ'(h_i) σ'(h_i)ᵀ) ⊙ UᵀU] / (K² n),

    summed over the H×H entries, with s = W·1 and σ'(h) = sigmoid(α h) for
    `ScaledSoftplus(α)`. It equals `cross_lipschitz_penalty` without any
    backward pass through the model.

    Dropout: the closed form is evaluated on the inference-mode network
    (dropout is the identity) whatever `training` is. The masks a Keras
    Dropout layer draws inside the model's forward pass cannot be recovered,
    and a fresh independent mask would only add noise to a penalty on a
    network nobody evaluates; the deterministic network is the one whose
    robustness is certified (`tfrobust.bounds`). The original never combines
    this penalty with dropout (one regularizer per run).

    Args:
        model: a `tfrobust.models.mlp1layer` network (see `unpack_mlp1layer`).
        x: float tensor [n, ...] whose flattened size is the model's d.
        training: accepted for a signature shared with the generic form;
            it has no effect (see above).

    Returns:
        Scalar tensor Ω.

    Raises:
        ValueError: if the model is not a one-hidden-layer network or `x` is
            not a non-empty float batch of the model's input size.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """
    del training
    u, w, alpha = unpack_mlp1layer(model)
    x = _check_x(x)
    u = tf.convert_to_tensor(u)
    w = tf.convert_to_tensor(w)
    d = int(u.shape[0])
    if x.shape[1:].num_elements() not in (None, d):
        raise ValueError(
            f"Expected `x` with {d} values per example (the model's input size). "
            f"Received: x.shape={tuple(x.shape)}"
        )
    x_flat = tf.reshape(tf.cast(x, u.dtype), [-1, d])
    n = tf.cast(tf.shape(x_flat)[0], u.dtype)
    k = tf.cast(tf.shape(w)[1], u.dtype)
    sig = tf.sigmoid(alpha * tf.matmul(x_flat, u))
    sig_outer = tf.matmul(sig, sig, transpose_a=True)
    u_outer = tf.matmul(u, u, transpose_a=True)
    w_outer = tf.matmul(w, w, transpose_b=True)
    s = tf.reduce_sum(w, axis=1, keepdims=True)
    coupling = k * w_outer - tf.matmul(s, s, transpose_b=True)
    return 2.0 * tf.reduce_sum(coupling * sig_outer * u_outer) / (k * k * n)


def auto_form(model, x):
    """The faster form of Ω for `model` on a batch like `x`: "mlp1layer" or "generic".

    The closed form exists for `models.mlp1layer` networks only; for them
    it is chosen when the cost model above favours it at this batch size
    (and when the batch size is not static).
    """
    if not is_mlp1layer(model):
        return "generic"
    u, w, _ = unpack_mlp1layer(model)
    n = tf.TensorShape(x.shape if hasattr(x, "shape") else tf.convert_to_tensor(x).shape)[0]
    if n is None:
        return "mlp1layer"
    hidden, classes = int(u.shape[1]), int(w.shape[1])
    return "mlp1layer" if _CLOSED_FORM_COST * (hidden + n) < classes * n else "generic"


@keras.saving.register_keras_serializable(package="tfrobust")
class CrossLipschitz:
    """Cross-Lipschitz regularizer as a training extra loss: `λ·Ω(f)`.

    Called as `fn(model, x, y, logits)` (the `tfrobust.training.fit`
    extra-loss protocol); `y` and `logits` are unused because Ω needs the
    gradients with respect to the input, which takes its own pass.

    Args:
        lmbd: non-negative float λ (1e-4 in the paper's runs).
        form: `"generic"` (autodiff, any model), `"mlp1layer"` (closed form,
            one-hidden-layer networks only) or `"auto"` (the faster of the
            two for the model and batch size, see `auto_form`).
        per_example: forwarded to `cross_lipschitz_penalty` for the
            generic form.

    Raises:
        ValueError: on a negative or non-finite `lmbd` or an unknown `form`;
            at call time, `form="mlp1layer"` on another architecture.

    References:
        Hein & Andriushchenko, "Formal Guarantees on the Robustness of a
        Classifier against Adversarial Manipulation", NIPS 2017.
    """

    name = "cross_lipschitz"
    __name__ = "cross_lipschitz"

    def __init__(self, lmbd, form="auto", per_example=False):
        self.lmbd = _validate.check_float(lmbd, name="lmbd", minimum=0.0)
        self.form = _validate.check_choice(form, name="form", choices=_FORMS)
        self.per_example = _validate.check_bool(per_example, name="per_example")

    def penalty(self, model, x, training=True):
        """Ω (without λ) for `model` on the batch `x`."""
        form = self.form
        if form == "auto":
            form = auto_form(model, x)
        if form == "mlp1layer":
            return cross_lipschitz_mlp1layer(model, x, training=training)
        return cross_lipschitz_penalty(model, x, training=training, per_example=self.per_example)

    @tf.autograph.experimental.do_not_convert
    def __call__(self, model, x, y=None, logits=None):
        omega = self.penalty(model, x, training=True)
        return tf.cast(self.lmbd, omega.dtype) * omega

    def get_config(self):
        return {"lmbd": self.lmbd, "form": self.form, "per_example": self.per_example}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"CrossLipschitz(lmbd={self.lmbd!r}, form={self.form!r})"
