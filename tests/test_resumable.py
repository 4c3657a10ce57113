"""Resume after interruption: a killed run, restarted with the same command, ends with the
same weights as an uninterrupted one (CPU, fixed seed, one thread)."""

import glob
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from pythae.trainers.training_callbacks import TrainingCallback

from pythae_avae.models import AVAE_SS
from pythae_avae.pipelines import TrainingPipeline
from pythae_avae.recipes import build_model, train_for_iterations
from pythae_avae.trainers import (
    CheckpointMismatchError,
    DataFreeTrainerConfig,
    NonFiniteLossError,
    ResumableTrainerConfig,
    latest_checkpoint,
)

DATA = torch.rand(32, 3, 28, 28, generator=torch.Generator().manual_seed(0))
WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")


class Interrupt(Exception):
    pass


class CountSteps(TrainingCallback):
    """Counts optimizer steps; raises ``error`` after step ``fail_at``."""

    def __init__(self, fail_at=None, error=Interrupt):
        self.steps, self.fail_at, self.error = 0, fail_at, error

    def on_train_step_end(self, training_config, **kwargs):
        self.steps += 1
        if self.steps == self.fail_at:
            raise self.error()


def fresh(name="AVAE"):
    torch.manual_seed(0)
    return build_model(name, "colormnist-mlp", latent_dim=4)


def run(tmp_path, callbacks=(), iterations=6, chunk=4):
    # 32 images, batch 16: 2 iterations per epoch; a checkpoint every `chunk` steps
    return train_for_iterations(
        fresh(), DATA, iterations=iterations, batch_size=16, chunk_iterations=chunk,
        output_dir=str(tmp_path), device="cpu", callbacks=list(callbacks),
    )


def state(tmp_path):
    return torch.load(os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt"),
                      weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("error", [Interrupt, KeyboardInterrupt])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, error):
    reference = run(tmp_path / "ref").state_dict()
    with pytest.raises(error):
        run(tmp_path / "cut", [CountSteps(fail_at=3, error=error)], chunk=2)
    # Interrupt: last periodic checkpoint (step 2);
    # KeyboardInterrupt: saved on the way out, at the step that completed
    stopped_at = state(tmp_path / "cut")["global_step"]
    assert stopped_at == (3 if error is KeyboardInterrupt else 2)
    counter = CountSteps()
    resumed = run(tmp_path / "cut", [counter])
    assert counter.steps == 6 - stopped_at
    assert_same_weights(resumed.state_dict(), reference)


