"""The model registry and its hook into Pythae's AutoModel / AutoConfig (pythae_extension.md §3.3)."""

import json
import os

import pytest
import torch
from pydantic.dataclasses import dataclass
from pythae.models import VAE, AutoModel, VAEConfig
from pythae.models.auto_model import AutoConfig

import pythae_avae
from pythae_avae import AVAE, AVAEConfig
from pythae_avae.models import registry
from pythae_avae.models.base import STRICT
from pythae_avae.models.registry import (
    MODEL_REGISTRY,
    is_registered_with_pythae,
    register_model,
    register_with_pythae,
    unregister_from_pythae,
)

SHAPE = (1, 8, 8)


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def hooks():
    return AutoModel.__dict__["load_from_folder"], AutoConfig.__dict__["from_json_file"]


@pytest.fixture
def registered():
    """Starts registered (as after `import pythae_avae`) and leaves it so, whatever happens."""
    register_with_pythae()
    try:
        yield
    finally:
        register_with_pythae()


@pytest.fixture
def avae_folder(tmp_path):
    torch.manual_seed(0)
    model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=2, rho=0.8))
    path = tmp_path / "avae"
    model.save(str(path))
    return model, str(path)


def test_registry_contents():
    expected = {
        "AVAEConfig": (pythae_avae.AVAE, pythae_avae.AVAEConfig),
        "AVAE_SS_Config": (pythae_avae.AVAE_SS, pythae_avae.AVAE_SS_Config),
        "GaussianVAEConfig": (pythae_avae.GaussianVAE, pythae_avae.GaussianVAEConfig),
        "SEConfig": (pythae_avae.SE, pythae_avae.SEConfig),
        "SE_AVAE_Config": (pythae_avae.SE_AVAE, pythae_avae.SE_AVAE_Config),
    }
    for name, (model_cls, config_cls) in expected.items():
        assert MODEL_REGISTRY[name].model_cls is model_cls
        assert MODEL_REGISTRY[name].config_cls is config_cls
        assert config_cls.__name__ == name  # the key is what model_config.json holds


def test_import_registers(registered):
    assert is_registered_with_pythae()
    assert AutoModel.__dict__["load_from_folder"].__func__ is registry._auto_model_load_from_folder
    assert AutoConfig.__dict__["from_json_file"].__func__ is registry._auto_config_from_json_file


def test_register_idempotent(registered, avae_folder):
    model, path = avae_folder
    first = hooks()
    func = AutoModel.load_from_folder.__func__
    register_with_pythae()
    register_with_pythae()
    assert hooks() == first
    assert hooks()[0] is first[0] and hooks()[1] is first[1]
    assert AutoModel.load_from_folder.__func__ is func
    assert state_equal(AutoModel.load_from_folder(path), model)
    try:
        # one unregister restores Pythae's own functions (nothing was wrapped twice)
        unregister_from_pythae()
        assert AutoModel.__dict__["load_from_folder"].__func__.__module__.startswith("pythae.")
        assert AutoConfig.__dict__["from_json_file"].__func__.__module__.startswith("pythae.")
        assert not is_registered_with_pythae()
    finally:
        register_with_pythae()


def test_builtin_vae_through_hook(registered, tmp_path):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(input_dim=SHAPE, latent_dim=2))
    vae.save(str(tmp_path))
    reloaded = AutoModel.load_from_folder(str(tmp_path))
    assert type(reloaded) is VAE
    assert reloaded.model_config.__dict__ == vae.model_config.__dict__
    assert state_equal(reloaded, vae)
    cfg = AutoConfig.from_json_file(os.path.join(tmp_path, "model_config.json"))
    assert type(cfg) is VAEConfig


def test_autoconfig_hook(registered, avae_folder):
    model, path = avae_folder
    cfg = AutoConfig.from_json_file(os.path.join(path, "model_config.json"))
    assert type(cfg) is AVAEConfig
    assert cfg.__dict__ == model.model_config.__dict__


def test_unregister_restores_originals(registered, avae_folder):
    model, path = avae_folder
    wrapped = hooks()
    try:
        unregister_from_pythae()
        restored = hooks()
        assert restored[0] is not wrapped[0] and restored[1] is not wrapped[1]
        with pytest.raises(NameError):
            AutoModel.load_from_folder(path)
        with pytest.raises(NameError):
            AutoConfig.from_json_file(os.path.join(path, "model_config.json"))
        unregister_from_pythae()  # a second call is harmless
        assert hooks() == restored
        # the model's own loader does not need the hook
        reloaded = AVAE.load_from_folder(path)
        assert type(reloaded) is AVAE and state_equal(reloaded, model)
        assert reloaded.model_config.__dict__ == model.model_config.__dict__
    finally:
        register_with_pythae()
    assert is_registered_with_pythae()
    assert type(AutoModel.load_from_folder(path)) is AVAE


