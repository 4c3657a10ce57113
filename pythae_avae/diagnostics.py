"""Autoencoding-consistency diagnostic for any Pythae VAE-family model.

A consistent model encodes its own samples back near the code that made them. For prior
samples ``z ~ N(0, I)``, ``x = g(z)`` (decoder mean) and ``z' = mu(x)``:

* ``slope``: least-squares slope of ``z'`` on ``z`` pooled over dimensions (about ``rho``
  for a consistent AVAE; the transition kernel is ``N(rho z, (1 - rho^2) I)``);
* ``active_dims`` / ``slope_active``: the same restricted to dimensions the decoder uses
  (std of ``z'`` above 0.1): collapsed dimensions pull the pooled slope toward 0;
* ``residual_var``: variance of ``z' - slope * z`` (about ``1 - rho^2`` minus ``sigma'^2``);
* ``mean_distance``: mean ``||z' - z||``;
* ``chain_drift``: mean ``||mu(x_t) - mu(x_0)||`` along ``x_{t+1} = g(mu(x_t))`` (Fig. 1).
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
) -> Dict[str, object]:
    """Measures how well ``model`` encodes its own samples (see module docstring).

    The model's train/eval mode is restored afterwards; nothing is updated.

    Returns:
        dict with ``slope``, ``residual_var``, ``mean_distance`` (floats) and ``chain_drift``
        (list of ``chain_steps + 1`` floats, the first 0).
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
    gen = torch.Generator(device="cpu").manual_seed(seed)
    zs, zps, drift = [], [], torch.zeros(chain_steps + 1)
    with evaluated_on(device, encoder, decoder):
        for start in range(0, n_samples, batch_size):
            z = torch.randn(min(batch_size, n_samples - start), latent_dim, generator=gen)
            z = z.to(device)
            x = decoder(z)["reconstruction"]
            z_prime = encoder(x).embedding
            zs.append(z.cpu())
            zps.append(z_prime.cpu())
            mu0 = mu = z_prime
            for t in range(1, chain_steps + 1):
                mu = encoder(decoder(mu)["reconstruction"]).embedding
                drift[t] += (mu - mu0).norm(dim=1).sum().cpu()
    z, z_prime = torch.cat(zs).double(), torch.cat(zps).double()
    slope = float((z * z_prime).sum() / (z * z).sum())
    active = z_prime.std(dim=0) > 0.1
    za, zpa = z[:, active], z_prime[:, active]
    return {
        "slope": slope,
        "active_dims": int(active.sum()),
        "slope_active": float((za * zpa).sum() / (za * za).sum()) if bool(active.any()) else 0.0,
        "residual_var": float((z_prime - slope * z).var()),
        "mean_distance": float((z_prime - z).norm(dim=1).mean()),
        "chain_drift": (drift / n_samples).tolist(),
    }


def format_consistency(name: str, stats: Dict[str, object]) -> str:
    drift = stats["chain_drift"]
    return (
        f"{name}: slope of mu(g(z)) on z = {stats['slope']:.3f} ({stats['slope_active']:.3f} on "
        f"{stats['active_dims']} active dims), residual var = "
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
