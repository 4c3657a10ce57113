"""``evaluate_robustness``: the paper's protocol in one call, and its reports.

For every task: fit a linear probe on the frozen ``mu(x)`` of the training images, compose it
with the encoder, attack the composition on the test images at each L-inf radius, and report
adversarial accuracy (% of examples the attack fails on; clean mistakes count as broken) beside
balanced accuracy and the majority-class rate (CelebA attributes are up to ~98% one class).
Results are written as RobustBench-style model-card JSON, Markdown and CSV.
"""

import csv
import datetime
import io
import json
import os
import platform
import warnings
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..validation import check_int
from .attacks import (LOSSES, PGD_STEPS, autoattack_config, autoattack_robust_mask, check_eps, correct_mask,
                      pgd_robust_mask)
from .features import as_encoder, check_images, default_device, module_device
from .linear_probe import LinearProbe, check_labels, fit_probes

ATTACKS = ("pgd", "autoattack")
WORST = "worst"  # the rows that combine the attacks (when several ran) example by example
COLUMNS = ("model", "task", "n_classes", "eps", "attack", "accuracy", "balanced_accuracy",
           "clean_accuracy", "majority_rate", "n", "details", "seed")


class RobustnessTable:
    """Rows of ``evaluate_robustness`` (dicts with :data:`COLUMNS`), with exports."""

    def __init__(self, rows: Optional[List[Dict]] = None):
        self.rows = list(rows or [])

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def select(self, **where) -> List[Dict]:
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def accuracy(self, task: str, eps: float, attack: str = "pgd") -> Optional[float]:
        for r in self.rows:
            if r["task"] == task and abs(r["eps"] - eps) < 1e-12 and r["attack"] == attack:
                return r["accuracy"]
        return None

    def majority_rate(self, task: str, attack: str = "pgd") -> Optional[float]:
        """Accuracy (%) of always predicting the most frequent class of the images ``attack``
        ran on for ``task`` (AutoAttack's rows may hold a subset of PGD's)."""
        rows = self.select(task=task, attack=attack)
        return rows[0]["majority_rate"] if rows else None

    def to_markdown(self) -> str:
        head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
        return head + "\n".join("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in self.rows)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r[c] for c in COLUMNS} for r in self.rows)
        return buffer.getvalue()


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _rates(robust: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """Accuracy and balanced accuracy (%) of a per-example success mask."""
    per_class = [robust[y == c].mean() for c in np.unique(y)]
    return 100.0 * float(robust.mean()), 100.0 * float(np.mean(per_class))


def _warn_of_absent_classes(task: str, classes: np.ndarray, labels: np.ndarray, warned: set) -> None:
    """Warns, once per task and image count, that a class of the probe is not among the attacked
    images: their balanced accuracy (scikit-learn's definition) averages over the classes present,
    so a rare class missing from a small subset (e.g. Bald in AutoAttack's first 100 faces) makes
    it the other classes' accuracy."""
    if len(labels) in warned:
        return
    warned.add(len(labels))
    present = set(np.unique(labels).tolist())
    absent = [c for c in classes.tolist() if c not in present]
    if absent:
        warnings.warn(f"task {task!r}: the {len(labels)} attacked test images hold no example of class(es) "
                      f"{absent}; their balanced accuracy averages over the {len(classes) - len(absent)} "
                      f"classes present. Attack more images for a balanced accuracy over all {len(classes)}")


def _as_data(data, name: str):
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Mapping)):
        raise TypeError(f"{name} must be a pair (images, {{task: labels}}), got {type(data).__name__}")
    X = check_images(data[0], f"{name}[0]")
    return X, {task: check_labels(y, len(X), f"{name}[1][{task!r}]") for task, y in data[1].items()}


def _check_tasks(tasks, labels: Mapping, name: str) -> None:
    missing = [t for t in tasks if t not in labels]
    if missing:
        raise ValueError(f"tasks {missing} lack labels in {name}")


