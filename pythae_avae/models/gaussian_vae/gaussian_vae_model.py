from pythae.models.base.base_utils import ModelOutput

from ..base import AVAEFamilyModel
from ..registry import register_model
from .gaussian_vae_config import GaussianVAEConfig


@register_model(GaussianVAEConfig)
class GaussianVAE(AVAEFamilyModel):
    """The VAE baseline: ``loss = E[SSE/(2 obs_var) + KL(q(z|x) || N(0, I))]``.

    Identical to every other model of this package without the auxiliary terms, so comparisons
    change one thing only. Pythae's ``VAE`` is the same model at ``obs_var = 1``.
    """

    def forward(self, inputs, **kwargs) -> ModelOutput:
        return self.make_output(self.vae_terms(self.get_data(inputs)))
