"""Bad input anywhere gives an error naming the parameter and the expected value, and leaves
no half-written output folder behind."""

import os

import numpy as np
import pytest
import torch
from pythae.trainers import BaseTrainerConfig

from pythae_avae import AVAEConfig, SEConfig
from pythae_avae.data import CelebA, ColorMNIST
from pythae_avae.evaluation import LinearProbe, evaluate_robustness, pgd_linf, pgd_robust_mask
from pythae_avae.pipelines import TrainingPipeline
from pythae_avae.recipes import build_model, train_for_iterations
from pythae_avae.trainers import DataFreeTrainerConfig, ResumableTrainerConfig

SHAPE = (3, 28, 28)
RNG = np.random.default_rng(0)
X = RNG.random((12, *SHAPE)).astype("float32")
Y = np.arange(12) % 2


def model():
    torch.manual_seed(0)
    return build_model("AVAE", "colormnist-mlp", latent_dim=4)


def config(**fields):
    return lambda out: AVAEConfig(input_dim=SHAPE, latent_dim=4, **fields)


def forward(data):
    return lambda out: model()({"data": data})


def evaluate(train=(X, {"d": Y}), test=(X, {"d": Y}), **kwargs):
    kwargs = {"tasks": ["d"], "eps": (0.1,), "pgd_steps": 2, **kwargs}
    return lambda out: evaluate_robustness(model(), train, test, output_dir=str(out), **kwargs)


def linear(out=None):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(SHAPE)), 2))


def saved_model(out, damage):
    folder = out.parent / "saved"
    model().save(str(folder))
    damage(folder / "model.pt")
    from pythae_avae import AVAE

    return AVAE.load_from_folder(str(folder))


def trained_checkpoint(out, damage):
    data = torch.rand(8, *SHAPE)
    run = out.parent / "run"
    train_for_iterations(model(), data, iterations=1, batch_size=8, output_dir=str(run), device="cpu")
    damage(run / "pythae" / "checkpoint" / "trainer_state.pt")
    return train_for_iterations(model(), data, iterations=2, batch_size=8, output_dir=str(run), device="cpu")


def overwrite(path):
    path.write_bytes(b"\x00garbage")


