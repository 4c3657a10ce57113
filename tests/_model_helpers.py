"""Small nets, data and comparisons shared by the SE, SE-AVAE and AVAE-SS tests."""

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder
from torch import nn

from pythae_avae.nets import (
    COLOR_MNIST_SHAPE,
    ColorMNISTConvDecoder,
    ColorMNISTConvEncoder,
    ColorMNISTMLPDecoder,
    ColorMNISTMLPEncoder,
)

SHAPE = COLOR_MNIST_SHAPE
LATENT = 4


def images(n, seed=0):
    """colorMNIST-shaped images in [0, 1], with exact 0s and 1s to exercise the clipping."""
    x = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    return x


def conv_nets(latent=LATENT, seed=0):
    """The colorMNIST ConvNet (BatchNorm in the encoder)."""
    torch.manual_seed(seed)
    return ColorMNISTConvEncoder(latent), ColorMNISTConvDecoder(latent)


def mlp_nets(latent=LATENT, seed=0):
    """A small colorMNIST MLP (no BatchNorm: batch composition does not change the codes)."""
    torch.manual_seed(seed)
    return (
        ColorMNISTMLPEncoder(latent, hidden=32, depth=2),
        ColorMNISTMLPDecoder(latent, hidden=32, depth=2),
    )


class BNDecoder(BaseDecoder):
    """A decoder with BatchNorm, to check that frozen decoders keep their statistics."""

    def __init__(self, latent=LATENT):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                 nn.Linear(32, 3 * 28 * 28))

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(-1, *SHAPE))


def snapshot(module):
    """Copies of every parameter and buffer (BatchNorm statistics included)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_same_weights(model_a, model_b):
    assert same_state(snapshot(model_a), snapshot(model_b))


def loss_terms(output):
    return {k: v.item() for k, v in output.items() if k.endswith("_loss") and k != "loss"}