def test_register_different_class_under_existing_name_raises():
    class NotAVAE(AVAE):
        pass

    with pytest.raises(ValueError, match="AVAEConfig"):
        register_model(AVAEConfig)(NotAVAE)
    assert MODEL_REGISTRY["AVAEConfig"].model_cls is AVAE
    # re-registering the same class is allowed and changes nothing
    assert register_model(AVAEConfig)(AVAE) is AVAE
    assert MODEL_REGISTRY["AVAEConfig"].model_cls is AVAE


def test_register_same_qualname_from_other_module_raises():
    """A class named ``AVAE`` from another module is a different class: it must not silently
    take over ``AVAEConfig`` folders (the check compares only ``__qualname__``)."""
    Impostor = type("AVAE", (AVAE,), {"__module__": "some_other_plugin"})
    saved = MODEL_REGISTRY["AVAEConfig"]
    try:
        with pytest.raises(ValueError, match="AVAEConfig"):
            register_model(AVAEConfig)(Impostor)
    finally:
        MODEL_REGISTRY["AVAEConfig"] = saved
    assert MODEL_REGISTRY["AVAEConfig"].model_cls is AVAE


def test_register_new_plugin_model(registered, tmp_path):
    @dataclass(config=STRICT)
    class TmpPluginConfig(AVAEConfig):
        extra_weight: float = 2.0

    class TmpPlugin(AVAE):
        pass

    assert "TmpPluginConfig" not in MODEL_REGISTRY
    try:
        register_model(TmpPluginConfig)(TmpPlugin)
        model = TmpPlugin(TmpPluginConfig(input_dim=SHAPE, latent_dim=2, extra_weight=3.0))
        model.save(str(tmp_path))
        with open(tmp_path / "model_config.json") as f:
            assert json.load(f)["name"] == "TmpPluginConfig"
        reloaded = AutoModel.load_from_folder(str(tmp_path))
        assert type(reloaded) is TmpPlugin
        assert reloaded.model_config.extra_weight == 3.0
        assert state_equal(reloaded, model)
    finally:
        MODEL_REGISTRY.pop("TmpPluginConfig", None)
    with pytest.raises(NameError):
        AutoModel.load_from_folder(str(tmp_path))


def test_missing_model_config(registered, avae_folder):
    _, path = avae_folder
    os.remove(os.path.join(path, "model_config.json"))
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        AutoModel.load_from_folder(path)
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        AVAE.load_from_folder(path)


def test_missing_folder(registered, tmp_path):
    with pytest.raises(FileNotFoundError):
        AutoModel.load_from_folder(str(tmp_path / "nope"))


