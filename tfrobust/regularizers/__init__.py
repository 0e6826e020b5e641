"""Training regularizers: Cross-Lipschitz (generic and closed form), weight decay.

Each is an extra-loss callable `fn(model, x, y, logits)` for
`tfrobust.training.fit(..., extra_losses=[...])`, registered with Keras under
the package "tfrobust" so configs can name it. The architecture check the
closed form relies on lives with the architecture:
`tfrobust.models.is_mlp1layer` / `unpack_mlp1layer`.
"""

from tfrobust.regularizers.cross_lipschitz import CrossLipschitz
from tfrobust.regularizers.cross_lipschitz import cross_lipschitz_mlp1layer
from tfrobust.regularizers.cross_lipschitz import cross_lipschitz_penalty
from tfrobust.regularizers.weight_decay import WeightDecay

__all__ = [
    "CrossLipschitz",
    "WeightDecay",
    "cross_lipschitz_mlp1layer",
    "cross_lipschitz_penalty",
]
