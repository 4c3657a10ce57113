"""Closed forms of ``pythae_avae.models.coupling`` (spec §1.2, §1.4, §2.6, §9 items 1-6, 11, 17).

Monte-Carlo checks run in float64 with 1e6 samples from a seeded generator. Each compares the
closed form with the sample mean and allows 5 standard errors of that mean (the standard error
is estimated from the same samples): a correct formula fails with probability ~6e-7, and with
a fixed seed the outcome is deterministic. A wrong constant or a factor error moves the value by
far more than 5 SE at these sizes (SE ~ 1e-3).
"""

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

DT = torch.float64
N_MC = 1_000_000
N_SE = 5.0
LOG_2PI = math.log(2 * math.pi)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_codes(batch=5, d=7, seed=0, lv_range=(-3.0, 1.5)):
    g = gen(seed)
    lo, hi = lv_range
    mu = torch.randn(batch, d, generator=g, dtype=DT)
    logvar = lo + (hi - lo) * torch.rand(batch, d, generator=g, dtype=DT)
    mu_aux = torch.randn(batch, d, generator=g, dtype=DT)
    logvar_aux = lo + (hi - lo) * torch.rand(batch, d, generator=g, dtype=DT)
    return mu, logvar, mu_aux, logvar_aux


def log_normal(x, mean, var):
    """Sum over the last dim of log N(x; mean, var), var broadcastable."""
    return (-0.5 * (LOG_2PI + torch.log(var)) - (x - mean) ** 2 / (2 * var)).sum(-1)


def assert_mc_close(samples, closed):
    mc = samples.mean().item()
    se = (samples.std() / math.sqrt(samples.numel())).item()
    assert se > 0
    assert abs(mc - closed) < N_SE * se, (mc, closed, se)


# Small d, one example (shape (1, d)) for the MC checks.
MU = torch.tensor([[0.3, -1.2, 0.7]], dtype=DT)
LOGVAR = torch.log(torch.tensor([[0.4, 1.3, 0.05]], dtype=DT))
MU_AUX = torch.tensor([[-0.5, 0.9, 0.2]], dtype=DT)
LOGVAR_AUX = torch.log(torch.tensor([[0.8, 0.1, 2.0]], dtype=DT))


class Test_Monte_Carlo:
    def test_kl_standard_normal(self):
        var = LOGVAR.exp()
        z = MU + var.sqrt() * torch.randn(N_MC, 3, generator=gen(1), dtype=DT)
        samples = log_normal(z, MU, var) - log_normal(z, 0.0, torch.ones(1, dtype=DT))
        closed = kl_standard_normal(MU, LOGVAR)
        assert closed.shape == (1,)
        assert_mc_close(samples, closed.item())

    @pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.975])
    def test_expected_log_coupling_independent(self, rho):
        g = gen(2)
        z = MU + LOGVAR.exp().sqrt() * torch.randn(N_MC, 3, generator=g, dtype=DT)
        z_aux = MU_AUX + LOGVAR_AUX.exp().sqrt() * torch.randn(N_MC, 3, generator=g, dtype=DT)
        samples = log_normal(z_aux, rho * z, torch.tensor(1 - rho**2, dtype=DT))
        closed = expected_log_coupling(MU, LOGVAR, MU_AUX, LOGVAR_AUX, rho)
        assert closed.shape == (1,)
        assert_mc_close(samples, closed.item())

    def test_entropy(self):
        var = LOGVAR_AUX.exp()
        z = MU_AUX + var.sqrt() * torch.randn(N_MC, 3, generator=gen(3), dtype=DT)
        samples = -log_normal(z, MU_AUX, var)
        closed = gaussian_entropy(LOGVAR_AUX)
        assert closed.shape == (1,)
        assert_mc_close(samples, closed.item())

    @pytest.mark.parametrize("rho", [0.3, 0.975])
    def test_paired_estimator(self, rho):
        """paired = E_{z' ~ q(z'|x~)} log N(z'; rho z, (1 - rho^2) I) at a fixed z."""
        z = torch.tensor([[1.1, -0.4, 0.25]], dtype=DT)
        var = LOGVAR_AUX.exp()
        z_aux = MU_AUX + var.sqrt() * torch.randn(N_MC, 3, generator=gen(4), dtype=DT)
        samples = log_normal(z_aux, rho * z, torch.tensor(1 - rho**2, dtype=DT))
        closed = paired_log_coupling(z, MU_AUX, LOGVAR_AUX, rho)
        assert closed.shape == (1,)
        assert_mc_close(samples, closed.item())

    def test_paired_averages_to_analytic(self):
        """E_z[paired(z)] over z ~ q(z|x) (independent of x~) equals the analytic C."""
        rho = 0.8
        z = MU + LOGVAR.exp().sqrt() * torch.randn(N_MC, 3, generator=gen(5), dtype=DT)
        samples = paired_log_coupling(z, MU_AUX.expand_as(z), LOGVAR_AUX.expand_as(z), rho)
        closed = expected_log_coupling(MU, LOGVAR, MU_AUX, LOGVAR_AUX, rho)
        assert_mc_close(samples, closed.item())


