"""Loading a model folder never runs code from it unless the user opts in."""

import json
import os
import pickle

import pytest
import torch
from pythae.models import AutoModel

import pythae_avae  # noqa: F401  (hooks AutoModel)
from pythae_avae import AVAE, AVAE_SS, AVAEConfig
from pythae_avae.models.serialization import ALLOW_PICKLE_ENV, PickleRefusedError
from pythae_avae.nets import ARCHITECTURES, ColorMNISTConvDecoder, ColorMNISTConvEncoder
from pythae_avae.nets.rebuild import build_from_spec, nets_from_file
from pythae_avae.recipes import build_model


class WritesMarker:
    """A pickle payload that creates a file when unpickled (stands for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def same_outputs(a, b, shape):
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    a.eval(), b.eval()
    return torch.equal(a.encoder(x).embedding, b.encoder(x).embedding) and torch.equal(
        a.decoder(a.encoder(x).embedding).reconstruction, b.decoder(a.encoder(x).embedding).reconstruction
    )


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_our_nets_are_saved_as_names_and_rebuilt_without_pickles(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model("AVAE", arch, latent_dim=4)
    model.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["architecture.json", "environment.json", "model.pt", "model_config.json"]
    for loader in (AVAE.load_from_folder, AutoModel.load_from_folder):
        reloaded = loader(str(tmp_path))
        assert type(reloaded.encoder) is type(model.encoder)
        assert reloaded.encoder.net_spec == model.encoder.net_spec
        assert same_outputs(model, reloaded, ARCHITECTURES[arch][2])


def test_nets_built_by_hand_and_avae_ss_need_no_pickle_either(tmp_path):
    config = AVAEConfig(input_dim=(3, 28, 28), latent_dim=6)
    model = AVAE(config, encoder=ColorMNISTConvEncoder(config), decoder=ColorMNISTConvDecoder(6))
    assert model.encoder.net_spec == {
        "class": "ColorMNISTConvEncoder",
        "kwargs": {"latent_dim": 6, "batch_norm": True, "width": 32, "activation": "relu", "extra_convs": 0},
    }
    # folders saved before the encoder had a width record none: they rebuild the same net
    older = build_from_spec({"class": "ColorMNISTConvEncoder", "kwargs": {"latent_dim": 6, "batch_norm": True}})
    assert older.net_spec == model.encoder.net_spec
    ss = AVAE_SS.from_pretrained(model)
    ss.save(str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pkl")]
    reloaded = AVAE_SS.from_pretrained(str(tmp_path))  # a folder of ours: no opt-in needed
    assert all(not p.requires_grad for p in AVAE_SS.load_from_folder(str(tmp_path)).decoder.parameters())
    assert same_outputs(ss, reloaded, (3, 28, 28))


def test_a_users_subclass_is_not_mistaken_for_ours(tmp_path):
    class Wider(ColorMNISTConvEncoder):
        pass

    assert Wider(4).net_spec is None  # would otherwise be rebuilt as the parent class
    model = AVAE(AVAEConfig(input_dim=(3, 28, 28), latent_dim=4), encoder=Wider(4), decoder=ColorMNISTConvDecoder(4))
    model.save(str(tmp_path))
    assert {"encoder.pkl", "decoder.pkl"} <= set(os.listdir(tmp_path))


@pytest.fixture
def pickled_folder(tmp_path):
    """A folder saved the Pythae way (a user's own nets), with encoder.pkl replaced by a payload."""
    class Mine(ColorMNISTConvEncoder):
        pass

    model = AVAE(AVAEConfig(input_dim=(3, 28, 28), latent_dim=4), encoder=Mine(4), decoder=ColorMNISTConvDecoder(4))
    folder = tmp_path / "model"
    model.save(str(folder))
    marker = tmp_path / "code_ran"
    with open(folder / "encoder.pkl", "wb") as f:
        pickle.dump(WritesMarker(str(marker)), f)
    return folder, marker


@pytest.mark.parametrize("load", [
    lambda p: AVAE.load_from_folder(p),
    lambda p: AutoModel.load_from_folder(p),
    lambda p: AVAE_SS.from_pretrained(p),
], ids=["AVAE.load_from_folder", "AutoModel.load_from_folder", "AVAE_SS.from_pretrained"])
def test_a_folder_with_pickles_is_refused_and_nothing_runs(pickled_folder, load, monkeypatch):
    folder, marker = pickled_folder
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(PickleRefusedError, match=r"\['decoder.pkl', 'encoder.pkl'\].*allow_pickle=True.*PYTHAE_AVAE_ALLOW_PICKLE=1"):
        load(str(folder))
    assert not marker.exists()


def test_opting_in_really_unpickles(pickled_folder, monkeypatch):
    folder, marker = pickled_folder
    with pytest.raises(Exception):  # the payload is not an encoder, but it ran
        AVAE.load_from_folder(str(folder), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(Exception):
        AutoModel.load_from_folder(str(folder), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    with pytest.raises(Exception):
        AutoModel.load_from_folder(str(folder))
    assert marker.exists()


def test_a_folder_naming_a_pythae_model_is_refused_too_when_pickles_are_refused(pickled_folder, monkeypatch):
    # the config's name decides who loads the folder: one that names a Pythae model went to
    # Pythae's loader, which unpickles without asking, whatever allow_pickle said
    from pythae_avae.evaluation.__main__ import load_model as cli_load_model

    folder, marker = pickled_folder
    config = json.loads((folder / "model_config.json").read_text())
    (folder / "model_config.json").write_text(json.dumps({**config, "name": "VAEConfig"}))
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    for load in (lambda: AutoModel.load_from_folder(str(folder), allow_pickle=False),
                 lambda: cli_load_model(str(folder), allow_pickle=False)):  # the CLI without --allow-pickle
        with pytest.raises(PickleRefusedError, match=r"\['decoder.pkl', 'encoder.pkl'\]"):
            load()
        assert not marker.exists()
    with pytest.raises(Exception):  # unset: Pythae's own models load Pythae's way, as without this package
        AutoModel.load_from_folder(str(folder))
    assert marker.exists()


def test_saving_over_a_folder_removes_the_other_layouts_files(tmp_path):
    class Mine(ColorMNISTConvEncoder):
        def forward(self, x):  # a user's own behaviour: must not be rebuilt as the parent class
            return super().forward(1 - x)

    config = AVAEConfig(input_dim=(3, 28, 28), latent_dim=4)
    AVAE(config, ColorMNISTConvEncoder(4), ColorMNISTConvDecoder(4)).save(str(tmp_path))
    theirs = AVAE(config, Mine(4), ColorMNISTConvDecoder(4))
    theirs.save(str(tmp_path))
    assert "architecture.json" not in os.listdir(tmp_path)
    assert type(AVAE.load_from_folder(str(tmp_path), allow_pickle=True).encoder) is Mine
    AVAE(config, ColorMNISTConvEncoder(4), ColorMNISTConvDecoder(4)).save(str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".pkl")]


def test_a_class_refuses_another_models_folder(tmp_path):
    from pythae_avae import GaussianVAE

    class MyAVAE(AVAE):
        pass

    torch.manual_seed(0)
    build_model("AVAE", "colormnist-conv", latent_dim=4).save(str(tmp_path / "avae"))
    AVAE_SS.from_pretrained(build_model("VAE", "colormnist-conv", latent_dim=4)).save(str(tmp_path / "ss"))
    with pytest.raises(ValueError, match=r"holds a model of class AVAE \(config AVAEConfig\), not GaussianVAE: load "
                                         r"it with AVAE.load_from_folder or AutoModel.load_from_folder"):
        GaussianVAE.load_from_folder(str(tmp_path / "avae"))  # it would train without the AVAE terms
    with pytest.raises(ValueError, match=r"holds a model of class AVAE_SS .*not AVAE:"):
        AVAE.load_from_folder(str(tmp_path / "ss"))  # its decoder would be trainable again
    from pythae.models import VAE, VAEConfig

    VAE(VAEConfig(input_dim=(1, 4, 4), latent_dim=2)).save(str(tmp_path / "pythae_vae"))
    with pytest.raises(ValueError, match=r"class VAE \(config VAEConfig\), not AVAE: load it with VAE.load_from_folder"):
        AVAE.load_from_folder(str(tmp_path / "pythae_vae"))  # Pythae's model: its class, not its config
    assert type(MyAVAE.load_from_folder(str(tmp_path / "avae"))) is MyAVAE  # a user's subclass: its parent's
    assert type(AutoModel.load_from_folder(str(tmp_path / "ss"))) is AVAE_SS


def test_weights_are_read_weights_only(tmp_path):
    build_model("VAE", "colormnist-mlp", latent_dim=4).save(str(tmp_path))
    marker = tmp_path / "code_ran"
    torch.save({"model_state_dict": WritesMarker(str(marker))}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"weights file .*model.pt.* cannot be read"):
        AutoModel.load_from_folder(str(tmp_path))
    assert not marker.exists()
    os.remove(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"missing weights file .*model.pt"):
        AutoModel.load_from_folder(str(tmp_path))


def test_spec_names_only_this_packages_classes():
    with pytest.raises(ValueError, match="net class must be one of"):
        build_from_spec({"class": "os.system", "kwargs": {}})
    with pytest.raises(ValueError, match="a net spec must be"):
        build_from_spec({"class": "ColorMNISTConvEncoder"})


@pytest.mark.parametrize("text", ["{oops", "{}", "[]", '{"name": 3}'])
def test_a_damaged_model_config_is_named(tmp_path, text):
    build_model("VAE", "colormnist-mlp", latent_dim=4).save(str(tmp_path))
    (tmp_path / "model_config.json").write_text(text)
    for load in (AVAE.load_from_folder, AutoModel.load_from_folder):
        with pytest.raises(ValueError, match=r"config file .*model_config.json"):
            load(str(tmp_path))


SPEC = {"class": "ColorMNISTMLPEncoder", "kwargs": {"latent_dim": 4, "hidden": 8, "depth": 2}}
DEC = {"class": "ColorMNISTMLPDecoder", "kwargs": {"latent_dim": 4, "hidden": 8, "depth": 2}}


@pytest.mark.parametrize("specs", [
    "{not json", [], {"encoder": SPEC}, {"encoder": {"class": "os.system", "kwargs": {}}, "decoder": DEC},
    {"encoder": {**SPEC, "kwargs": {"evil": 1}}, "decoder": DEC}, {"encoder": {**SPEC, "kwargs": [4]}, "decoder": DEC},
    {"encoder": {**SPEC, "kwargs": {"latent_dim": "4"}}, "decoder": DEC}, {"encoder": DEC, "decoder": SPEC},
], ids=["not-json", "list", "no-decoder", "foreign-class", "unknown-argument", "kwargs-list", "bad-value", "swapped"])
def test_a_damaged_architecture_file_is_named(tmp_path, specs):
    path = tmp_path / "architecture.json"
    path.write_text(specs if isinstance(specs, str) else json.dumps(specs))
    with pytest.raises(ValueError, match=r"architecture file .*architecture.json"):
        nets_from_file(str(path))


def test_architecture_file_rebuilds_both_parts(tmp_path):
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps({"encoder": SPEC, "decoder": DEC}))
    nets = nets_from_file(str(path))
    assert nets["encoder"].net_spec == SPEC and nets["decoder"].net_spec == DEC


def test_a_damaged_folder_names_its_files(tmp_path):
    build_model("AVAE", "colormnist-mlp", latent_dim=4).save(str(tmp_path))
    arch = json.loads((tmp_path / "architecture.json").read_text())
    (tmp_path / "architecture.json").write_text(json.dumps({**arch, "encoder": {**arch["encoder"], "class": "os.system"}}))
    for load in (AVAE.load_from_folder, AutoModel.load_from_folder):
        with pytest.raises(ValueError, match=r"architecture file .*architecture.json"):
            load(str(tmp_path))
    arch["encoder"]["kwargs"]["latent_dim"] = 5  # valid nets, but not the saved weights' shapes
    (tmp_path / "architecture.json").write_text(json.dumps(arch))
    with pytest.raises(RuntimeError, match=r"weights file .*model.pt.* does not fit"):
        AVAE.load_from_folder(str(tmp_path))


def test_the_evaluation_command_names_its_own_flag_and_the_checkpoint_folder(pickled_folder, tmp_path, capsys,
                                                                             monkeypatch):
    from pythae_avae.evaluation.__main__ import load_model as cli_load_model
    from pythae_avae.evaluation.__main__ import main as cli_main

    folder, marker = pickled_folder
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main([str(folder), "--eval-n", "2", "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "On this command line: --allow-pickle." in capsys.readouterr().err
    assert not marker.exists()
    run = tmp_path / "run"
    (run / "pythae" / "checkpoint").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"a training run's model is in .*pythae/checkpoint"):
        cli_load_model(str(run), allow_pickle=False)
