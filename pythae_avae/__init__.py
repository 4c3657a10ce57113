"""pythae-avae: Autoencoding Variational Autoencoders for Pythae, and robustness evaluation.

Importing this package registers its models with Pythae's ``AutoModel`` (see
:func:`pythae_avae.models.registry.register_with_pythae`).
"""

from .models import (
    AVAE,
    MODEL_REGISTRY,
    AVAEConfig,
    GaussianVAE,
    GaussianVAEConfig,
    register_with_pythae,
    unregister_from_pythae,
)

__version__ = "0.1.0"

register_with_pythae()

__all__ = [
    "AVAE",
    "AVAEConfig",
    "GaussianVAE",
    "GaussianVAEConfig",
    "MODEL_REGISTRY",
    "register_with_pythae",
    "unregister_from_pythae",
    "__version__",
]
