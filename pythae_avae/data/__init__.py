"""Datasets of the paper's experiments."""

from .celeba import (
    CELEBA_ATTRIBUTES,
    CELEBA_TASKS,
    TABLE2_TASKS,
    CelebA,
    find_celeba_folder,
    load_image,
    parse_attributes,
    parse_partition,
)
from .color_mnist import (
    TASKS,
    ColorMNIST,
    RecolorCallback,
    color_masks,
    colorize,
    decode_color,
    load_mnist_digits,
)

__all__ = [
    "CELEBA_ATTRIBUTES",
    "CELEBA_TASKS",
    "TABLE2_TASKS",
    "CelebA",
    "find_celeba_folder",
    "load_image",
    "parse_attributes",
    "parse_partition",
    "TASKS",
    "ColorMNIST",
    "RecolorCallback",
    "color_masks",
    "colorize",
    "decode_color",
    "load_mnist_digits",
]
