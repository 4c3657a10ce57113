"""The state a network is attacked in: evaluation mode, parameters out of autograd.

Every attack of this package differentiates a network with respect to its input only: SE's
Select (on the encoder, during training), our PGD and AutoAttack (on probe ∘ encoder). With the
parameters still requiring gradients, an attack that calls ``.backward()`` (AutoAttack's FAB
does) also computes the weight gradients and accumulates them into the evaluated model's
``.grad``: before this context, evaluating a model with AutoAttack left a gradient on every
parameter (``tests/test_attack_mode.py``). ``torch.autograd.grad(..., x)``, which our own
attacks use, already skips the weight gradients, so they run no faster here.
"""

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def attack_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Runs the block with ``module`` in eval mode (BatchNorm on its running statistics, no
    dropout) and its parameters not requiring gradients; restores both afterwards, per
    submodule and per parameter, even if the block raises.

    Input gradients still flow: take them with ``torch.autograd.grad(..., x)``.
    """
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)
