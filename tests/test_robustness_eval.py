import json
import re
import warnings

import numpy as np
import pytest
import torch

from eval_fixtures import LinearEncoder, make_data
from pythae_avae import AVAE, AVAEConfig
from pythae_avae.evaluation import evaluate_robustness, fit_probes, format_table1, import_robustbench
from pythae_avae.evaluation import robustness

SHAPE = (3, 6, 6)


@pytest.fixture(scope="module")
def setup():
    encoder = LinearEncoder(108, d=8)
    X, y = make_data(300, SHAPE, 3, encoder=encoder)
    labels = {"rule": y, "binary": (y == 0).astype(int)}
    train = (X[:200], {t: v[:200] for t, v in labels.items()})
    test = (X[200:], {t: v[200:] for t, v in labels.items()})
    return encoder, train, test


def test_end_to_end_rows_and_files(setup, tmp_path):
    encoder, train, test = setup
    table = evaluate_robustness(encoder, train, test, eps=(0, 0.01, 0.3), attacks=("pgd", "autoattack"),
                                autoattack_n=30, pgd_steps=20, output_dir=str(tmp_path), model_name="lin",
                                device="cpu", progress=False)
    assert len(table) == 2 * 3 * 3  # pgd, autoattack and their per-example worst case
    for task in ("rule", "binary"):
        for e in (0, 0.01, 0.3):
            (worst,) = table.select(task=task, eps=float(e), attack="worst")
            assert worst["n"] == 30 and worst["accuracy"] <= table.accuracy(task, e, "autoattack")
        assert table.accuracy(task, 0, "worst") == table.select(task=task, attack="worst")[0]["clean_accuracy"]
    for task in ("rule", "binary"):
        clean = table.accuracy(task, 0, "pgd")
        assert clean == table.select(task=task, eps=0.0, attack="pgd")[0]["clean_accuracy"]
        assert table.accuracy(task, 0.01, "pgd") <= clean
        assert table.accuracy(task, 0.3, "pgd") < 10  # a large radius breaks a linear model
    binary = table.select(task="binary", attack="autoattack", eps=0.01)[0]
    assert binary["n"] == 30 and "margin PGD" in binary["details"]
    first30 = test[1]["binary"][:30]  # the rate of the images the row's attack ran on
    assert binary["majority_rate"] == pytest.approx(100 * max(np.mean(first30), 1 - np.mean(first30)))
    every = test[1]["binary"]
    assert table.select(task="binary", attack="pgd", eps=0.01)[0]["majority_rate"] == pytest.approx(
        100 * max(np.mean(every), 1 - np.mean(every)))
    assert table.majority_rate("binary") != table.majority_rate("binary", "autoattack")  # the subset's differs
    assert table.majority_rate("binary", "autoattack") == binary["majority_rate"]
    for attack in ("pgd", "autoattack"):  # the table's majority column is its own attack's images'
        md = format_table1({"lin": table}, ["binary"], [0], attack=attack)
        assert md.splitlines()[2].endswith(f"| {table.majority_rate('binary', attack):.1f} |")
    cards = json.loads((tmp_path / "robustness.json").read_text())["cards"]
    assert {"clean_acc", "autoattack_acc", "eps", "threat_model", "n_examples", "balanced_acc"} <= set(cards[0])
    assert cards[0]["threat_model"] == "Linf" and isinstance(cards[0]["eps"], str)
    assert (tmp_path / "robustness.csv").read_text().splitlines()[0].startswith("model,task")
    assert "| model | task" in (tmp_path / "robustness.md").read_text()
    md = format_table1({"lin": table}, ["rule", "binary"], [0, 0.01])
    assert md.splitlines()[2].startswith("| lin |")


def test_worst_case_is_per_example_not_the_lowest_row(setup, monkeypatch):
    """Two attacks that each break a different example leave 98 of 100 standing, not 99."""
    encoder, train, test = setup

    def fake_attack(attack, classifier, X, y, eps, *args):
        robust = np.ones(len(X), dtype=bool)
        if eps > 0:
            robust[0 if attack == "pgd" else 1] = False
        return robust, attack, []

    monkeypatch.setattr(robustness, "_attack", fake_attack)
    table = evaluate_robustness(encoder, train, test, tasks=["rule"], eps=(0, 0.1), attacks=("pgd", "autoattack"),
                                device="cpu", progress=False)
    assert table.accuracy("rule", 0.1, "pgd") == table.accuracy("rule", 0.1, "autoattack") == 99.0
    assert table.accuracy("rule", 0.1, "worst") == 98.0
    # eps = 0 is the classifier's own clean verdict, never an attack's
    clean = table.select(task="rule", attack="pgd")[0]["clean_accuracy"]
    assert table.accuracy("rule", 0, "worst") == table.accuracy("rule", 0, "autoattack") == clean
    # AutoAttack at its own radii: PGD keeps all of eps (and adds 0.3), worst rows where both ran
    table = evaluate_robustness(encoder, train, test, tasks=["rule"], eps=(0, 0.1, 0.2), attacks=("pgd", "autoattack"),
                                autoattack_eps=(0.1, 0.3), device="cpu", progress=False)
    assert [(r["attack"], r["eps"]) for r in table] == [
        ("pgd", 0.0), ("pgd", 0.1), ("pgd", 0.2), ("pgd", 0.3), ("autoattack", 0.1), ("autoattack", 0.3),
        ("worst", 0.1), ("worst", 0.3)]
    assert table.accuracy("rule", 0.1, "worst") == table.accuracy("rule", 0.3, "worst") == 98.0


