from pydantic.dataclasses import dataclass

from ..base import STRICT, AVAEFamilyConfig


@dataclass(config=STRICT)
class GaussianVAEConfig(AVAEFamilyConfig):
    """Config of the baseline VAE: Pythae's VAE with observation variance ``obs_var``.

    Pythae 0.1.2's own ``VAE`` with ``reconstruction_loss="mse"`` fixes ``obs_var = 1``
    (loss ``SSE/2``); comparing it with AVAE at ``obs_var = 0.5`` would change the KL weight
    too. This baseline shares every field of :class:`AVAEFamilyConfig` with the other models.
    """
