"""Models of pythae-avae; each registers itself in :data:`registry.MODEL_REGISTRY`."""

from .avae import AVAE, AVAEConfig
from .avae_ss import AVAE_SS, AVAE_SS_Config
from .gaussian_vae import GaussianVAE, GaussianVAEConfig
from .se import SE, SEConfig
from .se_avae import SE_AVAE, SE_AVAE_Config
from .registry import (
    MODEL_REGISTRY,
    register_model,
    register_with_pythae,
    unregister_from_pythae,
)

__all__ = [
    "AVAE",
    "AVAEConfig",
    "AVAE_SS",
    "AVAE_SS_Config",
    "GaussianVAE",
    "GaussianVAEConfig",
    "SE",
    "SEConfig",
    "SE_AVAE",
    "SE_AVAE_Config",
    "MODEL_REGISTRY",
    "register_model",
    "register_with_pythae",
    "unregister_from_pythae",
]
