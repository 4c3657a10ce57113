"""The VAE baseline with a configurable observation variance.

Available samplers: every sampler of Pythae's VAE family.
"""

from .gaussian_vae_config import GaussianVAEConfig
from .gaussian_vae_model import GaussianVAE

__all__ = ["GaussianVAE", "GaussianVAEConfig"]
