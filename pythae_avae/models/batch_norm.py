"""How an auxiliary batch (AVAE's delusion) goes through an encoder's BatchNorm layers, and
which training batches BatchNorm cannot take.

In training mode a BatchNorm layer normalises with the statistics of the batch it sees and
folds them into the running statistics that evaluation uses. An AVAE encodes its delusions in
a batch of their own (they need the code of the data first), so by default its running
statistics average data and delusion batches, while every attack at test time runs through
them; the noisy delusion has other pixel statistics than the data.
"""

import contextlib
from typing import Iterator

from torch import nn

#: ``"batch"``: like a data batch (PyTorch's behaviour); ``"frozen"``: normalised with its own
#: batch statistics, which are not folded into the running ones; ``"eval"``: normalised with the
#: running statistics (the function evaluated at test time), which it leaves untouched
AUX_BATCH_NORM_MODES = ("batch", "frozen", "eval")


@contextlib.contextmanager
def aux_batch_norm(module: nn.Module, mode: str = "batch") -> Iterator[None]:
    """Runs the forward passes inside the block with ``module``'s BatchNorm layers in ``mode``
    (one of :data:`AUX_BATCH_NORM_MODES`), then puts them back as they were.

    Outside training mode the layers already use (and keep) their running statistics, so every
    mode is then the same. Gradients flow in every mode.
    """
    if mode not in AUX_BATCH_NORM_MODES:
        raise ValueError(f"aux_batch_norm must be one of {AUX_BATCH_NORM_MODES}, got {mode!r}")
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if mode == "batch" or not norms:
        yield
        return
    if mode == "eval":
        for m in norms:
            m.eval()
        try:
            yield
        finally:
            for m in norms:
                m.train()
        return
    # momentum 0 makes the layer's own update keep the running statistics as they are: copying
    # them back after the pass would bump the version of tensors the backward pass still needs
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:  # counts batches for momentum=None (a cumulative average)
                m.num_batches_tracked.copy_(tracked)


def check_batches_for_batch_norm(model: nn.Module, n_images: int, batch_size: int, world_size: int = 1):
    """Refuses, before training starts, a training set whose batches would include one of a
    single image when ``model`` has BatchNorm layers: BatchNorm cannot normalise one value per
    channel in training mode, and the epoch would fail at its last batch, its work lost.

    ``n_images`` is split over ``world_size`` processes as PyTorch's ``DistributedSampler``
    does (padded to equal shares), each share in batches of ``batch_size``.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    share = -(-n_images // world_size)
    if min(share, batch_size) == 1 or share % batch_size == 1:
        per = f" per process ({world_size} processes)" if world_size > 1 else ""
        raise ValueError(
            f"train_data of {n_images} image{'s' * (n_images != 1)} in batches of {batch_size}{per} gives a "
            "batch of 1 image, which the model's BatchNorm layers cannot normalise in training mode: choose "
            "another per_device_train_batch_size (>= 2, leaving no single image over) or number of images"
        )
