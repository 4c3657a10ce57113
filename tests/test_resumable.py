"""Training in chunks survives an interruption and continues where it stopped."""

import json
import os

import pytest
import torch
from pythae.trainers.training_callbacks import TrainingCallback

from pythae_avae.recipes import build_model, train_for_iterations
from pythae_avae.trainers import ResumableTrainerConfig

DATA = torch.rand(32, 3, 28, 28, generator=torch.Generator().manual_seed(0))


class Interrupt(Exception):
    pass


class CountEpochs(TrainingCallback):
    def __init__(self, fail_at=None):
        self.epochs, self.fail_at = 0, fail_at

    def on_epoch_begin(self, training_config, **kwargs):
        self.epochs += 1
        if self.epochs == self.fail_at:
            raise Interrupt()


def fresh():
    torch.manual_seed(0)
    return build_model("AVAE", "colormnist-mlp", latent_dim=4)


def run(tmp_path, callbacks, iterations=6):
    # 32 images, batch 16: 2 iterations per epoch, chunks of 1 epoch
    return train_for_iterations(
        fresh(), DATA, iterations=iterations, batch_size=16, chunk_iterations=2,
        output_dir=str(tmp_path), device="cpu", callbacks=callbacks,
    )


def progress(tmp_path):
    with open(tmp_path / "state" / "progress.json") as f:
        return json.load(f)["epochs"]


def test_interrupted_run_continues_from_saved_state(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path, [CountEpochs(fail_at=3)])
    assert progress(tmp_path) == 2  # two chunks finished before the interruption
    saved = torch.load(tmp_path / "state" / "model.pt", weights_only=True)["model_state_dict"]
    assert os.path.isfile(tmp_path / "state" / "optimizer.pt")

    counter = CountEpochs()
    model = run(tmp_path, [counter])
    assert counter.epochs == 1  # only the missing epoch is trained
    assert progress(tmp_path) == 3
    assert any(not torch.equal(saved[k], v) for k, v in model.state_dict().items())

    again = CountEpochs()
    finished = run(tmp_path, [again])
    assert again.epochs == 0
    for key, value in model.state_dict().items():
        assert torch.equal(finished.state_dict()[key], value)


def test_resume_loads_optimizer_state(tmp_path):
    run(tmp_path, [], iterations=2)
    optimizer_state = torch.load(tmp_path / "state" / "optimizer.pt", weights_only=True)
    assert optimizer_state["state"], "Adam moments must be saved"
    steps = {int(s["step"]) for s in optimizer_state["state"].values()}
    assert steps == {2}
    run(tmp_path, [], iterations=4)
    steps = {int(s["step"]) for s in torch.load(tmp_path / "state" / "optimizer.pt", weights_only=True)["state"].values()}
    assert steps == {4}  # the moments carried over: 2 + 2 steps


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="iterations"):
        train_for_iterations(fresh(), DATA, iterations=0, output_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resume_from"):
        ResumableTrainerConfig(resume_from=str(tmp_path))
    with pytest.raises(ValueError, match="unexpected|Unexpected"):
        ResumableTrainerConfig(num_epoch=3)


def test_avae_ss_recipe_post_trains_a_vae_without_data(tmp_path):
    from pythae_avae.recipes import post_train_avae_ss

    vae = build_model("VAE", "colormnist-mlp", latent_dim=4)
    with pytest.raises(ValueError, match="post_train_avae_ss"):
        build_model("AVAE-SS", "colormnist-mlp", latent_dim=4)
    model = post_train_avae_ss(vae, {"rho": 0.9}, iterations=6, batch_size=4,
                               output_dir=str(tmp_path), device="cpu", steps_per_epoch=3)
    assert type(model).__name__ == "AVAE_SS" and model.model_config.rho == 0.9
    for key, value in vae.decoder.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[key], value)
    assert any(
        not torch.equal(model.encoder.state_dict()[k], v) for k, v in vae.encoder.state_dict().items()
    )
    assert (tmp_path / "last_model" / "model_config.json").exists()