def evaluate_robustness(
    model,
    train_data,
    test_data,
    tasks: Optional[Sequence[str]] = None,
    eps: Iterable[float] = (0.0, 0.1, 0.2),
    attacks: Sequence[str] = ("pgd",),
    n_examples: Optional[int] = None,
    output_dir: Optional[str] = None,
    model_name: str = "model",
    pgd_steps: int = PGD_STEPS,
    pgd_restarts: int = 1,
    pgd_losses: Sequence[str] = ("ce", "margin"),
    autoattack_n: Optional[int] = None,
    estimator=None,
    standardize: bool = False,
    seed: int = 0,
    device: Optional[str] = None,
    progress: bool = True,
    batch_size: int = 500,
    probes: Optional[Mapping[str, LinearProbe]] = None,
    autoattack_eps: Optional[Iterable[float]] = None,
) -> RobustnessTable:
    """Linear-probe robustness of any Pythae encoder, per task, radius and attack.

    Args:
        model: a Pythae model (its encoder is used) or encoder; never modified.
        train_data: ``(X_train, {task: y_train})`` to fit the probes (no attack); None when
            ``probes`` are given.
        test_data: ``(X_test, {task: y_test})`` to attack. Images are ``(N, C, H, W)`` in [0, 1].
        tasks: task names (default: all of ``test_data``'s).
        eps: L-inf radii on [0, 1] pixels (``eps = 0`` is clean accuracy).
        attacks: ``"pgd"`` (ours: ``pgd_losses`` each with ``pgd_restarts`` restarts of
            ``pgd_steps`` steps; per-example worst case) and/or ``"autoattack"``
            (``pyautoattack``, configured by class count; for 2 and 3 classes it is combined
            with margin PGD, which stands in for the DLR losses). With both, rows of attack
            ``"worst"`` follow: the per-example worst case of the two (an example counts as
            robust only if neither breaks it), on AutoAttack's ``autoattack_n`` examples.
        n_examples: attack only the first ``n_examples`` test images.
        autoattack_n: AutoAttack on only the first ``autoattack_n`` of those (it is slow on CPU).
        autoattack_eps: AutoAttack's own radii (default: ``eps``), e.g. PGD at 0, 0.1 and 0.2
            but AutoAttack at 0.1 only, in one call. PGD also runs at any of them missing from
            ``eps``, so each ``"worst"`` row combines both attacks' masks on the same images.
        estimator, standardize: the probe (default ``LogisticRegression(max_iter=5000)``, raw
            ``mu``).
        probes: ``{task: LinearProbe}`` already fitted on ``model``'s encoder (e.g. by
            :func:`fit_probes`), to attack the same probes in several calls (other images, radii
            or attacks) without refitting them; ``train_data``, ``estimator`` and
            ``standardize`` are then left unset.
        output_dir: if given, writes ``robustness.json`` (RobustBench-style cards),
            ``robustness.md`` and ``robustness.csv`` there.

    Returns:
        A :class:`RobustnessTable` with one row per (task, eps, attack), and per (task, eps)
        for ``"worst"`` when several attacks ran.
    """
    unknown = set(attacks) - set(ATTACKS)
    if unknown or not attacks:
        raise ValueError(f"attacks must be a non-empty subset of {ATTACKS}, got {tuple(attacks)}")
    if "pgd" in attacks and (isinstance(pgd_losses, str) or not pgd_losses):
        raise ValueError(f"pgd_losses must be a non-empty sequence of {LOSSES}, got {pgd_losses!r}")
    radii = _radii(attacks, _radius_list(eps, "eps"), autoattack_eps)
    # a negative count would slice off the last images (X[:-3]): a table of other images, unsaid
    if n_examples is not None:
        check_int(n_examples, "n_examples", why="test images to attack, or None for all")
    if autoattack_n is not None:
        check_int(autoattack_n, "autoattack_n", minimum=1 if "autoattack" in attacks else 0,
                  why="AutoAttack's first test images, or None for all of n_examples")
    check_int(batch_size, "batch_size", why="images per forward pass")
    check_int(seed, "seed", minimum=0, why="seeds the attacks' random starts")
    device = default_device(device)
    X_test, y_test = _as_data(test_data, "test_data")
    tasks = list(tasks) if tasks is not None else list(y_test)
    _check_tasks(tasks, y_test, "test_data")
    if n_examples is not None:
        X_test, y_test = X_test[:n_examples], {t: y[:n_examples] for t, y in y_test.items()}
    encoder = as_encoder(model)
    if probes is None:
        X_train, y_train = _as_data(train_data, "train_data")
        _check_tasks(tasks, y_train, "train_data")
        probes = fit_probes(encoder, X_train, {t: y_train[t] for t in tasks}, estimator=estimator,
                            standardize=standardize, device=device, progress=progress)
    else:
        if train_data is not None or estimator is not None or standardize:
            raise ValueError("probes are already fitted: leave train_data, estimator and standardize unset")
        probes = _check_probes(probes, tasks, encoder)
    original_device = module_device(encoder)
    rows = []
    try:
        encoder.to(device)
        for task in tasks:
            probe = probes[task]
            classifier = probe.to_torch().to(device)
            labels = y_test[task]
            y_idx = torch.from_numpy(probe.label_indices(labels)).long()
            n_classes = len(probe.classes_)
            # the attacked classifier's own verdict on the clean images: the eps = 0 rows and every
            # row's clean accuracy, equal by construction (scikit-learn's float64 predict could
            # differ from the float32 head on a point at the boundary)
            clean = correct_mask(classifier, X_test, y_idx, batch_size, device)
            warned = set()

            def row(attack, e, robust, details, flags):
                n = len(robust)  # AutoAttack's rows: its first autoattack_n images
                _warn_of_absent_classes(task, probe.classes_, labels[:n], warned)
                acc, bal = _rates(robust, labels[:n])
                majority = 100.0 * float(np.bincount(y_idx[:n].numpy()).max() / n)
                if flags:
                    details += f"; flagged by AutoAttack's checks ({len(flags)}, see the cards' flags)"
                return dict(model=model_name, task=task, n_classes=n_classes, eps=e, attack=attack,
                            accuracy=acc, balanced_accuracy=bal, clean_accuracy=_rates(clean[:n], labels[:n])[0],
                            majority_rate=majority, n=n, details=details, seed=seed, flags=flags)

            masks, flagged = {attack: {} for attack in attacks}, {}
            for attack in attacks:
                n = len(labels) if attack == "pgd" or autoattack_n is None else min(autoattack_n, len(labels))
                for e in radii[attack]:
                    robust, details, flags = (clean[:n], "clean", []) if e == 0 else _attack(
                        attack, classifier, X_test[:n], y_idx[:n], e, n_classes, pgd_steps, pgd_restarts,
                        pgd_losses, batch_size, device, seed, progress)
                    masks[attack][e] = robust
                    flagged.setdefault(e, []).extend(flags)
                    rows.append(row(attack, e, robust, details, flags))
            if len(attacks) > 1:  # the final number: an example counts only if every attack fails on it
                for e in (e for e in radii[attacks[0]] if all(e in m for m in masks.values())):
                    n = min(len(m[e]) for m in masks.values())
                    robust = np.logical_and.reduce([m[e][:n] for m in masks.values()])
                    rows.append(row(WORST, e, robust, f"per-example worst case of {'+'.join(attacks)} "
                                                      f"on the first {n} test images", flagged[e]))
    finally:
        encoder.to(original_device)
    table = RobustnessTable(rows)
    if output_dir is not None:
        write_reports(table, output_dir, model_name, probes)
    return table


