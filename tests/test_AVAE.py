"""AVAE model tests, laid out like Pythae's tests/test_VAE.py (spec §9 items 7-10)."""

import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
from custom_architectures import (
    Decoder_AVAE_Conv,
    Decoder_AVAE_MLP,
    Encoder_AVAE_Conv,
    Encoder_AVAE_MLP,
    NetBadInheritance,
)
from pydantic import ValidationError
from pythae.customexception import BadInheritanceError
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, AutoModel, VAEConfig
from pythae.pipelines import TrainingPipeline
from pythae.samplers import NormalSampler
from pythae.trainers import BaseTrainer, BaseTrainerConfig

import pythae_avae  # noqa: F401  (hooks AutoModel)
from pythae_avae import AVAE, AVAEConfig
from pythae_avae.models.coupling import consistency_loss
from pythae_avae.models.serialization import PickleRefusedError
from pythae_avae.recipes import train_for_iterations

SHAPE = (3, 28, 28)
SMALL = (1, 16, 16)
LATENT = 4
OUT_KEYS = {
    "loss", "recon_loss", "reg_loss", "coupling_loss", "entropy_loss", "recon_x", "z"
}

# Configs are built per test from these kwargs: Pythae's BaseAE writes `uses_default_*` back
# into the config object, so a config must not be shared between two models.
# aux_noise=False: the by-hand checks need the deterministic delusion x~ = g(z); the noisy
# default has its own tests (test_aux_noise)
CONFIG_KWARGS = [
    dict(input_dim=SHAPE, latent_dim=LATENT, rho=0.9, aux_noise=False),
    dict(input_dim=SMALL, latent_dim=6, rho=0.5, obs_var=0.3, reconstruction_loss="bce",
         coupling_estimator="paired", aux_noise=False),
]


def images(n, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def prior_kl(code):
    """Mean over the batch of KL(N(mu, sigma^2) || N(0, I)) for an encoder output."""
    return (0.5 * (code.log_covariance.exp() + code.embedding**2 - 1 - code.log_covariance).sum(1)).mean()


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(params=CONFIG_KWARGS, ids=["rgb28-mse", "gray16-bce-paired"])
def config_kwargs(request):
    return dict(request.param)


@pytest.fixture
def model_config(config_kwargs):
    return AVAEConfig(**config_kwargs)


@pytest.fixture(params=["conv", "mlp"])
def custom_nets(request, config_kwargs):
    torch.manual_seed(0)
    shape, d = config_kwargs["input_dim"], config_kwargs["latent_dim"]
    if request.param == "conv":
        return Encoder_AVAE_Conv(shape, d), Decoder_AVAE_Conv(shape, d)
    return Encoder_AVAE_MLP(shape, d), Decoder_AVAE_MLP(shape, d)


class Test_Model_Building:
    def test_build_model(self, model_config):
        model = AVAE(model_config)
        assert model.input_dim == model_config.input_dim
        assert model.latent_dim == model_config.latent_dim
        assert model.model_name == "AVAE"
        assert model.model_config.rho == model_config.rho
        assert model.model_config.uses_default_encoder
        assert model.model_config.uses_default_decoder

    def test_defaults(self):
        cfg = AVAEConfig(input_dim=SHAPE)
        assert cfg.name == "AVAEConfig"
        assert cfg.latent_dim == 64 and cfg.rho == 0.975 and cfg.obs_var == 0.5
        assert cfg.coupling_estimator == "analytic" and cfg.coupling == "product"
        assert cfg.aux_noise is True and cfg.reproduce_official_sampling is False
        assert cfg.reconstruction_loss == "mse"

    def test_raises_bad_inheritance(self, model_config):
        with pytest.raises(BadInheritanceError):
            AVAE(model_config, encoder=NetBadInheritance())
        with pytest.raises(BadInheritanceError):
            AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT), decoder=NetBadInheritance())

    def test_raises_no_input_dim(self, config_kwargs, custom_nets):
        kwargs = {k: v for k, v in config_kwargs.items() if k != "input_dim"}
        with pytest.raises(AttributeError):
            AVAE(AVAEConfig(**kwargs))
        with pytest.raises(AttributeError):
            AVAE(AVAEConfig(**kwargs), encoder=custom_nets[0])
        with pytest.raises(AttributeError):
            AVAE(AVAEConfig(**kwargs), decoder=custom_nets[1])
        model = AVAE(AVAEConfig(**kwargs), encoder=custom_nets[0], decoder=custom_nets[1])
        assert model.input_dim is None

    def test_build_custom_arch(self, model_config, custom_nets):
        enc, dec = custom_nets
        model = AVAE(model_config, encoder=enc, decoder=dec)
        assert model.encoder is enc and model.decoder is dec
        assert not model.model_config.uses_default_encoder
        assert not model.model_config.uses_default_decoder