class Test_Identities:
    @pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.8, 0.975, 0.999])
    def test_c_plus_h_is_kl_to_coupled_target(self, rho):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=10)
        lhs = expected_log_coupling(mu, logvar, mu_aux, logvar_aux, rho) + gaussian_entropy(
            logvar_aux
        )
        rhs = -kl_to_coupled_target(mu_aux, logvar_aux, mu, rho) - rho**2 / (
            2 * (1 - rho**2)
        ) * logvar.exp().sum(-1)
        assert lhs.shape == rhs.shape == (5,)
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-10)

    def test_kl_to_coupled_target_matches_generic_gaussian_kl(self):
        rho = 0.9
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=11)
        p = torch.distributions.Normal(mu_aux, (0.5 * logvar_aux).exp())
        q = torch.distributions.Normal(rho * mu, torch.full_like(mu, math.sqrt(1 - rho**2)))
        expected = torch.distributions.kl_divergence(p, q).sum(-1)
        torch.testing.assert_close(kl_to_coupled_target(mu_aux, logvar_aux, mu, rho), expected)

    def test_kl_standard_normal_matches_torch(self):
        mu, logvar, _, _ = random_codes(seed=12)
        p = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        q = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        expected = torch.distributions.kl_divergence(p, q).sum(-1)
        torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)

    def test_rho_zero_reduces_to_prior_kl_and_ignores_clean_code(self):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=13)
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
        c_plus_h = expected_log_coupling(mu, logvar, mu_aux, logvar_aux, 0.0) + gaussian_entropy(
            logvar_aux
        )
        torch.testing.assert_close(
            c_plus_h, -kl_standard_normal(mu_aux, logvar_aux), rtol=1e-12, atol=1e-12
        )
        grads = torch.autograd.grad(c_plus_h.sum(), (mu, logvar), allow_unused=True)
        for g in grads:
            assert g is None or torch.count_nonzero(g) == 0

    def test_rho_positive_depends_on_clean_code(self):
        """Control for the test above: for rho > 0 the clean code does get gradient."""
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=13)
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
        c = expected_log_coupling(mu, logvar, mu_aux, logvar_aux, 0.5)
        g_mu, g_lv = torch.autograd.grad(c.sum(), (mu, logvar))
        assert torch.count_nonzero(g_mu) > 0 and torch.count_nonzero(g_lv) > 0

    @pytest.mark.parametrize("rho", [0.2, 0.9, 0.975])
    def test_stationary_point(self, rho):
        mu, logvar, _, _ = random_codes(seed=14)
        mu_aux = (rho * mu).clone().requires_grad_(True)
        var_aux = torch.full_like(mu, 1 - rho**2, requires_grad=True)

        def c_plus_h(m, v):
            return expected_log_coupling(mu, logvar, m, v.log(), rho) + gaussian_entropy(v.log())

        g_mu, g_var = torch.autograd.grad(c_plus_h(mu_aux, var_aux).sum(), (mu_aux, var_aux))
        assert g_mu.abs().max() < 1e-12
        assert g_var.abs().max() < 1e-10
        # ... and it is a maximum: moving away lowers C + H
        base = c_plus_h(mu_aux, var_aux).detach()
        assert torch.all(c_plus_h(mu_aux.detach() + 0.1, var_aux.detach()) < base)
        assert torch.all(c_plus_h(mu_aux.detach(), var_aux.detach() * 1.5) < base)
        assert torch.all(c_plus_h(mu_aux.detach(), var_aux.detach() * 0.5) < base)

    @pytest.mark.parametrize("rho", [0.5, 0.975])
    def test_perfectly_consistent_encoder(self, rho):
        """Spec §9.11: at mu' = rho mu, sigma'^2 = 1 - rho^2 the loss is rho^2/(2(1-rho^2)) sum sigma^2
        (the normalising constants of C and H cancel exactly)."""
        mu, logvar, _, _ = random_codes(seed=15)
        logvar_aux = torch.full_like(mu, math.log(1 - rho**2))
        out = consistency_loss(mu, logvar, rho * mu, logvar_aux, rho)
        expected = rho**2 / (2 * (1 - rho**2)) * logvar.exp().sum(-1)
        torch.testing.assert_close(out["total"], expected, rtol=1e-12, atol=1e-10)