def test_a_ctrl_c_at_an_epochs_last_step_does_not_skip_the_epochs_end(tmp_path):
    # KeyboardInterrupt in a step-end callback of an epoch's last step (a second Ctrl-C while the
    # progress bar updates): the epoch's end (here the cosine scheduler's step) has not run yet
    def cosine(out, callbacks=()):
        return train_for_iterations(fresh(), DATA, iterations=6, batch_size=16, output_dir=str(out),
                                    device="cpu", lr_schedule="cosine", chunk_iterations=2,
                                    callbacks=list(callbacks)).state_dict()

    reference = cosine(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        cosine(tmp_path / "cut", [CountSteps(fail_at=4, error=KeyboardInterrupt)])  # step 2 of epoch 2
    # no checkpoint of weights past a half-finished epoch: the last consistent one stays (step 2)
    assert state(tmp_path / "cut")["global_step"] == 2
    assert_same_weights(cosine(tmp_path / "cut"), reference)


def test_checkpoint_holds_optimizer_and_a_finished_run_trains_nothing(tmp_path):
    run(tmp_path, iterations=6, chunk=4)
    saved = state(tmp_path)
    assert saved["global_step"] == 6 and saved["epoch"] == 3
    assert {int(s["step"]) for s in saved["optimizer"]["state"].values()} == {6}  # Adam moments
    counter = CountSteps()
    run(tmp_path, [counter])
    assert counter.steps == 0


def test_resume_with_another_batch_size_is_refused(tmp_path):
    run(tmp_path, iterations=2)
    with pytest.raises(ValueError, match=r"global_batch_size=16 \(this run: 8\)"):
        train_for_iterations(fresh(), DATA, iterations=4, batch_size=8, output_dir=str(tmp_path), device="cpu")


@pytest.mark.parametrize("changed, expected", [
    (dict(model=dict(obs_var=0.1)), r"model_config.obs_var=0.5 \(this run: 0.1\)"),
    (dict(model=dict(rho=0.9)), r"model_config.rho=0.975 \(this run: 0.9\)"),
    (dict(learning_rate=1e-4), r"training.learning_rate=0.001 \(this run: 0.0001\)"),
    (dict(seed=1), r"training.seed=0 \(this run: 1\)"),
    (dict(lr_schedule="cosine"), r"training.scheduler_cls=None \(this run: .?CosineAnnealingLR.?\)"),
])
def test_resume_with_other_settings_is_refused_naming_them(tmp_path, changed, expected):
    # the weights would load, and the optimizer's state would bring back the old learning rate
    run(tmp_path, iterations=2)
    torch.manual_seed(0)
    model = build_model("AVAE", "colormnist-mlp", latent_dim=4, **changed.pop("model", {}))
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint: .*" + expected):
        train_for_iterations(model, DATA, iterations=4, batch_size=16, output_dir=str(tmp_path),
                             device="cpu", **changed)


def test_checkpoint_written_before_settings_were_stored_still_resumes(tmp_path):
    run(tmp_path, iterations=2)
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    saved = torch.load(path, weights_only=True)
    del saved["settings"]
    torch.save(saved, path)
    counter = CountSteps()
    run(tmp_path, [counter], iterations=4)
    assert counter.steps == 2


def test_checkpoint_written_before_a_config_field_existed_still_resumes(tmp_path):
    # e.g. aux_batch_norm: a run made before it ran with the field's default, "batch"
    run(tmp_path, iterations=2)
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    saved = torch.load(path, weights_only=True)
    del saved["settings"]["model_config"]["aux_batch_norm"]
    torch.save(saved, path)
    counter = CountSteps()
    run(tmp_path, [counter], iterations=4)
    assert counter.steps == 2
    del saved["settings"]["model_config"]["rho"]  # not a default: 0.975 ran, the new run asks 0.9
    torch.save(saved, latest_checkpoint(str(tmp_path / "pythae")) + "/trainer_state.pt")
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"model_config.rho=0.975 \(this run: 0.9\)"):
        train_for_iterations(build_model("AVAE", "colormnist-mlp", latent_dim=4, rho=0.9), DATA, iterations=6,
                             batch_size=16, output_dir=str(tmp_path), device="cpu")


