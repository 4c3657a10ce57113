"""colorMNIST networks (3 x 28 x 28 inputs in [0, 1]).

* MLP: the official AVAE code's architecture (spec §4.1): 4 hidden layers of 200 ReLU units in
  both encoder and decoder, sigmoid output.
* ConvNet: the paper's ConvNet was never released (spec §4.2). Ours follows the spec's
  proposal: a BatchNorm conv encoder and a much smaller decoder (the NeurIPS review notes the
  paper's conv decoder is much smaller than its encoder).
"""

import math

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn

from ..validation import check_bool, check_int
from ._layers import activation_layer, check_shape, conv_block, latent_dim_of, split_gaussian
from .rebuild import Rebuildable

COLOR_MNIST_SHAPE = (3, 28, 28)
_PIXELS = math.prod(COLOR_MNIST_SHAPE)


def _mlp(n_in, n_out, hidden=200, depth=4):
    check_int(hidden, "hidden", why="units per hidden layer")
    check_int(depth, "depth", minimum=0, why="hidden layers")
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class ColorMNISTMLPEncoder(Rebuildable, BaseEncoder):
    """2352 -> 4 x 200 ReLU -> 2d (mean, log-variance)."""

    def __init__(self, latent_dim=64, hidden: int = 200, depth: int = 4):
        super().__init__()
        self.latent_dim = latent_dim_of(latent_dim)
        self.net = _mlp(_PIXELS, 2 * self.latent_dim, hidden, depth)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x = check_shape(x, COLOR_MNIST_SHAPE, type(self).__name__)
        mu, logvar = split_gaussian(self.net(x.reshape(x.shape[0], -1)), self.latent_dim)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class ColorMNISTMLPDecoder(Rebuildable, BaseDecoder):
    """d -> 4 x 200 ReLU -> 2352, sigmoid."""

    def __init__(self, latent_dim=64, hidden: int = 200, depth: int = 4):
        super().__init__()
        self.net = _mlp(latent_dim_of(latent_dim), _PIXELS, hidden, depth)

    def forward(self, z: torch.Tensor) -> ModelOutput:
        x = torch.sigmoid(self.net(z)).reshape(z.shape[0], *COLOR_MNIST_SHAPE)
        return ModelOutput(reconstruction=x)


class ColorMNISTConvEncoder(Rebuildable, BaseEncoder):
    """Conv 3-W-2W-4W (stride 2, BatchNorm, ReLU) -> Linear 8W (BN, ReLU) -> 2d.

    ``width`` W = 32 is the spec's proposal (Conv 32-64-128, Linear 256);
    ``colormnist-conv-wideenc`` (W = 64) and ``colormnist-conv-wideenc4`` (W = 128) ask whether
    a bigger encoder than the spec's guess (the paper's is unpublished) gives more separable,
    more robust codes. ``activation`` (``"relu"``, the spec's; ``"silu"`` or ``"elu"``) is the
    nonlinearity after each hidden layer: ``colormnist-conv-silu`` asks whether a smooth
    encoder is a more robust one (on colorMNIST it was not: 73.2 against 74.6% of digits at
    eps = 0.1 after 9,000 iterations, one seed; RESULTS.md, Fig. 5 section).
    ``extra_convs`` adds that many 3x3 stride-1 convolutions (BatchNorm, activation) after each
    downsampling one, at its width: ``colormnist-conv-deep`` (one each) and ``-deep2`` (two) ask
    whether depth, at less than the 2x encoder's cost, does what width did; ``-wideenc-deep``
    (one each, W = 64) whether the two add up.
    """

    def __init__(self, latent_dim=64, batch_norm: bool = True, width: int = 32, activation: str = "relu",
                 extra_convs: int = 0):
        super().__init__()
        check_int(width, "width", why="channels of the first conv layer")
        check_int(extra_convs, "extra_convs", minimum=0, why="stride-1 convolutions after each downsampling one")
        check_bool(batch_norm, "batch_norm")
        self.latent_dim = latent_dim_of(latent_dim)
        layers, c_in = [], 3
        for c_out, kernel in ((width, 4), (2 * width, 4), (4 * width, 3)):  # 28 -> 14 -> 7 -> 4
            layers += conv_block(c_in, c_out, kernel, batch_norm, activation)
            for _ in range(extra_convs):
                layers += conv_block(c_out, c_out, 3, batch_norm, activation, stride=1)
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        head = [nn.Linear(4 * width * 4 * 4, 8 * width)]
        head += [nn.BatchNorm1d(8 * width)] if batch_norm else []
        head += [activation_layer(activation), nn.Linear(8 * width, 2 * self.latent_dim)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x = check_shape(x, COLOR_MNIST_SHAPE, type(self).__name__)
        mu, logvar = split_gaussian(self.head(self.features(x)), self.latent_dim)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class ColorMNISTConvDecoder(Rebuildable, BaseDecoder):
    """Small decoder: Linear d -> Wx7x7, ConvT W-W/2 (14x14), ConvT W/2-3 (28x28), sigmoid.

    ``width`` W = 32 is the spec's "much smaller" decoder; ``colormnist-conv-widedec`` (W = 128)
    asks whether a decoder closer to the encoder's size makes better delusions.
    """

    def __init__(self, latent_dim=64, width: int = 32):
        super().__init__()
        if check_int(width, "width", minimum=2) % 2:  # the first transposed convolution halves it
            raise ValueError(f"width must be an even number >= 2, got {width}")
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim_of(latent_dim), width * 7 * 7), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width // 2, 3, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> ModelOutput:
        h = self.fc(z).reshape(z.shape[0], self.width, 7, 7)
        return ModelOutput(reconstruction=torch.sigmoid(self.deconv(h)))
