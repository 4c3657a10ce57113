"""Frozen mean representations ``mu(x)`` of any Pythae encoder, computed in batches."""

import contextlib
import itertools
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attack_mode import attack_mode


def as_encoder(model_or_encoder) -> torch.nn.Module:
    """A Pythae model's ``.encoder`` (DDP-unwrapped), or the encoder itself."""
    model = getattr(model_or_encoder, "module", model_or_encoder)
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, torch.nn.Module):
        raise TypeError(f"expected a Pythae model or encoder (nn.Module), got {type(model_or_encoder)}")
    return encoder


def default_device(device: Optional[str] = None) -> str:
    """``device`` once checked, or ``"cuda"`` when this machine has a GPU and ``"cpu"`` otherwise.

    Raises:
        ValueError: ``device`` is no device this machine has (``"gpu"``, ``"cuda"`` without a
            GPU, ``"cuda:3"`` with fewer GPUs): refused before any work rather than failing in
            the first tensor move, minutes into an evaluation.
    """
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise ValueError(f"device={device!r} but this machine has {count} CUDA device(s); use device='cpu'")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} but MPS is not available here; use device='cpu'")
    elif parsed.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    return device


def check_images(X, name: str = "X", shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Validates ``(N, C, H, W)`` images in [0, 1] (of ``(C, H, W)`` = ``shape`` if given);
    returns a float32 CPU tensor."""
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
    if X.ndim != 4:
        raise ValueError(f"{name} must be images of shape (N, C, H, W), got shape {tuple(X.shape)}")
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape))}) (the model's "
                         f"input_dim), got {tuple(X.shape)}")
    if len(X) == 0:
        raise ValueError(f"{name} must hold at least 1 image, got 0")
    X = X.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} must be finite pixels in [0, 1], got NaN or Inf values")
    lo, hi = float(X.min()), float(X.max())
    if not (lo >= 0 and hi <= 1):
        raise ValueError(f"{name} must hold pixels in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return X


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` lives: the device of its first parameter or buffer (CPU for a module
    without tensors, which runs wherever its inputs are)."""
    return next(itertools.chain(module.parameters(), module.buffers()), torch.empty(0)).device


@contextlib.contextmanager
def evaluated_on(device, *modules: torch.nn.Module) -> Iterator[None]:
    """Runs the block with ``modules`` moved to ``device`` and in :func:`attack_mode` (eval
    mode, parameters out of autograd); puts back each one's device and submodule modes."""
    homes = [module_device(m) for m in modules]
    try:
        with contextlib.ExitStack() as stack:
            for m in modules:
                stack.enter_context(attack_mode(m.to(device)))
            yield
    finally:
        for m, home in zip(modules, homes):
            m.to(home)


def embed(
    model_or_encoder,
    X,
    batch_size: int = 256,
    device: Optional[str] = None,
    progress: bool = False,
) -> np.ndarray:
    """``mu(x)`` for every image, as float32 numpy ``(N, d)``; encoder in eval mode, no grad.

    The encoder's train/eval modes (per submodule) are restored and nothing in it changes.
    """
    encoder = as_encoder(model_or_encoder)
    X = check_images(X)
    device = default_device(device)
    out = []
    with evaluated_on(device, encoder), torch.no_grad():
        for start in tqdm(range(0, len(X), batch_size), desc="embedding", disable=not progress, leave=False):
            out.append(encoder(X[start : start + batch_size].to(device)).embedding.float().cpu())
    return torch.cat(out).numpy()
