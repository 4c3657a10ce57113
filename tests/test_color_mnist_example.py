"""examples/color_mnist.py (the README's main job) runs end to end on a tiny budget."""

import json

import pytest

from example_scripts import load_example as load_script


def load_example():
    return load_script("color_mnist")


def test_ranks_above_0_train_and_leave_the_reports_to_rank_0(tmp_path, monkeypatch):
    example = load_example()
    monkeypatch.setattr(example, "process_rank", lambda: 1)  # what torchrun's RANK=1 reads
    assert example.main(["--models", "VAE", "--iterations", "1", "--train-limit", "32", "--batch-size", "16",
                         "--latent-dim", "4", "--output-dir", str(tmp_path), "--no-progress", "--device", "cpu"]) == {}
    assert not (tmp_path / "table.md").exists() and not (tmp_path / "eval").exists()


def test_a_rerun_with_other_settings_says_what_to_do_on_the_command_line(tmp_path, capsys):
    example = load_example()
    argv = ["--models", "VAE", "--iterations", "1", "--train-limit", "32", "--batch-size", "16", "--latent-dim", "4",
            "--eval-n", "10", "--pgd-steps", "1", "--output-dir", str(tmp_path), "--no-progress", "--device", "cpu",
            "--obs-var", "0.3"]
    example.main(argv)
    with pytest.raises(SystemExit) as exit_info:
        example.main(argv + ["--obs-var", "0.5"])  # the last flag wins
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model_config.obs_var=0.3 (this run: 0.5)" in err
    assert "pass another --output-dir for these settings, or delete that folder" in err and "resume=False" not in err


