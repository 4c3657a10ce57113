"""What every model of this package shares: config fields, input checks, the VAE part of the
loss with a configurable observation variance, and per-term bookkeeping for logging."""

import threading
from typing import Dict, Optional

import torch
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

from ..validation import check_int, check_number
from .coupling import kl_standard_normal
from .registry import PluginLoadMixin

STRICT = ConfigDict(extra="forbid")
#: fields Pythae sets itself (a model records whether it built default nets)
_BOOKKEEPING = ("name", "uses_default_encoder", "uses_default_decoder")
_REVALIDATING = threading.local()  # .ids: configs of this thread checking an assignment


@dataclass(config=STRICT)
class AVAEFamilyConfig(VAEConfig):
    """Fields shared by AVAE, SE, SE-AVAE and AVAE-SS (not a model of its own).

    Parameters:
        input_dim (tuple): input shape, e.g. ``(3, 28, 28)``. Default: None.
        latent_dim (int): latent dimension. Default: 64 (paper §4).
        reconstruction_loss (str): ``"mse"`` = Gaussian likelihood with variance ``obs_var``,
            i.e. ``SSE / (2 obs_var)`` per example (Pythae 0.1.2's own "mse" is ``SSE / 2``,
            ``obs_var = 1``); or ``"bce"``. Default: ``"mse"``.
        obs_var (float): observation variance ``v`` of ``p(x|z) = N(g(z), v I)``. Default: 0.5
            (the official AVAE code; the paper does not state it).
        check_inputs (bool): raise on inputs of the wrong shape or outside [0, 1]. Default: True.
        reproduce_official_sampling (bool): sample ``z = mu + exp(logvar) eps`` like the official
            JAX code (a bug, spec §8.1) instead of ``mu + exp(logvar / 2) eps``. Default: False.
    """

    latent_dim: int = 64
    obs_var: float = 0.5
    check_inputs: bool = True
    reproduce_official_sampling: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_number(self.obs_var, "obs_var", strict=True, why="observation variance")
        check_int(self.latent_dim, "latent_dim")

    def __setattr__(self, name, value):
        """A field assigned after construction is checked like a constructor argument, its type
        and choices by pydantic, its value by ``__post_init__`` (``model.model_config.rho = 1.0``
        would otherwise reach the loss as inf); a refused value leaves the old one. Checks
        across fields see the others as they stand: assign in a valid order, or build a new
        config with ``dataclasses.replace``."""
        active = _REVALIDATING.__dict__.setdefault("ids", set())
        if (name in _BOOKKEEPING or name not in self.__dataclass_fields__ or name not in self.__dict__
                or id(self) in active):  # construction, Pythae's own fields, __post_init__'s assignments
            return super().__setattr__(name, value)
        old = self.__dict__[name]
        active.add(id(self))
        try:
            type(self).__pydantic_validator__.validate_assignment(self, name, value)
            self.__post_init__()
        except Exception:
            super().__setattr__(name, old)
            raise
        finally:
            active.discard(id(self))