def test_resume_with_another_training_set_is_refused(tmp_path):
    # the saved epoch position would point elsewhere in another set's epochs
    run(tmp_path, iterations=2)
    with pytest.raises(ValueError, match=r"cannot resume from .*data.train_size=32 \(this run: 16\)"):
        train_for_iterations(fresh(), DATA[:16], iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu")


def test_resume_with_other_images_of_the_same_size_is_refused(tmp_path):
    # the size alone let a run trained on one set continue on another of the same length
    run(tmp_path, iterations=2)
    with pytest.raises(ValueError, match=r"cannot resume from .*data.fingerprint='[0-9a-f]{16}' "
                                         r"\(this run: '[0-9a-f]{16}'\)"):
        train_for_iterations(fresh(), DATA.flip(0), iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu")
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    saved = torch.load(path, weights_only=True)
    del saved["settings"]["data"]["fingerprint"]  # a checkpoint from before 2026-11-29: its size is checked
    torch.save(saved, path)
    counter = CountSteps()
    run(tmp_path, [counter], iterations=4)
    assert counter.steps == 2


def test_a_folder_holding_a_longer_run_is_refused_not_returned(tmp_path):
    run(tmp_path, iterations=6)
    with pytest.raises(ValueError, match=r"it holds 6 steps, more than this run's 4 \(2 epochs of 2\).*"
                                         r"Ask for at least 6 steps"):
        run(tmp_path, iterations=4)


def test_a_checkpoint_of_another_architecture_is_refused_naming_it(tmp_path):
    run(tmp_path, iterations=2)
    torch.manual_seed(0)
    conv = build_model("AVAE", "colormnist-conv", latent_dim=4)
    with pytest.raises(ValueError, match=r"cannot resume from .*nets\.decoder\.class='ColorMNISTMLPDecoder' \(this "
                                         r"run: 'ColorMNISTConvDecoder'\)"):
        train_for_iterations(conv, DATA, iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu")
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    saved = torch.load(path, weights_only=True)
    del saved["settings"]["nets"]  # a checkpoint from before the nets were recorded: its weights tell
    torch.save(saved, path)
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint: its weights do not fit this run's "
                                         r"AVAE \(RuntimeError: .*\); another architecture\?"):
        train_for_iterations(conv, DATA, iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu")


def test_a_checkpoint_of_another_activation_is_refused_naming_it(tmp_path):
    # the same weight shapes: load_state_dict alone would continue a ReLU run as a SiLU one
    torch.manual_seed(0)
    train_for_iterations(build_model("AVAE", "colormnist-conv", latent_dim=4), DATA, iterations=2, batch_size=16,
                         output_dir=str(tmp_path), device="cpu")
    torch.manual_seed(0)
    with pytest.raises(CheckpointMismatchError, match=r"nets\.encoder\.activation='relu' \(this run: 'silu'\)"):
        train_for_iterations(build_model("AVAE", "colormnist-conv-silu", latent_dim=4), DATA, iterations=4,
                             batch_size=16, output_dir=str(tmp_path), device="cpu")


def test_a_checkpoint_of_a_user_s_net_is_refused_for_a_package_net_of_the_same_shapes(tmp_path):
    # a user's net records no arguments; its class name alone tells the two runs apart
    from pythae_avae.nets import ColorMNISTConvEncoder

    class UserEncoder(ColorMNISTConvEncoder):  # a subclass: unknown to the package, no net_spec
        pass

    torch.manual_seed(0)
    user = build_model("AVAE", "colormnist-conv", latent_dim=4)
    user.encoder = UserEncoder(4)
    assert user.encoder.net_spec is None
    train_for_iterations(user, DATA, iterations=2, batch_size=16, output_dir=str(tmp_path), device="cpu")
    torch.manual_seed(0)
    with pytest.raises(CheckpointMismatchError, match=r"nets\.encoder\.class='test_a_checkpoint_of_a_user_s_net_is_"
                                                     r"refused_for_a_package_net_of_the_same_shapes\.<locals>\."
                                                     r"UserEncoder' \(this run: 'ColorMNISTConvEncoder'\)"):
        train_for_iterations(build_model("AVAE", "colormnist-conv", latent_dim=4), DATA, iterations=4,
                             batch_size=16, output_dir=str(tmp_path), device="cpu")
    torch.manual_seed(0)
    again = build_model("AVAE", "colormnist-conv", latent_dim=4)
    again.encoder = UserEncoder(4)
    train_for_iterations(again, DATA, iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu")


def test_an_old_checkpoint_s_best_model_from_a_warm_up_epoch_is_not_kept(tmp_path):
    # before warm-up epochs were excluded a checkpoint could hold one as its best: its loss
    # leaves out part of the objective, so no later epoch would beat it
    def train(iterations):
        torch.manual_seed(0)
        model = build_model("AVAE", "colormnist-conv", latent_dim=4, warmup_epoch=1)
        train_for_iterations(model, DATA, iterations=iterations, batch_size=16, output_dir=str(tmp_path),
                             device="cpu", progress=False)
        (final,) = glob.glob(str(tmp_path / "pythae" / "*_training_*" / "final_model" / "model.pt"))
        return torch.load(final, weights_only=True)["model_state_dict"]

    def plant(written):  # a warm-up epoch's loss, lower than any full one, as the best
        path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
        state = torch.load(path, weights_only=True)
        best = state["best"]["model"]
        planted = {k: torch.full_like(v, 7.0) if v.is_floating_point() else v for k, v in best.items()}
        state["best"] = {**state["best"], "train": -1e9, "model": planted}
        if written != "now":
            del state["best_skips_warmup"]
        if written == "before the rule":  # nor aux_samples, added with the rule
            del state["settings"]["model_config"]["aux_samples"]
        torch.save(state, path)

    def kept(final):
        return torch.equal(final["encoder.head.3.bias"], torch.full_like(final["encoder.head.3.bias"], 7.0))

    train(4)  # epoch 1 (2 steps) warms up, epoch 2 is full: a best model to plant over
    plant("before the rule")
    assert not kept(train(6))
    plant("with the rule, before the key")  # its best is a full epoch's: kept
    assert kept(train(8))
    plant("now")
    assert kept(train(10))


def test_a_checkpoint_from_before_a_net_setting_was_recorded_resumes(tmp_path):
    # extra_convs and a user's net class are recorded since 2026-11-29: older checkpoints lack them
    torch.manual_seed(0)
    train_for_iterations(build_model("AVAE", "colormnist-conv", latent_dim=4), DATA, iterations=2, batch_size=16,
                         output_dir=str(tmp_path), device="cpu", progress=False)
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    state = torch.load(path, weights_only=True)
    assert state["settings"]["nets"]["encoder.extra_convs"] == 0
    del state["settings"]["nets"]["encoder.extra_convs"]
    torch.save(state, path)
    torch.manual_seed(0)
    model = build_model("AVAE", "colormnist-conv", latent_dim=4)
    train_for_iterations(model, DATA, iterations=4, batch_size=16, output_dir=str(tmp_path), device="cpu",
                         progress=False)
    state = torch.load(os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt"), weights_only=True)
    assert state["global_step"] == 4 and state["settings"]["nets"]["encoder.extra_convs"] == 0


def test_resume_from_starts_a_run_and_its_rerun_continues_its_own_checkpoint(tmp_path):
    run(tmp_path / "source", iterations=2)
    source = latest_checkpoint(str(tmp_path / "source" / "pythae"))

    def config():  # run()'s settings, 8 steps, a checkpoint every 2
        return ResumableTrainerConfig(output_dir=str(tmp_path / "copy"), num_epochs=4, per_device_train_batch_size=16,
                                      learning_rate=1e-3, seed=0, no_cuda=True, checkpoint_every=2,
                                      resume_from=source)

    first = CountSteps(fail_at=3)
    with pytest.raises(Interrupt):  # steps 3, 4, 5 of 8: the last checkpoint is at step 4
        TrainingPipeline(fresh(), config())(DATA, callbacks=[first])
    counter = CountSteps()
    TrainingPipeline(fresh(), config())(DATA, callbacks=[counter])
    assert counter.steps == 8 - 4  # not 8 - 2: resume_from's step 2 would redo steps 3 and 4


def test_a_resume_from_of_other_settings_gives_advice_that_helps(tmp_path):
    # resume=False skips the run's own checkpoint only: it cannot be the way out here
    run(tmp_path / "source", iterations=2)
    source = latest_checkpoint(str(tmp_path / "source" / "pythae"))
    config = ResumableTrainerConfig(output_dir=str(tmp_path / "copy"), num_epochs=4, per_device_train_batch_size=8,
                                    learning_rate=1e-3, seed=0, no_cuda=True, resume_from=source)
    with pytest.raises(CheckpointMismatchError) as err:
        TrainingPipeline(fresh(), config)(DATA)
    assert "global_batch_size=16 (this run: 8)" in str(err.value)
    assert str(err.value).endswith("or resume_from=None to start over") and "resume=False" not in str(err.value)


def test_signal_handlers_are_restored_even_when_python_did_not_install_them(monkeypatch):
    from pythae_avae.trainers import resumable

    installed = []

    def fake_signal(signum, handler):  # what signal.signal returns for a handler set from C
        installed.append((signum, handler))
        return None

    monkeypatch.setattr(resumable.signal, "signal", fake_signal)
    with resumable._StopRequest():
        pass
    assert installed[2:] == [(signal.SIGINT, signal.SIG_DFL), (signal.SIGTERM, signal.SIG_DFL)]


def test_a_kill_between_the_checkpoint_swaps_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch):
    reference = run(tmp_path / "ref").state_dict()
    run(tmp_path / "cut", iterations=2, chunk=2)
    real_rename = os.rename

    def killed_before_the_new_one_is_in_place(src, dst):
        if src.endswith(".tmp"):
            raise Interrupt
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", killed_before_the_new_one_is_in_place)
    with pytest.raises(Interrupt):  # step 4's save: checkpoint -> checkpoint.old, then the kill
        run(tmp_path / "cut", iterations=6, chunk=2)
    monkeypatch.undo()
    folder = tmp_path / "cut" / "pythae"
    assert not (folder / "checkpoint").exists() and (folder / "checkpoint.tmp").exists()
    assert latest_checkpoint(str(folder)) == str(folder / "checkpoint.old")
    counter = CountSteps()
    assert_same_weights(run(tmp_path / "cut", [counter], chunk=2).state_dict(), reference)
    assert counter.steps == 4  # from the previous checkpoint's step 2
    assert sorted(p.name for p in folder.glob("checkpoint*")) == ["checkpoint"]  # .old and .tmp cleared


def test_an_interrupted_data_free_run_resumes_to_the_same_weights(tmp_path):
    def post_train(out, callbacks=()):
        config = DataFreeTrainerConfig(output_dir=str(out), num_steps=8, steps_per_epoch=4, batch_size=8,
                                       learning_rate=1e-3, seed=0, no_cuda=True, checkpoint_every=2)
        torch.manual_seed(0)
        model = AVAE_SS.from_pretrained(build_model("VAE", "colormnist-mlp", latent_dim=4))
        pipeline = TrainingPipeline(model, config)
        pipeline(callbacks=list(callbacks))
        return pipeline.trainer.model.state_dict()

    reference = post_train(tmp_path / "ref")
    with pytest.raises(Interrupt):
        post_train(tmp_path / "cut", [CountSteps(fail_at=5)])  # the last checkpoint: step 4
    counter = CountSteps()
    assert_same_weights(post_train(tmp_path / "cut", [counter]), reference)
    assert counter.steps == 4


def test_step_seeds_of_different_ranks_never_meet():
    from pythae_avae.trainers.resumable import _step_seed

    steps = range(120_000)  # beyond the paper's ~100k iterations
    ranks = [{_step_seed(0, rank, k) for k in steps} for rank in (0, 1, 2)]
    assert all(len(r) == len(steps) for r in ranks)
    assert not (ranks[0] & ranks[1]) and not (ranks[0] & ranks[2]) and not (ranks[1] & ranks[2])
    assert _step_seed(0, 0, 5) == _step_seed(0, -1, 5) == 5  # one process: the formula runs were made with


def test_building_the_trainer_leaves_batchnorm_statistics_alone(tmp_path):
    from pythae.data.datasets import BaseDataset

    from pythae_avae.trainers import ResumableTrainer

    torch.manual_seed(0)
    model = build_model("AVAE", "colormnist-conv", latent_dim=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = ResumableTrainerConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, no_cuda=True)
    ResumableTrainer(model, BaseDataset(DATA, torch.zeros(len(DATA))), training_config=config)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # running_mean included


def test_a_moved_run_folder_continues_in_its_new_place(tmp_path):
    run(tmp_path / "old", iterations=2)
    os.rename(tmp_path / "old", tmp_path / "new")
    counter = CountSteps()
    run(tmp_path / "new", [counter], iterations=4)
    assert counter.steps == 2
    assert not (tmp_path / "old").exists()  # nothing written where the run used to be
    assert glob.glob(str(tmp_path / "new" / "pythae" / "*_training_*" / "final_model"))


def test_resume_false_starts_over(tmp_path):
    run(tmp_path, iterations=2)
    config = ResumableTrainerConfig(output_dir=str(tmp_path / "pythae"), num_epochs=1,
                                    per_device_train_batch_size=16, no_cuda=True, resume=False)
    counter = CountSteps()
    TrainingPipeline(fresh(), config)(DATA, callbacks=[counter])
    assert counter.steps == 2


def test_tensor_datasets_are_batched_by_indexing_with_the_dataloaders_values(tmp_path):
    from pythae.data.datasets import BaseDataset

    from pythae_avae.trainers import ResumableTrainer

    class ItemByItem(BaseDataset):  # not Pythae's own class: goes through the DataLoader
        pass

    labels = torch.arange(len(DATA))
    config = ResumableTrainerConfig(output_dir=str(tmp_path), per_device_train_batch_size=12, no_cuda=True)
    fast, slow = (ResumableTrainer(fresh(), cls(DATA, labels), training_config=config)
                  for cls in (BaseDataset, ItemByItem))
    for epoch, start in ((1, 0), (2, 1)):
        a, b = list(fast._epoch_batches(epoch, start)), list(slow._epoch_batches(epoch, start))
        assert len(a) == len(b) == 3 - start
        for x, y in zip(a, b):
            assert torch.equal(x["data"], y["data"]) and torch.equal(x["labels"], y["labels"])
            assert x["labels"].dtype == y["labels"].dtype


class NaNAt(TrainingCallback):
    """Makes the model's loss NaN from step ``at`` on."""

    def __init__(self, model, at):
        self.model, self.at, self.calls = model, at, 0
        forward = model.forward

        def poisoned(inputs, **kwargs):
            self.calls += 1
            output = forward(inputs, **kwargs)
            if self.calls > self.at:  # call 1 is the trainer's sanity check
                output.loss = output.loss * float("nan")
            return output

        model.forward = poisoned


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = fresh()
    NaNAt(model, at=6)  # steps 1-5 fine, step 6 NaN
    config = ResumableTrainerConfig(output_dir=str(tmp_path), num_epochs=5, per_device_train_batch_size=8,
                                    no_cuda=True, checkpoint_every=4)
    pipeline = TrainingPipeline(model, config)
    with pytest.raises(NonFiniteLossError, match=r"nan at step 6 \(epoch 2\).*last good checkpoint: .*\(step 4\)"):
        pipeline(DATA)
    checkpoint = latest_checkpoint(str(tmp_path))
    assert torch.load(os.path.join(checkpoint, "trainer_state.pt"), weights_only=True)["global_step"] == 4
    weights = torch.load(os.path.join(checkpoint, "model.pt"), weights_only=True)["model_state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(torch.isfinite(p).all() for p in pipeline.trainer.model.parameters())  # not updated


class PoisonWeightsAt(TrainingCallback):
    """After step ``at`` a weight is NaN although the step's loss was finite (as non-finite
    gradients leave it)."""

    def __init__(self, model, at):
        self.model, self.at, self.steps = model, at, 0

    def on_train_step_end(self, training_config, **kwargs):
        self.steps += 1
        if self.steps == self.at:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")


def test_nan_weights_are_never_saved_as_a_good_checkpoint(tmp_path):
    model = fresh()
    config = ResumableTrainerConfig(output_dir=str(tmp_path), num_epochs=5, per_device_train_batch_size=8,
                                    no_cuda=True, checkpoint_every=4)
    with pytest.raises(NonFiniteLossError, match=r"weights hold NaN or inf after step 8 .*last good checkpoint: .*\(step 4\)"):
        TrainingPipeline(model, config)(DATA, callbacks=[PoisonWeightsAt(model, at=8)])  # a checkpoint step
    checkpoint = latest_checkpoint(str(tmp_path))
    assert torch.load(os.path.join(checkpoint, "trainer_state.pt"), weights_only=True)["global_step"] == 4


@pytest.mark.parametrize("field", ["num_epochs", "per_device_train_batch_size", "per_device_eval_batch_size"])
def test_counts_pythaes_config_takes_unchecked_are_refused(field, tmp_path):
    # num_epochs=0 saved the untrained model as the final one; batch 0 failed in a division later
    for config_cls in (ResumableTrainerConfig, DataFreeTrainerConfig):
        with pytest.raises(ValueError, match=f"{field} must be an int >= 1, got 0"):
            config_cls(output_dir=str(tmp_path), **{field: 0})


class RandomlyShifted(torch.utils.data.Dataset):
    """DATA with a random brightness shift drawn from torch's generator at every fetch (a
    user's augmentation)."""

    def __len__(self):
        return len(DATA)

    def __getitem__(self, index):
        from pythae.data.datasets import DatasetOutput

        return DatasetOutput(data=(DATA[index] + 0.1 * torch.rand(())).clamp(0, 1), labels=torch.zeros(()))


def test_a_datasets_random_transforms_replay_after_a_resume(tmp_path):
    def train(out, callbacks=()):
        return train_for_iterations(fresh(), RandomlyShifted(), iterations=6, batch_size=16, chunk_iterations=2,
                                    output_dir=str(out), device="cpu", callbacks=list(callbacks)).state_dict()

    reference = train(tmp_path / "ref")
    with pytest.raises(Interrupt):
        train(tmp_path / "cut", [CountSteps(fail_at=3)])  # the last checkpoint: step 2
    assert_same_weights(train(tmp_path / "cut"), reference)


def test_nan_loss_after_resume_from_names_that_checkpoint(tmp_path):
    run(tmp_path / "source", iterations=2)
    source = latest_checkpoint(str(tmp_path / "source" / "pythae"))
    model = fresh()
    NaNAt(model, at=2)  # step 3 (this run's first) is NaN, before this run wrote a checkpoint
    config = ResumableTrainerConfig(output_dir=str(tmp_path / "copy"), num_epochs=4, per_device_train_batch_size=16,
                                    learning_rate=1e-3, seed=0, no_cuda=True, checkpoint_every=100,
                                    resume_from=source)
    with pytest.raises(NonFiniteLossError, match=re.escape(f"last good checkpoint: {source} (step 2)")):
        TrainingPipeline(model, config)(DATA)


def test_amp_is_a_setting_a_resume_keeps_and_checkpoints_before_it_still_resume(tmp_path):
    run(tmp_path, iterations=2)
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")

    def config():  # run()'s settings, 4 steps (Pythae turns amp off without CUDA: no_cuda=True here)
        return ResumableTrainerConfig(output_dir=str(tmp_path / "pythae"), num_epochs=2,
                                      per_device_train_batch_size=16, learning_rate=1e-3, seed=0, no_cuda=True)

    recorded = torch.load(path, weights_only=True)
    recorded["settings"]["training"]["amp"] = True  # as a run with mixed precision on a GPU writes it
    torch.save(recorded, path)
    with pytest.raises(ValueError, match=r"training\.amp=True \(this run: False\)"):
        TrainingPipeline(fresh(), config())(DATA)
    del recorded["settings"]["training"]["amp"]  # as written before amp was recorded
    torch.save(recorded, path)
    counter = CountSteps()
    TrainingPipeline(fresh(), config())(DATA, callbacks=[counter])
    assert counter.steps == 2


def test_a_checkpoint_is_flushed_to_disk_before_it_replaces_the_last_one(tmp_path, monkeypatch):
    from pythae_avae.trainers import resumable

    flushed, renames = [], []
    real_fsync, real_rename = resumable._fsync, os.rename
    monkeypatch.setattr(resumable, "_fsync", lambda p: (flushed.append(os.path.basename(p)), real_fsync(p)))
    monkeypatch.setattr(resumable.os, "rename", lambda a, b: (renames.append((len(flushed), b)), real_rename(a, b)))
    run(tmp_path, iterations=2)
    out = str(tmp_path / "pythae")
    assert {"model.pt", "model_config.json", "trainer_state.pt", "checkpoint.tmp"} <= set(flushed)
    # the folder's files and entry were flushed before the swap, the swap itself after it
    swap = next(n for n, target in renames if target == os.path.join(out, "checkpoint"))
    assert {"model.pt", "trainer_state.pt", "checkpoint.tmp"} <= set(flushed[:swap])
    assert "pythae" in flushed[swap:]


def test_cosine_schedule_anneals_to_zero_and_a_stage_resumes_into_the_same_schedule(tmp_path):
    def cosine(out, iterations, callbacks=()):
        return train_for_iterations(fresh(), DATA, iterations=iterations, batch_size=16, output_dir=str(out),
                                    device="cpu", lr_schedule="cosine", schedule_iterations=6,
                                    callbacks=list(callbacks))

    reference = cosine(tmp_path / "ref", 6).state_dict()
    assert state(tmp_path / "ref")["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    cosine(tmp_path / "staged", 2)  # the first of 3 epochs: halfway down cos, not at 0
    assert state(tmp_path / "staged")["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.75)
    counter = CountSteps()
    assert_same_weights(cosine(tmp_path / "staged", 6, [counter]).state_dict(), reference)
    assert counter.steps == 4
    constant = run(tmp_path / "constant", chunk=6).state_dict()
    assert not all(torch.equal(constant[k], reference[k]) for k in reference)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="iterations"):
        train_for_iterations(fresh(), DATA, iterations=0, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \['constant', 'cosine'\], got 'step'"):
        train_for_iterations(fresh(), DATA, iterations=2, output_dir=str(tmp_path), lr_schedule="step")
    with pytest.raises(ValueError, match=r"schedule_iterations must be >= iterations \(4\), got 2"):
        train_for_iterations(fresh(), DATA, iterations=4, output_dir=str(tmp_path), schedule_iterations=2)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1 .*got 0"):  # not a ZeroDivisionError
        train_for_iterations(fresh(), DATA, iterations=2, output_dir=str(tmp_path), batch_size=0)
    with pytest.raises(ValueError, match=r"schedule_iterations must be an int >= 1 .*got '3'"):
        train_for_iterations(fresh(), DATA, iterations=2, output_dir=str(tmp_path), schedule_iterations="3")
    from pythae_avae.recipes import post_train_avae_ss

    with pytest.raises(ValueError, match=r"steps_per_epoch must be an int >= 1 .*got 0"):
        post_train_avae_ss(fresh("VAE"), iterations=2, output_dir=str(tmp_path), steps_per_epoch=0)
    with pytest.raises(FileNotFoundError, match="resume_from=.*trainer_state.pt"):
        ResumableTrainerConfig(resume_from=str(tmp_path))
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1"):
        ResumableTrainerConfig(checkpoint_every=0)
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
    assert isinstance(DataFreeTrainerConfig(), ResumableTrainerConfig)  # data-free runs resume too


def test_a_data_free_checkpoint_continues_only_the_same_pretrained_model_and_epochs(tmp_path):
    from pythae_avae.recipes import post_train_avae_ss

    vae, other = (build_model("VAE", "colormnist-mlp", latent_dim=2, seed=seed) for seed in (1, 2))
    common = dict(batch_size=4, device="cpu", output_dir=str(tmp_path), progress=False)
    post_train_avae_ss(vae, iterations=2, steps_per_epoch=2, **common)
    # another VAE: resuming would load the first one's decoder into the model returned
    with pytest.raises(CheckpointMismatchError, match=r"data\.decoder_weights="):
        post_train_avae_ss(other, iterations=4, steps_per_epoch=2, **common)
    # another epoch length would read the saved (epoch, step in epoch) as another step count
    with pytest.raises(CheckpointMismatchError, match=r"data\.steps_per_epoch=2 \(this run: 1\)"):
        post_train_avae_ss(vae, iterations=4, steps_per_epoch=1, **common)
    path = os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt")
    saved = torch.load(path, weights_only=True)
    saved["settings"]["data"] = {}  # as written before these were recorded: still continues
    torch.save(saved, path)
    post_train_avae_ss(vae, iterations=4, steps_per_epoch=2, **common)
    assert torch.load(os.path.join(latest_checkpoint(str(tmp_path / "pythae")), "trainer_state.pt"),
                      weights_only=True)["global_step"] == 4


# ------------------------------------------------------------------ real processes, real signals
def worker(output_dir, *extra):
    return [sys.executable, WORKER, str(output_dir), *extra]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(worker(out), check=True, capture_output=True, timeout=300)
    return torch.load(out / "final_weights.pt", weights_only=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_killed_process_rerun_with_the_same_command_ends_with_the_same_weights(tmp_path, uninterrupted, signum):
    command = worker(tmp_path, "--sleep", "0.05")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if re.search(r"\bstep 13\b", line):
            process.send_signal(signum)
            break
    output = process.stdout.read()
    assert process.wait(timeout=120) != 0
    assert not (tmp_path / "final_weights.pt").exists()  # it did stop early
    stopped_at = torch.load(os.path.join(latest_checkpoint(str(tmp_path)), "trainer_state.pt"),
                            weights_only=True)["global_step"]
    if signum == signal.SIGKILL:  # the last periodic checkpoint (every 5 steps): 10, or 15 when
        assert stopped_at in (10, 15)  # a busy machine delays the kill past two more steps
    else:
        assert 13 <= stopped_at < 48 and f"stopped at step {stopped_at}" in output
    rerun = subprocess.run(command[:2] + [str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(re.findall(r"\bstep \d+\b", rerun.stdout)) == 48 - stopped_at  # only the rest
    assert_same_weights(torch.load(tmp_path / "final_weights.pt", weights_only=True), uninterrupted)


@pytest.mark.parametrize("broken", ["trainer_state.pt", "model.pt"])
def test_corrupt_checkpoint_is_named_and_nothing_is_overwritten(tmp_path, broken):
    run(tmp_path, iterations=2)
    checkpoint = latest_checkpoint(str(tmp_path / "pythae"))
    (tmp_path / "pythae" / "checkpoint" / broken).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"checkpoint file .*checkpoint/{broken}' cannot be read.*"
                                         rf"expected a {broken} written by ResumableTrainer.*resume=False"):
        run(tmp_path, iterations=4)
    assert (tmp_path / "pythae" / "checkpoint" / broken).read_bytes() == b"not a checkpoint"
    assert latest_checkpoint(str(tmp_path / "pythae")) == checkpoint


def test_build_model_seed_fixes_the_initial_weights():
    first = build_model("AVAE", "colormnist-mlp", latent_dim=4, seed=3)
    torch.rand(10)  # whatever ran before must not matter
    assert_same_weights(build_model("AVAE", "colormnist-mlp", latent_dim=4, seed=3).state_dict(), first.state_dict())


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_option(tmp_path, capfd, progress):
    # logs written to files (benchmarks' --no-progress) must not fill with tqdm bars
    train_for_iterations(fresh(), DATA, iterations=2, batch_size=16, output_dir=str(tmp_path),
                         device="cpu", progress=progress)
    err = capfd.readouterr().err
    assert ("Training of epoch" in err) is progress
