"""AVAE as a Pythae model, shaped like Pythae's tests/test_VAE.py."""

import os

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from pythae.models import VAE, AutoModel, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig

import pythae_avae  # noqa: F401  (registers AutoModel loading)
from pythae_avae import AVAE, AVAEConfig, GaussianVAE, GaussianVAEConfig
from pythae_avae.models.coupling import consistency_loss
from pythae_avae.nets import ColorMNISTConvDecoder, ColorMNISTConvEncoder

SHAPE = (3, 28, 28)
KEYS = {"loss", "recon_loss", "reg_loss", "coupling_loss", "entropy_loss", "recon_x", "z"}


@pytest.fixture(params=["default", "conv"])
def model(request):
    torch.manual_seed(0)
    config = AVAEConfig(input_dim=SHAPE, latent_dim=6, rho=0.9)
    if request.param == "default":
        return AVAE(config)
    return AVAE(config, encoder=ColorMNISTConvEncoder(6), decoder=ColorMNISTConvDecoder(6))


def data(n=8, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class Test_Model_Building:
    def test_dims_and_defaults(self, model):
        assert model.latent_dim == 6 and model.input_dim == SHAPE
        assert model.model_name == "AVAE"
        cfg = AVAEConfig()
        assert (cfg.rho, cfg.obs_var, cfg.latent_dim) == (0.975, 0.5, 64)
        assert (cfg.aux_noise, cfg.coupling_estimator, cfg.coupling) == (False, "analytic", "product")

    def test_bad_nets(self):
        from pythae.customexception import BadInheritanceError

        with pytest.raises(BadInheritanceError):
            AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=4), encoder=torch.nn.Linear(2, 2))

    @pytest.mark.parametrize("kwargs, match", [
        ({"rho": 1.0}, "rho"), ({"rho": 1.2}, "rho"), ({"rho": -0.1}, "rho"),
        ({"obs_var": 0.0}, "obs_var"), ({"obs_var": -1.0}, "obs_var"),
        ({"rhoo": 0.9}, "rhoo"), ({"coupling_estimator": "mc"}, "coupling_estimator"),
        ({"latent_dim": 0}, "latent_dim"),
    ])
    def test_invalid_config_raises_naming_the_parameter(self, kwargs, match):
        with pytest.raises((ValidationError, ValueError), match=match):
            AVAEConfig(input_dim=SHAPE, **kwargs)


