"""AVAE-SS: data-free post-training of a pretrained VAE's encoder (spec §9 items 18-19)."""

import dataclasses
import math
import os

import pytest
import torch
from _model_helpers import (
    LATENT,
    SHAPE,
    BNDecoder,
    assert_same_weights,
    conv_nets,
    images,
    loss_terms,
    same_state,
    snapshot,
)
from pythae.models import VAE, AutoModel, VAEConfig
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback

from pythae_avae import AVAE, AVAE_SS, AVAEConfig, AVAE_SS_Config, GaussianVAE, GaussianVAEConfig
from pythae_avae.models.serialization import PickleRefusedError
from pythae_avae.pipelines import TrainingPipeline
from pythae_avae.trainers import DataFreeTrainer, DataFreeTrainerConfig, TermLoggerCallback


def pythae_vae(decoder=None):
    encoder, conv_decoder = conv_nets()
    return VAE(VAEConfig(input_dim=SHAPE, latent_dim=LATENT), encoder, decoder or conv_decoder)


def prior_images(decoder, seed=7, n=16):
    torch.manual_seed(seed)
    z = torch.randn(n, LATENT)
    with torch.no_grad():
        return decoder(z).reconstruction


class CountSteps(TrainingCallback):
    def __init__(self):
        self.steps = 0

    def on_train_step_end(self, training_config, **kwargs):
        self.steps += 1


# ---- construction ---------------------------------------------------------------------------
def test_from_pretrained_copies_and_freezes_the_decoder():
    vae = pythae_vae()
    model = AVAE_SS.from_pretrained(vae, rho=0.9)
    cfg = model.model_config
    assert (cfg.input_dim, cfg.latent_dim, cfg.rho) == (SHAPE, LATENT, 0.9)
    assert cfg.obs_var == 1.0  # Pythae's "mse" is SSE/2
    assert model.encoder is not vae.encoder and model.decoder is not vae.decoder
    assert_same_weights(model, vae)
    assert all(not p.requires_grad for p in model.decoder.parameters())
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in vae.parameters())  # the source is untouched
    model.train()
    assert model.training and model.encoder.training and not model.decoder.training


def test_from_pretrained_inherits_our_configs_and_folders(tmp_path):
    ours = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=LATENT, obs_var=0.3),
                       *conv_nets())
    assert AVAE_SS.from_pretrained(ours).model_config.obs_var == 0.3
    assert AVAE_SS.from_pretrained(ours, obs_var=0.7).model_config.obs_var == 0.7
    avae = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT, rho=0.8), *conv_nets())
    assert AVAE_SS.from_pretrained(avae).model_config.rho == 0.8
    vae = pythae_vae()
    vae.save(str(tmp_path))
    with pytest.raises(PickleRefusedError, match=r"encoder.pkl.*allow_pickle=True"):
        AVAE_SS.from_pretrained(tmp_path)  # a Pythae VAE with custom nets: pickles
    model = AVAE_SS.from_pretrained(tmp_path, rho=0.5, batch_size=8, allow_pickle=True)
    assert model.model_config.rho == 0.5 and model.model_config.batch_size == 8
    assert_same_weights(model, vae)


