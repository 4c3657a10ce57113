"""The benchmark scripts run end to end on a tiny budget, skip finished runs when rerun, and
tabulate what they ran (their numbers are not checked here: see benchmarks/results)."""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from example_scripts import load_example
from mnist_files import write_mnist
from pythae_avae.trainers import latest_checkpoint

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import ablations
        import fig5
        import table1

        yield table1, fig5, ablations
    finally:
        sys.path.remove(str(BENCHMARKS))


TINY = ["--iterations", "3", "--eval-n", "20", "--pgd-steps", "2", "--aa-n", "0", "--eps", "0", "0.1",
        "--latent-dim", "8", "--device", "cpu", "--no-progress"]


def test_table1_runs_resumes_and_tabulates(benchmarks, tmp_path, capsys):
    table1, _, _ = benchmarks
    argv = TINY + ["--rows", "VAE", "AVAE-SS", "--seeds", "0", "--output-dir", str(tmp_path)]
    results = table1.main(argv)
    assert set(results) == {"VAE", "AVAE-SS"}
    result = json.loads((tmp_path / "runs" / "AVAE-SS" / "seed0" / "result.json").read_text())
    assert result["iterations"] == 3 and result["seed"] == 0 and result["seconds_per_iteration"] > 0
    on_data = result["consistency_on_test_images"]  # the posterior check, beside the prior one
    assert "slope_mean" in on_data and "slope_mean" not in result["consistency"]
    assert on_data["slope"] != result["consistency"]["slope"]
    assert {(r["task"], r["eps"]) for r in result["evaluation"]} == {
        (t, e) for t in ("digit", "color") for e in (0.0, 0.1)}
    table = (tmp_path / "results.md").read_text()
    assert "| VAE |" in table and "| AVAE-SS |" in table and "digit 0.1" in table
    assert f"This table: python benchmarks/table1.py {' '.join(argv)}" in table
    # 3 iterations on 4,000 images at batch 64: the data-trained rows ran one epoch of 63 steps
    assert "3 iterations (rows trained on images run whole epochs of 63 batches: 63 steps)," in table
    # and so does the first line the command prints, before hours of training
    assert "iterations=3 (rows trained on images run whole epochs of 63 batches: 63 steps)" in capsys.readouterr().out

    again = table1.main(argv)  # finished runs are read back, not retrained
    out = capsys.readouterr().out
    assert out.count("skip ") == 2
    assert again["VAE"][0]["evaluation"] == results["VAE"][0]["evaluation"]
    # a fresh clone holds result.json but no checkpoint: AVAE-SS's VAE is trained again, and said so
    shutil.rmtree(tmp_path / "runs" / "VAE" / "seed0" / "pythae")
    shutil.rmtree(tmp_path / "runs" / "AVAE-SS" / "seed0")
    table1.main(TINY + ["--rows", "AVAE-SS", "--seeds", "0", "--output-dir", str(tmp_path)])
    assert "note: VAE seed 0 is tabulated, but its checkpoint is not in" in capsys.readouterr().out

    # another observation variance in the same folder is refused, not tabulated as this one
    with pytest.raises(SystemExit, match=r"VAE.*config=\{'obs_var': 0.5\} \(this command: \{'obs_var': 0.1\}\)"):
        table1.main(argv + ["--obs-var", "0.1"])
    with pytest.raises(SystemExit, match=r"eval_n=20 \(this command: 10\)"):
        table1.main(argv + ["--eval-n", "10", "--summarize-only"])
    # results written before settings were recorded are still read, with a note
    path = tmp_path / "runs" / "VAE" / "seed0" / "result.json"
    legacy = json.loads(path.read_text())
    del legacy["settings"]
    path.write_text(json.dumps(legacy))
    capsys.readouterr()
    table1.main(argv + ["--rows", "VAE"])
    assert "records no settings" in capsys.readouterr().out
    # evaluated again from its finished checkpoint: no step trained, so no time is claimed
    path.unlink()
    again = table1.main(argv + ["--rows", "VAE"])
    assert again["VAE"][0]["seconds_per_iteration"] is None
    assert "| VAE |" in (tmp_path / "results.md").read_text()
    assert [r["seed"] for r in again["AVAE-SS"]] == [0]  # the folder's table: rows not asked for too

    # another seed run by its own command joins the table of the runs already in the folder
    other = table1.main(TINY + ["--rows", "VAE", "--seeds", "1", "--output-dir", str(tmp_path)])
    assert {row: [r["seed"] for r in runs] for row, runs in other.items()} == {"VAE": [0, 1], "AVAE-SS": [0]}
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ") and "---" not in line] == \
        ["| model", "| VAE", "| AVAE-SS"]
    assert next(line for line in lines if line.startswith("| VAE |")).endswith("| 0,1 |")


