"""Fig. 5 on colorMNIST: adversarial accuracy against training iteration and against rho.

    python benchmarks/fig5.py                                   # ~30 min on 2 CPU cores
    python benchmarks/fig5.py --stages 2000 10000 20000 --rhos 0.5 0.9 0.99 --eval-n 1000

*Against iteration*: each model trains once, in stages; after each stage (a total budget of
``--stages`` iterations) it is evaluated, then training continues from the checkpoint. The
trainer seeds every step from ``(seed, step)``, so the last stage is the same model as one
uninterrupted run of that length. *Against rho*: AVAE (package defaults otherwise) trained at
the last stage's budget for each ``--rhos`` value; the AVAE of the first part is the rho = 0.975
point (``--rho-iterations`` picks an earlier stage); ``--rhos`` with no value skips this part. Everything is resumable: finished stages
are read back from ``stage_<it>.json``, and only by a command with the settings in the run's
``settings.json`` (another one stops, naming the differences).
Outputs in ``--output-dir``: ``results.json``, ``results.md`` and ``fig5_<x>_<task>.png``.
"""

import argparse
import glob
import json
import math
import os

from pythae_avae.data import TASKS, ColorMNIST, RecolorCallback
from pythae_avae.evaluation import evaluate_robustness
from pythae_avae.figures import plot_accuracy_curves
from pythae_avae.models.batch_norm import AUX_BATCH_NORM_MODES
from pythae_avae.nets import COLOR_MNIST_ARCHITECTURES
from pythae_avae.recipes import (DELUSION_MODELS, LR_SCHEDULES, add_aux_noise_std_argument, aux_noise_std_note,
                                 build_model, default_device, epoch_budget, radius_arg, seed_arg,
                                 train_for_iterations, training_device_arg, with_aux_noise_std)