def test_autoattack_on_two_or_three_classes_also_takes_margin_pgd(setup, monkeypatch):
    """AutoAttack's DLR losses are undefined below 4 classes: its rows there count a point
    robust only if margin PGD-100 fails on it too (a stand-in margin PGD breaks every point)."""
    encoder, train, test = setup
    pgd_calls = []

    def pgd(model, X, y, eps, steps, restarts, losses, **kwargs):
        pgd_calls.append((steps, tuple(losses)))
        return np.zeros(len(X), dtype=bool) if tuple(losses) == ("margin",) else np.ones(len(X), dtype=bool)

    monkeypatch.setattr(robustness, "pgd_robust_mask", pgd)
    monkeypatch.setattr(robustness, "autoattack_robust_mask", lambda model, X, *a, **k: np.ones(len(X), dtype=bool))
    table = evaluate_robustness(encoder, train, test, tasks=["rule", "binary"], eps=(0.1,), attacks=("autoattack",),
                                autoattack_n=30, device="cpu", progress=False)
    assert table.accuracy("rule", 0.1, "autoattack") == table.accuracy("binary", 0.1, "autoattack") == 0.0
    assert pgd_calls == [(100, ("margin",))] * 2


def test_autoattack_s_reliability_flags_reach_its_rows_the_worst_case_and_the_cards(setup, tmp_path, monkeypatch):
    # RobustBench's "unreliable": AutoAttack's checks saw signs of overestimated robustness
    encoder, train, test = setup

    def flagging(model, X, y, eps, *args, flags=None, **kwargs):
        flags.append(f"there are 2 points with zero gradient at {eps:g}")
        return np.ones(len(X), dtype=bool)

    monkeypatch.setattr(robustness, "autoattack_robust_mask", flagging)
    table = evaluate_robustness(encoder, train, test, tasks=["rule"], eps=(0, 0.1), attacks=("pgd", "autoattack"),
                                autoattack_n=30, pgd_steps=2, output_dir=str(tmp_path), device="cpu", progress=False)
    flagged = {(r["attack"], r["eps"]): r["flags"] for r in table.rows}
    assert flagged == {("pgd", 0.0): [], ("pgd", 0.1): [], ("autoattack", 0.0): [],
                       ("autoattack", 0.1): ["there are 2 points with zero gradient at 0.1"],
                       ("worst", 0.0): [], ("worst", 0.1): ["there are 2 points with zero gradient at 0.1"]}
    assert "flagged by AutoAttack's checks (1" in table.select(attack="worst", eps=0.1)[0]["details"]
    cards = json.loads((tmp_path / "robustness.json").read_text())["cards"]
    assert [(c["attack"], c["eps"]) for c in cards if c["unreliable"]] == [("autoattack", "0.1"), ("worst", "0.1")]
    assert all(c["flags"] == flagged[(c["attack"], float(c["eps"]))] for c in cards)


def test_balanced_accuracy_is_the_mean_of_the_per_class_rates():
    robust, y = np.array([True, True, True, False]), np.array([0, 0, 0, 1])
    assert robustness._rates(robust, y) == (75.0, 50.0)


