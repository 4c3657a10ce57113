"""Models of pythae-avae; each registers itself in :data:`registry.MODEL_REGISTRY`."""

from .avae import AVAE, AVAEConfig
from .gaussian_vae import GaussianVAE, GaussianVAEConfig
from .registry import (
    MODEL_REGISTRY,
    register_model,
    register_with_pythae,
    unregister_from_pythae,
)

__all__ = [
    "AVAE",
    "AVAEConfig",
    "GaussianVAE",
    "GaussianVAEConfig",
    "MODEL_REGISTRY",
    "register_model",
    "register_with_pythae",
    "unregister_from_pythae",
]
