"""Tabulates the evaluation files of benchmark runs, finished or not.

    python benchmarks/tabulate_evals.py benchmarks/results/table1_gpu_3k

``table1.py`` writes a run's ``result.json`` only once all its evaluations are done; a run
stopped during AutoAttack still has ``runs/<row>/seed<k>/eval_pgd/robustness.json``. This
script reads every ``eval_*/robustness.json`` under ``<folder>/runs`` and prints accuracy
(mean ± std over seeds) per row, task, attack and eps, as Markdown.
"""

import argparse
import glob
import json
import os
import statistics


def collect(folder):
    """{(row, task, attack, eps): {seed: robust accuracy}} from the run folders."""
    values = {}
    for path in sorted(glob.glob(os.path.join(folder, "runs", "*", "seed*", "eval_*", "robustness.json"))):
        row = path.split(os.sep)[-4]
        with open(path) as f:
            cards = json.load(f)["cards"]
        for card in cards:
            key = (row, card["task"], card["attack"], float(card["eps"]))
            values.setdefault(key, {})[card["seed"]] = float(card["robust_acc"])
    return values


def to_markdown(values):
    columns = sorted({k[1:] for k in values}, key=lambda c: (c[0] != "digit", c[1] != "pgd", c[0], c[1], c[2]))
    rows = list(dict.fromkeys(k[0] for k in values))
    head = ["run"] + [f"{task} {'' if attack == 'pgd' else attack + ' '}{eps:g}" for task, attack, eps in columns]
    lines = ["| " + " | ".join(head + ["seeds"]) + " |", "|" + "---|" * (len(head) + 1)]
    for row in rows:
        cells, seeds = [row], set()
        for column in columns:
            by_seed = values.get((row,) + column, {})
            seeds |= set(by_seed)
            v = list(by_seed.values())
            cells.append("–" if not v else f"{v[0]:.1f}" if len(v) == 1
                         else f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}")
        lines.append("| " + " | ".join(cells + [",".join(map(str, sorted(seeds)))]) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folder", help="a benchmark output folder (holding runs/)")
    args = p.parse_args(argv)
    values = collect(args.folder)
    if not values:
        raise SystemExit(f"no runs/*/seed*/eval_*/robustness.json under {args.folder!r}")
    print(to_markdown(values))


if __name__ == "__main__":
    main()