class Test_Check_Rho:
    @pytest.mark.parametrize("rho", [0.0, 0.5, 0.975, 0.999999])
    def test_valid(self, rho):
        assert check_rho(rho) == rho
        assert isinstance(check_rho(rho), float)

    def test_int_zero_is_float(self):
        assert check_rho(0) == 0.0 and isinstance(check_rho(0), float)

    @pytest.mark.parametrize("rho", [1.0, 1, 1.5, -0.1, -1.0, float("nan"), float("inf")])
    def test_out_of_range(self, rho):
        with pytest.raises(ValueError, match="rho"):
            check_rho(rho)

    def test_name_in_message(self):
        with pytest.raises(ValueError, match="rho_se"):
            check_rho(1.0, name="rho_se")

    @pytest.mark.parametrize("rho", ["0.5", None, True, [0.5], torch.tensor(0.5)])
    def test_not_a_float(self, rho):
        with pytest.raises(TypeError, match="rho"):
            check_rho(rho)


def ot_gain_undetached(logvar, logvar_aux, rho):
    """Same formula as the package's, with c* kept in the graph."""
    one_minus = 1 - rho**2
    ab = (logvar + logvar_aux).exp()
    c = (-one_minus + torch.sqrt(one_minus**2 + 4 * rho**2 * ab)) / (2 * rho)
    return (rho * c / one_minus + 0.5 * torch.log(1 - c**2 / ab)).sum(-1)


def J(c, a, b, m, m_aux, rho):
    """Spec §2.6, per latent dimension: prior-KL + C + H part under a joint coupling with cov c."""
    om = 1 - rho**2
    return (
        -math.log(2 * math.pi)
        - 0.5 * math.log(om)
        - (a + m**2 - 2 * rho * (c + m * m_aux) + b + m_aux**2) / (2 * om)
        + math.log(2 * math.pi * math.e)
        + 0.5 * math.log(a * b - c**2)
    )


def golden_max(f, lo, hi, iters=200):
    """Maximiser of a concave function on (lo, hi)."""
    r = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - r * (hi - lo), lo + r * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(iters):
        if f1 < f2:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + r * (hi - lo)
            f2 = f(x2)
        else:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - r * (hi - lo)
            f1 = f(x1)
    x = 0.5 * (lo + hi)
    return x, f(x)


class Test_Entropic_OT:
    @pytest.mark.parametrize("rho", [0.05, 0.5, 0.9, 0.975, 0.99])
    def test_gain_nonnegative(self, rho):
        _, logvar, _, logvar_aux = random_codes(batch=64, d=8, seed=20, lv_range=(-4.0, 2.0))
        gain = entropic_ot_coupling_gain(logvar, logvar_aux, rho)
        assert gain.shape == (64,)
        assert torch.all(torch.isfinite(gain))
        assert torch.all(gain >= -1e-12)
        assert torch.all(gain > 0)  # strictly positive for rho > 0

    def test_gain_vanishes_as_rho_to_zero(self):
        _, logvar, _, logvar_aux = random_codes(seed=21)
        assert torch.count_nonzero(entropic_ot_coupling_gain(logvar, logvar_aux, 0.0)) == 0
        gains = [entropic_ot_coupling_gain(logvar, logvar_aux, r).max().item()
                 for r in (0.5, 0.1, 0.01, 1e-3)]
        assert all(g1 > g2 for g1, g2 in zip(gains, gains[1:]))
        assert gains[-1] < 1e-5  # ~ rho^2 ab / 2 per dim

    @pytest.mark.parametrize("rho", [0.5, 0.975])
    def test_float32_gain_of_small_variances_keeps_its_digits(self, rho):
        # the textbook root subtracts two nearly equal terms when a b << (1 - rho^2)^2
        logvar = torch.full((1, 6), -9.0, dtype=DT)
        logvar_aux = torch.linspace(-9.0, -4.0, 6, dtype=DT).unsqueeze(0)
        exact = entropic_ot_coupling_gain(logvar, logvar_aux, rho)
        single = entropic_ot_coupling_gain(logvar.float(), logvar_aux.float(), rho)
        torch.testing.assert_close(single.double(), exact, rtol=1e-5, atol=0)
        # variances whose product underflows to 0 gain nothing, with finite gradients
        tiny = torch.full((2, 3), -60.0, requires_grad=True)
        gain = entropic_ot_coupling_gain(tiny, tiny, rho)
        gain.sum().backward()
        assert torch.equal(gain, torch.zeros(2)) and torch.isfinite(tiny.grad).all()

    @pytest.mark.parametrize("rho", [0.1, 0.6, 0.95, 0.975])
    def test_matches_numeric_maximisation(self, rho):
        mu, logvar, mu_aux, logvar_aux = random_codes(batch=2, d=4, seed=22)
        gain = entropic_ot_coupling_gain(logvar, logvar_aux, rho)
        j0_total = torch.zeros(2, dtype=DT)
        numeric = torch.zeros(2, dtype=DT)
        for n in range(2):
            for i in range(4):
                a, b = logvar[n, i].exp().item(), logvar_aux[n, i].exp().item()
                m, ma = mu[n, i].item(), mu_aux[n, i].item()
                f = lambda c: J(c, a, b, m, ma, rho)  # noqa: E731
                bound = math.sqrt(a * b)
                c_num, j_max = golden_max(f, -bound * (1 - 1e-12), bound * (1 - 1e-12))
                om = 1 - rho**2
                c_star = (-om + math.sqrt(om**2 + 4 * rho**2 * a * b)) / (2 * rho)
                assert abs(c_num - c_star) < 1e-6 * max(1.0, bound)
                assert j_max >= f(0.0)
                numeric[n] += j_max - f(0.0)
                j0_total[n] += f(0.0)
        torch.testing.assert_close(gain, numeric, rtol=1e-8, atol=1e-10)
        # J(0) is the product coupling: -KL(q(z|x) || N(0, I)) + C + H
        product = (
            -kl_standard_normal(mu, logvar)
            + expected_log_coupling(mu, logvar, mu_aux, logvar_aux, rho)
            + gaussian_entropy(logvar_aux)
        )
        torch.testing.assert_close(j0_total, product, rtol=1e-12, atol=1e-10)

    @pytest.mark.parametrize("rho", [0.5, 0.975])
    def test_envelope_gradient(self, rho):
        _, logvar, _, logvar_aux = random_codes(seed=23)
        lv1, lva1 = logvar.clone().requires_grad_(True), logvar_aux.clone().requires_grad_(True)
        lv2, lva2 = logvar.clone().requires_grad_(True), logvar_aux.clone().requires_grad_(True)
        g_det = torch.autograd.grad(entropic_ot_coupling_gain(lv1, lva1, rho).sum(), (lv1, lva1))
        g_full = torch.autograd.grad(ot_gain_undetached(lv2, lva2, rho).sum(), (lv2, lva2))
        for a, b in zip(g_det, g_full):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


