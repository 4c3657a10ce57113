"""CelebA 64 x 64 networks (spec §4.2 proposal; the paper's appendix E was not available).

Encoder: Conv 3-64-128-256-512 (k4, s2, p1; BatchNorm on every conv but the first), flatten 8192,
Linear -> 2d. Decoder (smaller): Linear d -> 256x4x4, ConvT 256-128-64-32-3 (k4, s2, p1),
ReLU between, sigmoid.
"""

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn

from ..validation import check_bool
from ._layers import check_shape, conv_block, latent_dim_of, split_gaussian
from .rebuild import Rebuildable

CELEBA_SHAPE = (3, 64, 64)


class CelebAConvEncoder(Rebuildable, BaseEncoder):
    def __init__(self, latent_dim=64, batch_norm: bool = True):
        super().__init__()
        check_bool(batch_norm, "batch_norm")
        self.latent_dim = latent_dim_of(latent_dim)
        self.features = nn.Sequential(
            *conv_block(3, 64, 4, batch_norm=False),  # 64 -> 32
            *conv_block(64, 128, 4, batch_norm),  # -> 16
            *conv_block(128, 256, 4, batch_norm),  # -> 8
            *conv_block(256, 512, 4, batch_norm),  # -> 4
            nn.Flatten(),
        )
        self.head = nn.Linear(512 * 4 * 4, 2 * self.latent_dim)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        x = check_shape(x, CELEBA_SHAPE, type(self).__name__)
        mu, logvar = split_gaussian(self.head(self.features(x)), self.latent_dim)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class CelebAConvDecoder(Rebuildable, BaseDecoder):
    def __init__(self, latent_dim=64):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(latent_dim_of(latent_dim), 256 * 4 * 4), nn.ReLU())
        layers, channels = [], [256, 128, 64, 32, 3]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.deconv = nn.Sequential(*layers[:-1])  # no ReLU before the sigmoid

    def forward(self, z: torch.Tensor) -> ModelOutput:
        h = self.fc(z).reshape(z.shape[0], 256, 4, 4)
        return ModelOutput(reconstruction=torch.sigmoid(self.deconv(h)))