def test_table1_time_ratio_compares_a_seed_with_the_vae_of_that_seed_and_machine(benchmarks):
    # the mean over seeds pooled hosts and crowded runs: SE^5 0.1 and 0.2 (same cost) read x9.9 and x13.2
    table1, _, _ = benchmarks

    def run(seed, seconds, machine="a"):
        return dict(seed=seed, seconds_per_iteration=seconds, machine=machine)

    vae = [run(0, 1.0), run(1, 2.0), run(2, 1.0, "b")]
    assert table1.time_ratio([run(0, 3.0), run(1, 5.0), run(2, 9.0, "b")], vae) == 3.0  # median of 3, 2.5, 9
    assert table1.time_ratio([run(0, 3.0, "b"), run(1, None)], vae) is None  # another host; not timed
    assert table1.time_ratio([run(3, 3.0)], vae) is None  # no VAE of that seed


def test_table1_records_a_runs_settings_before_training_it(benchmarks, tmp_path):
    # tabulate_evals.py checks an unfinished run by them (result.json is written at the end)
    table1, _, _ = benchmarks
    args = table1.parse_args(["--output-dir", str(tmp_path)])
    out = tmp_path / "runs" / "AVAE" / "seed0"
    table1.record_settings(args, "AVAE", str(out))
    assert json.loads((out / "settings.json").read_text()) == table1.run_settings(args, "AVAE")
    table1.record_settings(args, "AVAE", str(out))  # the same settings: continued
    other = table1.parse_args(["--output-dir", str(tmp_path), "--lr", "2e-3"])
    with pytest.raises(SystemExit, match=r"settings.json was made with other settings: lr=0.001 \(this command: 0.002\)"):
        table1.record_settings(other, "AVAE", str(out))


def test_table1_compares_the_full_model_config_where_both_records_have_it(benchmarks, tmp_path):
    # a row's own fields were all that was recorded: a config default changed since a run finished
    # (e.g. SE-AVAE's se_batch) went unseen when the run was tabulated again
    table1, _, _ = benchmarks
    args = table1.parse_args(["--output-dir", str(tmp_path)])
    ours = table1.run_settings(args, "SE_0.1-AVAE")
    assert ours["model_config"]["se_batch"] == "data" and ours["model_config"]["rho"] == 0.975  # defaults too
    assert table1.run_settings(args, "AVAE-SS")["model_config"]["name"] == "AVAE_SS_Config"

    def check(recorded):
        table1.check_settings(args, "SE_0.1-AVAE", "result.json", dict(settings=recorded))

    check(ours)
    check({k: v for k, v in ours.items() if k != "model_config"})  # recorded before 2026-11-29
    check({**ours, "model_config": {**ours["model_config"], "a_field_since_removed": 1}})
    # a field added since (aux_samples): the record ran at its default
    check({**ours, "model_config": {k: v for k, v in ours["model_config"].items() if k != "aux_samples"}})
    with pytest.raises(SystemExit, match=r"model_config.se_batch='delusion' \(this command: 'data'\)"):
        check({**ours, "model_config": {**ours["model_config"], "se_batch": "delusion"}})
    with pytest.raises(SystemExit, match=r"model_config.se_batch='delusion' \(this command: 'data'\)"):
        # a record without the field ran as the config's ABSENT_MEANS says (the delusion layout)
        check({**ours, "model_config": {k: v for k, v in ours["model_config"].items() if k != "se_batch"}})


def test_the_paper_preset_has_its_own_default_folder(benchmarks):
    # in the CPU preset's folder its first run stopped on the committed runs' other settings
    table1, _, ablations = benchmarks
    assert table1.parse_args(["--preset", "paper", "--mnist-root", "d"]).output_dir == "benchmarks/results/table1_paper"
    assert table1.parse_args(["--preset", "cpu"]).output_dir == "benchmarks/results/table1"
    assert table1.parse_args(["--preset", "paper", "--mnist-root", "d", "--output-dir", "o"]).output_dir == "o"
    paper = ablations.parse_args(["--preset", "paper", "--mnist-root", "d"], ablations.VARIANTS, "",
                                 ablations.OUTPUT_DIR, None)
    assert paper.output_dir == ablations.OUTPUT_DIR


