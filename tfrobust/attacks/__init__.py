"""Adversarial attacks: `attack(model, x, y=None, *, targeted=False) -> x_adv`.

Every attack subclasses `Attack` (or `MinimizationAttack` for attacks that
search the smallest successful perturbation), whose `__call__` validates the
inputs and always re-projects the result into threat ∩ box.
"""

from tfrobust.attacks.apgd import APGD
from tfrobust.attacks.apgd import APGDT
from tfrobust.attacks.base import Attack
from tfrobust.attacks.base import MinimizationAttack
from tfrobust.attacks.base import MinimizationResult
from tfrobust.attacks.base import is_adversarial
from tfrobust.attacks.base import nonfinite_rows
from tfrobust.attacks.base import resolve_loss
from tfrobust.attacks.boxed_linear import BoxedLinearL2
from tfrobust.attacks.boxed_linear import boxed_linear_step
from tfrobust.attacks.carlini_wagner import CarliniWagnerL2
from tfrobust.attacks.daa import DAA
from tfrobust.attacks.ddn import DDN
from tfrobust.attacks.deepfool import DeepFool
from tfrobust.attacks.ead import EAD
from tfrobust.attacks.fab import FAB
from tfrobust.attacks.fab import FABT
from tfrobust.attacks.latent import LatentAttack
from tfrobust.attacks.nattack import NAttack
from tfrobust.attacks.optimizers import Momentum
from tfrobust.attacks.optimizers import OptimStep
from tfrobust.attacks.optimizers import SteepestAscent
from tfrobust.attacks.overpowered import OverpoweredAttack
from tfrobust.attacks.overpowered import OverpoweredResult
from tfrobust.attacks.pgd import BIM
from tfrobust.attacks.pgd import FGSM
from tfrobust.attacks.pgd import MIFGSM
from tfrobust.attacks.pgd import PGD
from tfrobust.attacks.restarts import Restarts
from tfrobust.attacks.spsa import SPSA
from tfrobust.attacks.square import Square
from tfrobust.attacks.substitute import SubstituteAttack
from tfrobust.attacks.substitute import SubstituteReport
from tfrobust.attacks.transfer import TransferAttack
from tfrobust.attacks.transfer import transfer_report
from tfrobust.attacks.view import ViewAttack

__all__ = [
    "APGD", "APGDT", "FAB", "FABT", "Square",
    "Attack", "MinimizationAttack", "MinimizationResult", "is_adversarial", "nonfinite_rows",
    "resolve_loss", "BoxedLinearL2", "boxed_linear_step", "CarliniWagnerL2", "DAA", "DDN", "DeepFool",
    "EAD", "NAttack", "Momentum", "OptimStep", "SteepestAscent", "BIM", "FGSM", "MIFGSM", "PGD",
    "Restarts", "SPSA", "TransferAttack", "transfer_report", "ViewAttack",
    "OverpoweredAttack", "OverpoweredResult", "LatentAttack", "SubstituteAttack", "SubstituteReport",
]