class Test_Model_forward:
    def test_keys_and_shapes(self, model):
        out = model({"data": data()})
        assert isinstance(out, ModelOutput) and set(out.keys()) == KEYS
        assert out.z.shape == (8, 6) and out.recon_x.shape == (8, *SHAPE)
        total = out.recon_loss + out.reg_loss + out.coupling_loss + out.entropy_loss
        torch.testing.assert_close(out.loss, total)

    def test_wrong_shape_and_range_raise(self, model):
        with pytest.raises(ValueError, match="shape"):
            model({"data": torch.rand(2, 1, 28, 28)})
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model({"data": data() * 2})
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model({"data": data() - 0.5})

    def test_loss_is_vae_loss_plus_extra_term_exactly(self):
        torch.manual_seed(1)
        cfg = dict(input_dim=SHAPE, latent_dim=5, obs_var=0.3)
        avae = AVAE(AVAEConfig(rho=0.9, **cfg))
        vae = GaussianVAE(GaussianVAEConfig(**cfg), encoder=avae.encoder, decoder=avae.decoder)
        x = data()
        torch.manual_seed(7)
        out = avae({"data": x})
        torch.manual_seed(7)
        base = vae({"data": x})
        # the same eps: same z, same reconstruction, same VAE terms
        torch.testing.assert_close(out.z, base.z)
        mu, logvar = avae.encode(x)
        mu_a, logvar_a = avae.encode(out.recon_x.detach())
        extra = consistency_loss(mu, logvar, mu_a, logvar_a, 0.9)["total"].mean()
        torch.testing.assert_close(out.loss, base.loss + extra)
        # the VAE part by hand: SSE / (2 v) + KL
        sse = (out.recon_x - x).pow(2).flatten(1).sum(1)
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1)
        torch.testing.assert_close(base.loss, (sse / 0.6 + kl).mean())

    def test_obs_var_one_matches_pythae_vae(self):
        torch.manual_seed(2)
        vae = VAE(VAEConfig(input_dim=SHAPE, latent_dim=4, reconstruction_loss="mse"))
        ours = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=4, obs_var=1.0),
                           encoder=vae.encoder, decoder=vae.decoder)
        x = data()
        torch.manual_seed(3)
        a = vae({"data": x})
        torch.manual_seed(3)
        b = ours({"data": x})
        torch.testing.assert_close(a.loss, b.loss)

    def test_decoder_gradient_comes_from_reconstruction_only(self, model):
        x = data()
        torch.manual_seed(4)
        out = model({"data": x})
        g_avae = torch.autograd.grad(out.loss, list(model.decoder.parameters()))
        torch.manual_seed(4)
        out = model({"data": x})
        g_vae = torch.autograd.grad(out.recon_loss + out.reg_loss, list(model.decoder.parameters()))
        for a, b in zip(g_avae, g_vae):
            torch.testing.assert_close(a, b)
        g_extra = torch.autograd.grad(out.coupling_loss + out.entropy_loss, list(model.decoder.parameters()),
                                      allow_unused=True)
        assert all(g is None or float(g.abs().max()) == 0 for g in g_extra)

    def test_delusion_has_no_autograd_history(self, model):
        out = model({"data": data()})
        assert out.recon_x.requires_grad
        x_aux = model.delusion(out.recon_x)
        assert not x_aux.requires_grad and x_aux.grad_fn is None
        torch.testing.assert_close(x_aux, out.recon_x.detach())

    def test_aux_noise_adds_sqrt_obs_var_noise(self):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=4, aux_noise=True, obs_var=0.25))
        recon = torch.full((64, *SHAPE), 0.5)
        noise = model.delusion(recon) - recon
        assert float(noise.std()) == pytest.approx(0.5, rel=0.02)

    @pytest.mark.parametrize("official, power", [(False, 0.5), (True, 1.0)])
    def test_sampling_std(self, official, power):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=3, reproduce_official_sampling=official))
        mu = torch.zeros(200_000, 3)
        logvar = torch.tensor([-2.0, 0.0, 1.0]).expand(200_000, 3)
        torch.manual_seed(5)
        std = model.sample_latent(mu, logvar).std(0)
        torch.testing.assert_close(std, torch.exp(power * logvar[0]), rtol=0.01, atol=0.0)

    def test_loss_invariant_to_repeating_the_batch(self):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=4)).eval()
        model.sample_latent = lambda mu, logvar: mu  # deterministic, to compare reductions
        x = data(3)
        torch.testing.assert_close(model({"data": x}).loss, model({"data": x.repeat(4, 1, 1, 1)}).loss)

    @pytest.mark.parametrize("options", [{"coupling_estimator": "paired"}, {"coupling": "entropic_ot"},
                                         {"reconstruction_loss": "bce"}])
    def test_options_give_finite_losses(self, options):
        model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=4, **options))
        out = model({"data": data()})
        assert torch.isfinite(out.loss)
        out.loss.backward()


class Test_Model_Saving:
    def test_save_and_reload_both_paths(self, model, tmp_path):
        model.save(str(tmp_path))
        files = set(os.listdir(tmp_path))
        assert {"model.pt", "model_config.json", "environment.json"} <= files
        assert ("encoder.pkl" in files) == (not model.model_config.uses_default_encoder)
        torch.load(tmp_path / "model.pt", weights_only=True)  # plain tensors only
        for loaded in (AVAE.load_from_folder(str(tmp_path)), AutoModel.load_from_folder(str(tmp_path))):
            assert type(loaded) is AVAE
            assert loaded.model_config.__dict__ == model.model_config.__dict__
            for key, value in model.state_dict().items():
                assert torch.equal(loaded.state_dict()[key], value), key


class Test_AVAE_Training:
    @pytest.mark.parametrize("as_numpy", [True, False])
    def test_stock_pythae_pipeline_trains_and_reloads(self, model, tmp_path, as_numpy):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train = data(24)
        config = BaseTrainerConfig(output_dir=str(tmp_path), num_epochs=2, per_device_train_batch_size=8,
                                   no_cuda=True, learning_rate=1e-3)
        pipeline = TrainingPipeline(model, config)
        pipeline(train.numpy() if as_numpy else train, eval_data=data(8, seed=1))
        trained = pipeline.trainer.model
        assert any(not torch.equal(before[k], v) for k, v in trained.state_dict().items())
        final = os.path.join(pipeline.trainer.training_dir, "final_model")
        reloaded = AutoModel.load_from_folder(final)
        assert type(reloaded) is AVAE
        for key, value in pipeline.trainer._best_model.state_dict().items():
            assert torch.equal(reloaded.state_dict()[key], value)

    def test_eval_step_does_not_change_weights(self, model):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model.eval()
        with torch.no_grad():
            model({"data": data()})
        for key, value in model.state_dict().items():
            assert torch.equal(before[key], value)
