"""pythae-avae: Autoencoding Variational Autoencoders for Pythae, and robustness evaluation.

Importing this package registers its models with Pythae's ``AutoModel`` (see
:func:`pythae_avae.models.registry.register_with_pythae`).
"""

from .models import (
    AVAE,
    AVAE_SS,
    MODEL_REGISTRY,
    SE,
    SE_AVAE,
    AVAE_SS_Config,
    AVAEConfig,
    GaussianVAE,
    GaussianVAEConfig,
    SE_AVAE_Config,
    SEConfig,
    register_with_pythae,
    unregister_from_pythae,
)

__version__ = "0.1.0"

register_with_pythae()

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
    "register_with_pythae",
    "unregister_from_pythae",
    "__version__",
]