def test_a_probe_class_missing_from_the_attacked_images_is_warned_about(setup):
    # balanced accuracy then averages over the classes present: the other classes' accuracy
    encoder, train, test = setup
    X, y = test
    classes = np.unique(train[1]["rule"])
    keep = y["rule"] != classes[-1]
    kwargs = dict(tasks=["rule"], eps=(0,), pgd_steps=2, device="cpu", progress=False)
    with pytest.warns(UserWarning, match=rf"task 'rule': the {int(keep.sum())} attacked test images hold no example of "
                                         rf"class\(es\) \[{classes[-1]}\]; their balanced accuracy averages over the "
                                         rf"{len(classes) - 1} classes present"):
        evaluate_robustness(encoder, train, (X[keep], {"rule": y["rule"][keep]}), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class present: no warning
        evaluate_robustness(encoder, train, test, **kwargs)


def test_works_on_a_pythae_model_and_leaves_it_untouched():
    model = AVAE(AVAEConfig(input_dim=SHAPE, latent_dim=4))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X = np.random.default_rng(0).uniform(size=(60, *SHAPE)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0.5).astype(int)
    table = evaluate_robustness(model, (X, {"t": y}), (X, {"t": y}), eps=(0, 0.05), device="cpu",
                                pgd_steps=5, progress=False)
    assert len(table) == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(m.training for m in model.modules())  # the clean pass, too, restores the mode


def test_fitted_probes_give_the_table_of_fitting_inside(setup):
    encoder, train, test = setup
    kwargs = dict(eps=(0, 0.1), pgd_steps=10, device="cpu", progress=False)
    inside = evaluate_robustness(encoder, train, test, **kwargs)
    probes = fit_probes(encoder, train[0], train[1], device="cpu")
    given = evaluate_robustness(encoder, None, test, probes=probes, **kwargs)
    assert given.rows == inside.rows
    assert any(r["accuracy"] < r["clean_accuracy"] for r in given.rows)  # the attack did something


def test_fitted_probes_are_checked(setup):
    encoder, train, test = setup
    probes = fit_probes(encoder, train[0], train[1], device="cpu")
    with pytest.raises(ValueError, match="leave train_data"):
        evaluate_robustness(encoder, train, test, probes=probes)
    with pytest.raises(ValueError, match=r"probes\['binary'\] must be a fitted LinearProbe"):
        evaluate_robustness(encoder, None, test, probes={"rule": probes["rule"]})
    other = fit_probes(LinearEncoder(108, d=8), train[0], train[1], device="cpu")
    with pytest.raises(ValueError, match="another encoder"):
        evaluate_robustness(encoder, None, test, probes=other)
    with pytest.raises(TypeError, match="pair"):  # neither train_data nor probes
        evaluate_robustness(encoder, None, test)


def test_bad_arguments(setup):
    encoder, train, test = setup
    with pytest.raises(ValueError, match="attacks"):
        evaluate_robustness(encoder, train, test, attacks=("fgsm",))
    with pytest.raises(ValueError, match="eps"):
        evaluate_robustness(encoder, train, test, eps=(-0.1,))
    with pytest.raises(ValueError, match="tasks"):
        evaluate_robustness(encoder, train, test, tasks=["missing"])
    with pytest.raises(TypeError, match="eps must be a sequence"):
        evaluate_robustness(encoder, train, test, eps=0.1)
    with pytest.raises(ValueError, match="autoattack_eps is for AutoAttack"):
        evaluate_robustness(encoder, train, test, autoattack_eps=(0.1,))
    for bad, match in (((), "autoattack_eps must name"), ((-1,), "eps"), (0.1, "autoattack_eps must be a sequence")):
        with pytest.raises((TypeError, ValueError), match=match):
            evaluate_robustness(encoder, train, test, attacks=("pgd", "autoattack"), autoattack_eps=bad)
    with pytest.raises(TypeError, match="pair"):
        evaluate_robustness(encoder, train[0], test)
    # counts are checked: a negative one sliced off the last images (X[:-3]) and attacked the rest
    for kwargs, match in (
        (dict(n_examples=-3), "n_examples must be an int >= 1"),
        (dict(n_examples=0), "n_examples must be an int >= 1"),
        (dict(autoattack_n=-2), "autoattack_n must be an int >= 0"),
        (dict(attacks=("autoattack",), autoattack_n=0), "autoattack_n must be an int >= 1"),
        (dict(batch_size=0), "batch_size must be an int >= 1"),
        (dict(seed=-5), "seed must be an int >= 0"),
        (dict(seed=1.5), "seed must be an int >= 0"),
        (dict(device="gpu"), "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        (dict(device=f"cuda:{torch.cuda.device_count()}"), "CUDA device"),
    ):
        with pytest.raises(ValueError, match=re.escape(match)):
            evaluate_robustness(encoder, train, test, **kwargs)


def test_robustbench_imports_beside_pyautoattack():
    robustbench = import_robustbench()
    from robustbench.model_zoo.enums import ThreatModel

    assert ThreatModel("Linf").value == "Linf"
    import autoattack
    import pyautoattack

    assert autoattack.AutoAttack is pyautoattack.AutoAttack
    assert hasattr(robustbench, "benchmark")
