"""Distributed training with ``torchrun`` on CPU (gloo): the same code path as NCCL on GPUs."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc, output_dir, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", WORKER, str(output_dir), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def files_under(folder):
    """Relative paths, with Pythae's timestamped training-folder name made comparable."""
    paths = (os.path.relpath(os.path.join(root, f), folder) for root, _, fs in os.walk(folder) for f in fs)
    return sorted(re.sub(r"_training_[\d_-]+", "_training_<time>", p) for p in paths)


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # a deterministic encoder (no sampling noise) and no BatchNorm isolate the gradient
    # arithmetic: 2 ranks x 4 images must equal 1 process x 8 images, step for step
    common = ["--model", "VAE", "--no-noise", "--epochs", "2"]
    subprocess.run([sys.executable, WORKER, str(tmp_path / "one"), "--batch-size", "8", *common],
                   check=True, capture_output=True, timeout=300)
    torchrun(2, tmp_path / "two", "--batch-size", "4", *common)
    one = torch.load(tmp_path / "one" / "final_weights.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "final_weights.pt", weights_only=True)
    initial = torch.load(tmp_path / "one" / "initial_weights.pt", weights_only=True)
    assert max((one[k] - initial[k]).abs().max() for k in one) > 1e-2  # training moved them
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-4)
    # only rank 0 wrote: the same files as the single-process run
    assert files_under(tmp_path / "two") == files_under(tmp_path / "one")


@pytest.mark.parametrize("model", ["AVAE", "SE", "SE-AVAE", "AVAE-SS"])
def test_every_model_trains_under_ddp_with_identical_parameters_on_every_rank(tmp_path, model):
    # the BatchNorm ConvNet: SE's attack (eval mode, input gradients) and AVAE's second
    # encoder call run inside the DDP-wrapped forward; AVAE-SS has frozen parameters
    ranks = tmp_path / "ranks"
    torchrun(2, tmp_path / "run", "--model", model, "--arch", "colormnist-conv", "--batch-size", "4",
             "--epochs", "1", "--rank-weights", str(ranks))
    weights = [torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    buffers = {k for k in weights[0] if "running_" in k or "num_batches" in k}
    for key in weights[0].keys() - buffers:  # parameters: averaged gradients, same updates
        assert torch.equal(weights[0][key], weights[1][key]), key
        assert torch.isfinite(weights[0][key]).all()
    assert (tmp_path / "run" / "final_weights.pt").exists()
    assert (tmp_path / "run" / "checkpoint" / "trainer_state.pt").exists()


def test_sigterm_to_torchrun_then_rerun_ends_with_the_uninterrupted_weights(tmp_path):
    args = ["--batch-size", "4"]
    torchrun(2, tmp_path / "whole", *args)
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               WORKER, str(tmp_path / "cut"), *args]
    process = subprocess.Popen(command + ["--sleep", "0.05"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoint" / "trainer_state.pt").exists():  # step 5 done
        assert process.poll() is None and time.time() < deadline, "the run ended before it was signalled"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # torchrun forwards it to both ranks
    process.wait(timeout=120)  # torchrun's own exit status after a forwarded signal varies
    assert not (tmp_path / "cut" / "final_weights.pt").exists()  # it stopped early
    state = torch.load(tmp_path / "cut" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert 5 <= state["global_step"] < 48  # both ranks stopped at the same step, rank 0 saved
    torchrun(2, tmp_path / "cut", *args)
    whole = torch.load(tmp_path / "whole" / "final_weights.pt", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "final_weights.pt", weights_only=True)
    for key in whole:
        assert torch.equal(resumed[key], whole[key]), key


@pytest.mark.parametrize("rank", [0, 1])
def test_a_signal_to_one_rank_after_the_steps_flag_exchange_stops_both_at_the_next_step(tmp_path, rank):
    # the signal lands when this step's stop flags were already all-reduced: the other rank
    # cannot know yet, so both must go on to the next step and stop there together (stopping
    # at once would leave the other rank in the next step's collectives: a hang)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               WORKER, str(tmp_path), "--batch-size", "4", "--sigterm-at", str(rank), "7"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.terminate()  # torchrun closes its ranks (SIGTERM, then SIGKILL after 30 s)
        process.communicate(timeout=120)
        pytest.fail("the ranks hung: one stopped while the other went on to the next step")
    assert process.returncode != 0 and not (tmp_path / "final_weights.pt").exists()
    state = torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["global_step"] == 8, output[-3000:]
    assert "stopped at step 8" in output
    torchrun(2, tmp_path, "--batch-size", "4")  # and the rerun finishes
    assert (tmp_path / "final_weights.pt").exists()


def test_an_epoch_cut_by_a_stop_logs_the_uninterrupted_runs_epoch_loss(tmp_path):
    # the loss that picks final_model (no eval set) sums every rank's steps of the epoch,
    # those before the stop included; 64 images, 2 ranks x 4: epochs of 8 steps, stop at step 4
    args = ["--batch-size", "4", "--epochs", "2"]
    torchrun(2, tmp_path / "whole", *args, "--epoch-losses", str(tmp_path / "whole.txt"))
    cut = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           WORKER, str(tmp_path / "cut"), *args, "--sigterm-at", "1", "3"]
    assert subprocess.run(cut, capture_output=True, timeout=120).returncode != 0
    assert torch.load(tmp_path / "cut" / "checkpoint" / "trainer_state.pt", weights_only=True)["global_step"] == 4
    torchrun(2, tmp_path / "cut", *args, "--epoch-losses", str(tmp_path / "cut.txt"))
    whole = [line.split() for line in (tmp_path / "whole.txt").read_text().splitlines()]
    resumed = [line.split() for line in (tmp_path / "cut.txt").read_text().splitlines()]
    assert [e for e, _ in resumed] == [e for e, _ in whole] == ["1", "2"]
    for (_, a), (_, b) in zip(resumed, whole):
        assert float(a) == pytest.approx(float(b), rel=1e-6)