class TermMeter:
    """Running per-term sums of detached batch means, kept apart for train and eval batches.

    Tensors stay on their device until read, so logging costs no synchronisation per step.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._sums: Dict[str, Dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._counts = {"train": 0, "eval": 0}

    def update(self, phase: str, terms: Dict[str, torch.Tensor]):
        sums = self._sums[phase]
        for name, value in terms.items():
            value = value.detach()
            sums[name] = value if name not in sums else sums[name] + value
        self._counts[phase] += 1

    def state(self) -> dict:
        """Sums (as floats) and counts, for a checkpoint taken inside an epoch."""
        return {"sums": {phase: {k: float(v) for k, v in sums.items()} for phase, sums in self._sums.items()},
                "counts": dict(self._counts)}

    def load_state(self, state: dict):
        self._sums = {phase: {k: torch.tensor(v) for k, v in sums.items()} for phase, sums in state["sums"].items()}
        self._counts = dict(state["counts"])

    def means(self) -> Dict[str, float]:
        """``{"train_epoch_<term>": mean, "eval_epoch_<term>": mean}`` over recorded batches."""
        out = {}
        for phase, sums in self._sums.items():
            for name, total in sums.items():
                out[f"{phase}_epoch_{name}"] = float(total) / self._counts[phase]
        return out


class AVAEFamilyModel(PluginLoadMixin, VAE):
    """Base of this package's models: a Pythae ``VAE`` with the helpers their losses share."""

    def __init__(
        self,
        model_config: AVAEFamilyConfig,
        encoder: Optional[BaseEncoder] = None,
        decoder: Optional[BaseDecoder] = None,
    ):
        super().__init__(model_config=model_config, encoder=encoder, decoder=decoder)
        self.model_name = type(self).__name__
        self.term_meter = TermMeter()

    # ---- inputs -------------------------------------------------------------------------
    def get_data(self, inputs) -> torch.Tensor:
        x = inputs["data"]
        if self.model_config.check_inputs:
            self.check_input(x)
        return x

    def check_input(self, x: torch.Tensor, name: str = "inputs['data']"):
        expected = tuple(self.model_config.input_dim or ())
        if expected and tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, expected))}) "
                f"(model_config.input_dim), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():  # e.g. uint8 images in [0, 255]
            raise ValueError(f"{name} must be a floating-point tensor of pixels in [0, 1], got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite pixels in [0, 1], got NaN or Inf values")
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"{name} must hold pixels in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
            )

    # ---- the VAE part ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        out = self.encoder(x)
        return out.embedding, out.log_covariance

    def sample_latent(self, mu: torch.Tensor, logvar: torch.Tensor, eps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``z ~ q(z|x)`` by reparameterisation, from the standard normal ``eps`` if given."""
        eps = torch.randn_like(mu) if eps is None else eps
        if self.model_config.reproduce_official_sampling:
            return mu + logvar.exp() * eps
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)["reconstruction"]

    def recon_loss_per_example(self, recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # a flat (N, D) output is a layout; an image of the same rank in another one (NHWC for
        # NCHW) has the right size and would be compared pixel to the wrong pixel
        if recon_x.dim() == x.dim() and recon_x.shape != x.shape:
            raise ValueError(f"the decoder's reconstruction has shape {tuple(recon_x.shape)}, the input "
                             f"{tuple(x.shape)}: they must match (or the reconstruction be flat, (N, D))")
        flat_r, flat_x = recon_x.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1)
        if self.model_config.reconstruction_loss == "mse":
            return (flat_r - flat_x).pow(2).sum(dim=-1) / (2 * self.model_config.obs_var)
        return torch.nn.functional.binary_cross_entropy(flat_r, flat_x, reduction="none").sum(-1)

    def vae_terms(self, x: torch.Tensor, codes=None) -> dict:
        """Encoder, reparameterised sample, decoder and the per-example ELBO terms.

        ``codes=(mu, logvar)`` skips the encoder call, for models that encode ``x`` in a joint
        batch with their auxiliary points (SE).
        """
        mu, logvar = self.encode(x) if codes is None else codes
        z = self.sample_latent(mu, logvar)
        recon_x = self.decode(z)
        return {
            "mu": mu,
            "logvar": logvar,
            "z": z,
            "recon_x": recon_x,
            "recon": self.recon_loss_per_example(recon_x, x),
            "kl": kl_standard_normal(mu, logvar),
        }

    def make_output(self, vae: dict, **extra_terms: torch.Tensor) -> ModelOutput:
        """Batch-mean loss ``recon + KL + sum(extra_terms)`` and every term under its own key.

        Extra terms are per-example tensors; each is returned as ``<name>_loss``. The
        reconstruction term leaves out its constant ``(D/2) log(2 pi v)`` (as Pythae does) while
        the coupling and entropy terms keep theirs, so ``loss`` is a negative ELBO up to that
        constant: compare it between runs with the same ``obs_var`` and input size only.
        """
        terms = {"recon_loss": vae["recon"].mean(), "reg_loss": vae["kl"].mean()}
        terms.update({f"{name}_loss": value.mean() for name, value in extra_terms.items()})
        loss = sum(terms.values())
        self.term_meter.update("train" if self.training else "eval", {"loss": loss, **terms})
        return ModelOutput(loss=loss, **terms, recon_x=vae["recon_x"], z=vae["z"])

    def get_nll(self, data, n_samples: int = 1, batch_size: int = 100):
        """Pythae's importance-sampled NLL where it holds: with ``"bce"`` and the standard
        sampling. Its Gaussian likelihood has variance 1 whatever ``obs_var`` (spec §8.9), so
        with ``"mse"`` (or the official code's sampling) it would be silently wrong: refused."""
        cfg = self.model_config
        if cfg.reconstruction_loss == "mse" or getattr(cfg, "reproduce_official_sampling", False):
            raise NotImplementedError(
                f"{type(self).__name__}.get_nll is not implemented for the Gaussian likelihood: Pythae's "
                f"estimate assumes obs_var = 1 (this model: {cfg.obs_var}) and the standard sampling; use "
                "the reconstruction error or the ELBO terms instead"
            )
        return super().get_nll(data, n_samples, batch_size)

    def loss_function(self, recon_x, x, mu, log_var, z):
        """Pythae's hook, with this package's likelihood scale: returns (loss, recon, KL)."""
        recon = self.recon_loss_per_example(recon_x, x)
        kl = kl_standard_normal(mu, log_var)
        return (recon + kl).mean(), recon.mean(), kl.mean()
