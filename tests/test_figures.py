import pytest
import torch

from pythae_avae.figures import encode_decode_chain, plot_accuracy_curves, plot_chains
from pythae_avae.recipes import build_model


def test_chain_starts_at_the_images_and_follows_g_mu():
    model = build_model("AVAE", "colormnist-mlp", latent_dim=4)
    x = torch.rand(2, 3, 28, 28)
    chain = encode_decode_chain(model, x, steps=2)
    assert chain.shape == (3, 2, 3, 28, 28)
    assert torch.equal(chain[0], x)
    model.eval()
    with torch.no_grad():
        step2 = model.decoder(model.encoder(chain[1]).embedding)["reconstruction"]
    assert torch.allclose(chain[2], step2)
    with pytest.raises(ValueError, match=r"images must hold pixels in \[0, 1\]"):
        encode_decode_chain(model, x * 255, steps=1)


def test_chain_restores_each_submodules_mode_and_checks_its_arguments():
    model = build_model("AVAE", "colormnist-conv", latent_dim=4)
    model.train()
    frozen = model.encoder.head[1]  # a BatchNorm a user froze in eval mode inside a training model
    frozen.eval()
    encode_decode_chain(model, torch.rand(2, 3, 28, 28), steps=1)
    assert model.training and model.encoder.features[1].training and not frozen.training
    with pytest.raises(ValueError, match="steps must be an int >= 0, got -3"):
        encode_decode_chain(model, torch.rand(2, 3, 28, 28), steps=-3)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, 28, 28\)"):
        encode_decode_chain(model, torch.rand(2, 3, 32, 32), steps=1)
    with pytest.raises(ValueError, match="models must map at least one name"):
        plot_chains({}, torch.rand(2, 3, 28, 28), "unused.png")


def test_png_files_are_written(tmp_path):
    models = {n: build_model(n, "colormnist-mlp", latent_dim=4) for n in ("VAE", "AVAE")}
    plot_chains(models, torch.rand(2, 3, 28, 28), str(tmp_path / "chains.png"), steps=3)
    assert (tmp_path / "chains.png").read_bytes()[:4] == b"\x89PNG"
    rows = [
        {"model": m, "task": "digit", "attack": "pgd", "eps": e, "accuracy": a}
        for m, accs in (("VAE", (90, 10)), ("AVAE", (92, 60))) for e, a in zip((0.0, 0.1), accs)
    ]
    plot_accuracy_curves(rows, str(tmp_path / "acc.png"), task="digit")
    assert (tmp_path / "acc.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no rows"):
        plot_accuracy_curves(rows, str(tmp_path / "x.png"), task="color")
    both_tasks = rows + [dict(row, task="color", accuracy=100 - row["accuracy"]) for row in rows]
    with pytest.raises(ValueError, match=r"line model='VAE' has several rows at eps=\[0.0, 0.1\]: pass task= and attack="):
        plot_accuracy_curves(both_tasks, str(tmp_path / "y.png"))
    assert not (tmp_path / "y.png").exists()
    plot_accuracy_curves(both_tasks, str(tmp_path / "y.png"), task="color")