@pytest.mark.parametrize("argv, message", [
    (["--eval-n", "0"], "--eval-n must be >= 1, got 0"),
    (["--pgd-steps", "0"], "--pgd-steps must be >= 1, got 0"),
    (["--iterations", "-3"], "--iterations must be >= 1, got -3"),
    (["--eps", "8"], "must be in [0, 1]"),
    (["--preset", "paper"], "--preset paper trains on full MNIST"),
    (["--download"], "--download needs --mnist-root DIR"),
])
def test_bad_flags_are_refused_before_training(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args(argv)
    assert message in capsys.readouterr().err


def test_default_folder_names_preset_and_another_net():
    example = load_example()
    assert example.parse_args([]).output_dir == "outputs/color_mnist"
    assert example.parse_args(["--preset", "standard"]).output_dir == "outputs/color_mnist_standard"
    assert (example.parse_args(["--preset", "standard", "--arch", "colormnist-conv-wideenc"]).output_dir
            == "outputs/color_mnist_standard_colormnist-conv-wideenc")


def test_tiny_run_writes_table_json_and_figures(tmp_path):
    example = load_example()
    results = example.main([
        "--models", "VAE", "AVAE", "AVAE-SS", "--iterations", "10", "--train-limit", "128",
        "--eval-n", "40", "--pgd-steps", "2", "--latent-dim", "8", "--output-dir", str(tmp_path),
        "--no-progress", "--device", "cpu", "--aux-noise-std", "0.3",
    ])
    assert set(results) == {"VAE", "AVAE", "AVAE-SS"}
    table = (tmp_path / "table.md").read_text()
    for name in ("| VAE |", "| AVAE |", "| AVAE-SS |", "digit 0.1", "color 0.2"):
        assert name in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["args"]["iterations"] == 10 and "slope_mean" in saved["consistency"]["AVAE"]["on_test_images"]
    # the printed table is the saved rows: each cell is its row's accuracy
    header = next(line for line in table.splitlines() if line.startswith("| model |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:-1]  # task eps, without the majority
    for name in ("VAE", "AVAE", "AVAE-SS"):
        cells = next(line for line in table.splitlines() if line.startswith(f"| {name} |")).strip("|").split("|")
        for column, cell in zip(columns, cells[1:]):
            task, eps = column.split()
            (row,) = [r for r in saved["rows"][name] if r["task"] == task and r["eps"] == float(eps)]
            assert cell.strip() == f"{row['accuracy']:.1f}", (name, column)
    for name in ("fig1_chains.png", "fig5_digit_accuracy_vs_eps.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    assert (tmp_path / "eval" / "AVAE" / "robustness.json").exists()
    assert "AVAE delusion noise std 0.3" in table
    for name in ("AVAE", "AVAE-SS"):  # the delusion's std reaches both delusion models
        saved = tmp_path / "runs" / name / "pythae" / "checkpoint" / "model_config.json"
        assert json.loads(saved.read_text())["aux_noise_std"] == 0.3
        assert json.loads(saved.read_text())["obs_var"] == example.PRESETS["quick"]["obs_var"] == 0.5


def test_presets_and_bad_model_names():
    example = load_example()
    args = example.parse_args(["--preset", "quick"])
    assert args.iterations == example.PRESETS["quick"]["iterations"]
    assert example.parse_args(["--iterations", "7"]).iterations == 7
    # every preset has the official v; the quick one a larger step, robust sooner; flags win
    standard = example.parse_args(["--preset", "standard"])
    assert args.obs_var == standard.obs_var == 0.5 and (args.lr, standard.lr) == (4e-3, 1e-3)
    assert example.parse_args(["--obs-var", "0.3"]).obs_var == 0.3
    assert example.parse_args(["--lr", "1e-3"]).lr == 1e-3
    # the longer presets take the most robust net measured (RESULTS.md, Fig. 5 section); flags win
    assert args.arch == "colormnist-conv"
    assert example.parse_args(["--preset", "standard"]).arch == example.PRESETS["standard"]["arch"] != args.arch
    assert example.parse_args(["--preset", "paper", "--mnist-root", "d", "--arch", "colormnist-mlp"]).arch == "colormnist-mlp"
    assert args.output_dir == "outputs/color_mnist"  # the README's demo
    assert example.parse_args(["--preset", "standard"]).output_dir == "outputs/color_mnist_standard"
    assert example.parse_args(["--preset", "paper", "--mnist-root", "d", "--output-dir", "x"]).output_dir == "x"
    with pytest.raises(SystemExit):
        example.parse_args(["--models", "GAN"])
    assert example.parse_args(["--arch", "colormnist-conv-widedec"]).arch == "colormnist-conv-widedec"
    with pytest.raises(SystemExit):
        example.parse_args(["--arch", "celeba-conv"])
    assert example.parse_args(["--aux-noise-std", "likelihood"]).aux_noise_std is None
    assert example.parse_args([]).aux_noise_std == 0.3  # the commands' default (RESULTS.md, Fig. 5 section)


@pytest.mark.parametrize("value", ["-1", "inf", "sqrt"])
def test_bad_aux_noise_std_is_refused_with_the_flag_named(value, capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args(["--aux-noise-std", value])
    assert f"argument --aux-noise-std: expected a finite std >= 0 or 'likelihood', got '{value}'" in capsys.readouterr().err


def test_autoattack_at_its_own_radii(tmp_path):
    """``--autoattack-eps 0.1``: PGD at every --eps, AutoAttack and the worst case at 0.1 only."""
    example = load_example()
    (table,) = example.main([
        "--models", "VAE", "--iterations", "2", "--train-limit", "64", "--eval-n", "10", "--pgd-steps", "2",
        "--latent-dim", "4", "--autoattack", "--autoattack-eps", "0.1", "--output-dir", str(tmp_path),
        "--no-progress", "--device", "cpu",
    ]).values()
    assert {(r["attack"], r["eps"]) for r in table.select(task="digit")} == {
        ("pgd", 0.0), ("pgd", 0.1), ("pgd", 0.2), ("autoattack", 0.1), ("worst", 0.1)}
    worst_table = (tmp_path / "table.md").read_text().split("worst case)")[1]
    assert "digit 0.1" in worst_table and "digit 0.2" not in worst_table


@pytest.mark.parametrize("argv, message", [
    (["--eps", "0", "-0.1"], "argument --eps: must be in [0, 1]"),
    (["--autoattack", "--autoattack-eps", "-1"], "argument --autoattack-eps: must be in [0, 1]"),
    (["--autoattack-eps", "0.1"], "--autoattack-eps needs --autoattack"),
])
def test_bad_radii_are_refused_before_training(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args(argv)
    assert message in capsys.readouterr().err
