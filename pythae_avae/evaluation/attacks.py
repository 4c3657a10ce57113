"""L-infinity attacks on an image classifier ``x -> logits`` with pixels in [0, 1].

* :func:`pgd_linf` — our PGD: random start, ``steps`` sign-gradient steps, restarts, CE or
  margin loss, best-iterate bookkeeping (an example is broken if ANY iterate of ANY restart
  is misclassified); gradients w.r.t. the input only.
* :func:`pgd_robust_mask` — batched PGD over a dataset, with several losses; an example is
  robust only if every loss and restart fails (cross-entropy alone overestimates robustness on
  linear heads by 5-12 points, attack notes §0.5).
* :func:`autoattack_robust_mask` — ``pyautoattack`` configured from the class count (the
  'standard' suite crashes on 7 and 2 classes as installed, attack notes §1.6).

Every function runs the model in :func:`~pythae_avae.attack_mode.attack_mode` (eval mode, no
weight gradients) and restores it afterwards; a clean mistake counts as broken; results are
re-checked by calling the model on the returned points.
"""

import logging
import re
import warnings
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..attack_mode import attack_mode
from ..validation import check_int, check_number
from .features import check_images, module_device

LOSSES = ("ce", "margin")
#: default PGD iterations: the reporting strength of the attack notes (§3.1); fewer are for quick checks
PGD_STEPS = 100


def check_eps(eps: float) -> float:
    return check_number(eps, "eps", why="L-inf radius on [0, 1] pixels")


def _check_class_indices(y, n: int, name: str = "y") -> torch.Tensor:
    """``y`` as class indices (long) of shape ``(n,)``, one per image."""
    y = torch.as_tensor(y)
    if y.shape != (n,) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class indices of shape ({n},), one per image, "
                         f"got {y.dtype} of shape {tuple(y.shape)}")
    return y.long()


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-example loss the attacker maximises."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":  # max_{j != y} z_j - z_y: does not saturate, targets the nearest class
        true = logits.gather(1, y[:, None])[:, 0]
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
        return other - true
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def pgd_linf(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = PGD_STEPS,
    step_size: Optional[float] = None,
    restarts: int = 1,
    loss: str = "ce",
    random_start: bool = True,
    generator: Optional[torch.Generator] = None,
):
    """Untargeted L-inf PGD on one batch.

    Args:
        model: maps ``(N, C, H, W)`` in [0, 1] to logits ``(N, K)``; put in eval mode here.
        x, y: images and class indices (into the logits).
        eps: radius; ``steps`` >= 1; ``step_size`` default ``2.5 eps / steps``.
        restarts: independent random starts (>= 1).
        loss: ``"ce"`` or ``"margin"``.
        generator: a CPU ``torch.Generator`` for the random starts (reproducible).

    Returns:
        ``(x_adv, broken)``: for broken examples the first misclassified iterate, else ``x``
        itself (an attack that failed has no point to show); ``broken`` is a bool tensor.
        ``x_adv`` is detached, within ``eps`` of ``x``, in [0, 1].
    """
    eps = check_eps(eps)
    steps = check_int(steps, "steps", why="PGD iterations")
    restarts = check_int(restarts, "restarts", why="random starts")
    if step_size is None:
        step_size = 2.5 * eps / steps
    else:  # a negative step would descend the loss: a silently weaker attack
        step_size = check_number(step_size, "step_size", strict=True, why="or None for 2.5 eps / steps")
    # outside [0, 1] the projection below would return points outside the threat model
    # NaN compares False with both bounds: checked apart, or its logits' argmax 0 counted as robust
    if (not x.is_floating_point() or x.numel() == 0 or not bool(torch.isfinite(x).all()) or float(x.min()) < 0
            or float(x.max()) > 1):
        raise ValueError(f"x must be a non-empty float tensor of pixels in [0, 1], got {x.dtype} "
                         + (f"values in [{float(x.min()):.4g}, {float(x.max()):.4g}]" if x.numel() else "and empty"))
    x, y = x.detach(), _check_class_indices(y, len(x)).to(x.device)
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    with attack_mode(model), torch.enable_grad():
        with torch.no_grad():
            broken = model(x).argmax(1) != y
        best = x.clone()
        if eps == 0:
            return best, broken
        for _ in range(restarts):
            if random_start:
                noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                x_adv = torch.max(torch.min(x + eps * (2 * noise - 1), upper), lower)
            else:
                x_adv = x.clone()
            for step in range(steps + 1):
                x_adv.requires_grad_(True)
                logits = model(x_adv)
                newly = (logits.argmax(1) != y) & ~broken
                best[newly] = x_adv.detach()[newly]
                broken |= newly
                if step == steps or bool(broken.all()):
                    break
                (grad,) = torch.autograd.grad(attack_loss(logits, y, loss).sum(), x_adv)
                with torch.no_grad():
                    x_adv = torch.max(torch.min(x_adv + step_size * grad.sign(), upper), lower)
            if bool(broken.all()):
                break
    return best.detach(), broken


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False)


