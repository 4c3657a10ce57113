"""Attack cost on the colorMNIST ConvNet encoder + linear probe (not a test).

    python benchmarks/attack_speed.py                 # PGD-20 on 1,000 images, AutoAttack on 100
    python benchmarks/attack_speed.py --aa-n 1000 --threads 1

Prints the machine, then wall-clock seconds per 1,000 images for PGD-20 (one loss and both
losses) and for AutoAttack, per task. Target on a 2-core CPU: PGD-20 <= 10 s per 1,000 images.
The encoder is freshly initialised: PGD time does not depend on the weights (fixed steps), but
AutoAttack's does (its cascade only attacks surviving points, so a robust model costs more);
pass ``--model-dir`` to time a trained model.
"""

import argparse
import os
import platform
import time

import torch

from pythae_avae.data import TASKS, ColorMNIST
from pythae_avae.evaluation import LinearProbe, autoattack_robust_mask, pgd_robust_mask
from pythae_avae.recipes import build_model, default_device, device_arg, radius_arg


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--aa-n", type=int, default=100)
    p.add_argument("--eps", type=radius_arg, default=0.1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--model-dir", help="a saved model folder (default: untrained ConvNet AVAE)")
    p.add_argument("--device", type=device_arg, default=default_device())
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"device {args.device}")
    if args.model_dir:
        from pythae.models import AutoModel

        import pythae_avae  # noqa: F401  (lets AutoModel load this package's models)

        model = AutoModel.load_from_folder(args.model_dir)
    else:
        torch.manual_seed(0)
        model = build_model("AVAE", "colormnist-conv", 64)
    x_train, y_train = ColorMNIST("train", limit=2000).arrays()
    x_test, y_test = ColorMNIST("test").arrays()
    X = torch.from_numpy(x_test[: args.n])
    for task in TASKS:
        probe = LinearProbe(model, device=args.device).fit(x_train, y_train[task])
        clf = probe.to_torch().to(args.device)
        y = torch.from_numpy(probe.label_indices(y_test[task][: args.n]))
        for losses in (("margin",), ("ce", "margin")):
            start = time.perf_counter()
            acc = pgd_robust_mask(clf, X, y, args.eps, steps=20, losses=losses, device=args.device).mean()
            seconds = time.perf_counter() - start
            print(f"{task}: PGD-20 {'+'.join(losses):10s} eps={args.eps}: {seconds * 1000 / len(X):6.2f} s "
                  f"per 1,000 images (accuracy {100 * acc:.1f}%, n={len(X)})")
        n = min(args.aa_n, len(X))
        if n == 0:
            continue
        start = time.perf_counter()
        acc = autoattack_robust_mask(clf, X[:n], y[:n], args.eps, len(probe.classes_), device=args.device).mean()
        seconds = time.perf_counter() - start
        print(f"{task}: AutoAttack eps={args.eps}: {seconds * 1000 / n:8.2f} s per 1,000 images "
              f"(accuracy {100 * acc:.1f}%, n={n})")


if __name__ == "__main__":
    main()