class Test_Config:
    @pytest.mark.parametrize("rho", [1.0, 1.5, -0.1, -1.0])
    def test_bad_rho(self, rho):
        with pytest.raises(ValueError, match="rho"):
            AVAEConfig(input_dim=SHAPE, rho=rho)

    @pytest.mark.parametrize("obs_var", [0.0, -0.5])
    def test_bad_obs_var(self, obs_var):
        with pytest.raises(ValueError, match="obs_var"):
            AVAEConfig(input_dim=SHAPE, obs_var=obs_var)

    def test_bad_latent_dim(self):
        with pytest.raises(ValueError, match="latent_dim"):
            AVAEConfig(input_dim=SHAPE, latent_dim=0)

    @pytest.mark.parametrize("key", ["rhoo", "latnt_dim", "obsvar"])
    def test_unknown_key(self, key):
        with pytest.raises(ValueError, match=key):
            AVAEConfig(input_dim=SHAPE, **{key: 0.9})

    @pytest.mark.parametrize(
        "key,value",
        [
            ("coupling_estimator", "sampled"),
            ("coupling", "optimal"),
            ("reconstruction_loss", "l1"),
            ("rho", "abc"),
            ("obs_var", "big"),
            ("aux_batch_norm", "running"),
        ],
    )
    def test_bad_values(self, key, value):
        with pytest.raises(ValidationError, match=key):
            AVAEConfig(input_dim=SHAPE, **{key: value})

    def test_a_field_assigned_later_is_checked_and_a_refused_value_leaves_the_old_one(self):
        cfg = AVAEConfig(input_dim=SHAPE)
        model = AVAE(cfg)
        for key, value, error in [("rho", 1.0, ValueError), ("rho", "abc", ValidationError),
                                  ("obs_var", 0.0, ValueError), ("aux_weight", -1.0, ValueError),
                                  ("aux_samples", 0, ValueError), ("coupling", "optimal", ValidationError),
                                  ("aux_batch_norm", "running", ValidationError),
                                  ("check_inputs", "maybe", ValidationError)]:
            with pytest.raises(error, match=key):
                setattr(model.model_config, key, value)
        with pytest.raises(ValueError, match=r"aux_noise_std needs aux_noise=True"):
            AVAEConfig(input_dim=SHAPE, aux_noise_std=0.3).aux_noise = False  # checks across fields too
        assert (cfg.rho, cfg.obs_var, cfg.aux_weight, cfg.aux_samples, cfg.coupling, cfg.check_inputs) == (
            0.975, 0.5, 1.0, 1, "product", True)
        cfg.rho = 0.9
        assert model.model_config.rho == 0.9 and cfg.to_dict()["rho"] == 0.9 and cfg.name == "AVAEConfig"

    def test_bce_asks_for_the_delusions_noise(self, tmp_path):
        # sqrt(obs_var) would be the std of a variance the Bernoulli likelihood does not have;
        # warned, not refused: a config saved before must still load
        with pytest.warns(UserWarning, match=r"reconstruction_loss='bce' has no observation variance: the delusion's "
                                             r"noise std is sqrt\(obs_var\) = 0.707.* Give aux_noise_std"):
            cfg = AVAEConfig(input_dim=SHAPE, reconstruction_loss="bce")
        cfg.save_json(str(tmp_path), "model_config")
        with pytest.warns(UserWarning, match="bce"):
            assert AVAEConfig.from_json_file(os.path.join(tmp_path, "model_config.json")).aux_noise
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            AVAEConfig(input_dim=SHAPE, reconstruction_loss="bce", aux_noise_std=0.3)
            AVAEConfig(input_dim=SHAPE, reconstruction_loss="bce", aux_noise=False)

    def test_json_round_trip(self, tmp_path, config_kwargs):
        coupling = "product" if config_kwargs.get("coupling_estimator") == "paired" else "entropic_ot"
        cfg = AVAEConfig(**{**config_kwargs, "aux_noise": True, "aux_noise_std": 0.2, "coupling": coupling,
                            "aux_batch_norm": "frozen"})
        cfg.save_json(str(tmp_path), "model_config")
        back = AVAEConfig.from_json_file(os.path.join(tmp_path, "model_config.json"))
        assert back.__dict__ == cfg.__dict__


