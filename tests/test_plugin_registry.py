"""Registration with Pythae: a registry dict, idempotent, reversible, Pythae models unaffected."""

import pytest
import torch
from pythae.models import VAE, AutoModel, VAEConfig
from pythae.models.auto_model import AutoConfig

import pythae_avae
from pythae_avae import AVAE, AVAEConfig
from pythae_avae.models.registry import (
    MODEL_REGISTRY,
    is_registered_with_pythae,
    register_model,
    register_with_pythae,
    unregister_from_pythae,
)


def test_every_model_is_registered_under_its_config_name():
    for name in ("AVAEConfig", "GaussianVAEConfig", "SEConfig", "SE_AVAE_Config", "AVAE_SS_Config"):
        entry = MODEL_REGISTRY[name]
        assert entry.config_cls.__name__ == name
        assert entry.model_cls.__name__ + "Config" == name or entry.model_cls.__name__ + "_Config" == name


def test_registering_twice_does_not_wrap_twice():
    assert is_registered_with_pythae()
    hooked = AutoModel.__dict__["load_from_folder"]
    register_with_pythae()
    assert AutoModel.__dict__["load_from_folder"] is hooked


def test_unregister_restores_pythae_and_class_loading_still_works(tmp_path):
    AVAE(AVAEConfig(input_dim=(1, 4, 4), latent_dim=2)).save(str(tmp_path))
    try:
        unregister_from_pythae()
        with pytest.raises(NameError):
            AutoModel.load_from_folder(str(tmp_path))
        assert type(AVAE.load_from_folder(str(tmp_path))) is AVAE  # no patch needed
    finally:
        register_with_pythae()
    assert type(AutoModel.load_from_folder(str(tmp_path))) is AVAE


def test_pythae_models_unaffected(tmp_path):
    vae = VAE(VAEConfig(input_dim=(1, 4, 4), latent_dim=2))
    vae.save(str(tmp_path))
    loaded = AutoModel.load_from_folder(str(tmp_path))
    assert type(loaded) is VAE
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert type(AutoConfig.from_json_file(str(tmp_path / "model_config.json"))) is VAEConfig


def test_name_clash_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model(AVAEConfig)(type("Other", (), {}))


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        AVAE.load_from_folder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        AutoModel.load_from_folder(str(tmp_path))


def test_top_level_imports():
    from pythae_avae import AVAE_SS, SE, SE_AVAE  # noqa: F401

    assert pythae_avae.__version__