class Test_Consistency_Loss:
    @pytest.mark.parametrize("estimator", ["analytic", "paired"])
    @pytest.mark.parametrize("coupling", ["product", "entropic_ot"])
    def test_total_is_sum(self, estimator, coupling):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=30)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen(31), dtype=DT)
        if (estimator, coupling) == ("paired", "entropic_ot"):  # its gain is derived for "analytic" only
            with pytest.raises(ValueError, match="coupling='entropic_ot' needs coupling_estimator='analytic'"):
                consistency_loss(mu, logvar, mu_aux, logvar_aux, 0.9, z=z, estimator=estimator, coupling=coupling)
            return
        out = consistency_loss(mu, logvar, mu_aux, logvar_aux, 0.9, z=z,
                               estimator=estimator, coupling=coupling)
        assert set(out) == {"coupling", "entropy", "total"}
        for v in out.values():
            assert v.shape == (5,)
        torch.testing.assert_close(out["total"], out["coupling"] + out["entropy"])
        torch.testing.assert_close(out["entropy"], -gaussian_entropy(logvar_aux))

    def test_terms_are_negated_closed_forms(self):
        rho = 0.9
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=32)
        z = torch.randn(mu.shape, generator=gen(33), dtype=DT)
        analytic = consistency_loss(mu, logvar, mu_aux, logvar_aux, rho)
        torch.testing.assert_close(
            analytic["coupling"], -expected_log_coupling(mu, logvar, mu_aux, logvar_aux, rho)
        )
        paired = consistency_loss(mu, logvar, mu_aux, logvar_aux, rho, z=z, estimator="paired")
        torch.testing.assert_close(
            paired["coupling"], -paired_log_coupling(z, mu_aux, logvar_aux, rho)
        )
        ot = consistency_loss(mu, logvar, mu_aux, logvar_aux, rho, coupling="entropic_ot")
        torch.testing.assert_close(
            ot["coupling"],
            analytic["coupling"] - entropic_ot_coupling_gain(logvar, logvar_aux, rho),
        )
        assert torch.all(ot["total"] < analytic["total"])

    def test_paired_needs_z(self):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=34)
        with pytest.raises(ValueError, match="z"):
            consistency_loss(mu, logvar, mu_aux, logvar_aux, 0.9, estimator="paired")

    def test_bad_estimator(self):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=35)
        with pytest.raises(ValueError, match="estimator"):
            consistency_loss(mu, logvar, mu_aux, logvar_aux, 0.9, estimator="sampled")

    def test_bad_coupling(self):
        mu, logvar, mu_aux, logvar_aux = random_codes(seed=36)
        with pytest.raises(ValueError, match="coupling"):
            consistency_loss(mu, logvar, mu_aux, logvar_aux, 0.9, coupling="optimal")
