"""Autoencoding-consistency diagnostic for any Pythae VAE-family model.

A consistent model encodes its own samples back near the code that made them. For codes
``z`` (prior samples ``z ~ N(0, I)``, or with ``images`` posterior samples ``z ~ q(z|x)``:
spec §6.9's transition-kernel check), ``x~ = g(z)`` (decoder mean) and ``z' = mu(x~)``:

* ``slope``: least-squares slope through the origin of ``z'`` on ``z``, pooled over dimensions
  (about ``rho`` for a consistent AVAE; the transition kernel is ``N(rho z, (1 - rho^2) I)``);
* ``active_dims`` / ``slope_active``: the same restricted to dimensions the decoder uses
  (std of ``z'`` above 0.1): collapsed dimensions pull the pooled slope toward 0;
* ``residual_var``: variance of ``z' - slope * z`` over all entries, with the pooled slope
  (about ``1 - rho^2`` minus ``sigma'^2`` when every dimension is active; a collapsed one adds
  about ``slope^2``);
* ``mean_distance``: mean ``||z' - z||``;
* ``chain_drift``: mean ``||mu(x_t) - mu(x_0)||`` along ``x_{t+1} = g(mu(x_t))`` (Fig. 1),
  from ``x_0 = g(z)`` (with ``images`` too: the chain of a decoder sample, like the AVAE's
  delusion; :func:`pythae_avae.figures.encode_decode_chain` starts from the images);
* with ``images`` also ``slope_mean``: the slope of ``z'`` on the data's code ``mu(x)``. The
  analytic coupling (the default estimator) pulls ``mu(x~)`` toward ``rho mu(x)``, not toward
  ``rho z``: on ``z = mu + sigma eps`` the slope shrinks by ``Var(mu) / (Var(mu) + sigma^2)``.

Prior samples can lie far from the codes a trained encoder gives its data (when the KL term is
weak beside the reconstruction, the data's codes spread much less than N(0, I)), so the prior
slope can sit far below rho where ``slope_mean`` on data is near it. A plain VAE's
``slope_mean`` can be near rho too; on data its ``slope`` is lower and its ``residual_var``
larger than an AVAE's (RESULTS.md, the demo).
"""

from typing import Dict, Optional

import torch

from .evaluation.features import check_images, evaluated_on
from .validation import check_int


def unwrapped(model):
    """``model`` out of a DDP / DataParallel wrapper, checked to have ``.encoder`` and ``.decoder``."""
    model = getattr(model, "module", model)
    if not (hasattr(model, "encoder") and hasattr(model, "decoder")):
        raise TypeError("model must be a Pythae model with .encoder and .decoder")
    return model


def input_dim(model):
    """The ``(C, H, W)`` ``model``'s config declares, or None (a bare encoder/decoder pair)."""
    return getattr(getattr(model, "model_config", None), "input_dim", None)


