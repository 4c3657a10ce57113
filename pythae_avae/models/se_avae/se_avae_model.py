import torch
from pythae.models.base.base_utils import ModelOutput

from ..avae.avae_model import AVAE
from ..registry import register_model
from ..se.se_model import SE
from .se_avae_config import SE_AVAE_Config


@register_model(SE_AVAE_Config)
class SE_AVAE(SE, AVAE):
    """SE-AVAE: AVAE's decoder delusion and SE's attack point, trained together (paper §4).

    Two auxiliary points share the code ``z ~ q(z|x)`` of the data point (spec §2.4):

    * ``x~_a = stopgrad(g(z))`` (:meth:`AVAE.delusion`), coupled with strength ``rho`` and a
      flat ``u(x~_a)``;
    * ``x~_s = Select(x)`` (:meth:`SE.select`), coupled with strength ``rho_se``, with the SE
      reconstruction term of weight ``lambda_rec``;

    and the loss is the unit-weight sum of the VAE loss and both extra terms:

        loss = VAE(x) + [-C_rho(x, x~_a) - H(x~_a)]
                      + [lambda_rec SSE(x~_s | z'_s)/(2v) - C_rho_se(x, x~_s) - H(x~_s)]

    ``x~_s`` is encoded with ``x``, as in SE, and ``x~_a`` alone, as in AVAE (``x~_a`` needs
    the code of ``x`` first, so the three cannot share one batch); ``se_batch="delusion"``
    encodes ``x~_s`` with ``x~_a`` instead (see :class:`SE_AVAE_Config`). ``warmup_epoch``
    (AVAE's) ramps the delusion's terms only: the SE branch has full weight from the first step,
    as in SE.

    Output keys: AVAE's (``recon_loss``, ``reg_loss``, ``coupling_loss``, ``entropy_loss``)
    plus SE's extra terms (``aux_recon_loss``, ``se_coupling_loss``, ``se_entropy_loss``),
    ``loss``, ``recon_x``, ``z``.

    Args:
        model_config (SE_AVAE_Config): the model configuration.
        encoder (BaseEncoder): a Pythae encoder; None builds Pythae's default MLP.
        decoder (BaseDecoder): a Pythae decoder; None builds Pythae's default MLP.
    """

    def forward(self, inputs, **kwargs) -> ModelOutput:
        x = self.get_data(inputs)
        x_s = self.select(x)
        if self.model_config.se_batch == "data":
            mu_all, logvar_all = self.encode(torch.cat([x, x_s]))
            (mu, mu_s), (logvar, logvar_s) = mu_all.chunk(2), logvar_all.chunk(2)
            vae = self.vae_terms(x, codes=(mu, logvar))
            mu_a, logvar_a = self.encode_aux(self.delusions(vae))
        else:
            vae = self.vae_terms(x)
            mu_aux, logvar_aux = self.encode_aux(torch.cat([self.delusions(vae), x_s]))
            n_a = len(mu_aux) - len(x_s)  # aux_samples delusions per data point, then x~_s
            (mu_a, mu_s), (logvar_a, logvar_s) = mu_aux.split([n_a, len(x_s)]), logvar_aux.split([n_a, len(x_s)])
        return self.make_output(
            vae, **self.avae_terms(vae, mu_a, logvar_a, kwargs.get("epoch")),
            **self.se_terms(vae, x_s, mu_s, logvar_s),
        )
