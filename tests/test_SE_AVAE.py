"""SE-AVAE: unit-weight sum of the VAE loss and both auxiliary branches (spec §9.16)."""

import pytest
import torch
from _model_helpers import (
    LATENT,
    SHAPE,
    assert_decoder_gradient_is_the_vaes,
    assert_reloads_with_both_loaders,
    assert_trains_in_pythae_pipeline_and_reloads,
    conv_nets,
    images,
    loss_terms,
    mlp_nets,
    same_state,
)

from pythae_avae import (
    AVAE,
    SE,
    SE_AVAE,
    AVAEConfig,
    GaussianVAE,
    GaussianVAEConfig,
    SE_AVAE_Config,
    SEConfig,
)

AVAE_KEYS = {"coupling_loss", "entropy_loss"}
SE_KEYS = {"aux_recon_loss", "se_coupling_loss", "se_entropy_loss"}


def make(nets=conv_nets, **config):
    encoder, decoder = nets()
    return SE_AVAE(SE_AVAE_Config(input_dim=SHAPE, latent_dim=LATENT, **config), encoder, decoder)


def test_config_has_both_branches_and_validates_them():
    cfg = SE_AVAE_Config(rho=0.9, rho_se=0.8, se_eps=0.2, coupling_estimator="paired")
    assert (cfg.rho, cfg.rho_se, cfg.se_eps, cfg.se_steps, cfg.se_recon_aux) == (0.9, 0.8, 0.2, 5, 1.0)
    assert isinstance(cfg, SEConfig) and isinstance(cfg, AVAEConfig)
    for field, value in [("rho", 1.0), ("rho_se", 1.5), ("se_eps", -1.0), ("se_steps", 0)]:
        with pytest.raises(ValueError, match=field):
            SE_AVAE_Config(**{field: value})
    with pytest.raises(Exception, match="unknown_field"):
        SE_AVAE_Config(unknown_field=1)


@pytest.mark.parametrize("se_recon_aux", [1.0, 0.0])
def test_loss_is_vae_plus_avae_extra_plus_se_extra(se_recon_aux):
    """Same weights, same seeds: every term equals the one of the single-branch model."""
    common = dict(input_dim=SHAPE, latent_dim=LATENT)
    se_fields = dict(rho_se=0.9, se_eps=0.1, se_steps=3, se_random_start=False,
                     se_recon_aux=se_recon_aux)
    models = {
        "vae": GaussianVAE(GaussianVAEConfig(**common), *mlp_nets()),
        "avae": AVAE(AVAEConfig(rho=0.97, aux_noise=False, **common), *mlp_nets()),
        "se": SE(SEConfig(**se_fields, **common), *mlp_nets()),
        "se_avae": SE_AVAE(SE_AVAE_Config(rho=0.97, aux_noise=False, **se_fields, **common), *mlp_nets()),
    }
    x = images(12)
    out = {}
    for name, model in models.items():
        torch.manual_seed(11)
        out[name] = model({"data": x})
    terms = {name: loss_terms(o) for name, o in out.items()}
    loss = {name: o.loss.item() for name, o in out.items()}

    assert set(terms["se_avae"]) == set(terms["vae"]) | AVAE_KEYS | SE_KEYS
    for key, value in terms["se_avae"].items():
        source = "vae" if key in terms["vae"] else "avae" if key in AVAE_KEYS else "se"
        assert value == pytest.approx(terms[source][key], rel=1e-5, abs=1e-5), key
    avae_extra = loss["avae"] - loss["vae"]
    se_extra = loss["se"] - loss["vae"]
    assert loss["se_avae"] == pytest.approx(loss["vae"] + avae_extra + se_extra, rel=1e-5)


def test_warmup_weights_the_delusion_terms_and_not_the_attack_terms():
    fields = dict(input_dim=SHAPE, latent_dim=LATENT, rho=0.97, aux_noise=False, se_steps=2, se_random_start=False)
    full = SE_AVAE(SE_AVAE_Config(**fields), *mlp_nets())
    warm = SE_AVAE(SE_AVAE_Config(**fields, warmup_epoch=4), *mlp_nets())
    warm.load_state_dict(full.state_dict())
    x = images(6)
    torch.manual_seed(3)
    ref = loss_terms(full({"data": x}))
    torch.manual_seed(3)
    out = loss_terms(warm({"data": x}, epoch=2))
    for key, value in out.items():
        assert value == pytest.approx(ref[key] * (0.25 if key in AVAE_KEYS else 1.0), rel=1e-6, abs=1e-6), key


def test_auxiliary_points_share_one_encoder_call():
    model = make(se_steps=2)
    batches = []
    model.encoder.register_forward_hook(
        lambda module, args, out: batches.append((module.training, args[0].shape[0])))
    model({"data": images(6)})
    # attack (eval mode): clean + 2 steps; then x; then [x~_a; x~_s] together
    assert batches == [(False, 6)] * 3 + [(True, 6), (True, 12)]


@pytest.mark.parametrize("mode,kept", [("batch", False), ("frozen", True), ("eval", True)])
def test_aux_batch_norm_and_the_running_statistics(mode, kept):
    model, data_only = make(se_steps=2, aux_batch_norm=mode), make()
    data_only.load_state_dict(model.state_dict())
    x = images(6)
    model({"data": x}).loss.backward()
    data_only.train().encode(x)  # the attack runs in eval mode: only x's pass counts
    assert same_state(model.encoder.state_dict(), data_only.encoder.state_dict()) == kept


def test_decoder_gets_gradient_only_from_reconstructions():
    assert_decoder_gradient_is_the_vaes(make(nets=mlp_nets, se_random_start=False, se_recon_aux=0.0))


def test_eval_forward_under_no_grad():
    model = make()
    model.eval()
    with torch.no_grad():
        out = model({"data": images(8)})
    assert torch.isfinite(out.loss) and set(loss_terms(out)) >= AVAE_KEYS | SE_KEYS


def test_trains_in_pythae_pipeline_and_reloads(tmp_path):
    assert_trains_in_pythae_pipeline_and_reloads(make(se_steps=2), tmp_path)


def test_save_and_reload_with_both_loaders(tmp_path):
    assert_reloads_with_both_loaders(make(rho=0.9, se_eps=0.2, coupling="entropic_ot", aux_noise=True), tmp_path)
