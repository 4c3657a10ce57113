"""benchmarks/weight_averaging.py: the averages it keeps, and a tiny end-to-end run."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import fig5
        import weight_averaging

        yield fig5, weight_averaging
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_averages_follow_their_formulas_weights_and_batch_norm_statistics(scripts):
    _, wa = scripts
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    averages = wa.WeightAverages(net, [0.5, 0.9])
    seen = []
    for step in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(float(step))
        net.train()(torch.randn(8, 2))  # moves the BatchNorm statistics and its step counter
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        averages.on_train_step_end(training_config=None)
    assert averages.names() == ["EMA 0.5", "EMA 0.9", "uniform"]
    for key in seen[0]:
        if key.endswith("num_batches_tracked"):  # an integer: the last value, not an average
            for name in averages.names():
                assert averages.averages[name][key] == 4
            continue
        for decay in (0.5, 0.9):
            expected = seen[0][key].clone()
            for state in seen[1:]:
                expected = decay * expected + (1 - decay) * state[key]
            torch.testing.assert_close(averages.averages[f"EMA {decay:g}"][key], expected)
        torch.testing.assert_close(averages.averages["uniform"][key], torch.stack([s[key] for s in seen]).mean(0))
    # the averages are copies: the model's own weights are the last step's
    assert net[0].weight.eq(3.0).all()


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()


def _weights(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "model.pt", weights_only=True)["model_state_dict"]


def test_continues_a_fig5_run_and_evaluates_last_and_averaged_weights(scripts, tmp_path, monkeypatch):
    fig5, wa = scripts
    kept = []

    class KeptAverages(wa.WeightAverages):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr(wa, "WeightAverages", KeptAverages)
    fig5.main(["--models", "AVAE", "--stages", "2", "--rhos", "--eval-n", "20", "--pgd-steps", "1", "--eps", "0",
               "0.1", "--device", "cpu", "--no-progress", "--output-dir", str(tmp_path / "fig5")])
    source = tmp_path / "fig5" / "runs" / "AVAE"
    before = _digest(source / "pythae" / "checkpoint")
    out = tmp_path / "wa"
    argv = ["--from-run", str(source), "--decays", "0.9", "--device", "cpu", "--no-progress", "--output-dir", str(out)]
    with pytest.raises(SystemExit, match="must exceed the checkpoint's step 63"):
        wa.main(argv + ["--iterations", "63"])
    wa.main(argv + ["--iterations", "100"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["start_step"] == 63
    assert {(r["weights"], r["task"], r["eps"]) for r in saved["rows"]} == {
        (w, t, e) for w in ("last", "EMA 0.9", "uniform") for t in ("digit", "color") for e in (0.0, 0.1)}
    state = torch.load(out / "run" / "pythae" / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["global_step"] == 126  # two more epochs of 63 batches
    assert "| EMA 0.9 |" in (out / "results.md").read_text()
    assert _digest(source / "pythae" / "checkpoint") == before  # the source run is only read
    # the averages followed the weights being trained, from the checkpoint's to the last
    (averages,) = kept
    assert averages.steps == 63
    start, last = _weights(source / "pythae" / "checkpoint"), _weights(out / "run" / "pythae" / "checkpoint")
    key = "encoder.head.3.weight"  # the last layer of the ConvNet encoder, mu and log-variance
    assert not torch.equal(start[key], last[key])
    for name in averages.names():  # a mean of the steps after the checkpoint: neither its weights nor the last
        averaged = averages.averages[name][key]
        assert not torch.equal(averaged, start[key]) and not torch.equal(averaged, last[key])
    assert not torch.equal(averages.averages["EMA 0.9"][key], averages.averages["uniform"][key])


def test_refuses_what_it_cannot_continue(scripts, tmp_path, capsys):
    _, wa = scripts
    with pytest.raises(SystemExit):
        wa.parse_args(["--from-run", str(tmp_path), "--iterations", "10", "--output-dir", str(tmp_path)])
    assert "settings.json" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text(json.dumps({"model": "AVAE"}))
    with pytest.raises(SystemExit):  # a committed run folder: settings and results, no checkpoint
        wa.parse_args(["--from-run", str(tmp_path), "--iterations", "10", "--output-dir", str(tmp_path)])
    assert "pythae/checkpoint is missing (checkpoints are not committed: the fig5.py command" in capsys.readouterr().err
    (tmp_path / "pythae" / "checkpoint").mkdir(parents=True)
    (tmp_path / "settings.json").write_text(json.dumps({"model": "AVAE", "train_n": 100}))
    with pytest.raises(SystemExit):
        wa.parse_args(["--from-run", str(tmp_path), "--iterations", "10", "--output-dir", str(tmp_path)])
    assert "['train_n']" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text(json.dumps({"model": "AVAE", "weight_decay": 0.01}))  # AdamW
    with pytest.raises(SystemExit):
        wa.parse_args(["--from-run", str(tmp_path), "--iterations", "10", "--output-dir", str(tmp_path)])
    assert "['weight_decay']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        wa.parse_args(["--from-run", str(tmp_path), "--iterations", "10", "--decays", "1", "--output-dir", "x"])
    assert "--decays must lie in (0, 1), got 1.0" in capsys.readouterr().err
