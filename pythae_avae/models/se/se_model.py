import torch
from pythae.models.base.base_utils import ModelOutput

from ..base import AVAEFamilyModel
from ..coupling import consistency_loss
from ..registry import register_model
from .se_config import SEConfig
from .select import select_pgd


@register_model(SEConfig)
class SE(AVAEFamilyModel):
    """Smooth Encoder: the auxiliary point is an adversarial perturbation of the data.

    ``x~ = Select(x)`` maximises the coupling violation within an L-infinity ball around ``x``
    (:func:`~pythae_avae.models.se.select.select_pgd`, detached), then (spec §2.3)

        loss = E[ SSE(x)/(2v) + KL(q(z|x) || N(0, I))
                  + lambda_rec SSE(x~ | z')/(2v) - C_rho_se(x, x~) - H[q(z'|x~)] ]

    with ``z ~ q(z|x)``, ``z' ~ q(z'|x~)``. Since ``x~`` does not depend on ``z``, the analytic
    coupling term is exact here. ``x`` and ``x~`` go through the encoder as **one**
    concatenated batch, so that with BatchNorm both codes use the same batch statistics
    (spec §2.3). (AVAE cannot do this: its ``x~`` is decoded from the code of ``x``.)

    Output keys: ``recon_loss``, ``reg_loss`` (KL), ``aux_recon_loss`` (lambda_rec times the
    reconstruction of ``x~``), ``se_coupling_loss`` (-C), ``se_entropy_loss`` (-H), ``loss``
    (their sum), ``recon_x``, ``z``.

    The attack also runs under ``torch.no_grad()`` (Pythae's ``eval_step``), so evaluation
    losses are the training objective.

    Args:
        model_config (SEConfig): the model configuration.
        encoder (BaseEncoder): a Pythae encoder returning ``embedding`` and ``log_covariance``;
            None builds Pythae's default MLP.
        decoder (BaseDecoder): a Pythae decoder returning ``reconstruction`` in [0, 1]; None
            builds Pythae's default MLP.

    Example:
        >>> from pythae_avae import SE, SEConfig
        >>> model = SE(SEConfig(input_dim=(3, 28, 28), latent_dim=8, se_eps=0.1))
        >>> out = model({"data": torch.rand(4, 3, 28, 28)})
        >>> float(out.loss) > 0
        True
    """

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The detached auxiliary point ``x~ = Select(x)`` with this model's attack settings."""
        cfg = self.model_config
        return select_pgd(
            self.encoder, x, eps=cfg.se_eps, steps=cfg.se_steps, step_size=cfg.se_step_size,
            random_start=cfg.se_random_start, attack_loss=cfg.se_attack_loss, rho=cfg.rho_se,
        )

    def se_terms(self, vae: dict, x_adv, mu_adv, logvar_adv) -> dict:
        """Per-example SE extra terms: ``aux_recon``, ``se_coupling`` (-C), ``se_entropy`` (-H)."""
        cfg = self.model_config
        if cfg.se_recon_aux > 0:
            recon_adv = self.decode(self.sample_latent(mu_adv, logvar_adv))
            aux_recon = cfg.se_recon_aux * self.recon_loss_per_example(recon_adv, x_adv)
        else:
            aux_recon = torch.zeros_like(vae["recon"])
        extra = consistency_loss(vae["mu"], vae["logvar"], mu_adv, logvar_adv, cfg.rho_se,
                                 coupling=cfg.coupling)
        return {"aux_recon": aux_recon, "se_coupling": extra["coupling"],
                "se_entropy": extra["entropy"]}

    def forward(self, inputs, **kwargs) -> ModelOutput:
        x = self.get_data(inputs)
        x_adv = self.select(x)
        mu_all, logvar_all = self.encode(torch.cat([x, x_adv]))
        (mu, mu_adv), (logvar, logvar_adv) = mu_all.chunk(2), logvar_all.chunk(2)
        vae = self.vae_terms(x, codes=(mu, logvar))
        return self.make_output(vae, **self.se_terms(vae, x_adv, mu_adv, logvar_adv))
