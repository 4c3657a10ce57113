import re

import pytest
import torch
from pythae.models.nn import BaseDecoder, BaseEncoder

from pythae_avae import AVAE, AVAEConfig
from pythae_avae.nets import ARCHITECTURES, COLOR_MNIST_ARCHITECTURES, LONG_PRESET_ARCH, build_nets


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shapes_and_output_range(name):
    encoder, decoder = build_nets(name, 6)
    shape = ARCHITECTURES[name][2]
    assert isinstance(encoder, BaseEncoder) and isinstance(decoder, BaseDecoder)
    out = encoder(torch.rand(3, *shape))
    assert out.embedding.shape == (3, 6) and out.log_covariance.shape == (3, 6)
    recon = decoder(torch.randn(3, 6))["reconstruction"]
    assert recon.shape == (3, *shape)
    assert recon.min() >= 0 and recon.max() <= 1


@pytest.mark.parametrize("name", ["colormnist-conv", "celeba-conv"])
def test_conv_decoder_is_smaller_than_encoder(name):
    encoder, decoder = build_nets(name, 64)
    n_enc = sum(p.numel() for p in encoder.parameters())
    n_dec = sum(p.numel() for p in decoder.parameters())
    assert n_dec < n_enc / 3


def test_wide_decoder_is_the_conv_decoder_four_times_wider():
    _, small = build_nets("colormnist-conv", 64)
    _, wide = build_nets("colormnist-conv-widedec", 64)
    assert (small.width, wide.width) == (32, 128)
    assert sum(p.numel() for p in wide.parameters()) > 4 * sum(p.numel() for p in small.parameters())
    with pytest.raises(ValueError, match="width must be an even number"):
        ARCHITECTURES["colormnist-conv"][1](64, width=3)


@pytest.mark.parametrize("name, times", [("colormnist-conv-wideenc", 2), ("colormnist-conv-wideenc4", 4)])
def test_wide_encoders_are_the_conv_encoder_scaled(name, times):
    # saving and reloading them without pickles: test_safe_loading, parametrised over ARCHITECTURES
    small, small_decoder = build_nets("colormnist-conv", 64)
    wide, decoder = build_nets(name, 64)
    channels = lambda enc: [m.out_channels for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert channels(small) == [32, 64, 128] and channels(wide) == [32 * times, 64 * times, 128 * times]
    assert [m.out_features for m in wide.modules() if isinstance(m, torch.nn.Linear)] == [256 * times, 128]
    assert wide(torch.rand(2, 3, 28, 28)).embedding.shape == (2, 64)
    assert decoder.width == small_decoder.width


def test_smooth_encoder_is_the_conv_encoder_with_silu_for_every_relu():
    # the same layers and parameter count; only the nonlinearity differs, decoder included as is
    relu, relu_decoder = build_nets("colormnist-conv", 64)
    silu, silu_decoder = build_nets("colormnist-conv-silu", 64)
    kinds = lambda net: [type(m).__name__ for m in net.modules() if not list(m.children())]
    assert kinds(silu) == [k.replace("ReLU", "SiLU") for k in kinds(relu)] and kinds(relu).count("ReLU") == 4
    assert kinds(silu_decoder) == kinds(relu_decoder)
    with pytest.raises(ValueError, match=r"activation must be one of \['elu', 'relu', 'silu'\], got 'tanh'"):
        ARCHITECTURES["colormnist-conv"][0](64, activation="tanh")


@pytest.mark.parametrize("name, extra, times", [
    ("colormnist-conv-deep", 1, 1), ("colormnist-conv-deep2", 2, 1), ("colormnist-conv-wideenc-deep", 1, 2)
])
def test_deep_encoders_add_stride_one_convs_after_each_downsampling_one(name, extra, times):
    # the same head; extra_convs=0 keeps the state-dict keys of checkpoints saved before
    plain, plain_decoder = build_nets("colormnist-conv", 64)
    deep, deep_decoder = build_nets(name, 64)
    convs = lambda enc: [(m.out_channels, m.kernel_size[0], m.stride[0])
                         for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs(plain) == [(32, 4, 2), (64, 4, 2), (128, 3, 2)]
    expected = [[(c * times, k, 2)] + [(c * times, 3, 1)] * extra for c, k, _ in convs(plain)]
    assert convs(deep) == [conv for block in expected for conv in block]
    assert [type(m).__name__ for m in deep.features].count("BatchNorm2d") == 3 * (1 + extra)
    conv_keys = [k for k, v in plain.state_dict().items() if k.startswith("features") and v.dim() == 4]
    assert conv_keys == ["features.0.weight", "features.3.weight", "features.6.weight"]
    assert deep(torch.rand(2, 3, 28, 28)).embedding.shape == (2, 64) and deep_decoder.width == plain_decoder.width
    with pytest.raises(ValueError, match=re.escape("extra_convs must be an int >= 0 (stride-1 convolutions")):
        ARCHITECTURES["colormnist-conv"][0](64, extra_convs=-1)


def test_long_presets_name_a_colormnist_net():
    # presets set --arch through set_defaults, which argparse's choices do not check
    assert LONG_PRESET_ARCH in COLOR_MNIST_ARCHITECTURES


def test_encoder_width_below_one_is_named():
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        ARCHITECTURES["colormnist-conv"][0](64, width=0)


def test_mlp_matches_official_architecture():
    encoder, decoder = build_nets("colormnist-mlp", 64)
    linear = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (2352, 200), (200, 200), (200, 200), (200, 200), (200, 128)
    ]
    linear = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [200, 200, 200, 200, 2352]


def test_bad_names_and_dims():
    with pytest.raises(ValueError, match="architecture"):
        build_nets("resnet", 8)
    with pytest.raises(ValueError, match="latent_dim"):
        build_nets("colormnist-mlp", 0)


def test_nets_take_a_model_config_like_pythae_benchmark_nets():
    cfg = AVAEConfig(input_dim=(3, 28, 28), latent_dim=5)
    enc_cls, dec_cls, _ = ARCHITECTURES["colormnist-conv"]
    model = AVAE(cfg, encoder=enc_cls(cfg), decoder=dec_cls(cfg))
    assert model({"data": torch.rand(2, 3, 28, 28)}).z.shape == (2, 5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden=0), "hidden must be an int >= 1 (units per hidden layer), got 0"),
    (dict(depth=-1), "depth must be an int >= 0 (hidden layers), got -1"),
    (dict(depth=True), "depth must be an int >= 0 (hidden layers), got True"),
])
def test_mlp_sizes_are_checked(kwargs, message):
    for net in ARCHITECTURES["colormnist-mlp"][:2]:
        with pytest.raises(ValueError, match=re.escape(message)):
            net(8, **kwargs)


