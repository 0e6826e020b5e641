"""Training regularizers: Cross-Lipschitz (generic and closed form), weight decay."""

from tfrobust.regularizers.cross_lipschitz import CrossLipschitz
from tfrobust.regularizers.cross_lipschitz import WeightDecay
from tfrobust.regularizers.cross_lipschitz import cross_lipschitz_mlp1layer
from tfrobust.regularizers.cross_lipschitz import cross_lipschitz_penalty
from tfrobust.regularizers.cross_lipschitz import is_mlp1layer
from tfrobust.regularizers.cross_lipschitz import unpack_mlp1layer

__all__ = [
    "CrossLipschitz",
    "WeightDecay",
    "cross_lipschitz_mlp1layer",
    "cross_lipschitz_penalty",
    "is_mlp1layer",
    "unpack_mlp1layer",
]
