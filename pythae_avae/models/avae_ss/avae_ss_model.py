import dataclasses
import os
from copy import deepcopy
from typing import Union

import torch
from pythae.data.datasets import DatasetOutput
from pythae.models import VAE
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder

from ..avae.avae_model import AVAE
from ..base import AVAEFamilyConfig
from ..batch_norm import aux_batch_norm
from ..registry import load_any_model, register_model
from ..serialization import check_no_pickles
from .avae_ss_config import AVAE_SS_Config

#: key of a batch that asks for prior samples instead of carrying data (see ``prior_batch``)
FROM_PRIOR = "from_prior"

_NOT_INHERITED = ("name", "uses_default_encoder", "uses_default_decoder")


@register_model(AVAE_SS_Config)
class AVAE_SS(AVAE):
    """AVAE-SS: self-supervised AVAE post-training of a trained VAE, without data (paper §4).

    The decoder of a pretrained VAE-family model is frozen (``requires_grad=False``, always
    in eval mode, so BatchNorm statistics cannot drift either); only the encoder learns. Each
    step draws ``z0 ~ N(0, I)``, generates ``x = g(z0)`` with the frozen decoder and takes
    the AVAE step (:class:`~pythae_avae.models.avae.AVAE`) on ``x`` (spec §2.5):

        loss = E_{z0}[ SSE(x | z)/(2v) + KL(q(z|x) || N(0, I)) - C_rho(x, x~) - H[q(z'|x~)] ]

    Since the decoder never changes, samples from the prior (and hence FID) are those of the
    pretrained model; the paper's Table 1 shows the same FID for VAE and AVAE-SS.

    Build it with :meth:`from_pretrained` and train it with the data-free trainer::

        model = AVAE_SS.from_pretrained(vae, rho=0.975)
        TrainingPipeline(model, DataFreeTrainerConfig(num_steps=10_000))()

    What ``forward(inputs)`` computes:

    * ``inputs`` is None, has no ``"data"``, or is a prior request (:meth:`prior_batch`; the
      data-free trainer's batches): the AVAE step on freshly generated inputs. The batch size
      is that of the request, else ``model_config.batch_size``;
    * ``inputs["data"]`` holds images: the same loss evaluated on them (e.g. an evaluation
      set, Pythae's samplers, ``embed``/``reconstruct``). Training on such batches would be a
      frozen-decoder AVAE on data, not AVAE-SS: use the data-free trainer.

    Args:
        model_config (AVAE_SS_Config): the model configuration.
        encoder (BaseEncoder): the encoder to post-train.
        decoder (BaseDecoder): the (pretrained) decoder; it is frozen here.
    """

    #: the data-free trainer accepts this model
    data_free = True

    # ---- the frozen decoder -----------------------------------------------------------------
    def set_decoder(self, decoder: BaseDecoder) -> None:
        super().set_decoder(decoder)
        self.decoder.requires_grad_(False)
        self.decoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.decoder.eval()
        return self

    # ---- construction from a trained model --------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained: Union[VAE, str, os.PathLike], allow_pickle: bool = False,
                        **config_fields) -> "AVAE_SS":
        """AVAE-SS starting from a trained VAE-family model (copied, not modified).

        Args:
            pretrained: a Pythae ``VAE`` (or subclass, e.g. this package's models) or a folder
                written by its ``save`` (loaded with ``pythae.models.AutoModel``).
            allow_pickle: load a folder holding ``*.pkl`` files (nets saved by Pythae with
                cloudpickle); this runs code from the folder, so only for trusted sources.
            **config_fields: :class:`AVAE_SS_Config` fields, e.g. ``rho=0.975``. Fields the
                pretrained config shares with it (``input_dim``, ``latent_dim``,
                ``reconstruction_loss``, ``obs_var``, ...) are inherited unless given here. A
                Pythae VAE with ``reconstruction_loss="mse"`` was trained with ``SSE/2``, so
                ``obs_var`` defaults to 1 for it, and with it the delusion's noise std
                (``sqrt(obs_var)``, AVAE's default): pixel noise of std 1 on [0, 1] images.
                Pass ``aux_noise_std`` to set it apart (the colorMNIST commands use 0.3,
                measured more robust than larger stds for AVAE; RESULTS.md, Fig. 5 section).

        Returns:
            An :class:`AVAE_SS` with deep copies of the encoder and decoder.
        """
        if isinstance(pretrained, (str, os.PathLike)):
            path = os.fspath(pretrained)
            check_no_pickles(path, allow_pickle)  # Pythae's own loader would unpickle silently
            pretrained = load_any_model(path, allow_pickle)
        if not isinstance(pretrained, VAE):
            raise TypeError(
                "AVAE_SS.from_pretrained needs a trained Pythae VAE-family model (a "
                f"pythae.models.VAE with a Gaussian encoder) or its folder, got {type(pretrained)}"
            )
        source = pretrained.model_config
        own = {f.name for f in dataclasses.fields(AVAE_SS_Config)} - set(_NOT_INHERITED)
        fields = {f.name: getattr(source, f.name) for f in dataclasses.fields(source) if f.name in own}
        if not isinstance(source, AVAEFamilyConfig) and fields.get("reconstruction_loss") == "mse":
            fields["obs_var"] = 1.0  # Pythae 0.1.2's "mse" is SSE/2 per example
        fields.update(config_fields)
        # Pythae's default nets are rebuilt from the config (then given the weights): passed as
        # copies they would count as a user's own nets, saved only as pickles
        default = {part: bool(getattr(source, f"uses_default_{part}", False)) for part in ("encoder", "decoder")}
        model = cls(
            AVAE_SS_Config(**fields),
            encoder=None if default["encoder"] else deepcopy(pretrained.encoder),
            decoder=None if default["decoder"] else deepcopy(pretrained.decoder),
        )
        for part in (p for p, is_default in default.items() if is_default):
            source_net = getattr(pretrained, part)  # its device and dtype too, as a copy would
            getattr(model, part).to(next(source_net.parameters())).load_state_dict(source_net.state_dict())
        return model

    # ---- data-free inputs -----------------------------------------------------------------
    @staticmethod
    def prior_batch(batch_size: int, device=None) -> DatasetOutput:
        """A batch that asks ``forward`` for ``batch_size`` generated inputs (no data inside)."""
        return DatasetOutput(
            data=torch.zeros(batch_size, 0, device=device),
            **{FROM_PRIOR: torch.ones(batch_size, dtype=torch.bool, device=device)},
        )

    @torch.no_grad()
    def generate_inputs(self, batch_size: int, device=None) -> torch.Tensor:
        """``x = g(z0)``, ``z0 ~ N(0, I)`` with the frozen decoder (plus noise if
        ``prior_noise``); no gradient."""
        weight = next(self.decoder.parameters())
        z0 = torch.randn(batch_size, self.latent_dim, device=weight.device if device is None else device,
                         dtype=weight.dtype)
        x = self.decode(z0)
        if self.model_config.prior_noise:
            x = x + self.model_config.obs_var**0.5 * torch.randn_like(x)
        return x

    @staticmethod
    def _data_free(inputs) -> bool:
        """Whether ``inputs`` asks for generated inputs (none, no ``"data"``, a prior request)."""
        return inputs is None or "data" not in inputs.keys() or FROM_PRIOR in inputs.keys()

    def get_data(self, inputs) -> torch.Tensor:
        if not self._data_free(inputs):
            return super().get_data(inputs)
        request = None if inputs is None else inputs.get(FROM_PRIOR)
        # on the decoder's device, wherever a request was made
        return self.generate_inputs(self.model_config.batch_size if request is None else len(request))

    def forward(self, inputs=None, **kwargs) -> ModelOutput:
        if not self._data_free(inputs):
            return super().forward(inputs, **kwargs)
        with aux_batch_norm(self.encoder, self.model_config.generated_batch_norm):
            return super().forward(inputs, **kwargs)
