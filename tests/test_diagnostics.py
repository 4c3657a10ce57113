import pytest
import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

from pythae_avae.diagnostics import autoencoding_consistency, format_consistency


class ScaledIdentityEncoder(BaseEncoder):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        mu = self.scale * (x.flatten(1) * 2 - 1)
        return ModelOutput(embedding=mu, log_covariance=torch.zeros_like(mu))


class LinearDecoder(BaseDecoder):
    def forward(self, z):
        return ModelOutput(reconstruction=((z + 1) / 2).reshape(len(z), 1, 2, 2))


def test_slope_recovers_a_known_transition():
    # x = (z + 1)/2 and mu(x) = 0.9 (2x - 1) = 0.9 z: slope 0.9, no residual
    model = VAE(VAEConfig(input_dim=(1, 2, 2), latent_dim=4), ScaledIdentityEncoder(0.9), LinearDecoder())
    stats = autoencoding_consistency(model, n_samples=400, chain_steps=3)
    assert stats["slope"] == pytest.approx(0.9, abs=1e-6)
    assert stats["residual_var"] == pytest.approx(0.0, abs=1e-9)
    assert stats["active_dims"] == 4 and stats["slope_active"] == pytest.approx(0.9, abs=1e-6)
    assert stats["chain_drift"][0] == 0.0
    # mu_0 = 0.9 z and mu_t = 0.9^t mu_0: the drift is (1 - 0.9^t) |mu_0|, z' - z is -0.1 z
    norm = torch.randn(400, 4, generator=torch.Generator().manual_seed(0)).norm(dim=1).mean().item()
    again = autoencoding_consistency(model, n_samples=400, chain_steps=3, batch_size=400)
    assert again["slope"] == pytest.approx(stats["slope"], abs=1e-9)
    for t in range(4):
        assert again["chain_drift"][t] == pytest.approx((1 - 0.9**t) * 0.9 * norm, rel=1e-5)
    assert again["mean_distance"] == pytest.approx(0.1 * norm, rel=1e-5)
    assert "slope" in format_consistency("toy", stats)