class Test_Model_Saving:
    def _check_reload(self, model, dir_path, **kwargs):
        for loader in (AVAE.load_from_folder, AutoModel.load_from_folder):
            reloaded = loader(str(dir_path), **kwargs)
            assert type(reloaded) is AVAE
            assert reloaded.model_config.__dict__ == model.model_config.__dict__
            assert state_equal(reloaded, model)
        return reloaded

    def test_default_model_saving(self, tmp_path, model_config):
        torch.manual_seed(1)
        model = AVAE(model_config)
        model.save(str(tmp_path))
        assert set(os.listdir(tmp_path)) == {"model.pt", "model_config.json", "environment.json"}
        self._check_reload(model, tmp_path)

    def test_custom_model_saving(self, tmp_path, model_config, custom_nets):
        model = AVAE(model_config, encoder=custom_nets[0], decoder=custom_nets[1])
        model.save(str(tmp_path))
        assert set(os.listdir(tmp_path)) == {
            "model.pt", "model_config.json", "environment.json", "encoder.pkl", "decoder.pkl"
        }
        for loader in (AVAE.load_from_folder, AutoModel.load_from_folder):  # user nets: pickles
            with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
                loader(str(tmp_path))
        reloaded = self._check_reload(model, tmp_path, allow_pickle=True)
        assert type(reloaded.encoder).__name__ == type(custom_nets[0]).__name__
        assert type(reloaded.decoder).__name__ == type(custom_nets[1]).__name__
        x = images(3, model_config.input_dim)
        model.eval(), reloaded.eval()
        torch.manual_seed(5)
        a = model({"data": x})
        torch.manual_seed(5)
        b = reloaded({"data": x})
        assert torch.equal(a.loss, b.loss) and torch.equal(a.recon_x, b.recon_x)

    def test_model_pt_is_weights_only(self, tmp_path, model_config):
        model = AVAE(model_config)
        model.save(str(tmp_path))
        payload = torch.load(os.path.join(tmp_path, "model.pt"), weights_only=True)
        sd = payload["model_state_dict"]
        assert sd.keys() == model.state_dict().keys()
        assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())

    def test_raises_missing_files(self, tmp_path, model_config, custom_nets):
        model = AVAE(model_config, encoder=custom_nets[0], decoder=custom_nets[1])
        model.save(str(tmp_path))
        os.remove(os.path.join(tmp_path, "decoder.pkl"))
        with pytest.raises(FileNotFoundError, match="decoder.pkl"):
            AutoModel.load_from_folder(str(tmp_path), allow_pickle=True)
        os.remove(os.path.join(tmp_path, "encoder.pkl"))
        with pytest.raises(FileNotFoundError, match="encoder.pkl"):
            AVAE.load_from_folder(str(tmp_path))
        os.remove(os.path.join(tmp_path, "model.pt"))
        with pytest.raises(FileNotFoundError, match="model.pt"):
            AVAE.load_from_folder(str(tmp_path))
        os.remove(os.path.join(tmp_path, "model_config.json"))
        with pytest.raises(FileNotFoundError, match="model_config.json"):
            AutoModel.load_from_folder(str(tmp_path))


