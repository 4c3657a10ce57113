"""SE-AVAE: unit-weight sum of the VAE loss and both auxiliary branches (spec §9.16)."""

import json
import os

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
    snapshot,
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


@pytest.mark.parametrize("se_batch, training_batches", [
    ("data", [(True, 12), (True, 6)]),  # [x; x~_s] as in SE, then x~_a as in AVAE
    ("delusion", [(True, 6), (True, 12)]),  # x, then [x~_a; x~_s]
])
def test_encoder_batches(se_batch, training_batches):
    model = make(se_steps=2, se_batch=se_batch)
    batches = []
    model.encoder.register_forward_hook(
        lambda module, args, out: batches.append((module.training, args[0].shape[0])))
    model({"data": images(6)})
    # the attack first (eval mode): clean + 2 steps
    assert batches == [(False, 6)] * 3 + training_batches


@pytest.mark.parametrize("se_batch, training_batches", [("data", [12, 12]), ("delusion", [6, 18])])
def test_several_delusions_per_point_in_both_layouts(se_batch, training_batches):
    model = make(se_steps=1, se_batch=se_batch, aux_samples=2)
    batches = []
    model.encoder.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    out = model({"data": images(6)})
    assert batches[-2:] == training_batches and torch.isfinite(out.loss)
    assert out.coupling_loss.shape == out.se_coupling_loss.shape == ()


def test_the_attack_branch_is_ses_with_a_batchnorm_encoder():
    # same weights, no randomness but z's: the recon, KL and SE terms are SE's own, since x~_s
    # is normalised in x's batch as in SE (with "delusion" they differ: codes of two batches)
    fields = dict(input_dim=SHAPE, latent_dim=LATENT, rho_se=0.9, se_eps=0.1, se_steps=2, se_random_start=False)
    se = SE(SEConfig(**fields), *conv_nets())
    start = snapshot(se)  # BatchNorm statistics included: a forward moves them
    x = images(8)
    terms = {}
    for name, model in {"se": se, "data": SE_AVAE(SE_AVAE_Config(aux_noise=False, **fields), *conv_nets()),
                        "delusion": SE_AVAE(SE_AVAE_Config(aux_noise=False, se_batch="delusion", **fields),
                                            *conv_nets())}.items():
        model.load_state_dict(start)
        torch.manual_seed(5)
        terms[name] = loss_terms(model({"data": x}))
    shared = ["recon_loss", "reg_loss", *SE_KEYS]
    for key in shared:
        assert terms["data"][key] == pytest.approx(terms["se"][key], rel=1e-5, abs=1e-5), key
    assert any(terms["delusion"][k] != pytest.approx(terms["se"][k], rel=1e-3) for k in shared)


@pytest.mark.parametrize("se_batch", ["data", "delusion"])
@pytest.mark.parametrize("mode,kept", [("batch", False), ("frozen", True), ("eval", True)])
def test_aux_batch_norm_and_the_running_statistics(mode, kept, se_batch):
    # kept: the running statistics are those of the data's batch alone ([x; x~_s] or x)
    model, data_only = make(se_steps=2, aux_batch_norm=mode, se_batch=se_batch), make(se_steps=2)
    data_only.load_state_dict(model.state_dict())
    x = images(6)
    torch.manual_seed(2)
    model({"data": x}).loss.backward()
    torch.manual_seed(2)
    x_s = data_only.select(x)  # the attack runs in eval mode: it moves no statistics
    data_only.train().encode(torch.cat([x, x_s]) if se_batch == "data" else x)
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


def test_configs_and_checkpoints_written_before_se_batch_mean_the_delusion_layout(tmp_path):
    # every SE-AVAE run before the field existed trained x~_s beside the delusion
    from pythae_avae.recipes import train_for_iterations
    from pythae_avae.trainers import latest_checkpoint

    model = make(nets=mlp_nets, se_steps=1, se_batch="delusion")
    model.save(str(tmp_path / "saved"))
    path = tmp_path / "saved" / "model_config.json"
    config = json.loads(path.read_text())
    del config["se_batch"]
    path.write_text(json.dumps(config))
    assert SE_AVAE.load_from_folder(str(tmp_path / "saved")).model_config.se_batch == "delusion"

    data = images(16)
    train_for_iterations(make(nets=mlp_nets, se_steps=1, se_batch="delusion"), data, iterations=2, batch_size=8,
                         output_dir=str(tmp_path / "run"), device="cpu", progress=False)
    state_path = os.path.join(latest_checkpoint(str(tmp_path / "run" / "pythae")), "trainer_state.pt")
    state = torch.load(state_path, weights_only=True)
    del state["settings"]["model_config"]["se_batch"]
    torch.save(state, state_path)
    with pytest.raises(ValueError, match=r"model_config.se_batch='delusion' \(this run: 'data'\)"):
        train_for_iterations(make(nets=mlp_nets, se_steps=1), data, iterations=4, batch_size=8,
                             output_dir=str(tmp_path / "run"), device="cpu", progress=False)
    train_for_iterations(make(nets=mlp_nets, se_steps=1, se_batch="delusion"), data, iterations=4, batch_size=8,
                         output_dir=str(tmp_path / "run"), device="cpu", progress=False)  # resumes
