"""The closed forms of models/coupling.py against Monte Carlo and exact identities (spec §9)."""

import math

import pytest
import torch

from pythae_avae.models.coupling import (
    check_rho,
    consistency_loss,
    entropic_ot_coupling_gain,
    expected_log_coupling,
    gaussian_entropy,
    kl_standard_normal,
    kl_to_coupled_target,
    paired_log_coupling,
)

D = 3
N_MC = 1_000_000


def params(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, D, generator=g, dtype=torch.float64)
    logvar = 0.6 * torch.randn(batch, D, generator=g, dtype=torch.float64) - 0.5
    return mu, logvar


def log_normal(x, mean, var):
    return (-0.5 * (math.log(2 * math.pi) + var.log() + (x - mean) ** 2 / var)).sum(-1)


def assert_mc(exact, samples):
    """Exact value within 5 Monte-Carlo standard errors."""
    se = samples.std() / math.sqrt(len(samples))
    assert abs(float(exact) - float(samples.mean())) < 5 * float(se) + 1e-9


def test_kl_matches_monte_carlo():
    mu, logvar = params()
    g = torch.Generator().manual_seed(1)
    z = mu[0] + (0.5 * logvar[0]).exp() * torch.randn(N_MC, D, generator=g, dtype=torch.float64)
    samples = log_normal(z, mu[0], logvar[0].exp()) - log_normal(z, torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64))
    assert_mc(kl_standard_normal(mu, logvar)[0], samples)


@pytest.mark.parametrize("rho", [0.5, 0.975])
def test_coupling_matches_monte_carlo(rho):
    (mu, mu_a), (logvar, logvar_a) = params(2, 2)[0].chunk(2), params(3, 2)[1].chunk(2)
    g = torch.Generator().manual_seed(4)
    z = mu + (0.5 * logvar).exp() * torch.randn(N_MC, D, generator=g, dtype=torch.float64)
    z2 = mu_a + (0.5 * logvar_a).exp() * torch.randn(N_MC, D, generator=g, dtype=torch.float64)
    samples = log_normal(z2, rho * z, torch.full((D,), 1 - rho**2, dtype=torch.float64))
    assert_mc(expected_log_coupling(mu, logvar, mu_a, logvar_a, rho)[0], samples)


def test_paired_coupling_matches_monte_carlo_for_fixed_z():
    rho = 0.9
    z, _ = params(5, 1)
    mu_a, logvar_a = params(6, 1)
    g = torch.Generator().manual_seed(7)
    z2 = mu_a + (0.5 * logvar_a).exp() * torch.randn(N_MC, D, generator=g, dtype=torch.float64)
    samples = log_normal(z2, rho * z, torch.full((D,), 1 - rho**2, dtype=torch.float64))
    assert_mc(paired_log_coupling(z, mu_a, logvar_a, rho)[0], samples)


def test_entropy_matches_monte_carlo():
    mu, logvar = params(8, 1)
    g = torch.Generator().manual_seed(9)
    z = mu + (0.5 * logvar).exp() * torch.randn(N_MC, D, generator=g, dtype=torch.float64)
    assert_mc(gaussian_entropy(logvar)[0], -log_normal(z, mu, logvar.exp()))


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.975, 0.999])
def test_compact_identity(rho):
    mu, logvar = params(10, 4)
    mu_a, logvar_a = params(11, 4)
    c_plus_h = expected_log_coupling(mu, logvar, mu_a, logvar_a, rho) + gaussian_entropy(logvar_a)
    identity = -kl_to_coupled_target(mu_a, logvar_a, mu, rho) - rho**2 / (2 * (1 - rho**2)) * logvar.exp().sum(-1)
    torch.testing.assert_close(c_plus_h, identity, rtol=1e-12, atol=1e-10)


def test_rho_zero_is_a_prior_kl_and_ignores_the_clean_code():
    mu, logvar = params(12, 3)
    mu_a, logvar_a = params(13, 3)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    loss = consistency_loss(mu, logvar, mu_a, logvar_a, 0.0)["total"]
    torch.testing.assert_close(loss, kl_standard_normal(mu_a, logvar_a))
    grads = torch.autograd.grad(loss.sum(), (mu, logvar))
    assert all(float(g.abs().max()) == 0.0 for g in grads)


def test_stationary_at_the_coupled_target():
    rho = 0.8
    mu, logvar = params(14, 2)
    mu_a = (rho * mu).clone().requires_grad_(True)
    var_a = torch.full_like(mu, 1 - rho**2, requires_grad=True)
    value = expected_log_coupling(mu, logvar, mu_a, var_a.log(), rho) + gaussian_entropy(var_a.log())
    g_mu, g_var = torch.autograd.grad(value.sum(), (mu_a, var_a))
    assert float(g_mu.abs().max()) < 1e-12 and float(g_var.abs().max()) < 1e-12


def test_consistent_encoder_pays_only_the_variance_penalty():
    rho = 0.975
    mu, logvar = params(15, 2)
    loss = consistency_loss(mu, logvar, rho * mu, torch.full_like(mu, math.log(1 - rho**2)), rho)["total"]
    expected = rho**2 / (2 * (1 - rho**2)) * logvar.exp().sum(-1)
    torch.testing.assert_close(loss, expected)


def test_entropic_ot_gain_is_the_maximum_over_cross_covariances():
    rho = 0.9
    mu, logvar = params(16, 1)
    _, logvar_a = params(17, 1)
    a, b = logvar.exp()[0], logvar_a.exp()[0]
    # J(c) - J(0) per dimension = rho c / (1 - rho^2) + 1/2 log(1 - c^2/(ab)), maximised on a grid
    best = 0.0
    for i in range(D):
        c = torch.linspace(0, float((a[i] * b[i]).sqrt()) * 0.999999, 200001, dtype=torch.float64)
        best += float((rho * c / (1 - rho**2) + 0.5 * torch.log1p(-(c**2) / (a[i] * b[i]))).max())
    gain = entropic_ot_coupling_gain(logvar, logvar_a, rho)[0]
    assert float(gain) == pytest.approx(best, rel=1e-6)
    assert float(entropic_ot_coupling_gain(logvar, logvar_a, 0.0)[0]) == 0.0
    assert float(entropic_ot_coupling_gain(logvar, logvar_a, 0.01)[0]) < 1e-3


def test_consistency_loss_parts_and_errors():
    mu, logvar = params(18, 2)
    out = consistency_loss(mu, logvar, mu, logvar, 0.5)
    torch.testing.assert_close(out["total"], out["coupling"] + out["entropy"])
    with pytest.raises(ValueError, match="estimator"):
        consistency_loss(mu, logvar, mu, logvar, 0.5, estimator="mc")
    with pytest.raises(ValueError, match="paired"):
        consistency_loss(mu, logvar, mu, logvar, 0.5, estimator="paired")
    with pytest.raises(ValueError, match="coupling"):
        consistency_loss(mu, logvar, mu, logvar, 0.5, coupling="sinkhorn")


@pytest.mark.parametrize("rho", [1.0, 1.5, -0.1])
def test_check_rho_rejects_out_of_range(rho):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_rho(rho)
    with pytest.raises(TypeError):
        check_rho("0.5")