class Test_Model_forward:
    @pytest.fixture
    def model(self, model_config):
        torch.manual_seed(0)
        return AVAE(model_config)

    def test_output_keys_and_shapes(self, model):
        x = images(5, model.input_dim)
        out = model({"data": x})
        assert set(out.keys()) == OUT_KEYS
        assert out.z.shape == (5, model.latent_dim)
        assert out.recon_x.shape == (5, *model.input_dim)
        for k in OUT_KEYS - {"recon_x", "z"}:
            assert out[k].shape == () and torch.isfinite(out[k])
        torch.testing.assert_close(
            out.loss, out.recon_loss + out.reg_loss + out.coupling_loss + out.entropy_loss
        )

    def test_wrong_shape(self, model):
        bad = images(2, (2, *model.input_dim[1:]))
        with pytest.raises(ValueError, match="shape"):
            model({"data": bad})
        with pytest.raises(ValueError, match="shape"):
            model({"data": images(2, model.input_dim).flatten(1)})

    @pytest.mark.parametrize("value", [1.5, -0.2])
    def test_pixels_out_of_range(self, model, value):
        x = images(2, model.input_dim)
        x[0, 0, 0, 0] = value
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model({"data": x})

    def test_nan_pixels(self, model):
        """NaN is not a pixel value in [0, 1]; the check must not let it through."""
        x = images(2, model.input_dim)
        x[1, 0, 1, 1] = float("nan")
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model({"data": x})

    def test_a_reconstruction_in_another_layout_is_refused(self, model):
        # channels-last output of an NCHW input: the same size, each pixel compared with another
        x = images(2, model.input_dim)
        nhwc = x.permute(0, 2, 3, 1)
        with pytest.raises(ValueError, match=re.escape(f"reconstruction has shape {tuple(nhwc.shape)}, the input "
                                                       f"{tuple(x.shape)}: they must match")):
            model.recon_loss_per_example(nhwc, x)
        torch.testing.assert_close(model.recon_loss_per_example(x.flatten(1), x), model.recon_loss_per_example(x, x))

    def test_check_inputs_off(self, config_kwargs):
        # "mse" only: BCE needs targets in [0, 1]
        kwargs = {**config_kwargs, "reconstruction_loss": "mse"}
        model = AVAE(AVAEConfig(**kwargs, check_inputs=False))
        x = images(2, model.input_dim) * 2 - 0.5
        assert torch.isfinite(model({"data": x}).loss)

    @pytest.mark.parametrize("estimator", ["analytic", "paired"])
    def test_loss_is_vae_plus_extra_by_hand(self, config_kwargs, estimator):
        """Spec §9.7 against an independent float64 re-implementation (same eps); the paired
        estimator's coupling is at the sample z that made the delusion (spec §1.4)."""
        cfg = AVAEConfig(**{**config_kwargs, "coupling_estimator": estimator})
        torch.manual_seed(0)
        model = AVAE(cfg).double()
        x = images(6, cfg.input_dim).double()
        torch.manual_seed(123)
        out = model({"data": x})

        torch.manual_seed(123)
        e = model.encoder(x)
        mu, lv = e.embedding, e.log_covariance
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        recon = model.decoder(z)["reconstruction"]
        if cfg.reconstruction_loss == "mse":
            rec = ((recon - x) ** 2).flatten(1).sum(1) / (2 * cfg.obs_var)
        else:
            rec = -(x * recon.log() + (1 - x) * (1 - recon).log()).flatten(1).sum(1)
        kl = 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(1)
        e2 = model.encoder(recon.detach())
        mu2, lv2 = e2.embedding, e2.log_covariance
        r, d = cfg.rho, cfg.latent_dim
        if estimator == "analytic":  # E over z ~ q(z|x) of log p_rho(z'|z), in closed form
            quad = lv2.exp() + r**2 * lv.exp() + (mu2 - r * mu) ** 2
        else:
            quad = lv2.exp() + (mu2 - r * z) ** 2
        C = -0.5 * d * math.log(2 * math.pi * (1 - r**2)) - quad.sum(1) / (2 * (1 - r**2))
        H = 0.5 * (math.log(2 * math.pi * math.e) + lv2).sum(1)

        torch.testing.assert_close(out.z, z, rtol=0, atol=0)
        torch.testing.assert_close(out.recon_loss, rec.mean(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.reg_loss, kl.mean(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.coupling_loss, -C.mean(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out.entropy_loss, -H.mean(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(
            out.loss, (rec + kl - C - H).mean(), rtol=1e-10, atol=1e-10
        )

    @pytest.mark.parametrize("reconstruction_loss", ["mse", "bce"])
    def test_loss_is_pythae_vae_plus_extra(self, reconstruction_loss):
        """With obs_var = 1, Pythae 0.1.2's VAE loss is the VAE part of AVAE's loss exactly."""
        cfg = dict(input_dim=SHAPE, latent_dim=LATENT, reconstruction_loss=reconstruction_loss)
        torch.manual_seed(0)
        noise = {"aux_noise_std": 1.0} if reconstruction_loss == "bce" else {}  # bce has no variance to take
        avae = AVAE(AVAEConfig(**cfg, rho=0.9, obs_var=1.0, **noise))
        vae = VAE(VAEConfig(**cfg))
        vae.load_state_dict(avae.state_dict())
        x = images(4)
        torch.manual_seed(7)
        v = vae({"data": x})
        torch.manual_seed(7)
        a = avae({"data": x})
        assert torch.equal(a.z, v.z) and torch.equal(a.recon_x, v.recon_x)
        torch.testing.assert_close(a.recon_loss, v.recon_loss, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(a.reg_loss, v.reg_loss, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(
            a.loss, v.loss + a.coupling_loss + a.entropy_loss, rtol=1e-6, atol=1e-4
        )
        assert abs((a.coupling_loss + a.entropy_loss).item()) > 1e-3  # the extra term is there

    def test_obs_var_scales_recon(self):
        """obs_var = 0.5 doubles Pythae's 'mse' term (SSE/2 -> SSE/(2*0.5))."""
        torch.manual_seed(0)
        avae = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, obs_var=0.5))
        vae = VAE(VAEConfig(input_dim=SHAPE, latent_dim=LATENT))
        vae.load_state_dict(avae.state_dict())
        x = images(4)
        torch.manual_seed(8)
        v = vae({"data": x})
        torch.manual_seed(8)
        a = avae({"data": x})
        torch.testing.assert_close(a.recon_loss, 2 * v.recon_loss)

    def test_decoder_gradient_only_from_vae_part(self, model_config, custom_nets):
        """Spec §9.8: same eps, decoder grads of the full loss == of recon + KL, bit for bit."""
        model = AVAE(model_config, encoder=custom_nets[0], decoder=custom_nets[1])
        x = images(4, model.input_dim)

        torch.manual_seed(3)
        out = model({"data": x})
        extra = out.coupling_loss + out.entropy_loss
        g_extra = torch.autograd.grad(
            extra, list(model.decoder.parameters()), allow_unused=True, retain_graph=True
        )
        assert all(g is None or torch.count_nonzero(g) == 0 for g in g_extra)
        out.loss.backward()
        full_dec = [p.grad.clone() for p in model.decoder.parameters()]
        full_enc = [p.grad.clone() for p in model.encoder.parameters()]

        model.zero_grad()
        torch.manual_seed(3)
        out2 = model({"data": x})
        (out2.recon_loss + out2.reg_loss).backward()
        vae_dec = [p.grad.clone() for p in model.decoder.parameters()]
        vae_enc = [p.grad.clone() for p in model.encoder.parameters()]

        assert all(torch.equal(a, b) for a, b in zip(full_dec, vae_dec))
        assert any(torch.count_nonzero(p) > 0 for p in full_dec)
        # control: the encoder does get gradient from the extra term
        assert not all(torch.allclose(a, b) for a, b in zip(full_enc, vae_enc))

    def test_delusion_has_no_history(self, model):
        x = images(3, model.input_dim)
        out = model({"data": x})
        assert out.recon_x.requires_grad
        x_aux = model.delusion(out.recon_x)
        assert x_aux.requires_grad is False
        assert x_aux.grad_fn is None
        assert torch.equal(x_aux, out.recon_x)

    def test_aux_noise(self, config_kwargs):
        v = 0.3
        kwargs = {**config_kwargs, "obs_var": v, "reconstruction_loss": "mse"}  # bce has no variance
        model = AVAE(AVAEConfig(**{**kwargs, "aux_noise": True}))
        recon = torch.full((200, *model.input_dim), 0.5, requires_grad=True)
        torch.manual_seed(0)
        x_aux = model.delusion(recon)
        assert x_aux.requires_grad is False and x_aux.grad_fn is None
        noise = (x_aux - recon.detach()).flatten()
        assert abs(noise.mean().item()) < 5 * math.sqrt(v / noise.numel())
        assert abs(noise.std().item() / math.sqrt(v) - 1) < 0.01

        # in forward: VAE part unchanged, auxiliary terms changed (encoder sees a noisy x~)
        plain = AVAE(AVAEConfig(**{**kwargs, "aux_noise": False}))
        plain.load_state_dict(model.state_dict())
        x = images(4, model.input_dim)
        torch.manual_seed(1)
        a = model({"data": x})
        torch.manual_seed(1)
        b = plain({"data": x})
        assert torch.equal(a.recon_loss, b.recon_loss) and torch.equal(a.reg_loss, b.reg_loss)
        assert not torch.allclose(a.coupling_loss, b.coupling_loss)

    @pytest.mark.parametrize("std", [0.0, 0.8])
    def test_aux_noise_std_replaces_sqrt_obs_var(self, config_kwargs, std):
        model = AVAE(AVAEConfig(**{**config_kwargs, "obs_var": 0.3, "aux_noise": True, "aux_noise_std": std}))
        recon = torch.full((200, *model.input_dim), 0.5)
        torch.manual_seed(0)
        noise = (model.delusion(recon) - recon).flatten()
        if std == 0:
            assert torch.equal(noise, torch.zeros_like(noise))
        else:
            assert abs(noise.std().item() / std - 1) < 0.01

    @pytest.mark.parametrize("official,power", [(False, 0.5), (True, 1.0)])
    def test_sampling_std(self, official, power):
        """Spec §9.9: z = mu + exp(logvar/2) eps (the official code used exp(logvar))."""
        model = AVAE(AVAEConfig(input_dim=SMALL, latent_dim=4,
                                reproduce_official_sampling=official))
        n = 200_000
        var = torch.tensor([0.25, 1.0, 4.0, 0.09])
        mu = torch.tensor([1.0, -2.0, 0.0, 0.5]).expand(n, 4)
        logvar = var.log().expand(n, 4)
        torch.manual_seed(0)
        z = model.sample_latent(mu, logvar)
        expected_std = var**power
        torch.testing.assert_close(z.std(0), expected_std, rtol=0.01, atol=0)
        torch.testing.assert_close(z.mean(0), mu[0], rtol=0, atol=0.02)

    def test_batch_size_invariance(self, model_config):
        """Spec §9.10: per-example sums then batch mean; same eps for every example."""
        torch.manual_seed(0)
        model = AVAE(model_config).double()
        d = model.latent_dim
        eps0 = torch.randn(1, d, dtype=torch.float64)
        model.sample_latent = lambda mu, lv: mu + torch.exp(0.5 * lv) * eps0.expand_as(mu)
        x1 = images(1, model.input_dim).double()
        one = model({"data": x1})
        many = model({"data": x1.expand(7, *model.input_dim).contiguous()})
        for k in OUT_KEYS - {"recon_x", "z"}:
            torch.testing.assert_close(one[k], many[k], rtol=1e-10, atol=1e-10)
        assert many.z.shape == (7, d)

    @pytest.mark.parametrize(
        "extra", [dict(coupling_estimator="paired"), dict(coupling="entropic_ot", coupling_estimator="analytic"), dict(rho=0.0)]
    )
    def test_options_run(self, config_kwargs, extra):
        model = AVAE(AVAEConfig(**{**config_kwargs, **extra}))
        out = model({"data": images(4, model.input_dim)})
        assert set(out.keys()) == OUT_KEYS
        assert all(torch.isfinite(out[k]) for k in OUT_KEYS - {"recon_x", "z"})
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    def test_option_values_differ(self):
        kw = dict(input_dim=SHAPE, latent_dim=LATENT, rho=0.9)
        torch.manual_seed(0)
        base = AVAE(AVAEConfig(**kw))
        outs = {}
        for name, extra in [("analytic", {}), ("paired", dict(coupling_estimator="paired")),
                            ("ot", dict(coupling="entropic_ot"))]:
            m = AVAE(AVAEConfig(**kw, **extra))
            m.load_state_dict(base.state_dict())
            torch.manual_seed(4)
            outs[name] = m({"data": images(4)})
        assert not torch.allclose(outs["paired"].coupling_loss, outs["analytic"].coupling_loss)
        assert outs["ot"].coupling_loss < outs["analytic"].coupling_loss  # OT gain >= 0
        assert torch.equal(outs["ot"].entropy_loss, outs["analytic"].entropy_loss)

    def test_rho_zero_extra_is_prior_kl_of_aux_code(self):
        """Spec §2.2 note: at rho = 0 the extra term is KL(q(z'|x~) || N(0, I))."""
        torch.manual_seed(0)
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, rho=0.0, aux_noise=False)).double()
        x = images(4).double()
        torch.manual_seed(2)
        out = model({"data": x})
        e = model.encoder(out.recon_x.detach())
        torch.testing.assert_close(out.coupling_loss + out.entropy_loss, prior_kl(e))


class Test_Aux_Batch_Norm:
    """``aux_batch_norm``: how the delusion's own encoder pass meets BatchNorm in training."""

    @staticmethod
    def batch_norms(model):
        return [m for m in model.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def trained_once(self, mode, rho=0.9, seed=3):
        """A BatchNorm ConvNet AVAE after one training-mode forward and backward, its output, and
        the running statistics of a copy that encoded the data alone."""
        from pythae_avae.nets import ColorMNISTConvDecoder, ColorMNISTConvEncoder

        torch.manual_seed(0)
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, rho=rho, aux_noise=False, aux_batch_norm=mode),
                     encoder=ColorMNISTConvEncoder(LATENT), decoder=ColorMNISTConvDecoder(LATENT)).train()
        x = images(8)
        data_only = AVAE(model.model_config, encoder=ColorMNISTConvEncoder(LATENT),
                         decoder=ColorMNISTConvDecoder(LATENT))
        data_only.load_state_dict(model.state_dict())
        data_only.train().encode(x)
        torch.manual_seed(seed)
        out = model({"data": x})
        out.loss.backward()
        stats = [(m.running_mean, m.running_var) for m in self.batch_norms(data_only)]
        return model, out, stats

    @pytest.mark.parametrize("mode", ["batch", "frozen", "eval"])
    def test_running_statistics_and_layers_restored(self, mode):
        model, _, data_stats = self.trained_once(mode)
        norms = self.batch_norms(model)
        same = all(torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
                   for m, (mean, var) in zip(norms, data_stats))
        assert same == (mode != "batch")  # only "batch" folds the delusion into them
        assert all(m.training and m.momentum == 0.1 for m in norms)
        assert all(int(m.num_batches_tracked) == (2 if mode == "batch" else 1) for m in norms)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())

    def test_frozen_normalises_like_batch_and_eval_like_test_time(self):
        _, batch, _ = self.trained_once("batch")
        _, frozen, _ = self.trained_once("frozen")
        torch.testing.assert_close(frozen.loss, batch.loss)  # same batch statistics
        # rho = 0: coupling + entropy is KL(q(z'|x~) || N(0, I)) of the code of x~ (above)
        model, out, _ = self.trained_once("eval", rho=0.0)
        e = model.eval().encoder(out.recon_x.detach())
        torch.testing.assert_close(out.coupling_loss + out.entropy_loss, prior_kl(e))
        model, out, _ = self.trained_once("batch", rho=0.0)
        e = model.eval().encoder(out.recon_x.detach())
        assert not torch.allclose(out.coupling_loss + out.entropy_loss, prior_kl(e))


class Test_Warmup:
    def test_weight_ramps_linearly_over_warmup_epoch(self):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, warmup_epoch=4))
        assert [model.warmup_weight(e) for e in (1, 2, 3, 4, 5, 9)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
        assert model.warmup_weight(None) == 1.0
        assert AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT)).warmup_weight(1) == 1.0
        with pytest.raises(ValueError, match=r"warmup_epoch must be an int >= 0 \(epochs\), got -1"):
            AVAEConfig(input_dim=SHAPE, warmup_epoch=-1)
        for bad in (0, -1.0, float("nan")):
            with pytest.raises(ValueError, match=r"aux_weight must be a finite number > 0 \(weight of the delusion"):
                AVAEConfig(input_dim=SHAPE, aux_weight=bad)

    @pytest.mark.parametrize("aux_weight", [1.0, 2.5])
    @pytest.mark.parametrize("epoch, weight", [(1, 0.0), (3, 0.5), (9, 1.0), (None, 1.0)])
    def test_delusion_terms_are_weighted_in_the_loss(self, config_kwargs, epoch, weight, aux_weight):
        full = AVAE(AVAEConfig(**config_kwargs))  # deterministic delusion: aux_noise=False
        warm = AVAE(AVAEConfig(**config_kwargs, warmup_epoch=4, aux_weight=aux_weight))
        weight *= aux_weight
        warm.load_state_dict(full.state_dict())
        x = images(6, full.input_dim)
        torch.manual_seed(1)
        ref = full({"data": x})
        torch.manual_seed(1)
        out = warm({"data": x}, epoch=epoch)
        for key in ("recon_loss", "reg_loss"):
            torch.testing.assert_close(out[key], ref[key])
        for key in ("coupling_loss", "entropy_loss"):
            torch.testing.assert_close(out[key], weight * ref[key])
        torch.testing.assert_close(
            out.loss, ref.recon_loss + ref.reg_loss + weight * (ref.coupling_loss + ref.entropy_loss))

    def test_warm_up_epochs_are_not_candidates_for_the_best_model(self, tmp_path):
        # their loss leaves out part of the objective: a final_model from them is barely an AVAE
        from pythae.data.datasets import BaseDataset

        from pythae_avae.trainers import ResumableTrainer, ResumableTrainerConfig

        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, warmup_epoch=2))
        config = ResumableTrainerConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, no_cuda=True)
        trainer = ResumableTrainer(model, BaseDataset(images(8), torch.zeros(8)), training_config=config)
        trainer.set_optimizer()
        trainer.set_scheduler()
        trainer._setup_callbacks()  # what train() sets up before its first epoch
        best = {"eval": math.inf, "train": math.inf, "model": None}
        for epoch in (1, 2):  # weights 0 and 1/2
            assert trainer._end_epoch(epoch, -1e9, best)["model"] is None
        assert trainer._end_epoch(3, 5.0, best)["train"] == 5.0  # full weight from epoch 3

    def test_the_trainer_passes_the_epoch(self, tmp_path):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, warmup_epoch=3))
        weights, avae_terms = [], model.avae_terms

        def spy(vae, mu_aux, logvar_aux, epoch=None):
            weights.append((epoch, model.warmup_weight(epoch)))
            return avae_terms(vae, mu_aux, logvar_aux, epoch)

        model.avae_terms = spy
        # 32 images, batch 16: 2 steps per epoch (the trainer's sanity check calls without one)
        train_for_iterations(model, images(32), iterations=4, batch_size=16,
                             output_dir=str(tmp_path), device="cpu", progress=False)
        assert [w for w in weights if w[0] is not None] == [(1, 0.0)] * 2 + [(2, 1 / 3)] * 2


