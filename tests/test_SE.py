"""SE: the Select attack (spec §9 items 12-15), the loss, training and reloading."""

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
    snapshot,
    same_state,
)

from pythae_avae import SE, GaussianVAE, GaussianVAEConfig, SEConfig
from pythae_avae.models.coupling import consistency_loss
from pythae_avae.models.se import attack_objective, select_pgd


def make_se(nets=conv_nets, **config):
    encoder, decoder = nets()
    return SE(SEConfig(input_dim=SHAPE, latent_dim=LATENT, **config), encoder, decoder)


def objective_on(encoder, x, x_adv, attack_loss, rho=0.95):
    with torch.no_grad():
        out0, out = encoder(x), encoder(x_adv)
    return attack_objective(out.embedding, out.log_covariance, out0.embedding,
                            out0.log_covariance, attack_loss, rho)


# ---- config ---------------------------------------------------------------------------------
def test_config_defaults():
    cfg = SEConfig()
    assert (cfg.rho_se, cfg.se_eps, cfg.se_steps, cfg.se_step_size) == (0.95, 0.1, 5, None)
    assert cfg.se_random_start and cfg.se_attack_loss == "coupling_kl"
    assert cfg.se_recon_aux == 1.0 and cfg.coupling == "product" and cfg.obs_var == 0.5


@pytest.mark.parametrize(
    "field, value",
    [("rho_se", 1.0), ("rho_se", -0.1), ("se_eps", -0.1), ("se_eps", float("nan")),
     ("se_eps", float("inf")), ("se_steps", 0), ("se_steps", -2), ("se_step_size", 0.0),
     ("se_step_size", -0.5), ("se_recon_aux", -1.0)],
)
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        SEConfig(**{field: value})


def test_config_rejects_unknown_keys_and_choices():
    with pytest.raises(Exception, match="se_epsilon"):
        SEConfig(se_epsilon=0.1)
    with pytest.raises(Exception, match="se_attack_loss"):
        SEConfig(se_attack_loss="ce")
    with pytest.raises(Exception, match="coupling"):
        SEConfig(coupling="optimal")


def test_w2_attack_needs_a_random_start():
    """W2 is minimal (zero gradient) at x~ = x: PGD started there would never move."""
    with pytest.raises(ValueError, match="se_random_start"):
        SEConfig(se_attack_loss="w2", se_random_start=False)
    with pytest.raises(ValueError, match="random start"):
        select_pgd(conv_nets()[0], images(2), eps=0.1, steps=1, attack_loss="w2",
                   random_start=False)


# ---- the attack -------------------------------------------------------------------------------
@pytest.mark.parametrize("attack_loss, random_start",
                         [("coupling_kl", True), ("coupling_kl", False), ("w2", True)])
def test_attack_stays_in_the_ball_and_in_range(attack_loss, random_start):
    encoder, _ = conv_nets()
    x = images(16)
    x_adv = select_pgd(encoder, x, eps=0.1, steps=3, random_start=random_start,
                       attack_loss=attack_loss)
    assert x_adv.shape == x.shape and not x_adv.requires_grad and x_adv.grad_fn is None
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv - x).abs().max() > 0.05  # it moved


def test_pixels_outside_the_unit_range_keep_their_ball_and_do_not_move_further_out():
    # data a user standardised (check_inputs=False): the plain cut to [0, 1] moved a pixel at -0.5
    # to 0, five radii away
    encoder, _ = conv_nets()
    x = images(16) * 3.0 - 1.0  # in [-1, 2]
    x_adv = select_pgd(encoder, x, eps=0.1, steps=3)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert torch.all(x_adv >= torch.clamp(x, max=0.0)) and torch.all(x_adv <= torch.clamp(x, min=1.0))
    inside = (x >= 0) & (x <= 1)
    assert x_adv[inside].min() >= 0.0 and x_adv[inside].max() <= 1.0


