"""SE's "Select": an L-infinity PGD attack on the encoder that makes the auxiliary point.

The SE paper (Cemgil et al., ICLR 2020) calls the mechanism that builds ``x~`` from a data point
``x`` "Select". Its section 3.1 and appendix B.2 could not be read (spec §0, §2.3), so the
attack below is our reconstruction (spec §2.3, tags [I]):

* objective to **maximise** over ``x~`` in ``{||x~ - x||_inf <= eps} ∩ [0, 1]^D``:

  - ``"coupling_kl"``: ``KL(q(z|x~) || N(rho_se mu0, (1 - rho_se^2) I))``, which equals
    ``-(C + H)`` up to terms that do not depend on ``x~``, so the attack seeks the input that
    most violates the smoothness term the encoder is trained on;
  - ``"w2"``: the squared 2-Wasserstein distance ``||mu0 - mu(x~)||^2 + ||sigma0 - sigma(x~)||^2``
    between the two diagonal Gaussians. It is 0 with zero gradient at ``x~ = x``, so it
    needs the random start;

  where ``(mu0, sigma0^2)`` is the code of the clean ``x``, computed once and held fixed;
* ``steps`` signed-gradient steps of size ``step_size`` (default ``2.5 eps / steps``) from a
  uniform random start in the eps-ball, each followed by projection onto the ball and [0, 1];
* the encoder runs in :func:`~pythae_avae.attack_mode.attack_mode` (eval mode: BatchNorm uses
  its running statistics, no dropout; parameters out of autograd) and is put back as it was
  afterwards; gradients are taken with respect to the input only (``torch.autograd.grad``),
  so parameters, their ``.grad`` and BatchNorm buffers are left untouched; the decoder is
  never called; the result is detached (Danskin-style: no differentiation through the argmax).
"""

from typing import Optional

import torch
from torch import nn

from ...attack_mode import attack_mode
from ..coupling import gaussian_w2_squared, kl_to_coupled_target

ATTACK_LOSSES = ("coupling_kl", "w2")
W2_NEEDS_RANDOM_START = (
    "attack_loss 'w2' needs a random start: W2 has its minimum, hence zero gradient, at "
    "x~ = x, so PGD started there never moves"
)


def attack_objective(
    mu_adv: torch.Tensor,
    logvar_adv: torch.Tensor,
    mu0: torch.Tensor,
    logvar0: torch.Tensor,
    attack_loss: str = "coupling_kl",
    rho: float = 0.95,
) -> torch.Tensor:
    """The per-example quantity Select maximises (shape ``(B,)``).

    Args:
        mu_adv, logvar_adv: code of the candidate auxiliary point ``x~``, shape ``(B, d)``.
        mu0, logvar0: code of the clean point ``x`` (held fixed), shape ``(B, d)``.
        attack_loss: ``"coupling_kl"`` or ``"w2"`` (see the module docstring).
        rho: coupling strength of the ``"coupling_kl"`` target (``rho_se``).
    """
    if attack_loss == "coupling_kl":
        return kl_to_coupled_target(mu_adv, logvar_adv, mu0, rho)
    if attack_loss == "w2":
        return gaussian_w2_squared(mu_adv, logvar_adv, mu0, logvar0)
    raise ValueError(f"attack_loss must be one of {ATTACK_LOSSES}, got {attack_loss!r}")


def _encode(encoder: nn.Module, x: torch.Tensor):
    out = encoder(x)
    return out["embedding"], out["log_covariance"]


def select_pgd(
    encoder: nn.Module,
    x: torch.Tensor,
    eps: float,
    steps: int,
    step_size: Optional[float] = None,
    random_start: bool = True,
    attack_loss: str = "coupling_kl",
    rho: float = 0.95,
) -> torch.Tensor:
    """SE's Select: ``x~ = x + delta`` with ``delta`` from L-infinity PGD on the encoder.

    Works under ``torch.no_grad()`` too (Pythae's ``eval_step``): the gradients it needs are
    taken inside ``torch.enable_grad()``.

    Args:
        encoder: a Pythae encoder returning ``embedding`` and ``log_covariance``.
        x: clean images in [0, 1], shape ``(B, ...)``; not modified.
        eps: L-infinity radius ``eps' >= 0``. ``eps = 0`` returns a detached copy of ``x``
            without running the encoder.
        steps: number of PGD steps ``L >= 1``.
        step_size: step ``alpha``; None means ``2.5 eps / steps``.
        random_start: start from ``x`` plus uniform noise in ``[-eps, eps]`` (clipped to [0, 1]);
            required by ``"w2"``.
        attack_loss: ``"coupling_kl"`` or ``"w2"``.
        rho: ``rho_se``, coupling strength of the ``"coupling_kl"`` target.

    Returns:
        The detached auxiliary point ``x~``, with ``||x~ - x||_inf <= eps`` and values in [0, 1]
        (a pixel of ``x`` outside [0, 1] moves only toward it or within that range).
    """
    if attack_loss not in ATTACK_LOSSES:
        raise ValueError(f"attack_loss must be one of {ATTACK_LOSSES}, got {attack_loss!r}")
    if attack_loss == "w2" and not random_start:
        raise ValueError(W2_NEEDS_RANDOM_START)
    x0 = x.detach().clone()
    if eps == 0:
        return x0
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "SE's Select attack needs input gradients: run the model under torch.no_grad(), "
            "not torch.inference_mode()"
        )
    alpha = 2.5 * eps / steps if step_size is None else step_size
    # the ball cut to [0, 1]; a pixel already outside [0, 1] (check_inputs=False) keeps its ball
    # where it does not lead further out (the plain cut would move it up to |x| from itself)
    lower = torch.max(x0 - eps, torch.clamp(x0, max=0.0))
    upper = torch.min(x0 + eps, torch.clamp(x0, min=1.0))
    with attack_mode(encoder):
        with torch.no_grad():
            mu0, logvar0 = _encode(encoder, x0)
        x_adv = x0
        if random_start:
            x_adv = torch.max(torch.min(x0 + torch.empty_like(x0).uniform_(-eps, eps), upper), lower)
        with torch.enable_grad():
            for _ in range(steps):
                x_adv = x_adv.detach().requires_grad_(True)
                mu_adv, logvar_adv = _encode(encoder, x_adv)
                objective = attack_objective(mu_adv, logvar_adv, mu0, logvar0, attack_loss, rho)
                (grad,) = torch.autograd.grad(objective.sum(), x_adv)
                x_adv = torch.max(torch.min(x_adv.detach() + alpha * grad.sign(), upper), lower)
    return x_adv.detach()