@pytest.mark.parametrize("arch", ["colormnist-conv", "celeba-conv"])
def test_batch_norm_must_be_a_bool(arch):
    with pytest.raises(ValueError, match="batch_norm must be True or False, got 'False'"):
        ARCHITECTURES[arch][0](8, batch_norm="False")


@pytest.mark.parametrize("arch, shape", [
    ("colormnist-mlp", (2, 28, 28, 3)),  # channels last: as many values, another layout
    ("colormnist-conv", (2, 3, 32, 32)),  # the convolutions would take it
    ("celeba-conv", (2, 3, 68, 68)),
])
def test_encoders_refuse_images_of_another_shape(arch, shape):
    encoder = ARCHITECTURES[arch][0](8)
    with pytest.raises(ValueError, match=re.escape("takes images of shape (batch, ") + r".*got " + re.escape(str(shape))):
        encoder(torch.rand(shape))


def test_an_architecture_file_with_a_bad_size_names_the_file(tmp_path):
    import json

    from pythae_avae.nets.rebuild import nets_from_file

    encoder, decoder = build_nets("colormnist-mlp", 4)
    specs = {"encoder": dict(encoder.net_spec), "decoder": decoder.net_spec}
    specs["encoder"]["kwargs"]["hidden"] = -5
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps(specs))
    with pytest.raises(ValueError, match=re.escape(f"architecture file {str(path)!r} cannot be rebuilt")):
        nets_from_file(str(path))


def test_batch_check_splits_the_images_over_processes_as_the_distributed_sampler_does():
    from pythae_avae.models.batch_norm import check_batches_for_batch_norm

    conv = build_nets("colormnist-conv", 4)[0]
    for n, batch, world in ((8, 4, 2), (12, 4, 2), (6, 4, 1)):
        check_batches_for_batch_norm(conv, n, batch, world)
    for n, batch, world in ((9, 4, 2), (10, 4, 2), (5, 4, 1), (1, 4, 1), (4, 1, 1)):  # shares of 5, 5, 5, 1, 4 by 1
        with pytest.raises(ValueError, match="gives a batch of 1 image"):
            check_batches_for_batch_norm(conv, n, batch, world)
    check_batches_for_batch_norm(build_nets("colormnist-mlp", 4)[0], 5, 4)  # no BatchNorm: any batch goes
