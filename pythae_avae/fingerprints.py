"""Short digests that let a resumed run check it is given what its checkpoint was made with."""

import hashlib
from typing import Optional

import torch
from pythae.data.datasets import BaseDataset


def tensors_digest(named) -> str:
    """A short SHA-1 of ``(name, tensor or array)`` pairs: names, dtypes, shapes and values."""
    digest = hashlib.sha1()
    for name, tensor in named:
        tensor = torch.as_tensor(tensor).detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # hashed in place, not copied
    return digest.hexdigest()[:16]


def dataset_fingerprint(dataset) -> Optional[str]:
    """What a resumed run checks besides the training set's size: the dataset's own
    ``fingerprint()`` where it has one (:class:`~pythae_avae.data.ColorMNIST`, whose colours
    change each epoch, digests its digits; :class:`~pythae_avae.data.CelebA` its files and
    labels), Pythae's tensor dataset (what the pipeline makes of arrays) hashed whole, None
    for other datasets (their size alone is checked)."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    if type(dataset) is BaseDataset:
        return tensors_digest((name, value) for name, value in (("data", dataset.data), ("labels", dataset.labels))
                              if value is not None)
    return None
