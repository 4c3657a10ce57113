"""The GPU path: every model trains, saves, reloads and is attacked on CUDA.

The rest of the suite pins the CPU (``no_cuda=True``) so that it means the same on every
machine; these tests are what checks the ``device=x.device`` discipline. They need a CUDA
device and are skipped, with that reason, on machines without one (CI has none);
``benchmarks/gpu_session.sh`` runs them on a GPU machine.
"""

import numpy as np
import pytest
import torch
from pythae.models import AutoModel

from pythae_avae import AVAE_SS
from pythae_avae.data import TASKS, ColorMNIST, RecolorCallback
from pythae_avae.diagnostics import autoencoding_consistency, reconstruction_error
from pythae_avae.evaluation import evaluate_robustness
from pythae_avae.recipes import build_model, post_train_avae_ss, train_for_iterations

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICE = "cuda"
TRAINED = ["VAE", "AVAE", "SE", "SE-AVAE"]


@pytest.fixture(scope="module")
def data():
    train, test = ColorMNIST("train"), ColorMNIST("test")
    return {"train_small": ColorMNIST("train", limit=320), "train_arrays": train.arrays(),
            "test_arrays": test.arrays()}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    models = {}
    for name in TRAINED:
        out = tmp_path_factory.mktemp(name)
        model = build_model(name, seed=0)
        models[name] = (out, train_for_iterations(
            model, data["train_small"], iterations=20, batch_size=32, seed=0, output_dir=str(out),
            device=DEVICE, callbacks=[RecolorCallback()], progress=False))
    return models


@pytest.mark.parametrize("name", TRAINED)
def test_trains_on_cuda_and_reloads_on_cpu(name, trained, data):
    out, model = trained[name]
    params = list(model.parameters())
    assert all(p.is_cuda for p in params), "the trained model should stay on the GPU"
    batch = {"data": torch.as_tensor(data["test_arrays"][0][:16], device=DEVICE)}
    model.train()
    output = model(batch)  # random draws made on the batch's device
    assert output.loss.is_cuda and torch.isfinite(output.loss)
    output.loss.backward()
    assert all(p.grad is None or p.grad.is_cuda for p in params)
    model.eval()

    (final,) = (out / "pythae").glob("*_training_*/final_model")
    reloaded = AutoModel.load_from_folder(str(final))
    x = batch["data"][:8]
    with torch.no_grad():
        mu_gpu = model.encoder(x).embedding.cpu()
        mu_cpu = reloaded.eval().encoder(x.cpu()).embedding
    # final_model is Pythae's best-loss model: the last step's when the loss fell at the end
    assert mu_cpu.shape == mu_gpu.shape and torch.isfinite(mu_cpu).all()


def test_avae_ss_post_trains_a_cuda_vae(trained, tmp_path):
    _, vae = trained["VAE"]
    model = post_train_avae_ss(vae, iterations=10, batch_size=16, steps_per_epoch=5,
                               output_dir=str(tmp_path), device=DEVICE, progress=False)
    assert isinstance(model, AVAE_SS)
    assert all(p.is_cuda for p in model.encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.decoder.parameters(), vae.decoder.parameters()))


def test_robustness_on_cuda_matches_cpu_on_clean_inputs(trained, data):
    _, model = trained["AVAE"]
    x, y = data["test_arrays"]
    test = (x[:64], {t: y[t][:64] for t in TASKS})
    kwargs = dict(tasks=list(TASKS), eps=(0.0, 0.1), attacks=("pgd",), pgd_steps=10, progress=False)
    gpu = evaluate_robustness(model, data["train_arrays"], test, device=DEVICE, **kwargs)
    cpu = evaluate_robustness(model.cpu(), data["train_arrays"], test, device="cpu", **kwargs)
    model.to(DEVICE)
    for task in TASKS:
        # probes fitted on features that differ in the last float bits: allow two images
        assert gpu.accuracy(task, 0.0) == pytest.approx(cpu.accuracy(task, 0.0), abs=2 * 100 / 64)
        assert gpu.accuracy(task, 0.1) <= gpu.accuracy(task, 0.0)


def test_autoattack_and_diagnostics_on_cuda(trained, data):
    _, model = trained["SE-AVAE"]
    x, y = data["test_arrays"]
    test = (x[:16], {t: y[t][:16] for t in TASKS})
    table = evaluate_robustness(model, data["train_arrays"], test, tasks=list(TASKS), eps=(0.1,),
                                attacks=("autoattack",), device=DEVICE, progress=False)
    for task in TASKS:
        (row,) = table.select(task=task, attack="autoattack")
        assert row["n"] == 16 and 0.0 <= row["accuracy"] <= row["clean_accuracy"]
    stats = autoencoding_consistency(model, n_samples=64, seed=0)
    assert np.isfinite(stats["slope"])
    assert np.isfinite(reconstruction_error(model, x[:32], device=DEVICE)["sse_per_image"])
