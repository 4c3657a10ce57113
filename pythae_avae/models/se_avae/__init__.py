"""SE-AVAE: the Smooth Encoder and AVAE objectives combined (AVAE paper §4).

Available samplers: every sampler of Pythae's VAE family (Normal, GaussianMixture,
TwoStageVAE, MAF, IAF).
"""

from .se_avae_config import SE_AVAE_Config
from .se_avae_model import SE_AVAE

__all__ = ["SE_AVAE", "SE_AVAE_Config"]
