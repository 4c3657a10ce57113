"""CelebA experiment (paper Table 2): train VAE-family encoders on 64x64 faces without labels,
then measure how robust a linear probe on their mean code is to L-inf attacks, per attribute.

    python examples/celeba.py --data-root ~/data --models VAE AVAE --iterations 100000
    python examples/celeba.py --data-root ~/data --download            # online: torchvision
    torchrun --nproc_per_node 4 examples/celeba.py --data-root ~/data  # multi-GPU training

The data root holds torchvision's layout: celeba/img_align_celeba/*.jpg,
celeba/list_attr_celeba.txt, celeba/list_eval_partition.txt (see pythae_avae.data.celeba).
Images are centre-cropped to 140x140 and resized to 64x64; tasks default to the 17 of
CELEBA_TASKS. Training goes through this package's ResumableTrainer (Pythae's BaseTrainer with
checkpoints and DDP on any device), which runs DDP when launched with torchrun (each process
trains on its shard; only rank 0 evaluates and writes results).

Reported per task, model and eps: accuracy, the test set's majority-class rate and balanced
accuracy (most attributes are rare: ~2 % of faces are Bald, so 98 % accuracy can be a constant
classifier, spec §5.2). Writes results.json and table.md to --output-dir.
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from typing import Dict, List, Sequence

import numpy as np
import torch

from pythae_avae.data import CELEBA_ATTRIBUTES, CELEBA_TASKS, CelebA
from pythae_avae.evaluation import WORST, evaluate_robustness
from pythae_avae.recipes import DELUSION_MODELS, MODEL_NAMES, available_models, default_device, radius_arg
from pythae_avae.recipes import command_line_checkpoints, process_rank, quiet_pythae, refuse_counts_below_one, seed_arg
from pythae_avae.recipes import training_device_arg
from pythae_avae.recipes import model_config as full_model_config
from pythae_avae.recipes import registered_model, train_by_name

ARCH = "celeba-conv"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default="data", help="folder that holds celeba/ (default: data)")
    p.add_argument("--download", action="store_true", help="download CelebA through torchvision")
    p.add_argument("--cache-dir", help="keep the decoded 64x64 images here as .npy (faster reruns)")
    p.add_argument("--models", nargs="+", default=["VAE", "AVAE"], choices=list(MODEL_NAMES))
    p.add_argument("--iterations", type=int, default=100000, help="training iterations per model")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (official: 1e-4)")
    p.add_argument("--batch-size", type=int, default=64, help="per-process batch size")
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--rho", type=float, default=0.975, help="AVAE coupling strength")
    p.add_argument("--obs-var", type=float, default=0.5, help="Gaussian observation variance")
    p.add_argument("--model-config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="further config fields for every model that has them, e.g. for SE")
    p.add_argument("--train-limit", type=int, help="use only this many training images")
    p.add_argument("--valid-n", type=int, default=2000,
                   help="validation images for Pythae's eval loss (0: none)")
    p.add_argument("--probe-n", type=int, default=20000,
                   help="training images the linear probes are fitted on (48 KB each in memory)")
    p.add_argument("--eval-n", type=int, default=1000, help="test images attacked per task")
    p.add_argument("--tasks", nargs="+", default=list(CELEBA_TASKS), choices=CELEBA_ATTRIBUTES,
                   metavar="ATTRIBUTE", help="CelebA attributes (default: the 17 of CELEBA_TASKS)")
    p.add_argument("--eps", type=radius_arg, nargs="+", default=[0.0, 0.1], help="L-inf radii on [0,1]")
    p.add_argument("--pgd-steps", type=int, default=100)
    p.add_argument("--pgd-restarts", type=int, default=1)
    p.add_argument("--autoattack", action="store_true",
                   help="also run AutoAttack (APGD-CE, FAB, Square for binary tasks; slow on CPU)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--device", type=training_device_arg, default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--output-dir", default="outputs/celeba")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show Pythae's training logs")
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in available_models()]
    if unknown:
        p.error(f"models {unknown} are not available; choose from {available_models()}")
    refuse_counts_below_one(p, args, ("iterations", "batch_size", "latent_dim", "eval_n", "probe_n", "pgd_steps",
                                      "pgd_restarts", "train_limit"))
    if args.valid_n < 0:
        p.error(f"--valid-n must be >= 0 (0: no validation set), got {args.valid_n}")
    if args.download and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        p.error("--download under torchrun would have every process download into one folder at once; "
                "download once without torchrun (python -c \"from pythae_avae.data.celeba import download_celeba; "
                f"download_celeba({args.data_root!r})\"), then launch torchrun without --download")
    try:
        args.model_config = parse_key_values(args.model_config)
        check_model_configs(args)
    except ValueError as err:
        p.error(str(err))
    return args


def parse_key_values(items: Sequence[str]) -> Dict[str, object]:
    """``["steps=5", "eps=0.1"]`` -> ``{"steps": 5, "eps": 0.1}`` (values read as JSON if they can be)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-config entries must be KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# --------------------------------------------------------------------------- data