from table1 import command_line, refuse_other_settings


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["VAE", "AVAE"], choices=["VAE", "AVAE", "SE", "SE-AVAE"])
    p.add_argument("--stages", nargs="+", type=int, default=[500, 1000, 2000, 3000])
    p.add_argument("--rhos", nargs="*", type=float, default=[0.5, 0.9, 0.99],
                   help="rho values of the AVAE sweep against rho (default: 0.5 0.9 0.99); none: no sweep")
    p.add_argument("--rho", type=float, default=0.975, help="rho of the AVAE in the iteration sweep")
    p.add_argument("--rho-iterations", type=int,
                   help="budget of the rho sweep, one of --stages (default: the last stage)")
    p.add_argument("--eps", nargs="+", type=radius_arg, default=[0.0, 0.05, 0.1])
    p.add_argument("--eval-n", type=int, default=500)
    p.add_argument("--pgd-steps", type=int, default=50)
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--obs-var", type=float, default=0.5, help="observation variance v of every model")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW's decoupled weight decay instead of Adam (train_for_iterations(weight_decay=...); "
                        "default: 0, Adam, the paper's)")
    p.add_argument("--lr-schedule", default="constant", choices=sorted(LR_SCHEDULES),
                   help="Adam's learning rate over a run: constant (default, the paper's) or cosine, annealed to 0 "
                        "at the last of --stages (the rho sweep: at --rho-iterations); a stage is a snapshot of it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-n", type=int,
                   help="train on the first N training digits (default: all: 4,000 embedded, 60,000 with --mnist-root); "
                        "the test images stay the same")
    p.add_argument("--mnist-root", help="colorMNIST from full MNIST (60,000 training / 10,000 test digits) read by "
                                        "torchvision from DIR/MNIST/raw (default: the 5,000 embedded digits)")
    p.add_argument("--latent-dim", type=int, default=64, help="latent dimension d of every model (paper: 64)")
    add_aux_noise_std_argument(p)
    p.add_argument("--aux-batch-norm", default="batch", choices=AUX_BATCH_NORM_MODES,
                   help="BatchNorm mode of the delusion's encoder pass in training (AVAEConfig.aux_batch_norm; "
                        "default: batch)")
    p.add_argument("--warmup-epoch", type=int, default=0,
                   help="epochs over which the delusion's terms ramp up from 0 (AVAEConfig.warmup_epoch; default: 0, "
                        "full weight from the start)")
    p.add_argument("--aux-samples", type=int, default=1,
                   help="delusions per data point, their terms averaged (AVAEConfig.aux_samples; default: 1, "
                        "the paper's)")
    p.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the delusion's terms -C - H beside the ELBO (AVAEConfig.aux_weight; default: 1, "
                        "the paper's)")
    p.add_argument("--arch", default="colormnist-conv", choices=COLOR_MNIST_ARCHITECTURES)
    p.add_argument("--device", type=training_device_arg, default=None)
    p.add_argument("--output-dir", default="benchmarks/results/fig5")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if sorted(args.stages) != args.stages or args.stages[0] < 1:
        p.error(f"--stages must be increasing positive iteration counts, got {args.stages}")
    if args.train_n is not None and args.train_n < 1:
        p.error(f"--train-n must be a positive number of training images, got {args.train_n}")
    if args.latent_dim < 1:
        p.error(f"--latent-dim must be >= 1, got {args.latent_dim}")
    if args.warmup_epoch < 0:
        p.error(f"--warmup-epoch must be >= 0 epochs, got {args.warmup_epoch}")
    if not 0 <= args.weight_decay < math.inf:
        p.error(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if args.aux_samples < 1:
        p.error(f"--aux-samples must be >= 1 delusions per data point, got {args.aux_samples}")
    if not 0 < args.aux_weight < math.inf:
        p.error(f"--aux-weight must be a finite number > 0, got {args.aux_weight}")
    if args.rho_iterations is None:
        args.rho_iterations = args.stages[-1]
    elif args.rho_iterations not in args.stages:
        p.error(f"--rho-iterations must be one of --stages {args.stages}, got {args.rho_iterations}")
    if args.rho in args.rhos:  # two runs at one rho: the curve against rho would double back
        p.error(f"--rhos must not repeat --rho {args.rho:g}: the iteration sweep's AVAE is the rho = {args.rho:g} "
                "point of the rho curve")
    if args.lr_schedule != "constant" and args.rhos and args.rho_iterations != args.stages[-1]:
        p.error(f"--lr-schedule {args.lr_schedule} with --rho-iterations {args.rho_iterations} below the last stage "
                "would plot the iteration sweep's AVAE, a snapshot in mid-schedule, beside rho runs annealed at "
                "--rho-iterations; use the last stage, or --rhos with no value")
    return args


def colormnist_data(train_n=None, mnist_root=None) -> dict:
    """colorMNIST's training and test sets, and their arrays for the probe and the attacks."""
    source = dict(source="torchvision", root=mnist_root) if mnist_root else {}
    train, test = ColorMNIST("train", limit=train_n, **source), ColorMNIST("test", **source)
    return {"train": train, "test": test, "train_arrays": train.arrays(), "test_arrays": test.arrays()}


def evaluate(args, model, data, label, out):
    table = evaluate_robustness(
        model, data["train_arrays"], data["test_arrays"], n_examples=args.eval_n, tasks=list(TASKS), eps=tuple(args.eps), attacks=("pgd",),
        model_name=label, pgd_steps=args.pgd_steps, seed=args.seed, device=args.device,
        progress=not args.no_progress, output_dir=out,
    )
    return [dict(r) for r in table.rows]


def model_config(args, name, rho=None) -> dict:
    """Config fields of model ``name`` under ``args``; ``rho`` overrides ``--rho``."""
    config = {"obs_var": args.obs_var}
    if name in DELUSION_MODELS:
        config["rho"] = args.rho if rho is None else rho
        if args.aux_batch_norm != "batch":  # the default is not recorded: earlier runs still match
            config["aux_batch_norm"] = args.aux_batch_norm
        if args.warmup_epoch:
            config["warmup_epoch"] = args.warmup_epoch
        if args.aux_samples != 1:
            config["aux_samples"] = args.aux_samples
        if args.aux_weight != 1:
            config["aux_weight"] = args.aux_weight
    return with_aux_noise_std(name, config, args.aux_noise_std)


def run_settings(args, name, config, stages) -> dict:
    """Everything a stage's numbers depend on but its budget; kept in ``<run>/settings.json``.
    A schedule other than constant records its length, the last of ``stages``: the same stage
    of a cosine run annealed over another length is another model."""
    return json.loads(json.dumps(dict(
        model=name, config=config, arch=args.arch, lr=args.lr, batch_size=args.batch_size,
        seed=args.seed, eps=args.eps, eval_n=args.eval_n, pgd_steps=args.pgd_steps,
        # recorded only when set, so runs made before the flag existed still match
        **({"train_n": args.train_n} if args.train_n is not None else {}),
        **({"latent_dim": args.latent_dim} if args.latent_dim != 64 else {}),
        **({"data": "full MNIST"} if args.mnist_root else {}),
        **({"lr_schedule": args.lr_schedule, "schedule_iterations": stages[-1]}
           if args.lr_schedule != "constant" else {}),
        **({"weight_decay": args.weight_decay} if args.weight_decay else {}),
    )))


def check_settings(out, settings):
    """Finished stages are reused only by a command with the settings they were made with."""
    path = os.path.join(out, "settings.json")
    if os.path.isfile(path):
        with open(path) as f:
            refuse_other_settings(path, json.load(f), settings)
        return
    if glob.glob(os.path.join(out, "stage_*.json")):
        print(f"note: {out} records no settings (made before they were recorded); "
              "its stages are counted as made with this command's settings")
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)


