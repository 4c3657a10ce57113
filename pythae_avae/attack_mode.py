"""The state a network is attacked in: evaluation mode, parameters out of autograd.

Both attacks of this package differentiate a network with respect to its input only: SE's
Select (on the encoder, during training) and the evaluation's PGD (on probe ∘ encoder). With
the parameters still requiring gradients, every backward pass through a convolution or linear
layer also computes the weight gradients, which nobody reads (`benchmarks/speed.py` prints
the step with and without them).
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