def _radii(attacks, eps: List[float], autoattack_eps) -> Dict[str, List[float]]:
    """Each attack's radii: ``eps``, or AutoAttack's own with PGD run at their union (a worst
    row needs both attacks at its radius)."""
    radii = {attack: eps for attack in attacks}
    if autoattack_eps is None:
        return radii
    if "autoattack" not in attacks:
        raise ValueError(f"autoattack_eps is for AutoAttack, which attacks={tuple(attacks)} does not run")
    radii["autoattack"] = _radius_list(autoattack_eps, "autoattack_eps")
    if "pgd" in attacks:
        radii["pgd"] = eps + [e for e in radii["autoattack"] if e not in eps]
    return radii


def _radius_list(values, name: str) -> List[float]:
    if isinstance(values, (int, float, str)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of L-inf radii, e.g. (0.0, 0.1), got {values!r}")
    radii = [check_eps(e) for e in values]
    if not radii:
        raise ValueError(f"{name} must name at least one L-inf radius, got none")
    return radii


def _check_probes(probes, tasks, encoder) -> Dict[str, LinearProbe]:
    """The given probes of ``tasks``, each fitted and attached to ``encoder`` (a probe of
    another encoder would be attacked through that encoder: a silently wrong table)."""
    if not isinstance(probes, Mapping):
        raise TypeError(f"probes must map task names to fitted LinearProbes, got {type(probes).__name__}")
    for task in tasks:
        probe = probes.get(task)
        if not isinstance(probe, LinearProbe) or not hasattr(probe, "estimator_"):
            raise ValueError(f"probes[{task!r}] must be a fitted LinearProbe, got {probe!r}")
        if as_encoder(probe.encoder) is not encoder:
            raise ValueError(f"probes[{task!r}] was fitted on another encoder than model's")
    return {task: probes[task] for task in tasks}


def _attack(attack, classifier, X, y, eps, n_classes, steps, restarts, losses, batch_size, device, seed, progress):
    """``(robust mask, details, flags)``: flags are the warnings of AutoAttack's reliability checks."""
    if attack == "pgd":
        robust = pgd_robust_mask(classifier, X, y, eps, steps, restarts, losses, batch_size=batch_size,
                                 device=device, seed=seed, progress=progress)
        return robust, f"PGD-{steps} x{restarts} restarts, losses {'+'.join(losses)}, step 2.5eps/steps", []
    version, names, n_targets = autoattack_config(n_classes)
    flags = []
    robust = autoattack_robust_mask(classifier, X, y, eps, n_classes, batch_size=batch_size,
                                    device=device, seed=seed, progress=progress, flags=flags)
    details = f"AutoAttack {version}" + (f" {'+'.join(names)}" if names else "")
    details += f", {n_targets} target classes" if n_targets else ""
    if n_classes <= 3:  # DLR-based attacks are undefined or partial: add margin PGD (notes §1.6)
        robust &= pgd_robust_mask(classifier, X, y, eps, PGD_STEPS, 1, ("margin",), batch_size=batch_size,
                                  device=device, seed=seed, progress=progress)
        details += f" + margin PGD-{PGD_STEPS}"
    return robust, details, flags


def model_cards(table: RobustnessTable, model_name: str) -> List[Dict]:
    """RobustBench ``ModelInfo``-shaped entries (accuracies and eps as strings), plus the
    fields RobustBench lacks (task, n_classes, attack details, n_examples, ...)."""
    cards = []
    for r in table.rows:
        cards.append({
            "link": "", "name": model_name, "authors": "", "additional_data": False,
            "number_forward_passes": 1, "dataset": r["task"], "venue": "", "architecture": model_name,
            "eps": f"{r['eps']:g}", "threat_model": "Linf", "clean_acc": f"{r['clean_accuracy']:.2f}",
            "reported": "", "autoattack_acc": f"{r['accuracy']:.2f}" if r["attack"] == "autoattack" else "",
            "robust_acc": f"{r['accuracy']:.2f}", "attack": r["attack"], "attack_details": r["details"],
            "balanced_acc": f"{r['balanced_accuracy']:.2f}", "majority_rate": f"{r['majority_rate']:.2f}",
            "task": r["task"], "n_classes": r["n_classes"], "n_examples": r["n"], "seed": r["seed"],
            "footnote": "Linear probe on the frozen encoder mean mu(x); not a RobustBench leaderboard entry.",
            # RobustBench's flag of an evaluation that may overestimate robustness
            "unreliable": bool(r.get("flags")), "flags": list(r.get("flags", [])),
        })
    return cards


def write_reports(table: RobustnessTable, output_dir: str, model_name: str, probes=None) -> Dict[str, str]:
    os.makedirs(output_dir, exist_ok=True)
    paths = {ext: os.path.join(output_dir, f"robustness.{ext}") for ext in ("json", "md", "csv")}
    meta = {
        "model": model_name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "probes": {t: repr(p.estimator_) for t, p in (probes or {}).items()},
    }
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta, "cards": model_cards(table, model_name)}, f, indent=2)
    with open(paths["md"], "w") as f:
        f.write(f"# Robustness of {model_name}\n\n{table.to_markdown()}\n")
    with open(paths["csv"], "w") as f:
        f.write(table.to_csv())
    return paths


def format_table1(results: Mapping[str, RobustnessTable], tasks: Sequence[str], eps: Sequence[float],
                  attack: str = "pgd") -> str:
    """Markdown shaped like the paper's Table 1: one row per model, columns task x eps."""
    header = ["model"] + [f"{t} {e:g}" for t in tasks for e in eps] + ["majority " + "/".join(tasks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, table in results.items():
        cells = [name]
        for t in tasks:
            for e in eps:
                value = table.accuracy(t, e, attack)
                cells.append("–" if value is None else f"{value:.1f}")
        majority = [table.majority_rate(t, attack) for t in tasks]
        cells.append("/".join("–" if m is None else f"{m:.1f}" for m in majority))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
