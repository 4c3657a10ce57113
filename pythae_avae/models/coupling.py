"""Closed-form Gaussian terms shared by every model of this package.

Each formula lives here once; AVAE, SE, SE-AVAE and AVAE-SS only combine them.
All functions take per-example tensors of shape ``(B, d)`` (means and log-variances of
diagonal Gaussians) and return per-example values of shape ``(B,)``: sums over latent
dimensions, so that the caller averages over the batch (the reduction of the paper's code).

Notation (paper eq. 4 and 10): ``q(z|x) = N(mu, diag exp(logvar))`` is the code of the data
point, ``q(z'|x~) = N(mu_aux, diag exp(logvar_aux))`` the code of the auxiliary point and
``p_rho(z'|z) = N(rho z, (1 - rho^2) I)`` the coupled prior.
"""

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def check_rho(rho: float, name: str = "rho") -> float:
    """Validates a coupling strength: the ``1/(1 - rho^2)`` factor needs ``0 <= rho < 1``."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {rho!r}")
    if not 0.0 <= float(rho) < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the coupling divides by 1 - {name}^2), got {rho}")
    return float(rho)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per example."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def expected_log_coupling(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    mu_aux: torch.Tensor,
    logvar_aux: torch.Tensor,
    rho: float,
) -> torch.Tensor:
    """``C = E[log p_rho(z'|z)]`` for independent ``z ~ q(z|x)``, ``z' ~ q(z'|x~)``.

    This is the "analytic" estimator of the official code (spec §1.2.3), with the correct
    normalising constant ``-(d/2) log(2 pi (1 - rho^2))``.
    """
    one_minus = 1.0 - rho**2
    d = mu.shape[-1]
    quad = logvar_aux.exp() + rho**2 * logvar.exp() + (mu_aux - rho * mu).pow(2)
    return -0.5 * d * (LOG_2PI + math.log(one_minus)) - quad.sum(dim=-1) / (2 * one_minus)


def paired_log_coupling(
    z: torch.Tensor, mu_aux: torch.Tensor, logvar_aux: torch.Tensor, rho: float
) -> torch.Tensor:
    """Single-sample ``E_{z'}[log p_rho(z'|z)]`` at the sample ``z`` that produced ``x~``.

    The "paired" estimator (spec §1.4): it keeps the dependence ``z -> x~ -> z'`` that the
    analytic form integrates away.
    """
    one_minus = 1.0 - rho**2
    d = z.shape[-1]
    quad = logvar_aux.exp() + (mu_aux - rho * z).pow(2)
    return -0.5 * d * (LOG_2PI + math.log(one_minus)) - quad.sum(dim=-1) / (2 * one_minus)


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """``H[N(., exp(logvar))] = 1/2 sum log(2 pi e sigma^2)`` per example."""
    return 0.5 * (LOG_2PI + 1.0 + logvar).sum(dim=-1)


def kl_to_coupled_target(
    mu_aux: torch.Tensor, logvar_aux: torch.Tensor, mu: torch.Tensor, rho: float
) -> torch.Tensor:
    """``KL(N(mu_aux, exp(logvar_aux)) || N(rho mu, (1 - rho^2) I))`` per example.

    Used by the identity tests and as the SE attack objective (spec §2.3).
    """
    one_minus = 1.0 - rho**2
    ratio = logvar_aux.exp() / one_minus
    mean_term = (mu_aux - rho * mu).pow(2) / one_minus
    return 0.5 * (ratio + mean_term - 1.0 - logvar_aux + math.log(one_minus)).sum(dim=-1)


def gaussian_w2_squared(
    mu: torch.Tensor, logvar: torch.Tensor, mu_ref: torch.Tensor, logvar_ref: torch.Tensor
) -> torch.Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, per example.

    ``W2^2(N(mu, diag s^2), N(mu_ref, diag s_ref^2)) = ||mu - mu_ref||^2 + ||s - s_ref||^2``
    (spec §2.3, alternative attack objective).
    """
    std, std_ref = torch.exp(0.5 * logvar), torch.exp(0.5 * logvar_ref)
    return (mu - mu_ref).pow(2).sum(dim=-1) + (std - std_ref).pow(2).sum(dim=-1)


def entropic_ot_coupling_gain(
    logvar: torch.Tensor, logvar_aux: torch.Tensor, rho: float
) -> torch.Tensor:
    """Extra bound gained by the optimal joint Gaussian coupling over the product one.

    Per latent dimension with ``a = sigma^2``, ``b = sigma'^2`` the optimal cross-covariance is
    ``c* = (-(1 - rho^2) + sqrt((1 - rho^2)^2 + 4 rho^2 a b)) / (2 rho)`` and the bound rises by
    ``rho c*/(1 - rho^2) + 1/2 log(1 - c*^2/(a b))`` (spec §2.6, ``J(c*) - J(0)``; always >= 0).
    ``c*`` is computed as ``2 rho a b / ((1 - rho^2) + sqrt(...))``, the same value without the
    cancellation of two nearly equal terms when ``a b`` is small, and detached: by the envelope
    theorem the gradient is the same either way.
    """
    if rho == 0.0:
        return torch.zeros(logvar.shape[:-1], device=logvar.device, dtype=logvar.dtype)
    one_minus = 1.0 - rho**2
    ab = (logvar + logvar_aux).exp()
    with torch.no_grad():
        c = 2 * rho * ab / (one_minus + torch.sqrt(one_minus**2 + 4 * rho**2 * ab))
    # c = 0 where a b underflows to 0: its ratio is 0, not 0/0 (nor a NaN gradient)
    ratio = c.pow(2) / torch.where(ab > 0, ab, torch.ones_like(ab))
    gain = rho * c / one_minus + 0.5 * torch.log1p(-ratio.clamp(max=1 - 1e-6))
    return gain.sum(dim=-1)


def check_coupling_options(estimator: str, coupling: str) -> None:
    """Refuses the optimal-coupling gain on top of the paired estimator.

    ``J(c*) - J(0)`` (spec §2.6) is the gain over the analytic expectation under the product
    coupling of two fixed Gaussians; the paired estimator already evaluates the coupling at the
    ``z`` that produced ``x~``, so adding the gain to it mixes two couplings.
    """
    if coupling == "entropic_ot" and estimator == "paired":
        raise ValueError("coupling='entropic_ot' needs coupling_estimator='analytic': its gain (spec §2.6) is "
                         "derived against the analytic product-coupling expectation, got coupling_estimator='paired'")


def consistency_loss(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    mu_aux: torch.Tensor,
    logvar_aux: torch.Tensor,
    rho: float,
    z: torch.Tensor = None,
    estimator: str = "analytic",
    coupling: str = "product",
):
    """The auxiliary part of every bound here, as a loss: ``-(C + H)`` (and OT gain).

    Args:
        mu, logvar: code of the data point, shape ``(B, d)``; gradients flow into them.
        mu_aux, logvar_aux: code of the (detached) auxiliary point, shape ``(B, d)``.
        rho: coupling strength in ``[0, 1)``.
        z: the sample that generated the auxiliary point (needed by ``"paired"``).
        estimator: ``"analytic"`` (official code) or ``"paired"`` (spec §1.4).
        coupling: ``"product"`` (paper) or ``"entropic_ot"`` (spec §2.6).

    Returns:
        dict of per-example tensors ``coupling`` (= -C, or -C - OT gain), ``entropy`` (= -H) and
        ``total`` (their sum), each of shape ``(B,)``.
    """
    check_coupling_options(estimator, coupling)
    if estimator == "analytic":
        log_c = expected_log_coupling(mu, logvar, mu_aux, logvar_aux, rho)
    elif estimator == "paired":
        if z is None:
            raise ValueError("estimator='paired' needs the sample z that produced x~")
        log_c = paired_log_coupling(z, mu_aux, logvar_aux, rho)
    else:
        raise ValueError(f"estimator must be 'analytic' or 'paired', got {estimator!r}")
    if coupling == "entropic_ot":
        log_c = log_c + entropic_ot_coupling_gain(logvar, logvar_aux, rho)
    elif coupling != "product":
        raise ValueError(f"coupling must be 'product' or 'entropic_ot', got {coupling!r}")
    coupling_loss = -log_c
    entropy_loss = -gaussian_entropy(logvar_aux)
    return {
        "coupling": coupling_loss,
        "entropy": entropy_loss,
        "total": coupling_loss + entropy_loss,
    }