def _checked_inputs(model, X, y, batch_size: int, device: Optional[str]):
    """The dataset-level attacks' inputs checked: float32 images in [0, 1], long labels of
    shape ``(N,)``, ``batch_size`` >= 1, and the device (default: the model's own)."""
    X = check_images(X, "X")
    return (X, _check_class_indices(y, len(X)), check_int(batch_size, "batch_size", why="images per attacked batch"),
            device or str(module_device(model)))


def correct_mask(model, X: torch.Tensor, y: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    """Per-example ``model(X).argmax(1) == y`` in batches, under :func:`attack_mode`: the
    accuracy at eps = 0 on clean ``X``, the robustness on an attack's output."""
    with attack_mode(model), torch.no_grad():
        return torch.cat([model(X[i : i + batch_size].to(device)).argmax(1).cpu() == y[i : i + batch_size]
                          for i in range(0, len(X), batch_size)]).numpy()


def pgd_robust_mask(
    model,
    X: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = PGD_STEPS,
    restarts: int = 1,
    losses: Sequence[str] = LOSSES,
    step_size: Optional[float] = None,
    batch_size: int = 500,
    device: Optional[str] = None,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Per-example robustness (bool numpy ``(N,)``) under PGD with each loss in ``losses``.

    An example is robust only if it is correctly classified and survives every loss and
    restart. The found points are re-checked: within ``eps``, in [0, 1], misclassified.
    """
    eps = check_eps(eps)
    X, y, batch_size, device = _checked_inputs(model, X, y, batch_size, device)
    if isinstance(losses, str) or not losses:  # no loss would attack nothing: all "robust"
        raise ValueError(f"losses must be a non-empty sequence of {LOSSES}, got {losses!r}")
    for loss in losses:
        attack_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), loss)
    generator = torch.Generator().manual_seed(seed)
    robust = []
    for start in _batches(len(X), batch_size, progress, f"PGD eps={eps:g}"):
        xb = X[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        alive = torch.ones(len(xb), dtype=torch.bool, device=device)
        for loss in losses:
            idx = alive.nonzero()[:, 0]
            if len(idx) == 0:
                break
            x_adv, broken = pgd_linf(model, xb[idx], yb[idx], eps, steps, step_size, restarts, loss,
                                     generator=generator)
            _verify(model, xb[idx], yb[idx], x_adv, broken, eps)
            alive[idx[broken]] = False
        robust.append(alive.cpu())
    return torch.cat(robust).numpy()


def _verify(model, x, y, x_adv, broken, eps):
    """Post-conditions: the threat model holds (else a bug: raised) and broken points are
    misclassified when re-run (else warned about)."""
    if float((x_adv - x).abs().max()) > eps + 1e-5 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        raise RuntimeError("attack left the threat model (L-inf ball intersected with [0, 1])")
    with attack_mode(model), torch.no_grad():
        wrong = model(x_adv).argmax(1) != y
    flipped = int((broken & ~wrong).sum())
    if flipped:  # as for AutoAttack: a point misclassified in one pass counts as broken
        warnings.warn(f"{flipped} adversarial point(s) PGD found misclassified were classified correctly when "
                      "re-run (a point on the decision boundary and non-deterministic kernels, e.g. cuDNN's "
                      "benchmark mode); counted as broken", RuntimeWarning)


#: AutoAttack's DLR-loss attacks and the class count their loss needs (attack notes §1.6)
DLR_MIN_CLASSES = {"apgd-dlr": 3, "apgd-t": 4}


def n_target_classes(n_classes: int) -> int:
    """Classes APGD-T and FAB-T target: the 9 runners-up of AutoAttack's 'standard', or every
    other class when there are fewer."""
    return min(9, n_classes - 1)


def autoattack_config(n_classes: int):
    """``(version, attacks, n_target_classes)`` for ``n_classes`` (attack notes §1.6).

    K >= 4: 'standard' with :func:`n_target_classes` target classes for APGD-T and FAB-T.
    K = 3: custom APGD-CE, APGD-DLR (untargeted DLR needs K >= 3), FAB, Square.
    K = 2: custom APGD-CE, FAB, Square (DLR is undefined); callers add margin PGD.
    """
    check_int(n_classes, "n_classes", minimum=2)
    if n_classes >= 4:
        return "standard", None, n_target_classes(n_classes)
    if n_classes == 3:
        return "custom", ["apgd-ce", "apgd-dlr", "fab", "square"], None
    return "custom", ["apgd-ce", "fab", "square"], None


#: the warnings of AutoAttack's checks that say its robustness may be overestimated (its class
#: count notices are not: e.g. "with only 3 classes ..." comes with every 3-class list we run)
RELIABILITY_CHECKS = ("randomized defense", "probability distribution", "zero gradient",
                      "Square Attack has decreased", "dynamic defense")


class _WarningCollector(logging.Handler):
    """Keeps the messages of the reliability checks AutoAttack logs (its logger has no handler
    of its own: without this they reach only stderr), one flag per check: APGD checks gradients
    once per batch, restart and target, and its count differs from one batch to the next."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.reports = {}  # the message with its numbers blanked -> its distinct messages, in order

    def emit(self, record):
        message = record.getMessage()
        if any(check in message for check in RELIABILITY_CHECKS):
            reports = self.reports.setdefault(re.sub(r"\d+", "#", message), [])
            if message not in reports:
                reports.append(message)

    @property
    def messages(self) -> List[str]:
        """One per check: its first message, and the numbers of the others (a count per batch)."""
        numbers = lambda message: "/".join(re.findall(r"\d+", message))
        return [first + (f" (also reported with {', '.join(map(numbers, more))})" if more else "")
                for first, *more in self.reports.values()]


class _Forwarder(logging.Handler):
    """Passes a record on to the handlers of the logger's ancestors (the root's, say) if the
    caller's own level let it through: the level is lowered during the run only so that the
    collector hears the checks. Not through ``callHandlers``, whose fallback to
    ``logging.lastResort`` would print every warning where no logging is set up."""

    def __init__(self, log: logging.Logger, level: int):
        super().__init__(level=level)
        self.parent = log.parent

    def emit(self, record):
        ancestor = self.parent
        while ancestor is not None:
            for handler in ancestor.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            ancestor = ancestor.parent if ancestor.propagate else None


def autoattack_robust_mask(
    model,
    X: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    n_classes: Optional[int] = None,
    attacks: Optional[List[str]] = None,
    batch_size: int = 500,
    device: Optional[str] = None,
    seed: int = 0,
    progress: bool = False,
    flags: Optional[list] = None,
) -> np.ndarray:
    """Per-example robustness under AutoAttack (``pyautoattack``), configured by class count.

    Args:
        n_classes: the model's number of logits (default: read from its output; a value that
            disagrees with the output is refused rather than crashing inside AutoAttack).
        attacks: override the attack list (runs ``version='custom'``); targeted attacks in it
            target :func:`n_target_classes` classes.
        progress: log AutoAttack's per-attack accuracies (its DEBUG lines) to the console.
        flags: a list that receives the warnings of AutoAttack's own reliability checks (a
            randomized or dynamic model, probabilities instead of logits, points with zero
            gradient, Square breaking points the gradient attacks missed: signs of an
            overestimated robustness). Each is also issued as a ``RuntimeWarning``.
    """
    from pyautoattack import AutoAttack, checks

    eps = check_eps(eps)
    X, y, batch_size, device = _checked_inputs(model, X, y, batch_size, device)
    with attack_mode(model), torch.no_grad():
        outputs = model(X[:1].to(device)).shape[1]
    if n_classes is not None and n_classes != outputs:
        raise ValueError(f"n_classes must be the model's number of logits, {outputs}, got {n_classes}")
    n_classes = outputs
    version, default_attacks, _ = autoattack_config(n_classes)
    if attacks is not None:
        version, default_attacks = "custom", list(attacks)
        too_few = [a for a in default_attacks if n_classes < DLR_MIN_CLASSES.get(a, 2)]
        if too_few:
            raise ValueError(f"attacks {too_few} use the DLR loss, which needs at least "
                             f"{DLR_MIN_CLASSES[too_few[0]]} classes; this model has {n_classes}")
    kwargs = dict(eps=eps, norm="Linf", version=version, seed=seed, device=device)
    if version == "custom":
        kwargs["attacks"] = default_attacks
    if eps == 0:
        return correct_mask(model, X, y, batch_size, device)
    for name in checks.funcs:  # its dynamic-defense counter is global: a past run's count would flag this one
        checks.funcs[name] = 0
    with attack_mode(model):
        adversary = AutoAttack(model, **kwargs)
        # 'standard' hard-codes 9 targets, more than K - 1 classes have; set after init
        adversary.apgd_targeted.n_target_classes = n_target_classes(n_classes)
        adversary.fab.n_target_classes = n_target_classes(n_classes)
        if version == "custom":  # custom uses constructor defaults (5 restarts); match standard
            adversary.apgd.n_restarts = 1
            adversary.fab.n_restarts = 1
            adversary.square.n_queries = 5000
        log = logging.getLogger("auto-attack")
        collector = _WarningCollector()
        handlers = [collector] + ([logging.StreamHandler()] if progress else [])
        level, propagate = log.level, log.propagate
        if propagate:  # its ancestors' handlers hear what they heard before, not what the lowered level lets out
            handlers.append(_Forwarder(log, log.getEffectiveLevel()))
        for handler in handlers:
            log.addHandler(handler)
        # its checks log at WARNING: heard even where a caller silenced the logger
        log.setLevel(logging.DEBUG if progress else min(log.getEffectiveLevel(), logging.WARNING))
        log.propagate = False
        try:  # AutoAttack reseeds torch's global generators: leave the caller's draws alone
            with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
                x_adv, y_adv = adversary.run_standard_evaluation(X, y, batch_size=batch_size)
        finally:
            for handler in handlers:
                log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate
    messages = collector.messages
    for message in messages:
        warnings.warn(f"AutoAttack's checks flagged its evaluation at eps={eps:g}: {message}", RuntimeWarning)
    if flags is not None:
        flags.extend(messages)
    if float((x_adv.cpu() - X).abs().max()) > eps + 1e-5 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        raise RuntimeError("AutoAttack left the threat model (L-inf ball intersected with [0, 1])")
    # robust only if AutoAttack's own verdict and our re-check agree: a point it left just
    # past the boundary may be classified back when re-run in other batches (GPU kernels)
    return correct_mask(model, x_adv, y, batch_size, device) & (y_adv.cpu() == y).numpy()
