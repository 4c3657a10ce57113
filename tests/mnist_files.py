"""Full MNIST in torchvision's on-disk format (uncompressed idx files), made up for tests."""

import numpy as np


def write_mnist(root, sizes=(("train", 12), ("t10k", 6)), seed=0) -> dict:
    """Writes ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; returns the labels
    written per prefix. Every image has a lit centre pixel, so its colour is visible."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in sizes:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 14, 14] = 255
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        written[prefix] = labels
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write((2051).to_bytes(4, "big") + n.to_bytes(4, "big"))
            f.write((28).to_bytes(4, "big") * 2 + images.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write((2049).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.tobytes())
    return written
