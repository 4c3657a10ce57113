"""The Autoencoding Variational Autoencoder (AVAE), Cemgil et al., NeurIPS 2020.

Available samplers: every sampler of Pythae's VAE family (Normal, GaussianMixture,
TwoStageVAE, MAF, IAF).
"""

from .avae_config import AVAEConfig
from .avae_model import AVAE

__all__ = ["AVAE", "AVAEConfig"]
