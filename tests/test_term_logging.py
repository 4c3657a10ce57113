"""Per-term losses reach Pythae callbacks (Pythae alone logs only the total loss)."""

import pytest
import torch
from pythae.models import VAE, VAEConfig
from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback

from pythae_avae import AVAE, AVAEConfig
from pythae_avae.models.base import TermMeter
from pythae_avae.pipelines import TrainingPipeline
from pythae_avae.trainers import TermLoggerCallback

TERMS = ("recon_loss", "reg_loss", "coupling_loss", "entropy_loss")


class Recorder(TrainingCallback):
    """Stands in for wandb/mlflow: keeps what on_log hands to callbacks after ours."""

    def __init__(self):
        self.logs = []

    def on_log(self, training_config, logs, **kwargs):
        self.logs.append(dict(logs))


def small_avae():
    return AVAE(AVAEConfig(input_dim=(3, 8, 8), latent_dim=4))


def config(tmp_path, epochs=2):
    return BaseTrainerConfig(
        output_dir=str(tmp_path), num_epochs=epochs, per_device_train_batch_size=8, no_cuda=True
    )


def data(n):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(n))


def test_meter_means_per_phase():
    meter = TermMeter()
    meter.update("train", {"a": torch.tensor(1.0)})
    meter.update("train", {"a": torch.tensor(3.0)})
    meter.update("eval", {"a": torch.tensor(5.0)})
    assert meter.means() == {"train_epoch_a": 2.0, "eval_epoch_a": 5.0}
    meter.reset()
    assert meter.means() == {}


def test_our_pipeline_logs_every_term_to_all_callbacks(tmp_path):
    recorder = Recorder()
    model = small_avae()
    TrainingPipeline(model, config(tmp_path))(data(32), data(16), callbacks=[recorder])
    assert len(recorder.logs) == 2
    for logs in recorder.logs:
        for phase in ("train", "eval"):
            for term in TERMS:
                assert f"{phase}_epoch_{term}" in logs
    # the terms are the epoch means that make up the logged total loss
    last = recorder.logs[-1]
    total = sum(last[f"eval_epoch_{t}"] for t in TERMS)
    assert total == pytest.approx(last["eval_epoch_loss"], rel=1e-4)


def test_callback_with_pythae_stock_pipeline(tmp_path):
    recorder = Recorder()
    logger_cb = TermLoggerCallback()
    PythaeTrainingPipeline(small_avae(), config(tmp_path, epochs=1))(
        data(24), callbacks=[logger_cb, recorder]
    )
    assert "train_epoch_coupling_loss" in recorder.logs[0]
    assert "eval_epoch_coupling_loss" not in recorder.logs[0]  # no eval data given
    assert logger_cb.history[0]["train_epoch_coupling_loss"] == recorder.logs[0][
        "train_epoch_coupling_loss"
    ]


def test_models_without_meter_are_left_alone(tmp_path):
    recorder = Recorder()
    vae = VAE(VAEConfig(input_dim=(3, 8, 8), latent_dim=4))
    TrainingPipeline(vae, config(tmp_path, epochs=1))(data(16), callbacks=[recorder])
    assert set(recorder.logs[0]) == {"train_epoch_loss"}


def test_pipeline_requires_data_for_ordinary_trainers(tmp_path):
    with pytest.raises(ValueError, match="train_data"):
        TrainingPipeline(small_avae(), config(tmp_path))()


class StopAfter(TrainingCallback):
    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_train_step_end(self, training_config, **kwargs):
        self.seen += 1
        if self.seen == self.step:
            raise KeyboardInterrupt  # the trainer saves the step on its way out


def test_an_epoch_resumed_in_its_middle_logs_the_uninterrupted_terms(tmp_path):
    from pythae_avae.trainers import ResumableTrainerConfig

    def run(out, callbacks):
        torch.manual_seed(0)
        cfg = ResumableTrainerConfig(output_dir=str(out), num_epochs=2, per_device_train_batch_size=8, no_cuda=True,
                                     learning_rate=1e-3, seed=0, checkpoint_every=100)
        TrainingPipeline(small_avae(), cfg)(data(32), callbacks=callbacks)

    whole, resumed = Recorder(), Recorder()
    run(tmp_path / "whole", [whole])
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", [StopAfter(3)])  # step 3 of epoch 1's 4
    run(tmp_path / "cut", [resumed])
    assert len(resumed.logs) == len(whole.logs) == 2
    for got, expected in zip(resumed.logs, whole.logs):
        for term in TERMS:  # epoch 1's means include the 3 steps trained before the stop
            assert got[f"train_epoch_{term}"] == pytest.approx(expected[f"train_epoch_{term}"], rel=1e-5), term
        assert sum(got[f"train_epoch_{t}"] for t in TERMS) == pytest.approx(got["train_epoch_loss"], rel=1e-4)