def test_table1_summarize_only_tabulates_the_paper_presets_runs_without_mnist(benchmarks, tmp_path, monkeypatch):
    # GPU runs on full MNIST, tabulated where MNIST is not: the data label came from --mnist-root
    # (refused as "embedded"), and passing it made the command read the digits
    table1, _, _ = benchmarks
    argv = ["--preset", "paper", "--rows", "VAE", "--seeds", "0", "--summarize-only", "--no-progress",
            "--output-dir", str(tmp_path)]
    args = table1.parse_args(argv)
    out = tmp_path / "runs" / "VAE" / "seed0"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps(dict(
        row="VAE", seed=0, iterations=100000, settings=table1.run_settings(args, "VAE"), seconds_per_iteration=None,
        reconstruction={"sse_per_image": 20.0}, machine="a GPU host",
        evaluation=[dict(task="digit", eps=0.1, attack="pgd", accuracy=5.5)])))
    assert table1.run_settings(args, "VAE")["data"] == "torchvision MNIST"
    monkeypatch.setattr(table1, "ColorMNIST", None)  # reading digits would fail
    table1.main(argv)
    table = (tmp_path / "results.md").read_text()
    assert "colorMNIST (full MNIST)" in table and "whole epochs of 938 batches" in table
    assert next(line for line in table.splitlines() if line.startswith("| VAE |")).split(" | ")[2] == "5.5"


def test_table1_presets_and_summarize_only(benchmarks, tmp_path):
    table1, _, _ = benchmarks
    args = table1.parse_args(["--preset", "cpu", "--seeds", "4"])
    assert args.iterations == table1.PRESETS["cpu"]["iterations"] and args.seeds == [4]  # flags win
    assert args.arch == "colormnist-conv"  # the net of the committed tables
    assert args.lr == 4e-3 and table1.parse_args([]).lr == 1e-3  # the preset's larger step, not the default's
    assert table1.parse_args(["--preset", "paper", "--mnist-root", "d"]).arch == table1.PRESETS["paper"]["arch"] != args.arch
    with pytest.raises(SystemExit):  # the paper's budget on the 4,000 embedded digits is not its preset
        table1.parse_args(["--preset", "paper"])
    for folder in (tmp_path, tmp_path / "typo"):  # nothing to tabulate: said, not an empty table
        with pytest.raises(SystemExit, match="no finished run .* in --output-dir '.*'"):
            table1.main(["--summarize-only", "--output-dir", str(folder)])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "typo").exists()  # trained nothing


# one fig5 stage of a few steps, evaluated clean on 20 images
FIG5_TINY = ["--eval-n", "20", "--pgd-steps", "1", "--eps", "0", "--device", "cpu", "--no-progress"]


