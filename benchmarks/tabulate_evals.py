"""Tabulates the evaluation files of benchmark runs, finished or not, over one or more folders.

    python benchmarks/tabulate_evals.py benchmarks/results/table1_gpu_3k
    python benchmarks/tabulate_evals.py benchmarks/results/fig5_noise0.3 \\
        benchmarks/results/fig5_noise0.3_seed1 benchmarks/results/fig5_noise0.3_seed2

``table1.py`` writes a run's ``result.json`` only once all its evaluations are done; a run
stopped during AutoAttack still has ``runs/<row>/seed<k>/eval_pgd/robustness.json``. This
script reads every such file (``table1.py``/``ablations.py`` layout, row ``<row>``) and every
``runs/<run>/eval_<iterations>/robustness.json`` (``fig5.py`` layout, one seed per folder,
row ``<run>, <iterations> it.``) and prints accuracy (mean ± std over seeds) per row, task,
attack and eps, as Markdown. ``fig5.py`` runs one seed per ``--output-dir``, so its seeds
are combined by naming their folders; a row is combined only from runs made with the same
settings (``settings.json`` or ``result.json``, seed aside; runs that recorded none are not
checked), and a seed found twice stops the script instead of being counted twice. A cell
averaged over fewer seeds than its row names the seeds it has, e.g. ``81.2 (seed 0)``.
"""

import argparse
import functools
import glob
import json
import os
import re
import statistics

from pythae_avae.trainers.resumable import named_differences
from table1 import PARTIAL_SETTINGS, completed

LAYOUTS = (  # (glob under <folder>/runs, row label from the path parts after runs/)
    (("*", "seed*", "eval_*", "robustness.json"), lambda run, seed, ev, _: run),
    (("*", "eval_*", "robustness.json"), lambda run, ev, _: f"{run}, {ev[len('eval_'):]} it."),
)


def natural(path):
    """Sort key reading digit runs as numbers: ``eval_9000`` before ``eval_20000``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def recorded_settings(run_folder):
    """What the run in ``run_folder`` was made with, seed aside (None where not recorded)."""
    for name, key in (("settings.json", None), ("result.json", "settings")):
        path = os.path.join(run_folder, name)
        if os.path.isfile(path):
            with open(path) as f:
                settings = json.load(f)
            settings = settings.get(key) if key else settings
            return {k: v for k, v in (settings or {}).items() if k != "seed"} or None
    return None


def collect(folders):
    """{(row, task, attack, eps): {seed: robust accuracy}} from the run folders of ``folders``."""
    values, origin, settings = {}, {}, {}
    # read once per run, not once per evaluation file; per call, so a rerun sees edited files
    settings_of = functools.lru_cache(maxsize=None)(recorded_settings)
    for folder in folders:
        for pattern, label in LAYOUTS:
            for path in sorted(glob.glob(os.path.join(folder, "runs", *pattern)), key=natural):
                parts = os.path.relpath(path, os.path.join(folder, "runs")).split(os.sep)
                row = label(*parts)
                run = os.path.dirname(os.path.dirname(path))
                recorded = settings_of(run)
                if recorded is not None and run not in settings.setdefault(row, {}):
                    # with every earlier run of the row that recorded some: a key only some recorded
                    # (model_config) is compared where both have it
                    recorded = completed(recorded)  # once per run, not once per comparison
                    for earlier_run, earlier in settings[row].items():
                        changed = named_differences(earlier, recorded, run, partial=PARTIAL_SETTINGS)
                        if changed:
                            raise SystemExit(f"{row!r}: {earlier_run} and {run} were made with other settings: "
                                             f"{'; '.join(changed)}. Tabulate the folders of one setting together")
                    settings[row][run] = recorded
                with open(path) as f:
                    cards = json.load(f)["cards"]
                for card in cards:
                    key = (row, card["task"], card["attack"], float(card["eps"]))
                    seen = origin.setdefault((key, card["seed"]), path)
                    if seen != path:
                        raise SystemExit(f"seed {card['seed']} of {row!r} is in both {seen} and {path}: "
                                         "tabulate folders of different seeds")
                    values.setdefault(key, {})[card["seed"]] = float(card["robust_acc"])
    return values


def to_markdown(values):
    columns = sorted({k[1:] for k in values}, key=lambda c: (c[0] != "digit", c[1] != "pgd", c[0], c[1], c[2]))
    rows = list(dict.fromkeys(k[0] for k in values))
    head = ["run"] + [f"{task} {'' if attack == 'pgd' else attack + ' '}{eps:g}" for task, attack, eps in columns]
    lines = ["| " + " | ".join(head + ["seeds"]) + " |", "|" + "---|" * (len(head) + 1)]
    for row in rows:
        by_column = [values.get((row,) + column, {}) for column in columns]
        seeds = sorted(set().union(*by_column))
        cells = [row]
        for by_seed in by_column:
            v = list(by_seed.values())
            cell = ("–" if not v else f"{v[0]:.1f}" if len(v) == 1
                    else f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}")
            if v and sorted(by_seed) != seeds:  # a cell of fewer seeds than its row says
                cell += f" (seed{'s' if len(v) > 1 else ''} {','.join(map(str, sorted(by_seed)))})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells + [",".join(map(str, seeds))]) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="folder", help="benchmark output folders (holding runs/)")
    args = p.parse_args(argv)
    values = collect(args.folders)
    if not values:
        raise SystemExit(f"no runs/*/seed*/eval_*/robustness.json or runs/*/eval_*/robustness.json "
                         f"under {args.folders}")
    print(to_markdown(values))


if __name__ == "__main__":
    main()
