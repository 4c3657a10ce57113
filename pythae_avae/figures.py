"""Figures of the paper, as PNG files (matplotlib, no screen needed).

* :func:`plot_chains` — Fig. 1: iterated encode/decode chains ``x_{t+1} = g(mu(x_t))`` of
  several models from the same start images;
* :func:`plot_accuracy_curves` — Fig. 5: adversarial accuracy against any swept quantity
  (evaluation radius, training iteration, rho) from result rows.
"""

from collections import Counter
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np
import torch

from .diagnostics import input_dim, unwrapped
from .evaluation.features import check_images, evaluated_on
from .validation import check_int


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def encode_decode_chain(model, images: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """``(steps + 1, N, C, H, W)``: the images and ``steps`` rounds of ``g(mu(.))``; the
    model's modes (per submodule) are restored afterwards."""
    check_int(steps, "steps", minimum=0)
    model = unwrapped(model)
    device = next(model.encoder.parameters()).device
    x = check_images(images, "images", input_dim(model)).to(device)
    chain = [x.cpu()]
    with evaluated_on(device, model.encoder, model.decoder):
        for _ in range(steps):
            x = model.decoder(model.encoder(x).embedding)["reconstruction"]
            chain.append(x.cpu())
    return torch.stack(chain)


def plot_chains(models: Mapping[str, object], images, path: str, steps: int = 8) -> str:
    """Fig. 1: one block per model, one row per start image, one column per chain step."""
    if not models:
        raise ValueError("models must map at least one name to a model, got none")
    plt = _pyplot()
    chains = {name: encode_decode_chain(m, images, steps) for name, m in models.items()}
    n_images = len(images)
    fig, axes = plt.subplots(
        n_images * len(chains), steps + 1, figsize=(1.1 * (steps + 1), 1.1 * n_images * len(chains)),
        squeeze=False,
    )
    for b, (name, chain) in enumerate(chains.items()):
        for i in range(n_images):
            for t in range(steps + 1):
                ax = axes[b * n_images + i, t]
                img = chain[t, i].permute(1, 2, 0).numpy()
                # pixels are in [0, 1]: grey images too are drawn on that scale, not auto-contrasted
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if t == 0 and i == 0:
                    ax.set_ylabel(name, fontsize=8)
                if b == 0 and i == 0:
                    ax.set_title("x" if t == 0 else f"t={t}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_accuracy_curves(
    rows: Iterable[Dict],
    path: str,
    x: str = "eps",
    task: Optional[str] = None,
    attack: Optional[str] = None,
    series: str = "model",
    title: str = "",
) -> str:
    """Fig. 5: accuracy (%) against ``rows[x]``, one line per value of ``rows[series]``.

    Args:
        rows: dicts with at least ``x``, ``series`` and ``accuracy`` keys (evaluation rows).
        task, attack: keep only rows of this task / attack (rows without the key are kept).
    """
    plt = _pyplot()
    lines: Dict[str, List] = {}
    for row in rows:
        if task is not None and row.get("task", task) != task:
            continue
        if attack is not None and row.get("attack", attack) != attack:
            continue
        lines.setdefault(str(row[series]), []).append((row[x], row["accuracy"]))
    if not lines:
        raise ValueError(f"no rows to plot for task={task!r}, attack={attack!r}")
    for name, points in lines.items():
        repeated = sorted(v for v, count in Counter(p[0] for p in points).items() if count > 1)
        if repeated:  # e.g. both tasks or PGD and AutoAttack: a zig-zag, not a curve
            raise ValueError(
                f"line {series}={name!r} has several rows at {x}={repeated}: pass task= and attack= (or a "
                "series that tells them apart) so each line has one point per value"
            )
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, points in lines.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel(x)
    ax.set_ylabel("adversarial accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