def test_fig5_stages_and_rho_iterations(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    argv = ["--models", "VAE", "AVAE", "--stages", "2", "4", "--rhos", "0.9", "--rho-iterations", "2",
            "--eval-n", "20", "--pgd-steps", "2", "--eps", "0", "0.1", "--device", "cpu", "--no-progress",
            "--output-dir", str(tmp_path)]
    fig5.main(argv)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {(r["run"], r["iterations"]) for r in saved["by_iteration"]} == {
        (m, s) for m in ("VAE", "AVAE") for s in (2, 4)}
    assert {(r["rho"], r["iterations"]) for r in saved["by_rho"]} == {(0.975, 2), (0.9, 2)}
    assert (tmp_path / "fig5_iterations_digit_eps0.1.png").stat().st_size > 1000
    # finished stages are not reused by a command with other settings
    with pytest.raises(SystemExit, match=r"runs/VAE/settings.json .*eval_n=20 \(this command: 10\)"):
        fig5.main(argv + ["--eval-n", "10"])
    with pytest.raises(SystemExit, match=r"config=\{'obs_var': 0.5\} \(this command: \{'obs_var': 0.1\}\)"):
        fig5.main(argv + ["--obs-var", "0.1"])
    with pytest.raises(SystemExit, match=r"train_n=None \(this command: 100\)"):
        fig5.main(argv + ["--train-n", "100"])
    with pytest.raises(SystemExit, match=r"latent_dim=None \(this command: 16\)"):
        fig5.main(argv + ["--latent-dim", "16"])
    with pytest.raises(SystemExit):
        fig5.parse_args(["--stages", "2", "4", "--rho-iterations", "3"])
    with pytest.raises(SystemExit):
        fig5.parse_args(["--train-n", "0"])
    with pytest.raises(SystemExit):
        fig5.parse_args(["--latent-dim", "0"])
    with pytest.raises(SystemExit):  # the sweep's AVAE is that point already (the figure would zig-zag)
        fig5.parse_args(["--rhos", "0.9", "0.975"])
    assert fig5.parse_args(["--rho", "0.9", "--rhos", "0.975"]).rhos == [0.975]


def test_colormnist_commands_offer_every_colormnist_net(benchmarks, capsys):
    table1, fig5, _ = benchmarks
    for parse in (table1.parse_args, fig5.parse_args):
        assert parse(["--arch", "colormnist-conv-widedec"]).arch == "colormnist-conv-widedec"
        with pytest.raises(SystemExit):
            parse(["--arch", "celeba-conv"])  # 64x64 faces, not colorMNIST
        assert "--arch: invalid choice: 'celeba-conv'" in capsys.readouterr().err


def test_fig5_train_n_trains_on_fewer_images(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    fig5.main(["--models", "VAE", "--stages", "2", "--rhos", "--train-n", "100", *FIG5_TINY, "--output-dir", str(tmp_path)])
    assert json.loads((tmp_path / "runs" / "VAE" / "settings.json").read_text())["train_n"] == 100
    assert "100 of them for training" in (tmp_path / "results.md").read_text()


def test_fig5_latent_dim_sets_every_models_code_size(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    fig5.main(["--models", "AVAE", "--stages", "2", "--rhos", "--latent-dim", "8", *FIG5_TINY, "--output-dir", str(tmp_path)])
    assert json.loads((tmp_path / "runs" / "AVAE" / "settings.json").read_text())["latent_dim"] == 8
    saved = json.loads((tmp_path / "runs" / "AVAE" / "pythae" / "checkpoint" / "model_config.json").read_text())
    assert saved["latent_dim"] == 8
    assert "latent 8," in (tmp_path / "results.md").read_text()
    assert not list(tmp_path.glob("*.png"))  # clean accuracy only (--eps 0): no curve under attack to draw


def test_fig5_without_rhos_makes_no_rho_sweep(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    fig5.main(["--models", "AVAE", "--stages", "2", "--rhos", "--latent-dim", "4", "--eval-n", "20", "--pgd-steps", "1",
               "--eps", "0", "0.1", "--device", "cpu", "--no-progress", "--output-dir", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text())["by_rho"] == []
    assert "Against rho" not in (tmp_path / "results.md").read_text()
    assert (tmp_path / "fig5_iterations_digit_eps0.1.png").is_file()
    assert not list(tmp_path.glob("fig5_rho_*.png"))  # not a one-point curve of the iteration sweep's AVAE
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["AVAE"]


@pytest.mark.parametrize("flag, value, key, note", [
    ("--aux-noise-std", 0.3, "aux_noise_std", "AVAE delusion noise std 0.3,"),
    ("--warmup-epoch", 3, "warmup_epoch", "delusion terms warmed up over 3 epochs"),
    ("--aux-samples", 2, "aux_samples", "2 delusions per data point"),
    ("--aux-weight", 2.5, "aux_weight", "delusion terms weighted 2.5"),
])
def test_fig5_delusion_flags_reach_every_avae_and_no_vae(benchmarks, tmp_path, flag, value, key, note):
    _, fig5, _ = benchmarks
    fig5.main(["--models", "AVAE", "VAE", "--stages", "2", "--rhos", "0.9", flag, str(value), "--latent-dim", "4",
               *FIG5_TINY, "--output-dir", str(tmp_path)])
    runs = tmp_path / "runs"
    for run in ("AVAE", "AVAE rho=0.9"):
        assert json.loads((runs / run / "settings.json").read_text())["config"][key] == value
        assert json.loads((runs / run / "pythae" / "checkpoint" / "model_config.json").read_text())[key] == value
    assert key not in json.loads((runs / "VAE" / "settings.json").read_text())["config"]
    assert note in (tmp_path / "results.md").read_text()


def test_fig5_flag_values(benchmarks):
    _, fig5, _ = benchmarks
    assert fig5.parse_args(["--aux-noise-std", "likelihood"]).aux_noise_std is None
    with pytest.raises(SystemExit):
        fig5.parse_args(["--warmup-epoch", "-1"])
    with pytest.raises(SystemExit):
        fig5.parse_args(["--aux-samples", "0"])
    with pytest.raises(SystemExit):
        fig5.parse_args(["--aux-weight", "0"])


def test_fig5_does_not_reuse_a_stage_made_with_another_delusion_noise(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    argv = ["--models", "AVAE", "--stages", "2", "--rhos", "--latent-dim", "4", *FIG5_TINY, "--output-dir", str(tmp_path)]
    fig5.main([*argv, "--aux-noise-std", "likelihood"])
    assert "aux_noise_std" not in json.loads((tmp_path / "runs" / "AVAE" / "settings.json").read_text())["config"]
    assert "AVAE delusion noise std sqrt(obs_var)," in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit, match=r"made with other settings: config=.*'aux_noise_std': 0.3"):
        fig5.main([*argv, "--aux-noise-std", "0.3"])


def test_fig5_aux_batch_norm_reaches_the_delusion_models_only(benchmarks):
    _, fig5, _ = benchmarks
    assert "aux_batch_norm" not in fig5.model_config(fig5.parse_args([]), "AVAE")  # default unrecorded
    args = fig5.parse_args(["--aux-batch-norm", "eval"])
    assert fig5.model_config(args, "AVAE")["aux_batch_norm"] == "eval"
    assert "aux_batch_norm" not in fig5.model_config(args, "VAE")
    with pytest.raises(SystemExit):
        fig5.parse_args(["--aux-batch-norm", "running"])


def test_benchmarks_default_to_the_commands_delusion_noise(benchmarks):
    from pythae_avae.recipes import COMMAND_AUX_NOISE_STD

    table1, fig5, _ = benchmarks
    assert COMMAND_AUX_NOISE_STD == 0.3  # RESULTS.md, Fig. 5 section: measured against sqrt(v) on three seeds
    assert table1.parse_args([]).aux_noise_std == fig5.parse_args([]).aux_noise_std == 0.3
    assert fig5.model_config(fig5.parse_args([]), "AVAE")["aux_noise_std"] == 0.3


@pytest.mark.parametrize("value", ["-0.1", "inf", "nan", "big", "8"])  # 8: meant as 8/255
def test_every_command_refuses_a_bad_radius_before_training(benchmarks, value, capsys):
    """One argparse type (recipes.radius_arg) for every radius flag: a bad one stops the parse,
    not the evaluation after hours of training."""
    from pythae_avae.evaluation.__main__ import parse_args as evaluation_args

    def example(name):
        return load_example(name).parse_args

    table1, fig5, _ = benchmarks
    for parse, flag, argv in ((table1.parse_args, "--eps", []), (table1.parse_args, "--aa-eps", []),
                              (fig5.parse_args, "--eps", []), (example("celeba"), "--eps", []),
                              (example("color_mnist"), "--eps", []),
                              (example("color_mnist"), "--autoattack-eps", ["--autoattack"]),
                              (evaluation_args, "--eps", ["folder"]), (evaluation_args, "--autoattack-eps", ["folder"])):
        with pytest.raises(SystemExit):
            parse(argv + [flag, value])
        assert (f"argument {flag}: must be in [0, 1] (an L-inf radius on [0, 1] pixels: 8/255 is 0.0314), got '{value}'"
                in capsys.readouterr().err), (parse, flag)
    assert table1.parse_args(["--eps", "0", "0.1"]).eps == [0.0, 0.1]


def test_every_command_refuses_a_device_this_machine_lacks(benchmarks, capsys):
    """One argparse type (recipes.device_arg) for every --device: 'gpu', or CUDA on a machine
    without it, stopped the commands when training or the first attack started."""
    from pythae_avae.evaluation.__main__ import parse_args as evaluation_args

    import attack_speed
    import speed
    import weight_averaging

    table1, fig5, _ = benchmarks
    parsers = [(table1.parse_args, []), (fig5.parse_args, []), (weight_averaging.parse_args, []),
               (speed.main, []), (attack_speed.main, []), (load_example("celeba").parse_args, []),
               (load_example("color_mnist").parse_args, []), (evaluation_args, ["folder"])]
    missing = f"cuda:{torch.cuda.device_count()}"
    for parse, argv in parsers:
        for value, message in (("gpu", "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
                               (missing, f"device={missing!r} but this machine has")):
            with pytest.raises(SystemExit) as exit_info:
                parse(argv + ["--device", value])
            assert exit_info.value.code == 2
            assert f"argument --device: {message}" in capsys.readouterr().err, (parse, value)
    assert table1.parse_args(["--device", "cpu"]).device == "cpu"


def test_training_commands_refuse_a_negative_seed_and_a_device_the_trainer_cannot_use(benchmarks, monkeypatch, capsys):
    """A negative seed was refused by the evaluation after training (or by numpy's seed sequence
    under DDP); an existing device other than cpu/cuda (mps) by the trainer after the data loaded."""
    import weight_averaging

    from pythae_avae import recipes

    table1, fig5, _ = benchmarks
    seeded = [(table1.parse_args, "--seeds"), (fig5.parse_args, "--seed"),
              (load_example("celeba").parse_args, "--seed"), (load_example("color_mnist").parse_args, "--seed")]
    for parse, flag in seeded:
        with pytest.raises(SystemExit):
            parse([flag, "-1"])
        assert f"argument {flag}: must be an int >= 0, got '-1'" in capsys.readouterr().err, parse
    monkeypatch.setattr(recipes, "default_device", lambda device=None: device or "cpu")  # as on a Mac with MPS
    for parse, _ in seeded + [(weight_averaging.parse_args, None)]:
        with pytest.raises(SystemExit):
            parse(["--device", "mps"])
        assert ("argument --device: device must be 'cpu', 'cuda' or 'cuda:N' (the trainer runs on nothing else), "
                "got 'mps'") in capsys.readouterr().err, parse


@pytest.mark.parametrize("value", ["-1", "inf", "nan", "sqrt"])
def test_benchmarks_refuse_a_bad_aux_noise_std(benchmarks, value, capsys):
    table1, fig5, _ = benchmarks
    for parse in (table1.parse_args, fig5.parse_args):
        with pytest.raises(SystemExit):
            parse(["--aux-noise-std", value])
        assert f"argument --aux-noise-std: expected a finite std >= 0 or 'likelihood', got '{value}'" in capsys.readouterr().err


def test_table1_aux_noise_std_reaches_the_noisy_delusion_rows_only(benchmarks):
    table1, _, ablations = benchmarks
    args = table1.parse_args(["--aux-noise-std", "0.3"])
    configs = {row: table1.row_setup(args, row)[1] for row in table1.ROWS}
    assert {row for row, config in configs.items() if config.get("aux_noise_std") == 0.3} == {
        "AVAE", "SE_0.1-AVAE", "SE_0.2-AVAE", "AVAE-SS"}
    assert "aux_noise_std" not in configs["VAE"] and "aux_noise_std" not in configs["SE^5_0.1"]
    # the ablations are the runs they recorded: the likelihood's noise unless asked, and a
    # mean-delusion row (aux_noise=False) takes no std even when one is asked for
    rows = ablations.variants_for([])
    assert table1.parse_args([], rows, aux_noise_std=None).aux_noise_std is None
    asked = table1.parse_args(["--aux-noise-std", "0.3"], rows)
    assert "aux_noise_std" not in table1.row_setup(asked, "AVAE")[1]
    assert table1.row_setup(asked, "AVAE noisy x~")[1]["aux_noise_std"] == 0.3


def test_a_models_own_aux_noise_std_wins_over_the_commands():
    from pythae_avae.recipes import with_aux_noise_std

    assert with_aux_noise_std("AVAE", {"aux_noise_std": 0.1}, 0.3) == {"aux_noise_std": 0.1}
    assert with_aux_noise_std("AVAE", {"rho": 0.9}, None) == {"rho": 0.9}  # likelihood: nothing recorded
    assert with_aux_noise_std("SE", {}, 0.3) == {}


def test_ablation_x3_rows_follow_iterations(benchmarks):
    table1, _, ablations = benchmarks
    rows = ablations.variants_for(["--iterations", "10"])
    assert rows["AVAE x3 iterations"][1]["iterations"] == 30
    assert rows["AVAE noisy x~ x3 iterations"][1] == {"aux_noise": True, "iterations": 30}
    for argv, budget in ((["--iterations=10"], 10), (["--preset", "cpu"], table1.PRESETS["cpu"]["iterations"]),
                         (["--preset", "cpu", "--iterations", "7"], 7), ([], 20000)):
        assert ablations.variants_for(argv)["AVAE x3 iterations"][1]["iterations"] == 3 * budget, argv
    assert rows["AVAE"][1] == {"aux_noise": False}


def test_tabulate_evals_reads_unfinished_runs(tmp_path, capsys):
    from pythae_avae.evaluation.robustness import RobustnessTable, write_reports

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import tabulate_evals
    finally:
        sys.path.remove(str(BENCHMARKS))

    def row(task, eps, attack, accuracy, seed):
        return dict(model="AVAE", task=task, n_classes=10, eps=eps, attack=attack, accuracy=accuracy,
                    balanced_accuracy=accuracy, clean_accuracy=90.0, majority_rate=10.0, n=100,
                    details="", seed=seed)

    for seed, acc in ((0, 40.0), (1, 50.0)):  # no result.json: stopped after PGD
        rows = [row("digit", 0.0, "pgd", 90.0, seed), row("digit", 0.1, "pgd", acc, seed)]
        write_reports(RobustnessTable(rows), str(tmp_path / "runs" / "AVAE" / f"seed{seed}" / "eval_pgd"), "AVAE")
    write_reports(RobustnessTable([row("digit", 0.1, "autoattack", 35.0, 0)]),
                  str(tmp_path / "runs" / "AVAE" / "seed0" / "eval_autoattack"), "AVAE")
    tabulate_evals.main([str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| run | digit 0 | digit 0.1 | digit autoattack 0.1 | seeds |"
    assert lines[2] == "| AVAE | 90.0 ± 0.0 | 45.0 ± 7.1 | 35.0 (seed 0) | 0,1 |"  # AutoAttack: seed 0 only
    with pytest.raises(SystemExit, match="no runs"):
        tabulate_evals.main([str(tmp_path / "empty")])

    # seeds recorded before and after the full model config was: combined; configs that differ,
    # also between two later seeds when the first recorded none, or by a field one record lacks
    # (it ran at its default): refused
    runs = tmp_path / "runs" / "AVAE"
    write_reports(RobustnessTable([row("digit", 0.0, "pgd", 90.0, 2), row("digit", 0.1, "pgd", 45.0, 2)]),
                  str(runs / "seed2" / "eval_pgd"), "AVAE")
    config = dict(name="AVAEConfig", rho=0.975, aux_noise_std=0.3)
    old = {"model": "AVAE", "lr": 0.001}
    for seed, recorded in ((0, old), (1, {**old, "model_config": config}), (2, {**old, "model_config": config})):
        (runs / f"seed{seed}" / "settings.json").write_text(json.dumps(recorded))
    tabulate_evals.main([str(tmp_path)])
    assert "| AVAE | 90.0 ± 0.0 | 45.0 ± 5.0 |" in capsys.readouterr().out
    for other, difference in ((dict(config, rho=0.9), r"model_config.rho=0.975 \(.*seed2: 0.9\)"),
                              (dict(config, aux_samples=4), r"model_config.aux_samples=1 \(.*seed2: 4\)")):
        (runs / "seed2" / "settings.json").write_text(json.dumps({**old, "model_config": other}))
        with pytest.raises(SystemExit, match=rf"AVAE/seed1 and .*seed2 were made with other settings: {difference}"):
            tabulate_evals.main([str(tmp_path)])
    shutil.rmtree(runs / "seed2")
    for seed in (0, 1):
        (runs / f"seed{seed}" / "settings.json").unlink()

    # fig5.py's layout: one seed per folder, combined per stage by naming the folders
    def fig5_folder(name, seed, accuracies, rho=0.975):
        run = tmp_path / name / "runs" / "AVAE"
        for stage, acc in accuracies.items():
            write_reports(RobustnessTable([row("digit", 0.1, "pgd", acc, seed)]), str(run / f"eval_{stage}"), "AVAE")
        (run / "settings.json").write_text(json.dumps({"config": {"rho": rho}, "seed": seed}))
        return str(tmp_path / name)

    folders = [fig5_folder("f0", 0, {9000: 70.0, 20000: 74.0}), fig5_folder("f1", 1, {9000: 72.0, 20000: 76.0}),
               fig5_folder("f2", 2, {20000: 75.0})]
    tabulate_evals.main(folders)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2:] == ["| AVAE, 9000 it. | 71.0 ± 1.4 | 0,1 |", "| AVAE, 20000 it. | 75.0 ± 1.0 | 0,1,2 |"]
    with pytest.raises(SystemExit, match=r"seed 0 of 'AVAE, 9000 it.' is in both"):
        tabulate_evals.main([folders[0], shutil.copytree(folders[0], str(tmp_path / "f0 again"))])
    with pytest.raises(SystemExit, match=r"other settings: config=\{'rho': 0.975\}.*\{'rho': 0.9\}"):
        tabulate_evals.main([folders[0], fig5_folder("f3", 3, {9000: 60.0}, rho=0.9)])
    unrecorded = fig5_folder("f4", 4, {9000: 65.0})
    os.remove(os.path.join(unrecorded, "runs", "AVAE", "settings.json"))
    with pytest.raises(SystemExit, match=r"other settings"):  # a first run without settings checks nothing
        tabulate_evals.main([unrecorded, folders[0], str(tmp_path / "f3")])


@pytest.fixture(scope="module")
def speed(benchmarks):
    import speed  # importable: the benchmarks fixture keeps benchmarks/ on sys.path

    return speed


def test_speed_times_the_chosen_models_on_the_chosen_nets(speed, capfd):
    speed.main(["--arch", "celeba-conv", "--models", "AVAE", "--iters", "1", "--warmup", "0",
                "--batch-size", "2", "--latent-dim", "8", "--device", "cpu", "--no-trainer"])
    out, err = capfd.readouterr()
    # the CPU memory profile must not print the profiler's CUDA probe failure as an ERROR line
    assert "gpuGetDeviceCount" not in err and "ERROR" not in err, err
    assert "arch=celeba-conv" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in speed.MODELS}
    assert sorted(rows) == ["AVAE", "VAE"]  # the VAE is always timed: ratios are to it
    assert float(rows["VAE"][2]) == 1.0 and float(rows["AVAE"][2]) > 0
    models = speed.build_models(8, "cpu", "celeba-conv", ["VAE", "AVAE"])
    assert {name: tuple(m.model_config.input_dim) for name, m in models.items()} == {
        "VAE": (3, 64, 64), "AVAE": (3, 64, 64)}


def test_speed_splits_the_trainer_cost_into_per_step_and_per_call(speed, capsys):
    speed.main(["--models", "VAE", "--iters", "1", "--warmup", "0", "--batch-size", "2",
                "--latent-dim", "4", "--device", "cpu", "--trainer-epochs", "2", "--trainer-repeats", "1"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("VAE iteration in ResumableTrainer"))
    assert "slope of 1 vs 3 epochs of 63 steps" in line
    ours = float(line.split("epochs of 63 steps): ")[1].split(" s")[0])
    bare = float(line.split("bare PyTorch loop: ")[1].split(" s")[0])
    fixed = float(line.split("final_model): ")[1].split(" s")[0])
    # two more epochs (126 steps) take longer than none: the slopes are positive step times
    assert ours > 0 and bare > 0 and math.isfinite(fixed), line
    # with one repeat its own overhead is the median's: the range is that one number
    low, high = (float(v.rstrip("%")) for v in line.split("repeats: ")[1].split(" to "))
    median = float(line.split("overhead ")[1].split("%")[0])
    assert "each of the 1 repeats" in line and low == high == median, line


def test_fig5_mnist_root_trains_on_full_mnist_files(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    write_mnist(tmp_path / "data", sizes=(("train", 40), ("t10k", 30)))
    out = tmp_path / "out"
    fig5.main(["--models", "VAE", "--stages", "2", "--rhos", "--mnist-root", str(tmp_path / "data"), "--batch-size", "16",
               *FIG5_TINY, "--output-dir", str(out)])
    assert json.loads((out / "runs" / "VAE" / "settings.json").read_text())["data"] == "full MNIST"
    text = (out / "results.md").read_text()
    assert "full MNIST, 40 training and 30 test digits" in text
    # 40 images in batches of 16 make 3-step epochs: the 2-iteration budget ran one whole epoch
    assert "rounded up to whole epochs of 3 batches: 2 -> 3 iterations." in text
    rows = json.loads((out / "runs" / "VAE" / "stage_2.json").read_text())
    assert {r["n"] for r in rows} == {20}


def test_fig5_weight_decay_trains_with_adamw_and_is_recorded(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    argv = ["--models", "AVAE", "--stages", "2", "--rhos", "--train-n", "100", "--batch-size", "50",
            "--latent-dim", "4", *FIG5_TINY, "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        fig5.parse_args([*argv, "--weight-decay", "-0.1"])
    fig5.main([*argv, "--weight-decay", "0.05"])
    run = tmp_path / "runs" / "AVAE"
    assert json.loads((run / "settings.json").read_text())["weight_decay"] == 0.05
    saved = torch.load(os.path.join(latest_checkpoint(str(run / "pythae")), "trainer_state.pt"), weights_only=True)
    assert saved["optimizer"]["param_groups"][0]["weight_decay"] == 0.05
    assert saved["settings"]["training"]["optimizer_cls"] == "AdamW"
    assert "AdamW lr 0.001, weight decay 0.05," in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit, match=r"weight_decay=0.05 \(this command: None\)"):
        fig5.main(argv)


def test_fig5_cosine_schedule_spans_the_last_stage_and_is_recorded(benchmarks, tmp_path):
    _, fig5, _ = benchmarks
    # 100 images, batch 50: 2 steps per epoch; stages of 1 and 2 epochs, the rho sweep at the last
    argv = ["--models", "AVAE", "--stages", "2", "4", "--rhos", "0.9", "--train-n", "100",
            "--batch-size", "50", "--latent-dim", "4", *FIG5_TINY, "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit):  # the sweep's AVAE at stage 2 would be mid-schedule, rho=0.9 annealed
        fig5.parse_args([*argv, "--lr-schedule", "cosine", "--rho-iterations", "2"])
    fig5.main([*argv, "--lr-schedule", "cosine"])
    runs = tmp_path / "runs"
    for run, epochs in (("AVAE", 2), ("AVAE rho=0.9", 2)):
        settings = json.loads((runs / run / "settings.json").read_text())
        assert (settings["lr_schedule"], settings["schedule_iterations"]) == ("cosine", 4)
        saved = torch.load(os.path.join(latest_checkpoint(str(runs / run / "pythae")), "trainer_state.pt"),
                           weights_only=True)
        assert saved["scheduler"]["T_max"] == epochs and saved["global_step"] == 2 * epochs
        assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert "Adam lr 0.001 (cosine schedule over 4 iterations)," in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit, match=r"lr_schedule=.?cosine.? \(this command: None\)"):
        fig5.main(argv)
    # stage 2 of a schedule annealed over 6 iterations is not the finished stage 2 of this one
    longer = [*argv[:4], "6", *argv[5:]]  # --stages 2 6
    with pytest.raises(SystemExit, match=r"schedule_iterations=4 \(this command: 6\)"):
        fig5.main([*longer, "--lr-schedule", "cosine"])