CASES = {
    # configs
    "rho = 1": (config(rho=1.0), ValueError, r"rho must be in \[0, 1\).*got 1.0"),
    "rho < 0": (config(rho=-0.1), ValueError, r"rho must be in \[0, 1\).*got -0.1"),
    "obs_var = 0": (config(obs_var=0.0), ValueError, r"obs_var must be a finite number > 0 \(observation variance\), got 0.0"),
    "obs_var = inf": (config(obs_var=float("inf")), ValueError, r"obs_var must be a finite number > 0.*got inf"),
    "aux_noise_std < 0": (config(aux_noise_std=-0.1), ValueError, r"aux_noise_std must be .*>= 0.*got -0.1"),
    "aux_noise_std without noise": (config(aux_noise=False, aux_noise_std=0.3), ValueError,
                                    r"aux_noise_std needs aux_noise=True.*got aux_noise_std=0.3"),
    "latent_dim = 0": (lambda out: AVAEConfig(input_dim=SHAPE, latent_dim=0), ValueError,
                       r"latent_dim must be an int >= 1, got 0"),
    "unknown config key": (config(rhoo=0.5), ValueError, r"rhoo\s+Unexpected keyword argument"),
    "unknown estimator": (config(coupling_estimator="mc"), ValueError,
                          r"coupling_estimator\s+Input should be 'analytic' or 'paired'"),
    "entropic_ot with paired": (config(coupling_estimator="paired", coupling="entropic_ot"), ValueError,
                                r"coupling='entropic_ot' needs coupling_estimator='analytic'.*got coupling_estimator='paired'"),
    "SE eps < 0": (lambda out: SEConfig(input_dim=SHAPE, latent_dim=4, se_eps=-0.1), ValueError,
                   r"se_eps must be a finite number >= 0 \(L-infinity radius\), got -0.1"),
    "SE eps = NaN": (lambda out: SEConfig(input_dim=SHAPE, latent_dim=4, se_eps=float("nan")), ValueError,
                     r"se_eps must be a finite number >= 0.*got nan"),
    "SE steps = 0": (lambda out: SEConfig(input_dim=SHAPE, latent_dim=4, se_steps=0), ValueError,
                     r"se_steps must be an int >= 1.*got 0"),
    "checkpoint_every = 0": (lambda out: ResumableTrainerConfig(output_dir=str(out), checkpoint_every=0),
                             ValueError, r"checkpoint_every must be an int >= 1.*got 0"),
    "data-free steps": (lambda out: DataFreeTrainerConfig(num_steps=10, steps_per_epoch=3), ValueError,
                        r"num_steps \(10\) must be a multiple of steps_per_epoch \(3\)"),
    "iterations = 0": (lambda out: train_for_iterations(model(), torch.rand(4, *SHAPE), iterations=0,
                                                        output_dir=str(out)), ValueError, r"iterations must be an int >= 1 \(optimizer steps\), got 0"),
    "device the trainer cannot run on": (lambda out: train_for_iterations(model(), torch.rand(4, *SHAPE), iterations=2,
                                                                        output_dir=str(out), device="mps"),
                                         ValueError, r"device must be 'cpu', 'cuda' or 'cuda:N' .*got 'mps'"),
    "malformed device": (lambda out: train_for_iterations(model(), torch.rand(4, *SHAPE), iterations=2,
                                                          output_dir=str(out), device="CPU"),
                         ValueError, r"device must be 'cpu', 'cuda' or 'cuda:N', got 'CPU'"),
    **({} if torch.cuda.is_available() else {"cuda without a GPU": (
        lambda out: train_for_iterations(model(), torch.rand(4, *SHAPE), iterations=2, output_dir=str(out),
                                         device="cuda:0"),
        ValueError, r"device='cuda:0' but CUDA is not available here; use device='cpu'")}),
    # data
    "wrong image shape": (forward(torch.rand(2, 28, 28)), ValueError,
                          r"inputs\['data'\] must have shape \(batch, 3, 28, 28\).*got \(2, 28, 28\)"),
    "integer pixels": (forward(torch.randint(0, 255, (2, *SHAPE), dtype=torch.uint8)), ValueError,
                       r"inputs\['data'\] must be a floating-point tensor of pixels in \[0, 1\], got dtype torch.uint8"),
    "NaN pixels": (forward(torch.full((2, *SHAPE), float("nan"))), ValueError,
                   r"inputs\['data'\] must be finite pixels in \[0, 1\]"),
    "Inf pixels": (forward(torch.full((2, *SHAPE), float("inf"))), ValueError,
                   r"inputs\['data'\] must be finite pixels in \[0, 1\]"),
    "pixels above 1": (forward(torch.rand(2, *SHAPE) + 1), ValueError,
                       r"inputs\['data'\] must hold pixels in \[0, 1\], got values in"),
    "empty training set": (lambda out: train_for_iterations(model(), torch.rand(0, *SHAPE), iterations=2,
                                                            output_dir=str(out), device="cpu"),
                           ValueError, r"train_data must hold at least 1 image, got 0"),
    "empty pipeline data": (lambda out: TrainingPipeline(model(), ResumableTrainerConfig(output_dir=str(out), no_cuda=True))(
        torch.rand(0, *SHAPE)), ValueError, r"train_data must hold at least 1 image, got 0"),
    # the last batch of one image would fail in BatchNorm at the end of the first epoch
    "a batch of 1 through BatchNorm (Pythae's trainer)": (
        lambda out: TrainingPipeline(build_model("VAE", "colormnist-conv", latent_dim=4), BaseTrainerConfig(
            output_dir=str(out), per_device_train_batch_size=4, no_cuda=True))(torch.rand(5, *SHAPE)),
        ValueError, r"train_data of 5 images in batches of 4 gives a batch of 1 image, which the model's BatchNorm"),
    "a batch of 1 through BatchNorm (train_for_iterations)": (
        lambda out: train_for_iterations(build_model("AVAE", "colormnist-conv", latent_dim=4), torch.rand(9, *SHAPE),
                                         iterations=2, batch_size=8, output_dir=str(out), device="cpu"),
        ValueError, r"train_data of 9 images in batches of 8 gives a batch of 1 image"),
    "empty probe data": (lambda out: LinearProbe(model()).fit(X[:0], Y[:0]), ValueError,
                         r"X must hold at least 1 image, got 0"),
    "labels of the wrong length (probe)": (lambda out: LinearProbe(model()).fit(X, Y[:5]), ValueError,
                                           r"y must be a 1-d array of 12 labels.*got shape \(5,\)"),
    "labels of the wrong length (eval)": (evaluate(test=(X, {"d": Y[:3]})), ValueError,
                                          r"test_data\[1\]\['d'\] must be a 1-d array of 12 labels.*got shape \(3,\)"),
    "labels of shape (N, 1) (eval)": (evaluate(test=(X, {"d": Y[:, None]})), ValueError,
                                      r"test_data\[1\]\['d'\] must be a 1-d array of 12 labels.*got shape \(12, 1\)"),
    "empty test set": (evaluate(test=(X[:0], {"d": Y[:0]})), ValueError,
                       r"test_data\[0\] must hold at least 1 image, got 0"),
    "NaN test images": (evaluate(test=(np.full_like(X, np.nan), {"d": Y})), ValueError,
                        r"test_data\[0\] must be finite pixels in \[0, 1\]"),
    # evaluation
    "eps < 0 (evaluate)": (evaluate(eps=(-0.1,)), ValueError, r"eps must be a finite number >= 0.*got -0.1"),
    "eps < 0 (pgd)": (lambda out: pgd_linf(linear(), torch.rand(2, *SHAPE), torch.zeros(2, dtype=torch.long), eps=-0.1),
                      ValueError, r"eps must be a finite number >= 0.*got -0.1"),
    "pgd steps = 0": (lambda out: pgd_linf(linear(), torch.rand(2, *SHAPE), torch.zeros(2, dtype=torch.long),
                                           eps=0.1, steps=0), ValueError, r"steps must be an int >= 1 \(PGD iterations\), got 0"),
    "pgd images outside [0, 1]": (lambda out: pgd_linf(linear(), torch.rand(2, *SHAPE) + 0.5,
                                                       torch.zeros(2, dtype=torch.long), eps=0.1),
                                  ValueError, r"x must be a non-empty float tensor of pixels in \[0, 1\], got torch.float32 values in \[0.5"),
    "pgd labels of shape (N, 1)": (lambda out: pgd_linf(linear(), torch.rand(2, *SHAPE), torch.zeros(2, 1, dtype=torch.long),
                                                        eps=0.1),
                                   ValueError, r"y must be integer class indices of shape \(2,\), one per image, got torch.int64 of shape \(2, 1\)"),
    "attack batch_size = 0": (lambda out: pgd_robust_mask(linear(), torch.rand(2, *SHAPE), torch.zeros(2, dtype=torch.long),
                                                          eps=0.1, batch_size=0),
                              ValueError, r"batch_size must be an int >= 1 \(images per attacked batch\), got 0"),
    "pgd step size < 0": (lambda out: pgd_linf(linear(), torch.rand(2, *SHAPE), torch.zeros(2, dtype=torch.long),
                                               eps=0.1, step_size=-0.01), ValueError,
                          r"step_size must be a finite number > 0.*got -0.01"),
    "no PGD loss": (evaluate(pgd_losses=()), ValueError,
                    r"pgd_losses must be a non-empty sequence of \('ce', 'margin'\), got \(\)"),
    "unknown attack": (evaluate(attacks=("fgsm",)), ValueError,
                       r"attacks must be a non-empty subset of \('pgd', 'autoattack'\), got \('fgsm',\)"),
    "task with one class": (evaluate(train=(X, {"d": np.zeros(12)})), ValueError,
                            r"y must contain at least 2 classes, got only \[0.0\]"),
    "task without labels": (evaluate(tasks=["colour"]), ValueError, r"tasks \['colour'\] lack labels"),
    "probe used before fit": (lambda out: LinearProbe(model()).predict(X), Exception,
                              r"LinearProbe instance is not fitted yet. Call 'fit'"),
    # files
    "missing model.pt": (lambda out: saved_model(out, os.remove), FileNotFoundError, r"missing weights file .*model.pt"),
    "corrupt model.pt": (lambda out: saved_model(out, overwrite), ValueError, r"weights file .*model.pt.* cannot be read"),
    "corrupt checkpoint": (lambda out: trained_checkpoint(out, overwrite), ValueError,
                           r"checkpoint file .*trainer_state.pt' cannot be read.*resume=False"),
    "missing resume_from": (lambda out: ResumableTrainerConfig(resume_from=str(out.parent / "nowhere")),
                            FileNotFoundError, r"resume_from=.*nowhere.* must be a checkpoint folder holding trainer_state.pt"),
    "CelebA folder without files": (lambda out: CelebA(str(out.parent / "celeba_root")), FileNotFoundError,
                                    r"list_attr_celeba.txt"),
    "MNIST root without files": (lambda out: ColorMNIST("train", source="torchvision", root=str(out.parent / "mnist")),
                                 FileNotFoundError, r"MNIST not found under .*mnist.*train-images-idx3-ubyte"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_named_with_the_expected_value_and_writes_nothing(tmp_path, case):
    make, error, pattern = CASES[case]
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern):
        make(out)
    assert not out.exists(), f"{case}: left {sorted(os.listdir(out))} behind"