def load_data(args):
    """Training and validation datasets (uint8 in memory) and the probe/test arrays."""
    # every split's lists and first image are checked before any is decoded: a split missing
    # from the partition file is reported at once, not after minutes of decoding the training set
    train = CelebA(args.data_root, "train", tasks=args.tasks, limit=args.train_limit, download=args.download)
    valid = CelebA(args.data_root, "valid", tasks=args.tasks, limit=args.valid_n) if args.valid_n > 0 else None
    test = CelebA(args.data_root, "test", tasks=args.tasks, limit=args.eval_n)
    for split in (train, valid, test):
        if split is not None:
            split.load(args.cache_dir, progress=not args.no_progress)
    probe_n = min(args.probe_n, len(train))
    y_probe = {t: y[:probe_n] for t, y in train.labels().items()}
    one_class = [t for t, y in y_probe.items() if np.unique(y).size < 2]
    if one_class:  # the probe could not be fitted, after every model had trained
        raise ValueError(f"the {probe_n} training images the probes are fitted on (--probe-n, --train-limit) "
                         f"hold one class only of {one_class}: raise them or choose other --tasks")
    x_test, y_test = test.arrays()
    for task, y in y_test.items():
        if np.unique(y).size < 2:
            print(f"warning: the {len(y)} attacked test images (--eval-n) are all "
                  f"{'positive' if y[0] else 'negative'} for {task}: its balanced accuracy is that class's "
                  "recall and its majority rate 100%", file=sys.stderr)
    # only the probe subset is converted to float32: the full split would take 8 GB
    x_probe = train.images_uint8()[:probe_n].astype(np.float32) / 255.0
    return train, valid, (x_probe, y_probe), (x_test, y_test)


# --------------------------------------------------------------------------- training


#: config fields that have their own flag (or come from the architecture), not --model-config's
FLAG_FIELDS = {"rho": "--rho", "obs_var": "--obs-var", "latent_dim": "--latent-dim", "input_dim": "the architecture"}


def _config_fields(name: str) -> set:
    return {f.name for f in dataclasses.fields(registered_model(name).config_cls)}


def model_config(name: str, args) -> Dict[str, object]:
    """Config fields for model ``name``: --obs-var, --rho (models with a delusion) and the
    --model-config fields it has."""
    fields = _config_fields(name)
    wanted = dict(obs_var=args.obs_var, **({"rho": args.rho} if name in DELUSION_MODELS else {}))
    wanted.update(args.model_config)
    return {k: v for k, v in wanted.items() if k in fields}


def check_model_configs(args):
    """Refuses, before any image is decoded, a --model-config key that has its own flag or
    that no chosen model has (a typo would be dropped), and any value a chosen model's config
    refuses (ValueError naming the flag)."""
    for key in args.model_config:
        if key in FLAG_FIELDS:
            raise ValueError(f"--model-config {key}=...: {key} is set by {FLAG_FIELDS[key]}")
    known = set().union(*(_config_fields(m) for m in args.models))
    unknown = sorted(set(args.model_config) - known)
    if unknown:
        raise ValueError(f"--model-config: {unknown} are fields of none of the models {args.models}")
    for name in args.models:
        try:
            full_model_config(name, ARCH, args.latent_dim, **model_config(name, args))
        except (ValueError, TypeError) as err:
            raise ValueError(f"--rho, --obs-var or --model-config of {name}: {err}") from err


def train_one(name, args, train, valid, trained):
    """Trains (or post-trains, for AVAE-SS) ``name`` through :func:`recipes.train_by_name`."""
    return train_by_name(
        name, train, valid, trained, ARCH, args.latent_dim, model_config(name, args), args.output_dir,
        iterations=args.iterations, batch_size=args.batch_size, learning_rate=args.lr,
        seed=args.seed, device=args.device, progress=not args.no_progress,
    )


# --------------------------------------------------------------------------- reporting


def _rows(result) -> List[dict]:
    return [dict(r) for r in getattr(result, "rows", result)]


