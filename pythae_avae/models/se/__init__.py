"""The Smooth Encoder (SE), Cemgil et al., ICLR 2020, in the AVAE framework (AVAE paper §3.1).

Available samplers: every sampler of Pythae's VAE family (Normal, GaussianMixture,
TwoStageVAE, MAF, IAF).
"""

from .se_config import SEConfig
from .se_model import SE
from ..coupling import gaussian_w2_squared
from .select import attack_objective, select_pgd

__all__ = ["SE", "SEConfig", "attack_objective", "gaussian_w2_squared", "select_pgd"]
