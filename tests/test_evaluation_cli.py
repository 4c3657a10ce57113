"""``python -m pythae_avae.evaluation``: saved model folders evaluated with the paper's protocol."""

import json
import subprocess
import sys

import pytest
import torch
from pythae.models import VAE, VAEConfig

from pythae_avae.evaluation.__main__ import main
from pythae_avae.recipes import build_model, train_for_iterations

FAST = ["--eval-n", "40", "--pgd-steps", "3", "--eps", "0", "0.1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A trained AVAE's checkpoint folder, a saved GaussianVAE and a saved Pythae VAE."""
    root = tmp_path_factory.mktemp("models")
    avae = build_model("AVAE", "colormnist-conv", 8, seed=0)
    train_for_iterations(avae, torch.rand(64, 3, 28, 28), iterations=2, batch_size=32,
                         output_dir=str(root / "avae"), device="cpu", progress=False)
    build_model("VAE", "colormnist-conv", 8, seed=0).save(str(root / "vae"))
    VAE(VAEConfig(input_dim=(3, 28, 28), latent_dim=4)).save(str(root / "pythae_vae"))
    return {"AVAE": str(root / "avae" / "pythae" / "checkpoint"), "VAE": str(root / "vae"),
            "Pythae VAE": str(root / "pythae_vae")}


def test_evaluates_checkpoints_saved_models_and_pythae_models(folders, tmp_path, capsys):
    names = list(folders)
    results = main(list(folders.values()) + ["--names", *names, "--output-dir", str(tmp_path), *FAST,
                                             "--autoattack-n", "8"])
    assert list(results) == names
    out = capsys.readouterr().out
    for name, table in results.items():
        for task in ("digit", "color"):
            clean, attacked = table.accuracy(task, 0.0, "pgd"), table.accuracy(task, 0.1, "pgd")
            assert clean is not None and attacked is not None and attacked <= clean
            assert table.accuracy(task, 0.1, "autoattack") is not None
            assert [r["n"] for r in table.select(task=task, attack="pgd", eps=0.1)] == [40]
            (worst,) = table.select(task=task, attack="worst", eps=0.1)
            assert worst["n"] == 8 and worst["accuracy"] <= table.accuracy(task, 0.1, "autoattack")
        assert f"| {name} |" in out
        cards = json.loads((tmp_path / name / "robustness.json").read_text())["cards"]
        assert {card["attack"] for card in cards} == {"pgd", "autoattack", "worst"}  # one report
    assert "AutoAttack on 8 test images" in out and "PGD and AutoAttack together on those 8 images" in out
    written = (tmp_path / "results.md").read_text()
    assert written.startswith("Command: `python -m pythae_avae.evaluation ")
    assert "--names AVAE VAE 'Pythae VAE'" in written  # quoted as a shell would need it
    assert "on mu(x) of 4000 training images" in written  # the probe's data, as fitted: all embedded ones
    assert all(f"| {name} |" in written for name in names) and "AutoAttack on 8 test images" in written


def test_bad_folders_and_arguments_are_named(folders, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere"), *FAST])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "no model_config.json" in err
    for argv, message in (
        ([folders["VAE"], "--names", "a", "b"], "--names needs one label per folder"),
        ([folders["VAE"], folders["AVAE"], "--names", "a", "a"], "each folder needs its own label"),
        ([folders["VAE"], "--eps", "-0.1"], "must be in [0, 1]"),
        ([folders["VAE"], "--autoattack-eps", "0.2"], "--autoattack-eps needs --autoattack-n > 0"),
        ([folders["VAE"], "--tasks", "Smiling"], "are not colormnist tasks"),
        ([folders["VAE"], "--eval-n", "0"], "--eval-n must be >= 1"),
        ([folders["VAE"], "--probe-c", "0"], "--probe-c must be > 0"),
        ([folders["VAE"], "--eval-n", "10", "--autoattack-n", "20"], "--autoattack-n must be in [0, --eval-n = 10]"),
        ([folders["VAE"], "--autoattack-n", "-1"], "--autoattack-n must be in [0, --eval-n = 1000]"),
        ([folders["VAE"], "--seed", "-5"], "--seed must be >= 0"),
        ([folders["VAE"], "--device", "gpu"], "argument --device: device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ([folders["VAE"], "--pgd-losses", "ce", "ce"], "--pgd-losses names each value once"),
        ([folders["VAE"], "--tasks", "digit", "digit"], "--tasks names each value once"),
        ([folders["VAE"], "--eps", "0", "0.1", "0"], "--eps names each value once"),
        ([folders["VAE"], "--autoattack-n", "5", "--autoattack-eps", "0.1", "0.1"],
         "--autoattack-eps names each value once"),
        # labels are report folders: these would share one, or write beside or above --output-dir
        ([folders["VAE"], folders["AVAE"], "--names", "run/A", "run_A"], "share report folders"),
        ([folders["VAE"], folders["AVAE"], "--names", "/x/m1", "x/m1"], "share report folders"),
        ([folders["VAE"], folders["AVAE"], "--names", "..", "b"], "labels ['..'] name no folder of their own"),
        ([folders["VAE"], "--names", "/"], "labels ['/'] name no folder of their own"),
        ([folders["VAE"], "--pgd-losses", "dlr"], "invalid choice: 'dlr'"),
        ([folders["VAE"], "--data-root", "data"], "--data-root is for --data celeba"),
        ([folders["VAE"], "--data", "celeba", "--mnist-root", "mnist"], "--mnist-root is for --data colormnist"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


def test_every_folder_is_read_before_any_model_is_evaluated(folders, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:  # a typo in the last folder costs no evaluation
        main([folders["VAE"], str(tmp_path / "typo"), "--output-dir", str(out), *FAST])
    assert exit_info.value.code == 2 and "typo" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*"))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "model_config.json").write_text(json.dumps({"name": "NotAModel", "latent_dim": 4}))
    with pytest.raises(SystemExit) as exit_info:  # an error, not a traceback
        main([str(unknown), "--output-dir", str(out), *FAST])
    assert exit_info.value.code == 2 and "NotAModel" in capsys.readouterr().err


def test_runs_as_a_module(folders, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pythae_avae.evaluation", folders["VAE"], "--names", "VAE",
         "--output-dir", str(tmp_path), *FAST, "--tasks", "color"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| model | color 0 | color 0.1 | majority color |" in done.stdout


def test_probe_n_fits_the_colormnist_probes_on_the_first_training_images():
    import numpy as np

    from pythae_avae.data import ColorMNIST
    from pythae_avae.evaluation.__main__ import load_data, parse_args

    (x, labels), test, tasks = load_data(parse_args(["some_folder", "--probe-n", "100"]))
    full_x, full_labels = ColorMNIST("train").arrays()
    assert x.shape == (100, 3, 28, 28) and np.array_equal(x, full_x[:100])
    assert all(np.array_equal(labels[t], full_labels[t][:100]) for t in tasks)
    assert len(test[0]) == 1000
    (x, _), _, _ = load_data(parse_args(["some_folder"]))
    assert len(x) == len(full_x) == 4000  # by default all, as benchmarks/ fit the probes


def test_probe_c_sets_the_regularisation_of_every_probe(folders, tmp_path):
    """A strongly regularised probe is a different classifier: its C is recorded, and with
    C = 1e-6 the weights are so small that every image gets the majority-like class."""
    tables = {}
    for c in ("1e-6", "1"):
        out = tmp_path / c
        tables[c] = main([folders["VAE"], "--names", "VAE", "--output-dir", str(out), *FAST,
                          "--probe-c", c])["VAE"]
        card = json.loads((out / "VAE" / "robustness.json").read_text())
        assert all(f"C={float(c):g}" in probe or (c == "1" and "C=" not in probe)
                   for probe in card["meta"]["probes"].values()), card["meta"]["probes"]
        assert f"probe (C = {float(c):g})" in (out / "results.md").read_text()
    assert tables["1e-6"].accuracy("digit", 0.0, "pgd") < tables["1"].accuracy("digit", 0.0, "pgd")


def test_the_probes_are_fitted_once_for_pgd_and_autoattack(folders, tmp_path, monkeypatch):
    from pythae_avae.evaluation.linear_probe import LinearProbe

    fitted = []
    fit_features = LinearProbe.fit_features
    monkeypatch.setattr(LinearProbe, "fit_features", lambda self, f, y: fitted.append(self) or fit_features(self, f, y))
    main([folders["VAE"], "--names", "VAE", "--output-dir", str(tmp_path), *FAST, "--autoattack-n", "4",
          "--probe-c", "0.5"])
    assert len(fitted) == 2  # digit and color, shared by the PGD table and AutoAttack's images
    probes = json.loads((tmp_path / "VAE" / "robustness.json").read_text())["meta"]["probes"]
    assert all("C=0.5" in probe for probe in probes.values()) and len(probes) == 2


def test_pgd_runs_once_per_radius_beside_autoattack(folders, tmp_path, monkeypatch):
    """AutoAttack's worst-case rows reuse the PGD run of the table (no second PGD on its images);
    an AutoAttack radius missing from --eps gets its PGD run too; eps = 0 attacks nothing."""
    from pythae_avae.evaluation import robustness

    calls = []
    attack = robustness._attack
    monkeypatch.setattr(robustness, "_attack", lambda name, c, X, y, e, *a: calls.append((name, e, len(X)))
                        or attack(name, c, X, y, e, *a))
    (table,) = main([folders["VAE"], "--names", "VAE", "--output-dir", str(tmp_path), *FAST, "--autoattack-n", "4",
                     "--autoattack-eps", "0.1", "0.05"]).values()
    per_task = [("pgd", 0.1, 40), ("pgd", 0.05, 40), ("autoattack", 0.1, 4), ("autoattack", 0.05, 4)]
    assert calls == per_task * 2  # digit, color
    for e in (0.1, 0.05):
        (worst,) = table.select(task="digit", attack="worst", eps=e)
        assert worst["n"] == 4 and worst["accuracy"] <= table.accuracy("digit", e, "autoattack")
    assert table.select(task="digit", attack="autoattack", eps=0.0) == []


def test_pgd_losses_runs_one_loss_alone_and_says_so(folders, tmp_path):
    """The default attack is the per-image worst case of both losses; ``--pgd-losses`` runs one
    alone (a breakdown), recorded in the rows and the written table. With the same seed the
    CE pass is the same in both runs, so adding the margin loss can only break more images."""
    tables = {}
    for losses in (["ce"], ["margin"], ["ce", "margin"]):
        out = tmp_path / "+".join(losses)
        tables[tuple(losses)] = main([folders["AVAE"], "--names", "AVAE", "--output-dir", str(out), *FAST,
                                      "--pgd-losses", *losses])["AVAE"]
        row = tables[tuple(losses)].select(task="digit", attack="pgd", eps=0.1)[0]
        assert f"losses {'+'.join(losses)}," in row["details"]
        written = (out / "results.md").read_text()
        assert {"ce": "(CE)", "margin": "(margin)"}.get("+".join(losses), "(CE and margin)") in written
    for task in ("digit", "color"):
        assert tables[("ce", "margin")].accuracy(task, 0.1) <= tables[("ce",)].accuracy(task, 0.1)
        assert len({table.accuracy(task, 0.0) for table in tables.values()}) == 1