@pytest.mark.parametrize("attack_loss", ["coupling_kl", "w2"])
def test_attack_increases_its_objective(attack_loss, monkeypatch):
    from pythae_avae.models.se import select

    encoder, _ = conv_nets()
    encoder.eval()  # the attack runs in eval mode; measure it there
    x = images(32, seed=1)
    torch.manual_seed(7)
    x_adv = select_pgd(encoder, x, eps=0.1, steps=5, attack_loss=attack_loss)
    before = objective_on(encoder, x, x, attack_loss)
    after = objective_on(encoder, x, x_adv, attack_loss)
    assert (after >= before).float().mean() >= 0.95
    assert after.mean() > before.mean()
    # W2 is 0 at x, so any move raises it (sign steps downhill overshoot too): the same steps
    # from the same random start, taken downhill, must end lower
    uphill = select.attack_objective
    monkeypatch.setattr(select, "attack_objective", lambda *args: -uphill(*args))
    torch.manual_seed(7)
    downhill = objective_on(encoder, x, select_pgd(encoder, x, eps=0.1, steps=5, attack_loss=attack_loss), attack_loss)
    assert (after > downhill).float().mean() >= 0.9


def test_explicit_step_size_bounds_a_single_step():
    encoder, _ = conv_nets()
    x = images(8)
    x_adv = select_pgd(encoder, x, eps=0.1, steps=1, step_size=0.01, random_start=False)
    assert (x_adv - x).abs().max() == pytest.approx(0.01, abs=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_attack_leaves_the_model_untouched(training):
    model = make_se()  # ConvNet: BatchNorm in the encoder
    x = images(16)
    model(({"data": x})).loss.backward()  # non-trivial .grad buffers and BN statistics
    model.train(training)
    state = snapshot(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    def no_decoder(*args, **kwargs):
        raise AssertionError("the attack must not run the decoder")

    model.decoder.forward = no_decoder
    x_adv = model.select(x)
    assert same_state(state, snapshot(model))  # parameters and BN running stats
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert model.training is training and model.encoder.training is training
    assert all(m.training is training for m in model.encoder.modules())
    assert not torch.equal(x_adv, x)


def test_attack_runs_under_no_grad_but_not_inference_mode():
    model = make_se()
    x = images(8)
    with torch.no_grad():
        x_adv = model.select(x)
    assert (x_adv - x).abs().max() > 0
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        model.select(x)


def test_zero_radius_means_no_attack():
    model = make_se(se_eps=0.0)
    x = images(8)
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    x_adv = model.select(x)
    assert torch.equal(x_adv, x) and x_adv is not x and not calls


# ---- the loss ---------------------------------------------------------------------------------
def test_output_keys_and_loss_is_the_sum_of_terms():
    model = make_se()
    out = model({"data": images(8)})
    assert set(out.keys()) == {"loss", "recon_loss", "reg_loss", "aux_recon_loss",
                               "se_coupling_loss", "se_entropy_loss", "recon_x", "z"}
    assert out.loss.item() == pytest.approx(sum(loss_terms(out).values()), rel=1e-5)
    assert out.recon_x.shape == (8, *SHAPE) and out.z.shape == (8, LATENT)


def test_zero_radius_without_aux_recon_gives_minus_c_plus_h_at_x():
    """Spec §9.15: eps = 0, lambda_rec = 0: the extra term is -(C + H) evaluated at x~ = x."""
    model = make_se(se_eps=0.0, se_recon_aux=0.0, rho_se=0.9)
    model.eval()
    x = images(8)
    out = model({"data": x})
    with torch.no_grad():
        mu, logvar = model.encode(x)
    expected = consistency_loss(mu, logvar, mu, logvar, 0.9)["total"].mean()
    extra = out.se_coupling_loss + out.se_entropy_loss
    assert extra.item() == pytest.approx(float(expected), rel=1e-5)
    assert out.aux_recon_loss.item() == 0.0
    assert out.loss.item() == pytest.approx(
        (out.recon_loss + out.reg_loss + expected).item(), rel=1e-5)


def test_se_is_the_vae_loss_plus_its_extra_terms():
    """Same weights and seed: SE's recon/KL equal the VAE's; x and x~ share one encoder call."""
    x = images(8)
    se = make_se(nets=mlp_nets, se_random_start=False)
    vae = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=LATENT), *mlp_nets())
    torch.manual_seed(3)
    se_out = se({"data": x})
    torch.manual_seed(3)
    vae_out = vae({"data": x})
    assert se_out.recon_loss.item() == pytest.approx(vae_out.recon_loss.item(), rel=1e-5)
    assert se_out.reg_loss.item() == pytest.approx(vae_out.reg_loss.item(), rel=1e-5)


