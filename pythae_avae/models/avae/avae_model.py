from typing import Optional

import torch
from pythae.models.base.base_utils import ModelOutput

from ..base import AVAEFamilyModel
from ..batch_norm import aux_batch_norm
from ..coupling import consistency_loss
from ..registry import register_model
from .avae_config import AVAEConfig


@register_model(AVAEConfig)
class AVAE(AVAEFamilyModel):
    """Autoencoding Variational Autoencoder.

    Besides the ELBO, the encoder also encodes a "delusion" ``x~ = g(z)`` made by the
    stop-gradient decoder from the same sample ``z ~ q(z|x)`` as the reconstruction (no extra
    decoder pass), and its code ``q(z'|x~)`` is pulled toward ``rho mu(x)`` (paper eq. 10):

        loss = E[ SSE/(2v) + KL(q(z|x) || N(0, I)) - C_rho(x, x~) - H[q(z'|x~)] ]

    The decoder gets gradient from the reconstruction term only. ``warmup_epoch`` (default 0)
    weights ``-C - H`` by a linear ramp over the first training epochs.

    Args:
        model_config (AVAEConfig): the model configuration.
        encoder (BaseEncoder): a Pythae encoder returning ``embedding`` and ``log_covariance``;
            None builds Pythae's default MLP.
        decoder (BaseDecoder): a Pythae decoder returning ``reconstruction`` in [0, 1]; None
            builds Pythae's default MLP.

    Example:
        >>> from pythae_avae import AVAE, AVAEConfig
        >>> model = AVAE(AVAEConfig(input_dim=(3, 28, 28), latent_dim=8))
        >>> out = model({"data": torch.rand(4, 3, 28, 28)})
        >>> sorted(out.keys())  # doctest: +NORMALIZE_WHITESPACE
        ['coupling_loss', 'entropy_loss', 'loss', 'recon_loss', 'recon_x', 'reg_loss', 'z']
    """

    def delusion(self, recon_x: torch.Tensor) -> torch.Tensor:
        """The auxiliary image ``x~``: the decoder output, cut from the autograd graph."""
        cfg = self.model_config
        x_aux = recon_x.detach()
        if cfg.aux_noise:
            std = cfg.obs_var**0.5 if cfg.aux_noise_std is None else cfg.aux_noise_std
            x_aux = x_aux + std * torch.randn_like(x_aux)
        return x_aux

    def delusions(self, vae: dict) -> torch.Tensor:
        """``aux_samples`` delusions per data point of ``vae``, stacked sample-major ``(K B, ...)``:
        the first from the reconstruction's sample, the others from fresh samples decoded without
        gradient (the delusion is stop-gradient anyway)."""
        x_aux = [self.delusion(vae["recon_x"])]
        with torch.no_grad():
            for _ in range(self.model_config.aux_samples - 1):
                x_aux.append(self.delusion(self.decode(self.sample_latent(vae["mu"], vae["logvar"]))))
        return torch.cat(x_aux) if len(x_aux) > 1 else x_aux[0]

    def encode_aux(self, x_aux: torch.Tensor):
        """``(mu, logvar)`` of auxiliary images, through BatchNorm as ``aux_batch_norm`` says."""
        with aux_batch_norm(self.encoder, self.model_config.aux_batch_norm):
            return self.encode(x_aux)

    def warmup_weight(self, epoch: Optional[int]) -> float:
        """Weight of the delusion's terms in training epoch ``epoch`` (see ``warmup_epoch``)."""
        warmup = self.model_config.warmup_epoch
        return 1.0 if epoch is None or warmup == 0 else min(max(epoch - 1, 0) / warmup, 1.0)

    def avae_terms(self, vae: dict, mu_aux: torch.Tensor, logvar_aux: torch.Tensor,
                   epoch: Optional[int] = None) -> dict:
        """Per-example AVAE extra terms ``coupling`` (-C_rho) and ``entropy`` (-H) for the codes
        ``(mu_aux, logvar_aux)`` of :meth:`delusions` (averaged over a data point's K), weighted
        by ``aux_weight`` and for the warm-up in training epoch ``epoch``."""
        cfg = self.model_config
        k, batch = cfg.aux_samples, len(vae["mu"])
        extra = consistency_loss(
            vae["mu"].repeat(k, 1), vae["logvar"].repeat(k, 1), mu_aux, logvar_aux, cfg.rho,
            z=vae["z"], estimator=cfg.coupling_estimator, coupling=cfg.coupling,
        )
        weight = cfg.aux_weight * self.warmup_weight(epoch)
        return {term: weight * extra[term].view(k, batch).mean(0) for term in ("coupling", "entropy")}

    def forward(self, inputs, **kwargs) -> ModelOutput:
        x = self.get_data(inputs)
        vae = self.vae_terms(x)
        mu_aux, logvar_aux = self.encode_aux(self.delusions(vae))
        return self.make_output(vae, **self.avae_terms(vae, mu_aux, logvar_aux, kwargs.get("epoch")))