def worst_case(rows: List[dict]) -> Dict[tuple, dict]:
    """``{(task, eps): row}``: per task and eps, the per-example worst case over the attacks
    (``evaluate_robustness``'s ``"worst"`` row) where several ran, else the one attack's row."""
    best: Dict[tuple, dict] = {}
    for row in rows:
        key = (row["task"], float(row["eps"]))
        if key not in best or row["attack"] == WORST or (
                best[key]["attack"] != WORST and row["accuracy"] < best[key]["accuracy"]):
            best[key] = row
    return best


def _cell(percent) -> str:
    return "-" if percent is None else f"{percent:.1f}"


def format_table2(results: Dict[str, object], tasks: Sequence[str], eps: Sequence[float],
                  metric: str = "accuracy", majority: Dict[str, float] = None) -> str:
    """Markdown table shaped like the paper's Table 2: rows = tasks, columns = model x eps;
    every value in percent (the rows' ``metric`` and ``majority`` alike)."""
    worst = {name: worst_case(_rows(res)) for name, res in results.items()}
    header = ["task"] + (["majority"] if majority else [])
    header += [f"{name} {e:g}" for name in results for e in eps]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        cells = [task] + ([_cell(majority[task])] if majority else [])
        for name in results:
            for e in eps:
                row = worst[name].get((task, float(e)))
                cells.append(_cell(row.get(metric) if row else None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(args, results, timings, majority, tables: Dict[str, str], header: str):
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(header + "\n")
        for title, table in tables.items():
            f.write(f"\n### {title}\n\n{table}\n")
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({
            "args": vars(args),
            "train_seconds": timings,
            "majority_rate": majority,
            "rows": {name: _rows(res) for name, res in results.items()},
        }, f, indent=2, default=str)


# --------------------------------------------------------------------------- main


def main(argv=None):
    """Runs the experiment; returns ``{model: evaluation table}`` (empty on ranks > 0).

    Exits with status 2 and an explanation (no traceback) when the data is missing or malformed.
    """
    args = parse_args(argv)
    if not args.verbose:
        quiet_pythae()
    args.device = args.device or default_device()
    torch.manual_seed(args.seed)
    print(f"CelebA | models={args.models} arch={ARCH} iterations={args.iterations} lr={args.lr} "
          f"tasks={len(args.tasks)} device={args.device} "
          f"({platform.processor() or platform.machine()}, torch {torch.__version__})")
    try:
        train, valid, probe_data, test_data = load_data(args)
    except (FileNotFoundError, ValueError) as err:  # ValueError: a malformed list file, named
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    os.makedirs(args.output_dir, exist_ok=True)  # after the data check: a missing folder leaves nothing
    x_test = test_data[0]
    print(f"train {len(train)} images (probe fitted on {len(probe_data[0])}), "
          f"valid {len(valid) if valid else 0}, test {len(x_test)} attacked")

    trained, timings = {}, {}
    for name in args.models:
        start = time.perf_counter()
        if name not in trained:
            with command_line_checkpoints(args.output_dir):
                trained[name] = train_one(name, args, train, valid, trained)
        timings[name] = time.perf_counter() - start
    if process_rank() != 0:  # under torchrun, only the first process evaluates
        return {}

    attacks = ("pgd", "autoattack") if args.autoattack else ("pgd",)
    results = {}
    for name in args.models:
        results[name] = evaluate_robustness(
            trained[name], probe_data, test_data, tasks=list(args.tasks), eps=tuple(args.eps),
            attacks=attacks, n_examples=len(x_test), model_name=name,
            pgd_steps=args.pgd_steps, pgd_restarts=args.pgd_restarts, seed=args.seed,
            device=args.device, progress=not args.no_progress,
            output_dir=os.path.join(args.output_dir, "eval", name),
        )

    # PGD attacks the whole test set: its rows' rate is the test set's
    majority = {task: results[args.models[0]].majority_rate(task) for task in args.tasks}
    tables = {
        "Adversarial accuracy (%) (worst over attacks), with the majority-class rate":
            format_table2(results, args.tasks, args.eps, "accuracy", majority),
        "Balanced adversarial accuracy (%)":
            format_table2(results, args.tasks, args.eps, "balanced_accuracy"),
    }
    header = (f"CelebA 64x64, linear probe on mu(x) fitted on {len(probe_data[0])} train images; "
              f"L-inf attacks {'+'.join(attacks)} (PGD-{args.pgd_steps} x{args.pgd_restarts}) on "
              f"{len(x_test)} test images; seed {args.seed}; {args.iterations} training iterations")
    print("\n" + header)
    for title, table in tables.items():
        print(f"\n{title}\n{table}")
    write_outputs(args, results, timings, majority, tables, header)
    return results


if __name__ == "__main__":
    main()