def staged_run(args, name, data, run_name, config, stages=None):
    """Trains ``name`` through ``stages`` (default ``args.stages``); returns the evaluation
    rows of every stage."""
    stages = stages or args.stages
    out = os.path.join(args.output_dir, "runs", run_name)
    check_settings(out, run_settings(args, name, config, stages))
    rows = []
    for stage in stages:
        path = os.path.join(out, f"stage_{stage}.json")
        if not os.path.isfile(path):
            model = build_model(name, args.arch, args.latent_dim, seed=args.seed, **config)
            model = train_for_iterations(model, data["train"], data["test"], iterations=stage,
                                         batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                                         output_dir=out, device=args.device, callbacks=[RecolorCallback()],
                                         progress=not args.no_progress, lr_schedule=args.lr_schedule,
                                         schedule_iterations=stages[-1], weight_decay=args.weight_decay)
            result = evaluate(args, model, data, run_name, os.path.join(out, f"eval_{stage}"))
            with open(path, "w") as f:
                json.dump(result, f, indent=2)
        with open(path) as f:
            rows += [{**r, "iterations": stage, "run": run_name} for r in json.load(f)]
    return rows


def markdown(rows, x, args):
    keys = sorted({(r["run"], r[x]) for r in rows}, key=lambda k: (k[0], k[1]))
    columns = [(t, e) for t in TASKS for e in args.eps]
    lines = [f"| run | {x} | " + " | ".join(f"{t} {e:g}" for t, e in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for run, value in keys:
        cells = []
        for task, eps in columns:
            match = [r["accuracy"] for r in rows if r["run"] == run and r[x] == value and r["task"] == task
                     and abs(r["eps"] - eps) < 1e-12]
            cells.append(f"{min(match):.1f}" if match else "–")
        lines.append(f"| {run} | {value:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    args.device = args.device or default_device()
    os.makedirs(args.output_dir, exist_ok=True)
    data = colormnist_data(args.train_n, args.mnist_root)
    train, test = data["train"], data["test"]

    by_iteration = []
    for name in args.models:
        by_iteration += staged_run(args, name, data, name, model_config(args, name))
    last = args.rho_iterations
    # with no --rhos the sweep would be the iteration sweep's AVAE alone: a one-point curve
    by_rho = [{**r, "rho": args.rho} for r in by_iteration
              if args.rhos and r["run"] == "AVAE" and r["iterations"] == last]
    for rho in args.rhos:
        by_rho += [{**r, "rho": rho, "run": "AVAE"}
                   for r in staged_run(args, "AVAE", data, f"AVAE rho={rho:g}", model_config(args, "AVAE", rho),
                                       stages=[last])]

    figures = []
    for task in TASKS:
        for eps in [e for e in args.eps if e > 0]:
            rows = [{**r, "series": f"{r['run']} eps={eps:g}"} for r in by_iteration
                    if abs(r["eps"] - eps) < 1e-12]
            figures.append(plot_accuracy_curves(rows, os.path.join(args.output_dir, f"fig5_iterations_{task}_eps{eps:g}.png"),
                                                x="iterations", task=task, series="series",
                                                title=f"{task}, PGD-{args.pgd_steps}, eps={eps:g}"))
        rows = [{**r, "series": f"eps={r['eps']:g}"} for r in by_rho if r["eps"] > 0]
        if rows:  # there is nothing to plot against rho with --eps 0 alone
            figures.append(plot_accuracy_curves(rows, os.path.join(args.output_dir, f"fig5_rho_{task}.png"),
                                                x="rho", task=task, series="series",
                                                title=f"AVAE, {task}, {last} it., PGD-{args.pgd_steps}"))
    digits = f"full MNIST, {len(train):,} training and {len(test):,} test digits" if args.mnist_root \
        else f"embedded 5k digits, {len(train):,} of them for training"
    budgets = {stage: epoch_budget(stage, len(train), args.batch_size) for stage in sorted({*args.stages, last})}
    ran = {stage: per_epoch * epochs for stage, (per_epoch, epochs) in budgets.items()}
    per_epoch = budgets[last][0]
    rounding = "" if all(stage == steps for stage, steps in ran.items()) else (
        f"\n\nBudgets are rounded up to whole epochs of {per_epoch} batches: "
        + ", ".join(f"{stage:,} -> {steps:,}" for stage, steps in ran.items()) + " iterations.")
    note = (f"colorMNIST ({digits}), {args.arch}, latent {args.latent_dim}, obs_var {args.obs_var:g}"
            + aux_noise_std_note(args.aux_noise_std)
            + ("" if args.aux_batch_norm == "batch" else f", delusion BatchNorm mode {args.aux_batch_norm}")
            + (f", delusion terms warmed up over {args.warmup_epoch} epochs" if args.warmup_epoch else "")
            + (f", {args.aux_samples} delusions per data point" if args.aux_samples != 1 else "")
            + (f", delusion terms weighted {args.aux_weight:g}" if args.aux_weight != 1 else "")
            + (f", AdamW lr {args.lr}, weight decay {args.weight_decay:g}" if args.weight_decay
               else f", Adam lr {args.lr}")
            + ("" if args.lr_schedule == "constant"
               else f" ({args.lr_schedule} schedule over {args.stages[-1]:,} iterations)")
            + f", batch {args.batch_size}, "
            f"seed {args.seed}; probe: logistic regression on mu(x); PGD-{args.pgd_steps} (CE and margin, "
            f"worst case) on {args.eval_n} test images; accuracy (%). Command: "
            + command_line("benchmarks/fig5.py", argv) + rounding)
    text = f"# Fig. 5 (colorMNIST)\n\n{note}\n\n## Against training iteration\n\n{markdown(by_iteration, 'iterations', args)}\n"
    if args.rhos:
        text += f"\n## Against rho (AVAE, {last} iterations)\n\n{markdown(by_rho, 'rho', args)}\n"
    print(text)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "by_iteration": by_iteration, "by_rho": by_rho, "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