def test_posterior_codes_of_images():
    # mu(x) = 0.9 (2x - 1), sigma = 1: z = mu + eps, x~ = (z + 1)/2, z' = 0.9 z
    model = VAE(VAEConfig(input_dim=(1, 2, 2), latent_dim=4), ScaledIdentityEncoder(0.9), LinearDecoder())
    images = torch.rand(500, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    stats = autoencoding_consistency(model, n_samples=400, chain_steps=1, images=images, batch_size=400)
    assert stats["slope"] == pytest.approx(0.9, abs=1e-6)
    mu = 0.9 * (images[:400].flatten(1) * 2 - 1)
    eps = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    expected = float((mu * 0.9 * (mu + eps)).sum() / (mu * mu).sum())  # z' on mu(x): 0.9 plus noise
    assert stats["slope_mean"] == pytest.approx(expected, rel=1e-5)
    assert "on mu(x) = " in format_consistency("toy", stats)
    assert "slope_mean" not in autoencoding_consistency(model, n_samples=400, chain_steps=1)
    with pytest.raises(ValueError, match="images must hold at least n_samples=400 images, got 300"):
        autoencoding_consistency(model, n_samples=400, images=images[:300])


class CollapsedEncoder(ScaledIdentityEncoder):
    """``ScaledIdentityEncoder`` with dimensions ``dead`` collapsed to 0 (the decoder's input
    there never reaches the code)."""

    def __init__(self, scale, dead):
        super().__init__(scale)
        self.dead = dead

    def forward(self, x):
        out = super().forward(x)
        out.embedding[:, self.dead] = 0.0
        return out


@pytest.mark.parametrize("dead, active", [([2, 3], 2), ([0, 1, 2, 3], 0)])
def test_collapsed_dimensions_are_left_out_of_the_active_slope(dead, active):
    # two of four dimensions collapsed: the pooled slope halves, the active one stays 0.9
    model = VAE(VAEConfig(input_dim=(1, 2, 2), latent_dim=4), CollapsedEncoder(0.9, dead), LinearDecoder())
    stats = autoencoding_consistency(model, n_samples=400, chain_steps=1)
    assert stats["active_dims"] == active
    assert stats["slope"] == pytest.approx(0.9 * active / 4, abs=0.05)
    assert stats["slope_active"] == (pytest.approx(0.9, abs=1e-6) if active else 0.0)


def test_works_on_pythae_vae_and_restores_mode():
    model = VAE(VAEConfig(input_dim=(1, 4, 4), latent_dim=3))
    model.train()
    stats = autoencoding_consistency(model, n_samples=50, chain_steps=2, batch_size=20)
    assert model.encoder.training and model.decoder.training
    assert len(stats["chain_drift"]) == 3
    with pytest.raises(ValueError):
        autoencoding_consistency(model, n_samples=1)


def test_reconstruction_error_of_a_known_decoder():
    from pythae_avae.diagnostics import reconstruction_error

    # mu(x) = 0.9 (2x - 1), g(z) = (z + 1)/2: g(mu(x)) = 0.9 x + 0.05, error 0.05 - 0.1 x
    model = VAE(VAEConfig(input_dim=(1, 2, 2), latent_dim=4), ScaledIdentityEncoder(0.9), LinearDecoder())
    x = torch.rand(10, 1, 2, 2)
    expected = ((0.05 - 0.1 * x) ** 2).sum() / 10
    stats = reconstruction_error(model, x, batch_size=3)
    assert stats["sse_per_image"] == pytest.approx(float(expected), rel=1e-5)
    assert stats["mse_per_pixel"] == pytest.approx(float(expected) / 4, rel=1e-5)
    with pytest.raises(ValueError, match=r"images must hold pixels in \[0, 1\], got values in \[255, 255\]"):
        reconstruction_error(model, torch.full((2, 1, 2, 2), 255.0))  # 0-255 images: refused, not scored


class Wrapped(torch.nn.Module):
    """What DDP and DataParallel look like from outside: the model under ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_wrapped_models_and_bad_arguments():
    from pythae_avae.diagnostics import reconstruction_error

    model = VAE(VAEConfig(input_dim=(1, 2, 2), latent_dim=4), ScaledIdentityEncoder(0.9), LinearDecoder())
    assert autoencoding_consistency(Wrapped(model), n_samples=50, chain_steps=1) == autoencoding_consistency(
        model, n_samples=50, chain_steps=1)
    x = torch.rand(4, 1, 2, 2)
    assert reconstruction_error(Wrapped(model), x) == reconstruction_error(model, x)
    for bad in (0, -1):  # -1 scored nothing: an error of 0
        with pytest.raises(ValueError, match=rf"batch_size must be an int >= 1, got {bad}"):
            reconstruction_error(model, x, batch_size=bad)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 2, 2\) \(the model's input_dim\), "
                                         r"got \(4, 1, 3, 3\)"):
        reconstruction_error(model, torch.rand(4, 1, 3, 3))


class DiagonalDecoder(BaseDecoder):
    """A one-pixel image from a one-dimensional code, squashed into [0, 1]: residuals and
    drift depend on every draw (unlike ``LinearDecoder``'s exact 0.9 transition)."""

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(z).reshape(len(z), 1, 1, 1))


class ConstantPosteriorEncoder(ScaledIdentityEncoder):
    """``mu(x) = 0`` and ``log sigma^2 = log 4`` for every image: std 2, or 4 when sampled
    the official code's way (``exp(log_var)``)."""

    def forward(self, x):
        zeros = torch.zeros(len(x), 4)
        return ModelOutput(embedding=zeros, log_covariance=zeros + torch.log(torch.tensor(4.0)))


class RecordingDecoder(LinearDecoder):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, z):
        self.inputs.append(z.detach().clone())
        return super().forward(z)


@pytest.mark.parametrize("official, std", [(False, 2.0), (True, 4.0)])
def test_posterior_codes_are_drawn_as_the_model_draws_them(official, std):
    from pythae_avae import AVAE, AVAEConfig

    decoder = RecordingDecoder()
    config = AVAEConfig(input_dim=(1, 2, 2), latent_dim=4, reproduce_official_sampling=official)
    model = AVAE(config, ConstantPosteriorEncoder(1.0), decoder)
    autoencoding_consistency(model, n_samples=100, chain_steps=0, images=torch.rand(100, 1, 2, 2))
    eps = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(decoder.inputs[0], std * eps)  # the codes the decoder was given


def test_the_codes_depend_on_the_seed_not_on_the_batch_size():
    # 250 + 150 standard normal draws are not the first 400 of one draw of 400 (torch fills
    # in blocks): every batch size must read the same codes
    model = VAE(VAEConfig(input_dim=(1, 1, 1), latent_dim=1), ScaledIdentityEncoder(0.5), DiagonalDecoder())
    whole = autoencoding_consistency(model, n_samples=400, chain_steps=2, batch_size=400)
    for batch_size in (250, 7):
        stats = autoencoding_consistency(model, n_samples=400, chain_steps=2, batch_size=batch_size)
        assert stats.pop("chain_drift") == pytest.approx(whole["chain_drift"], rel=1e-6)
        assert stats == pytest.approx({k: v for k, v in whole.items() if k != "chain_drift"}, rel=1e-6)
    assert autoencoding_consistency(model, n_samples=400, chain_steps=2, seed=1)["slope"] != whole["slope"]
