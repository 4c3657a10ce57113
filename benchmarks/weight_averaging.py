"""Does averaging the weights make AVAE more robust? (issue 5's open gap at eps = 0.1)

    python benchmarks/weight_averaging.py --from-run benchmarks/results/fig5_wideenc/runs/AVAE \\
        --iterations 56000 --output-dir benchmarks/results/weight_averaging_wideenc

Continues a finished ``benchmarks/fig5.py`` run (its ``settings.json`` and its last
checkpoint, copied, never modified) with the same settings up to ``--iterations``, and keeps,
from the checkpoint on, an exponential moving average (EMA) of the weights and BatchNorm
statistics for each ``--decays`` value plus their uniform average (SWA-style, constant learning
rate). Then it evaluates the last weights and every average with fig5's protocol (logistic
probe on mu(x), PGD with CE and margin on the run's test images, the run's eps, steps and n),
so the rows differ only in how the weights are read off the same trajectory.

The averages live in memory: an interrupted run starts again from the copied checkpoint.
Outputs in ``--output-dir``: ``results.json`` and ``results.md``.
"""

import argparse
import copy
import json
import os
import shutil

import torch
from pythae.trainers.training_callbacks import TrainingCallback

from fig5 import colormnist_data, evaluate
from pythae_avae.data import TASKS, RecolorCallback
from pythae_avae.recipes import build_model, default_device, train_for_iterations, training_device_arg
from pythae_avae.trainers import latest_checkpoint
from table1 import command_line, steps_done


class WeightAverages(TrainingCallback):
    """Pythae callback: after every step, folds ``model``'s weights and buffers into one EMA per
    decay and into their uniform mean, starting from the first step it sees."""

    def __init__(self, model, decays):
        self.model, self.decays = model, list(decays)
        self.averages, self.steps = None, 0

    def on_train_step_end(self, training_config, **kwargs):
        state = self.model.state_dict()
        self.steps += 1
        if self.averages is None:
            self.averages = {name: copy.deepcopy(state) for name in self.names()}
            return
        weights = {f"EMA {d:g}": 1 - d for d in self.decays}
        weights["uniform"] = 1 / self.steps
        with torch.no_grad():
            for name, w in weights.items():
                for key, value in state.items():
                    average = self.averages[name][key]
                    if value.is_floating_point():
                        average.lerp_(value, w)
                    else:  # e.g. BatchNorm's num_batches_tracked
                        average.copy_(value)

    def names(self):
        return [f"EMA {d:g}" for d in self.decays] + ["uniform"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--from-run", required=True,
                   help="a fig5 run folder (holds settings.json and pythae/checkpoint), e.g. "
                        "benchmarks/results/fig5_wideenc/runs/AVAE")
    p.add_argument("--iterations", type=int, required=True,
                   help="total budget to continue to (more than the checkpoint's step)")
    p.add_argument("--decays", nargs="+", type=float, default=[0.999, 0.9997])
    p.add_argument("--device", type=training_device_arg, default=None)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for d in args.decays:
        if not 0 < d < 1:
            p.error(f"--decays must lie in (0, 1), got {d}")
    settings_path = os.path.join(args.from_run, "settings.json")
    if not os.path.isfile(settings_path):
        p.error(f"--from-run must be a fig5 run folder with settings.json; {settings_path} is missing")
    with open(settings_path) as f:
        args.settings = json.load(f)
    unsupported = sorted(set(args.settings) & {"data", "train_n", "lr_schedule", "weight_decay"})
    if unsupported:
        p.error(f"--from-run was trained with {unsupported}; this script continues embedded-digit runs "
                "of Adam at a constant learning rate only")
    args.checkpoint = latest_checkpoint(os.path.join(args.from_run, "pythae"))
    if args.checkpoint is None:
        p.error(f"--from-run must be a fig5 run folder with a checkpoint; {args.from_run}/pythae/checkpoint is missing "
                "(checkpoints are not committed: the fig5.py command in the results.md above the run folder makes it)")
    return args


def main(argv=None):
    args = parse_args(argv)
    s = args.settings
    args.device = args.device or default_device()
    eval_args = argparse.Namespace(eps=s["eps"], eval_n=s["eval_n"], pgd_steps=s["pgd_steps"], seed=s["seed"],
                                   device=args.device, no_progress=args.no_progress)
    run_dir = os.path.join(args.output_dir, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(args.checkpoint, os.path.join(run_dir, "pythae", "checkpoint"))
    start = steps_done(run_dir)
    if args.iterations <= start:
        raise SystemExit(f"--iterations must exceed the checkpoint's step {start}, got {args.iterations}")
    data = colormnist_data()

    def fresh_model():
        return build_model(s["model"], s["arch"], s.get("latent_dim", 64), seed=s["seed"], **s["config"])

    model = fresh_model()
    averages = WeightAverages(model, args.decays)
    model = train_for_iterations(model, data["train"], data["test"], iterations=args.iterations, batch_size=s["batch_size"],
                                 learning_rate=s["lr"], seed=s["seed"], output_dir=run_dir, device=args.device,
                                 callbacks=[RecolorCallback(), averages], progress=not args.no_progress)
    rows = [{**r, "weights": "last"} for r in evaluate(eval_args, model, data, "last", os.path.join(args.output_dir, "eval_last"))]
    for name in averages.names():
        averaged = fresh_model()
        averaged.load_state_dict(averages.averages[name])
        averaged.to(args.device).eval()
        rows += [{**r, "weights": name} for r in
                 evaluate(eval_args, averaged, data, name, os.path.join(args.output_dir, f"eval_{name.replace(' ', '_')}"))]

    columns = [(t, e) for t in TASKS for e in s["eps"]]
    lines = ["| weights | " + " | ".join(f"{t} {e:g}" for t, e in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name in ["last"] + averages.names():
        cells = [min(r["accuracy"] for r in rows if r["weights"] == name and r["task"] == task
                     and abs(r["eps"] - eps) < 1e-12) for task, eps in columns]
        lines.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    text = (f"# Weight averaging (colorMNIST)\n\n{s['model']} {s['config']}, {s['arch']}, Adam lr {s['lr']}, batch "
            f"{s['batch_size']}, seed {s['seed']}: continued from step {start:,} ({args.from_run}) to "
            f"{args.iterations:,} iterations (rounded up to whole epochs); averages over the continued steps. "
            f"PGD-{s['pgd_steps']} (CE and margin, worst case) on {s['eval_n']} test images; accuracy (%). "
            f"Command: {command_line('benchmarks/weight_averaging.py', argv)}\n\n" + "\n".join(lines) + "\n")
    print(text)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "start_step": start, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
