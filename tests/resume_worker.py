"""Trains a tiny AVAE with checkpoints; run as a subprocess by test_resumable.py / test_ddp.py.

    python tests/resume_worker.py OUTPUT_DIR [--model AVAE] [--sleep 0.02] [--epochs 6]

Prints ``step <k>`` after every optimizer step and saves the final weights to
``OUTPUT_DIR/final_weights.pt`` (rank 0). Under ``torchrun`` it trains with DDP (gloo on CPU).
"""

import argparse
import os
import signal
import sys
import time

import torch
from pythae.trainers.training_callbacks import TrainingCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pythae_avae.pipelines import TrainingPipeline  # noqa: E402
from pythae_avae.models import AVAE_SS  # noqa: E402
from pythae_avae.recipes import build_model  # noqa: E402
from pythae_avae.trainers import DataFreeTrainerConfig, ResumableTrainerConfig, unwrap_model  # noqa: E402


class EpochLosses(TrainingCallback):
    def __init__(self, path):
        self.path = path

    def on_log(self, training_config, logs, **kwargs):
        if kwargs.get("rank", -1) in (-1, 0):
            with open(self.path, "a") as f:
                f.write(f"{kwargs['global_step']} {logs['train_epoch_loss']!r}\n")


class Steps(TrainingCallback):
    def __init__(self, pause, signal_step=None):
        self.step, self.pause, self.signal_step = 0, pause, signal_step

    def on_train_step_end(self, training_config, **kwargs):
        self.step += 1
        print(f"step {self.step}", flush=True)
        if self.step == self.signal_step:  # after the step's stop flags were all-reduced
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(self.pause)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("output_dir")
    p.add_argument("--model", default="AVAE")
    p.add_argument("--arch", default="colormnist-mlp")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank-weights", help="folder: every rank saves its weights there (test only)")
    p.add_argument("--no-noise", action="store_true", help="deterministic encoder: no sampling noise")
    p.add_argument("--epoch-losses", help="file: rank 0 appends '<epoch> <train_epoch_loss>' lines (test only)")
    p.add_argument("--sigterm-at", nargs=2, type=int, metavar=("RANK", "STEP"),
                   help="this rank sends itself SIGTERM at the end of this step (test only)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = torch.rand(args.n, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    common = dict(output_dir=args.output_dir, learning_rate=args.lr, seed=3, no_cuda=True,
                  checkpoint_every=args.checkpoint_every)
    if args.model == "AVAE-SS":
        model = AVAE_SS.from_pretrained(build_model("VAE", args.arch, latent_dim=4))
        config = DataFreeTrainerConfig(num_epochs=args.epochs, steps_per_epoch=8,
                                       batch_size=args.batch_size, **common)
        data = None
    else:
        model = build_model(args.model, args.arch, latent_dim=4, **({"se_steps": 2} if "SE" in args.model else {}))
        config = ResumableTrainerConfig(num_epochs=args.epochs, per_device_train_batch_size=args.batch_size, **common)
    if args.no_noise:  # a deterministic model isolates the distributed gradient arithmetic
        model.sample_latent = lambda mu, logvar: mu
    if int(os.environ.get("RANK", 0)) == 0:
        os.makedirs(args.output_dir, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(args.output_dir, "initial_weights.pt"))
    pipeline = TrainingPipeline(model, config)
    signal_rank, signal_step = args.sigterm_at or (None, None)
    rank = int(os.environ.get("RANK", 0))
    callbacks = [Steps(args.sleep, signal_step if rank == signal_rank else None)]
    pipeline(data, callbacks=callbacks + ([EpochLosses(args.epoch_losses)] if args.epoch_losses else []))
    if args.rank_weights:
        os.makedirs(args.rank_weights, exist_ok=True)
        path = os.path.join(args.rank_weights, f"rank{max(pipeline.trainer.rank, 0)}.pt")
        torch.save(unwrap_model(pipeline.trainer.model).state_dict(), path)
    if pipeline.trainer.is_main_process:
        torch.save(unwrap_model(pipeline.trainer.model).state_dict(), os.path.join(args.output_dir, "final_weights.pt"))


if __name__ == "__main__":
    main()