class Test_Aux_Samples:
    def test_terms_average_the_k_delusions_by_hand(self, config_kwargs):
        # the first delusion from the reconstruction's sample, the others from fresh samples
        if config_kwargs.get("coupling_estimator") == "paired":
            with pytest.raises(ValueError, match=r"aux_samples=3 needs coupling_estimator='analytic'"):
                AVAEConfig(**config_kwargs, aux_samples=3)
            return
        model = AVAE(AVAEConfig(**config_kwargs, aux_samples=3))  # Pythae's MLPs: no BatchNorm
        x = images(5, model.input_dim)
        torch.manual_seed(4)
        out = model({"data": x})
        torch.manual_seed(4)
        vae = model.vae_terms(x)
        delusions = [vae["recon_x"].detach()] + [model.decode(model.sample_latent(vae["mu"], vae["logvar"]))
                                                 for _ in range(2)]
        parts = [consistency_loss(vae["mu"], vae["logvar"], *model.encode(d), model.model_config.rho)
                 for d in delusions]
        for term in ("coupling", "entropy"):
            expected = torch.stack([p[term] for p in parts]).mean(0).mean()
            torch.testing.assert_close(out[f"{term}_loss"], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.recon_loss, vae["recon"].mean())  # the VAE part is the K = 1 one

    def test_extra_delusions_are_decoded_without_gradient_and_encoded_in_one_batch(self, config_kwargs):
        if config_kwargs.get("coupling_estimator") == "paired":
            return
        model = AVAE(AVAEConfig(**config_kwargs, aux_samples=2))
        encoded, decoded = [], []
        model.encoder.register_forward_hook(lambda module, args, out: encoded.append(args[0].shape[0]))
        model.decoder.register_forward_hook(lambda module, args, out: decoded.append(torch.is_grad_enabled()))
        model({"data": images(4, model.input_dim)}).loss.backward()
        assert encoded == [4, 8] and decoded == [True, False]  # x, then its two delusions in one batch
        with pytest.raises(ValueError, match=r"aux_samples must be an int >= 1"):
            AVAEConfig(input_dim=SHAPE, aux_samples=0)