@torch.no_grad()
def autoencoding_consistency(
    model,
    n_samples: int = 1000,
    chain_steps: int = 10,
    batch_size: int = 250,
    seed: int = 0,
    device: Optional[str] = None,
    images=None,
) -> Dict[str, object]:
    """Measures how well ``model`` encodes its own samples (see module docstring).

    The model's train/eval mode is restored afterwards; nothing is updated.

    Args:
        images: optional [0, 1] data; the codes are then drawn from ``q(z|x)`` for its first
            ``n_samples`` images (the codes the AVAE's delusions come from in training, drawn
            as the model draws them: ``reproduce_official_sampling`` is followed), not from the
            prior. The prior is the default: it needs no data and covers the codes the decoder
            is sampled from. The standard normal draws depend on ``seed`` only, not on
            ``batch_size``.

    Returns:
        dict with ``slope``, ``active_dims``, ``slope_active``, ``residual_var``,
        ``mean_distance``, ``chain_drift`` (list of ``chain_steps + 1`` floats, the first 0),
        and with ``images`` ``slope_mean``.
    """
    check_int(n_samples, "n_samples", minimum=2, why="a slope needs two samples")
    check_int(chain_steps, "chain_steps", minimum=0)
    check_int(batch_size, "batch_size")
    model = unwrapped(model)
    encoder, decoder = model.encoder, model.decoder
    device = device or next(encoder.parameters()).device
    latent_dim = getattr(getattr(model, "model_config", None), "latent_dim", None)
    if latent_dim is None:
        raise TypeError("model.model_config.latent_dim is needed to draw prior samples")
    if images is not None:
        images = check_images(images, "images", input_dim(model))
        if len(images) < n_samples:
            raise ValueError(f"images must hold at least n_samples={n_samples} images, got {len(images)}")
    noise = torch.randn(n_samples, latent_dim, generator=torch.Generator(device="cpu").manual_seed(seed))
    zs, zps, means, drift = [], [], [], torch.zeros(chain_steps + 1)
    with evaluated_on(device, encoder, decoder):
        for start in range(0, n_samples, batch_size):
            z = noise[start : start + batch_size].to(device)
            if images is not None:  # a sample of q(z|x), with the same standard normal draws
                posterior = encoder(images[start : start + len(z)].to(device))
                z = _posterior_sample(model, posterior.embedding, posterior.log_covariance, z)
                means.append(posterior.embedding.cpu())
            x = decoder(z)["reconstruction"]
            z_prime = encoder(x).embedding
            zs.append(z.cpu())
            zps.append(z_prime.cpu())
            mu0 = mu = z_prime
            for t in range(1, chain_steps + 1):
                mu = encoder(decoder(mu)["reconstruction"]).embedding
                drift[t] += (mu - mu0).norm(dim=1).sum().cpu()
    z, z_prime = torch.cat(zs).double(), torch.cat(zps).double()
    slope = _slope(z, z_prime)
    active = z_prime.std(dim=0) > 0.1
    stats = {
        "slope": slope,
        "active_dims": int(active.sum()),
        "slope_active": _slope(z[:, active], z_prime[:, active]) if bool(active.any()) else 0.0,
        "residual_var": float((z_prime - slope * z).var()),
        "mean_distance": float((z_prime - z).norm(dim=1).mean()),
        "chain_drift": (drift / n_samples).tolist(),
    }
    if images is not None:
        stats["slope_mean"] = _slope(torch.cat(means).double(), z_prime)
    return stats


def _posterior_sample(model, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``z ~ q(z|x)`` from ``eps`` as ``model`` samples in training (this package's models may
    reproduce the official code's ``exp(log_var)`` std, spec §8.1); Pythae's VAE samples with
    ``exp(log_var / 2)``."""
    if hasattr(model, "sample_latent"):
        return model.sample_latent(mu, log_var, eps=eps)
    return mu + torch.exp(0.5 * log_var) * eps


def _slope(x: torch.Tensor, y: torch.Tensor) -> float:
    """Least-squares slope through the origin of ``y`` on ``x``, pooled over dimensions."""
    return float((x * y).sum() / (x * x).sum())


def format_consistency(name: str, stats: Dict[str, object]) -> str:
    drift = stats["chain_drift"]
    on_mean = f", on mu(x) = {stats['slope_mean']:.3f}" if "slope_mean" in stats else ""
    return (
        f"{name}: slope of mu(g(z)) on z = {stats['slope']:.3f} ({stats['slope_active']:.3f} on "
        f"{stats['active_dims']} active dims){on_mean}, residual var = "
        f"{stats['residual_var']:.3f}, mean ||mu(g(z)) - z|| = {stats['mean_distance']:.2f}, "
        f"chain drift after {len(drift) - 1} steps = {drift[-1]:.2f}"
    )


@torch.no_grad()
def reconstruction_error(model, images, batch_size: int = 500, device: Optional[str] = None) -> Dict[str, float]:
    """Test reconstruction error of ``g(mu(x))`` on [0, 1] pixels.

    The paper's "MSE" column is undefined (spec §6.6); we report the per-image sum of squared
    errors (``sse_per_image``) and the per-pixel mean (``mse_per_pixel``).
    """
    check_int(batch_size, "batch_size")
    model = unwrapped(model)
    encoder, decoder = model.encoder, model.decoder
    device = device or next(encoder.parameters()).device
    images = check_images(images, "images", input_dim(model))
    total = 0.0
    with evaluated_on(device, encoder, decoder):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            recon = decoder(encoder(x).embedding)["reconstruction"]
            total += float((recon - x).pow(2).sum())
    n_pixels = images[0].numel()
    return {"sse_per_image": total / len(images), "mse_per_pixel": total / len(images) / n_pixels}