def test_models_pushed_to_the_hub_load_back(tmp_path, monkeypatch):
    # push_to_hf_hub uploads what save() writes; Pythae's loader fetched no architecture.json
    import shutil

    import huggingface_hub
    from huggingface_hub.errors import RemoteEntryNotFoundError

    from pythae_avae.models.serialization import PickleRefusedError
    from pythae_avae.nets import ColorMNISTConvDecoder, ColorMNISTConvEncoder
    from pythae_avae.recipes import build_model

    repos = {"me/wide": tmp_path / "wide", "me/own": tmp_path / "own"}
    torch.manual_seed(0)
    wide = build_model("AVAE", "colormnist-conv-wideenc", latent_dim=4)
    wide.save(str(repos["me/wide"]))

    class Mine(ColorMNISTConvEncoder):
        pass

    AVAE(AVAEConfig(input_dim=(3, 28, 28), latent_dim=4), Mine(4), ColorMNISTConvDecoder(4)).save(str(repos["me/own"]))
    fetched = []

    def fake_download(repo_id, filename, **kwargs):  # the hub's cache: one folder per repository
        source, cache = repos[repo_id] / filename, tmp_path / "cache" / repo_id.replace("/", "--")
        if not source.exists():
            missing = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)  # the hub's 404 (needs no response)
            Exception.__init__(missing, f"{filename} not in {repo_id}")
            raise missing
        cache.mkdir(parents=True, exist_ok=True)
        fetched.append(filename)
        return shutil.copy(source, cache / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    for load in (AVAE.load_from_hf_hub, AutoModel.load_from_hf_hub):
        model = load("me/wide")
        assert type(model) is AVAE and model.encoder.net_spec == wide.encoder.net_spec
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), wide.state_dict().values()))
    fetched.clear()
    with pytest.raises(PickleRefusedError, match="encoder.pkl"):  # a user's own nets: refused, never fetched
        AVAE.load_from_hf_hub("me/own")
    assert not any(name.endswith(".pkl") for name in fetched)

    # huggingface_hub < 1.0 has no RemoteEntryNotFoundError (its 404 is an EntryNotFoundError)
    monkeypatch.delattr(huggingface_hub.errors, "RemoteEntryNotFoundError")
    assert type(AVAE.load_from_hf_hub("me/wide")) is AVAE
    with pytest.raises(PickleRefusedError, match="encoder.pkl"):
        AVAE.load_from_hf_hub("me/own")

    # offline with the architecture not cached: the cache miss is raised, not read as "pickled nets"
    from huggingface_hub.utils import LocalEntryNotFoundError

    def offline_download(repo_id, filename, **kwargs):
        if filename == "architecture.json":
            raise LocalEntryNotFoundError(f"{filename} of {repo_id} is not in the cache and the hub is offline")
        return fake_download(repo_id, filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_download)
    with pytest.raises(LocalEntryNotFoundError, match="offline"):
        AVAE.load_from_hf_hub("me/wide")
    # ... unless the cache recorded that the repository has none (an earlier online 404): pickles
    hub_cache = tmp_path / "hub"  # the hub cache's layout: the ref's commit, and what it lacks
    (hub_cache / "models--me--own" / "refs").mkdir(parents=True)
    (hub_cache / "models--me--own" / "refs" / "main").write_text("c0ffee")
    (hub_cache / "models--me--own" / ".no_exist" / "c0ffee").mkdir(parents=True)
    (hub_cache / "models--me--own" / ".no_exist" / "c0ffee" / "architecture.json").touch()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    with pytest.raises(PickleRefusedError, match="encoder.pkl"):
        AVAE.load_from_hf_hub("me/own")
    with pytest.raises(LocalEntryNotFoundError, match="offline"):
        AVAE.load_from_hf_hub("me/wide")


def test_pythaes_own_pipeline_runs_this_packages_trainers(registered, tmp_path):
    """Pythae's TrainingPipeline picks trainers by an isinstance chain: a ResumableTrainerConfig
    (a BaseTrainerConfig subclass) went to a plain BaseTrainer, without checkpoints or resume, and
    AVAE-SS's data-free config asked for training data. The hook sends them to their trainers."""
    from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from pythae_avae import AVAE_SS
    from pythae_avae.recipes import build_model
    from pythae_avae.trainers import (DataFreeTrainer, DataFreeTrainerConfig, ResumableTrainer,
                                      ResumableTrainerConfig, latest_checkpoint)

    data = torch.rand(8, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("AVAE", "colormnist-mlp", latent_dim=2)
    resumable = ResumableTrainerConfig(output_dir=str(tmp_path / "r"), num_epochs=1, per_device_train_batch_size=4,
                                       checkpoint_every=1, no_cuda=True, progress_bar=False)
    pipeline = PythaeTrainingPipeline(model, resumable)
    pipeline(train_data=data)
    assert type(pipeline.trainer) is ResumableTrainer and latest_checkpoint(str(tmp_path / "r")) is not None

    data_free = DataFreeTrainerConfig(output_dir=str(tmp_path / "ss"), num_steps=2, steps_per_epoch=2, batch_size=4,
                                      no_cuda=True, progress_bar=False)
    pipeline = PythaeTrainingPipeline(AVAE_SS.from_pretrained(build_model("VAE", "colormnist-mlp", latent_dim=2)),
                                      data_free)
    pipeline()  # no training data
    assert type(pipeline.trainer) is DataFreeTrainer

    plain = BaseTrainerConfig(output_dir=str(tmp_path / "b"), num_epochs=1, per_device_train_batch_size=4, no_cuda=True)
    pipeline = PythaeTrainingPipeline(model, plain)
    pipeline(train_data=data)
    assert type(pipeline.trainer) is BaseTrainer  # Pythae's own configs: Pythae's own dispatch
    try:
        unregister_from_pythae()
        pipeline = PythaeTrainingPipeline(model, resumable)
        pipeline(train_data=data)
        assert type(pipeline.trainer) is BaseTrainer  # what the hook is for
    finally:
        register_with_pythae()