def test_from_pretrained_rejects_non_vae_and_bad_fields():
    with pytest.raises(TypeError, match="VAE-family"):
        AVAE_SS.from_pretrained(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rho"):
        AVAE_SS.from_pretrained(pythae_vae(), rho=1.0)
    with pytest.raises(Exception, match="rhoo"):
        AVAE_SS.from_pretrained(pythae_vae(), rhoo=0.5)


@pytest.mark.parametrize("mode", ["batch", "frozen"])
def test_generated_batch_norm_keeps_or_moves_the_pretrained_running_statistics(mode):
    # "batch": real data's running statistics drift to the decoder samples'; "frozen" keeps them
    model = AVAE_SS.from_pretrained(pythae_vae(), generated_batch_norm=mode).train()
    norms = [m for m in model.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms

    def stats():
        return [t.clone() for m in norms for t in (m.running_mean, m.running_var, m.num_batches_tracked)]

    before = stats()
    model(AVAE_SS.prior_batch(8)).loss.backward()
    kept = all(torch.equal(a, b) for a, b in zip(before, stats()))
    assert kept == (mode == "frozen")
    assert all(m.momentum == 0.1 for m in norms)  # put back after the step
    model({"data": prior_images(model.decoder, n=8)})  # a data batch: a batch like any other
    assert not all(torch.equal(a, b) for a, b in zip(before, stats()))
    with pytest.raises(Exception, match="generated_batch_norm"):
        AVAE_SS_Config(generated_batch_norm="eval")


def test_config_validation():
    assert AVAE_SS_Config().batch_size == 64 and not AVAE_SS_Config().prior_noise
    for fields, match in [({"batch_size": 0}, "batch_size"), ({"rho": -0.5}, "rho"),
                          ({"prior_noise": True, "reconstruction_loss": "bce", "aux_noise_std": 0.3}, "prior_noise")]:
        with pytest.raises(ValueError, match=match):
            AVAE_SS_Config(**fields)
    with pytest.raises(Exception, match="freeze"):
        AVAE_SS_Config(freeze=True)


# ---- forward ----------------------------------------------------------------------------------
def test_forward_without_data():
    model = AVAE_SS.from_pretrained(pythae_vae(), batch_size=5)
    assert model().z.shape == (5, LATENT)
    assert model({}).z.shape == (5, LATENT)
    # the inputs are drawn where the decoder is, wherever the request was made (a CPU request
    # to a CUDA model: "meta" here, a device no draw can be made on)
    out = model(AVAE_SS.prior_batch(3, device="meta"))
    assert out.z.shape == (3, LATENT) and set(loss_terms(out)) == {
        "recon_loss", "reg_loss", "coupling_loss", "entropy_loss"}
    out.loss.backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_step_is_the_avae_step_on_decoder_samples():
    model = AVAE_SS.from_pretrained(pythae_vae(), rho=0.9)
    model.eval()
    torch.manual_seed(0)
    data_free = model(AVAE_SS.prior_batch(6))
    torch.manual_seed(0)
    x = model.generate_inputs(6)
    on_samples = model({"data": x})  # real-data path, same random draws afterwards
    assert x.min() >= 0 and x.max() <= 1
    assert loss_terms(data_free) == pytest.approx(loss_terms(on_samples), rel=1e-6)


def test_generated_inputs_decode_standard_normal_codes():
    model = AVAE_SS.from_pretrained(pythae_vae())
    codes = []
    decode = model.decode
    model.decode = lambda z: codes.append(z) or decode(z)
    x = model.generate_inputs(4000)
    (z0,) = codes
    assert z0.shape == (4000, LATENT) and x.shape[0] == 4000
    assert z0.mean().abs() < 0.02 and (z0.std(0) - 1).abs().max() < 0.05  # N(0, I), not one code
    torch.testing.assert_close(x, decode(z0))


def test_real_images_are_checked_and_embedded():
    model = AVAE_SS.from_pretrained(pythae_vae())
    assert model({"data": images(4)}).z.shape == (4, LATENT)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model({"data": images(4) + 2.0})


def test_prior_noise_adds_pixel_noise():
    model = AVAE_SS.from_pretrained(pythae_vae(), prior_noise=True, obs_var=0.25)
    torch.manual_seed(0)
    noisy = model.generate_inputs(8)
    torch.manual_seed(0)
    clean = model.decode(torch.randn(8, LATENT))
    assert 0.4 < (noisy - clean).std() < 0.6  # sqrt(0.25)


# ---- data-free training -------------------------------------------------------------------------
def test_trainer_config():
    cfg = DataFreeTrainerConfig(num_steps=12, steps_per_epoch=4, batch_size=8)
    assert (cfg.num_epochs, cfg.per_device_train_batch_size, cfg.batch_size) == (3, 8, 8)
    assert DataFreeTrainerConfig(per_device_train_batch_size=16).batch_size == 16
    with pytest.raises(ValueError, match="multiple of steps_per_epoch"):
        DataFreeTrainerConfig(num_steps=10, steps_per_epoch=4)
    for field in ("num_steps", "steps_per_epoch", "batch_size"):
        with pytest.raises(ValueError, match=field):
            DataFreeTrainerConfig(**{field: 0})
    with pytest.raises(Exception, match="num_iterations"):
        DataFreeTrainerConfig(num_iterations=5)
    # synonyms given together must agree (a silent choice would train another length or batch)
    assert DataFreeTrainerConfig(num_steps=12, steps_per_epoch=4, num_epochs=3).num_epochs == 3
    assert DataFreeTrainerConfig().num_epochs == 100  # Pythae's default when neither is given
    with pytest.raises(ValueError, match=r"num_epochs \(5\) disagrees with num_steps / steps_per_epoch \(3\)"):
        DataFreeTrainerConfig(num_steps=12, steps_per_epoch=4, num_epochs=5)
    with pytest.raises(ValueError, match=r"per_device_train_batch_size \(16\) disagrees with batch_size \(8\)"):
        DataFreeTrainerConfig(batch_size=8, per_device_train_batch_size=16)


def test_trainer_refuses_data_and_data_hungry_models(tmp_path):
    config = DataFreeTrainerConfig(output_dir=str(tmp_path), num_steps=1, steps_per_epoch=1,
                                   no_cuda=True)
    model = AVAE_SS.from_pretrained(pythae_vae())
    with pytest.raises(ValueError, match="without data"):
        TrainingPipeline(model, config)(train_data=images(4))
    avae = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=LATENT), *conv_nets())
    with pytest.raises(TypeError, match="cannot train without data"):
        TrainingPipeline(avae, config)()
    with pytest.raises(TypeError, match="DataFreeTrainerConfig"):
        DataFreeTrainer(model, training_config=BaseTrainerConfig(no_cuda=True))