class Test_Model_reconstruct_embed_generate:
    @pytest.fixture
    def model(self, model_config):
        torch.manual_seed(0)
        return AVAE(model_config)

    def test_reconstruct_embed_predict(self, model):
        x = images(3, model.input_dim)
        assert model.reconstruct(x).shape == x.shape
        assert model.embed(x).shape == (3, model.latent_dim)
        pred = model.predict(x)
        assert pred.embedding.shape == (3, model.latent_dim)
        assert pred.recon_x.shape == x.shape

    def test_interpolate(self, model):
        x = images(2, model.input_dim)
        y = images(2, model.input_dim, seed=1)
        assert model.interpolate(x, y, granularity=5).shape == (2, 5, *model.input_dim)
        with pytest.raises(AssertionError):
            model.interpolate(x, images(3, model.input_dim), granularity=5)

    def test_normal_sampler(self, model):
        gen = NormalSampler(model).sample(num_samples=5, batch_size=5, return_gen=True)
        assert gen.shape == (5, *model.input_dim)


class Test_AVAE_Training:
    @pytest.fixture(params=["default", "conv", "mlp"])
    def model(self, request, model_config):
        torch.manual_seed(0)
        shape, d = model_config.input_dim, model_config.latent_dim
        if request.param == "default":
            return AVAE(model_config)
        if request.param == "conv":
            return AVAE(model_config, Encoder_AVAE_Conv(shape, d), Decoder_AVAE_Conv(shape, d))
        return AVAE(model_config, Encoder_AVAE_MLP(shape, d), Decoder_AVAE_MLP(shape, d))

    def _training_config(self, tmp_path, epochs=1):
        return BaseTrainerConfig(
            output_dir=str(tmp_path), num_epochs=epochs, per_device_train_batch_size=8,
            per_device_eval_batch_size=8, learning_rate=1e-3, no_cuda=True,
        )

    def test_train_and_eval_step(self, tmp_path, model):
        train = BaseDataset(images(20, model.input_dim), torch.zeros(20))
        trainer = BaseTrainer(model, train, train, self._training_config(tmp_path))
        trainer.prepare_training()
        before = snapshot(trainer.model)
        loss = trainer.train_step(epoch=1)
        assert math.isfinite(loss)
        after = snapshot(trainer.model)
        assert any(not torch.equal(before[k], after[k]) for k in before)
        loss = trainer.eval_step(epoch=1)
        assert math.isfinite(loss)
        assert all(torch.equal(after[k], v) for k, v in snapshot(trainer.model).items())

    @pytest.mark.parametrize("as_numpy", [True, False], ids=["numpy", "torch"])
    def test_training_pipeline(self, tmp_path, model, as_numpy):
        data = images(20, model.input_dim)
        eval_data = images(8, model.input_dim, seed=1)
        if as_numpy:
            data, eval_data = data.numpy().astype(np.float64), eval_data.numpy()
        before = snapshot(model)
        pipeline = TrainingPipeline(model=model, training_config=self._training_config(tmp_path, 2))
        pipeline(train_data=data, eval_data=eval_data)
        after = snapshot(pipeline.trainer.model)
        assert any(not torch.equal(before[k], after[k]) for k in before)

        (run_dir,) = [d for d in os.listdir(tmp_path) if d.startswith("AVAE_training_")]
        final = os.path.join(tmp_path, run_dir, "final_model")
        expected = {"model.pt", "model_config.json", "environment.json", "training_config.json"}
        if not model.model_config.uses_default_encoder:
            expected |= {"encoder.pkl", "decoder.pkl"}
        assert set(os.listdir(final)) == expected
        reloaded = AutoModel.load_from_folder(final, allow_pickle=True)  # test nets: pickled
        assert type(reloaded) is AVAE
        assert reloaded.model_config.__dict__ == model.model_config.__dict__
        assert state_equal(reloaded, pipeline.trainer._best_model)

    def test_training_pipeline_no_eval(self, tmp_path, model_config):
        model = AVAE(model_config)
        before = snapshot(model)
        pipeline = TrainingPipeline(model=model, training_config=self._training_config(tmp_path))
        pipeline(train_data=images(20, model.input_dim))
        after = snapshot(pipeline.trainer.model)
        assert any(not torch.equal(before[k], after[k]) for k in before)
        (run_dir,) = os.listdir(tmp_path)
        reloaded = AVAE.load_from_folder(os.path.join(tmp_path, run_dir, "final_model"))
        assert state_equal(reloaded, pipeline.trainer.model)

    def test_pipeline_rejects_bad_pixels(self, tmp_path, model_config):
        model = AVAE(model_config)
        pipeline = TrainingPipeline(model=model, training_config=self._training_config(tmp_path))
        # Pythae's trainer sanity check re-raises the model's ValueError as a ModelError
        with pytest.raises(Exception, match=r"must hold pixels in \[0, 1\]"):
            pipeline(train_data=images(20, model.input_dim) * 3)
