"""Every model trains through a Pythae pipeline on real colorMNIST (embedded digits)."""

import pytest
import torch
from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline
from pythae.trainers import BaseTrainerConfig

from pythae_avae.data import ColorMNIST, RecolorCallback
from pythae_avae.recipes import build_model, post_train_avae_ss


@pytest.fixture(scope="module")
def data():
    return ColorMNIST("train", limit=64), ColorMNIST("test", limit=16)


@pytest.mark.parametrize("name, config", [
    ("VAE", {}), ("AVAE", {}), ("SE", {"se_eps": 0.1, "se_steps": 2}),
    ("SE-AVAE", {"se_eps": 0.1, "se_steps": 2}),
])
def test_trains_on_color_mnist(data, tmp_path, name, config):
    torch.manual_seed(0)
    model = build_model(name, "colormnist-conv", latent_dim=8, **config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training = BaseTrainerConfig(output_dir=str(tmp_path), num_epochs=2, per_device_train_batch_size=16,
                                 no_cuda=True, learning_rate=1e-3)
    pipeline = PythaeTrainingPipeline(model, training)
    pipeline(data[0], data[1], callbacks=[RecolorCallback()])
    trained = pipeline.trainer.model
    assert any(not torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert torch.isfinite(trained({"data": data[1][0]["data"][None]}).loss)


def test_avae_ss_post_trains_a_color_mnist_vae_without_data(data, tmp_path):
    vae = build_model("VAE", "colormnist-conv", latent_dim=8)
    training = BaseTrainerConfig(output_dir=str(tmp_path), num_epochs=1, per_device_train_batch_size=16, no_cuda=True)
    PythaeTrainingPipeline(vae, training)(data[0])
    ss = post_train_avae_ss(vae, {"rho": 0.975}, iterations=4, batch_size=8, output_dir=str(tmp_path / "ss"),
                            device="cpu", steps_per_epoch=2)
    for key, value in vae.decoder.state_dict().items():
        assert torch.equal(ss.decoder.state_dict()[key], value)