@pytest.mark.parametrize("coupling", ["product", "entropic_ot"])
def test_extra_terms_by_hand(coupling):
    """The SE extra terms from their definitions, on deterministic codes (z = mu): lambda_rec
    times SSE(x~ | mu(x~)) / (2v), and -C_rho_se - H between the codes of x and x~ (with the
    optimal coupling's gain for ``entropic_ot``)."""
    model = make_se(nets=mlp_nets, se_random_start=False, se_recon_aux=0.7, rho_se=0.8, obs_var=0.3,
                    coupling=coupling)
    model.sample_latent = lambda mu, logvar: mu
    x = images(8)
    out = model({"data": x})
    with torch.no_grad():
        x_adv = model.select(x)
        mu, logvar = model.encode(x)
        mu_adv, logvar_adv = model.encode(x_adv)
        sse = ((model.decode(mu_adv) - x_adv) ** 2).flatten(1).sum(1)
        extra = consistency_loss(mu, logvar, mu_adv, logvar_adv, 0.8, coupling=coupling)
        product = consistency_loss(mu, logvar, mu_adv, logvar_adv, 0.8)
    if coupling != "product":  # the gain is not 0 here, so the comparison below can tell them apart
        assert not torch.allclose(extra["coupling"], product["coupling"])
    assert out.aux_recon_loss.item() == pytest.approx(float((0.7 * sse / (2 * 0.3)).mean()), rel=1e-5)
    assert out.se_coupling_loss.item() == pytest.approx(float(extra["coupling"].mean()), rel=1e-5)
    assert out.se_entropy_loss.item() == pytest.approx(float(extra["entropy"].mean()), rel=1e-5)


def test_select_runs_the_attack_the_config_names():
    config = dict(se_eps=0.15, se_steps=3, se_step_size=0.04, se_random_start=False, rho_se=0.6)
    model = make_se(nets=mlp_nets, **config)
    x = images(8)
    ours = model.select(x)
    expected = select_pgd(model.encoder, x, eps=0.15, steps=3, step_size=0.04, random_start=False,
                          attack_loss="coupling_kl", rho=0.6)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    other_rho = select_pgd(model.encoder, x, eps=0.15, steps=3, step_size=0.04, random_start=False, rho=0.95)
    assert not torch.equal(ours, other_rho)  # rho_se steers the attack: the comparison can fail


def test_decoder_gets_gradient_only_from_reconstructions():
    """lambda_rec = 0: the decoder's gradient is the VAE's (the coupling gives it none)."""
    assert_decoder_gradient_is_the_vaes(make_se(nets=mlp_nets, se_random_start=False, se_recon_aux=0.0))


def test_encoder_sees_x_and_x_adv_in_one_batch():
    model = make_se(se_steps=2)
    batches = []
    model.encoder.register_forward_hook(
        lambda module, args, out: batches.append((module.training, args[0].shape[0])))
    model({"data": images(6)})
    # attack: 1 clean + 2 steps, in eval mode; then one training call on [x; x~]
    assert batches == [(False, 6)] * 3 + [(True, 12)]


def test_eval_forward_under_no_grad_runs_the_attack():
    model = make_se()
    model.eval()
    x = images(8)
    with torch.no_grad():
        out = model({"data": x})
    assert torch.isfinite(out.loss) and not out.loss.requires_grad
    assert out.se_coupling_loss.item() > 0


# ---- training, saving, reloading -------------------------------------------------------------
def test_trains_in_pythae_pipeline_and_reloads(tmp_path):
    assert_trains_in_pythae_pipeline_and_reloads(make_se(se_steps=2), tmp_path)


def test_save_and_reload_with_both_loaders(tmp_path):
    assert_reloads_with_both_loaders(make_se(se_eps=0.2, se_steps=3, se_attack_loss="w2", se_recon_aux=0.5,
                                             coupling="entropic_ot"), tmp_path)