def test_post_training_without_data_changes_only_the_encoder(tmp_path):
    vae = pythae_vae(decoder=BNDecoder())  # BatchNorm in the decoder: its stats must not drift
    vae.decoder.eval()
    before_samples = prior_images(vae.decoder)
    vae_state = snapshot(vae)
    model = AVAE_SS.from_pretrained(vae, rho=0.9)
    counter, terms = CountSteps(), TermLoggerCallback(print_terms=False)
    config = DataFreeTrainerConfig(output_dir=str(tmp_path), num_steps=6, steps_per_epoch=3,
                                   batch_size=8, steps_saving=1, learning_rate=1e-3, no_cuda=True)
    pipeline = TrainingPipeline(model, config)
    pipeline(callbacks=[counter, terms])  # no data at all

    assert counter.steps == 6
    assert [sorted(k for k in h if k.startswith("train_epoch_")) for h in terms.history] == [
        ["train_epoch_coupling_loss", "train_epoch_entropy_loss", "train_epoch_loss",
         "train_epoch_recon_loss", "train_epoch_reg_loss"]] * 2
    training_dir = pipeline.trainer.training_dir
    assert sorted(os.listdir(training_dir)) == ["checkpoint_epoch_1", "checkpoint_epoch_2",
                                               "final_model"]
    for trained in (model, pipeline.trainer._best_model,
                    AutoModel.load_from_folder(os.path.join(training_dir, "final_model"), allow_pickle=True)):
        dec = {k: v for k, v in vae_state.items() if k.startswith("decoder.")}
        assert same_state(dec, {k: v for k, v in snapshot(trained).items() if k in dec})
        enc = {k: v for k, v in vae_state.items() if k.startswith("encoder.")}
        assert not same_state(enc, {k: v for k, v in snapshot(trained).items() if k in enc})
        assert torch.equal(prior_images(trained.decoder), before_samples)


def test_eval_data_is_optional_and_logged(tmp_path):
    model = AVAE_SS.from_pretrained(pythae_vae())
    config = DataFreeTrainerConfig(output_dir=str(tmp_path), num_steps=2, steps_per_epoch=1,
                                   batch_size=4, per_device_eval_batch_size=4, no_cuda=True)
    terms = TermLoggerCallback(print_terms=False)
    TrainingPipeline(model, config)(eval_data=images(8), callbacks=[terms])
    assert "eval_epoch_coupling_loss" in terms.history[-1]


def test_save_and_reload_keeps_the_decoder_frozen(tmp_path):
    model = AVAE_SS.from_pretrained(pythae_vae(), rho=0.8, prior_noise=True)
    model.save(str(tmp_path))
    for loader in (AutoModel.load_from_folder, AVAE_SS.load_from_folder):
        reloaded = loader(str(tmp_path))
        assert type(reloaded) is AVAE_SS
        assert dataclasses.asdict(reloaded.model_config) == dataclasses.asdict(model.model_config)
        assert_same_weights(reloaded, model)
        assert all(not p.requires_grad for p in reloaded.decoder.parameters())
        assert not reloaded.train().decoder.training


def test_prior_inputs_follow_the_decoders_dtype():
    model = AVAE_SS.from_pretrained(pythae_vae()).double()
    assert model.generate_inputs(4).dtype == torch.float64
    assert torch.isfinite(model(AVAE_SS.prior_batch(4)).loss)


def test_pythaes_nll_is_refused_where_it_assumes_unit_variance():
    # Pythae's estimate uses variance 1 whatever obs_var: silently wrong, so refused
    gaussian = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=LATENT, obs_var=0.5), *conv_nets())
    with pytest.raises(NotImplementedError, match=r"assumes obs_var = 1 \(this model: 0.5\)"):
        gaussian.get_nll(images(4), n_samples=2)
    bernoulli = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=LATENT, reconstruction_loss="bce"),
                            *conv_nets())
    assert math.isfinite(bernoulli.eval().get_nll(images(4), n_samples=2, batch_size=2))  # Pythae's own


def test_a_vae_on_pythaes_default_nets_post_trains_and_saves_without_pickles(tmp_path):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(input_dim=SHAPE, latent_dim=LATENT))  # Pythae's default MLPs
    model = AVAE_SS.from_pretrained(vae)
    for part in ("encoder", "decoder"):
        source, copy = getattr(vae, part).state_dict(), getattr(model, part).state_dict()
        assert source.keys() == copy.keys() and all(torch.equal(source[k], copy[k]) for k in source)
    assert all(not p.requires_grad for p in model.decoder.parameters())
    model.save(str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pkl")]
    reloaded = AVAE_SS.load_from_folder(str(tmp_path))  # no allow_pickle needed
    x = images(4)
    model.eval(), reloaded.eval()
    assert torch.equal(reloaded.encoder(x).embedding, model.encoder(x).embedding)


def test_default_nets_keep_the_pretrained_dtype():
    model = AVAE_SS.from_pretrained(VAE(VAEConfig(input_dim=SHAPE, latent_dim=LATENT)).double())
    assert {p.dtype for p in model.parameters()} == {torch.float64}
