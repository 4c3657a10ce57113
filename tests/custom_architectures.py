"""Small custom encoders/decoders for the AVAE tests (cf. Pythae's tests/data/custom_architectures.py).

They take ``(input_dim, latent_dim)`` so that one class serves every input shape used here.
Conv nets need ``H`` and ``W`` divisible by 4.
"""

import math

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from torch import nn


class Encoder_AVAE_Conv(BaseEncoder):
    def __init__(self, input_dim, latent_dim):
        super().__init__()
        c, h, w = input_dim
        self.input_dim, self.latent_dim = tuple(input_dim), latent_dim
        self.conv = nn.Sequential(
            nn.Conv2d(c, 8, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 4, 2, 1),
            nn.ReLU(),
        )
        flat = 16 * (h // 4) * (w // 4)
        self.embedding = nn.Linear(flat, latent_dim)
        self.log_var = nn.Linear(flat, latent_dim)

    def forward(self, x):
        h = self.conv(x).flatten(1)
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class Decoder_AVAE_Conv(BaseDecoder):
    def __init__(self, input_dim, latent_dim):
        super().__init__()
        c, h, w = input_dim
        self.input_dim, self.latent_dim = tuple(input_dim), latent_dim
        self.h, self.w = h // 4, w // 4
        self.fc = nn.Linear(latent_dim, 16 * self.h * self.w)
        self.deconv = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(16, 8, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, c, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z):
        h = self.fc(z).reshape(z.shape[0], 16, self.h, self.w)
        return ModelOutput(reconstruction=self.deconv(h))


class Encoder_AVAE_MLP(BaseEncoder):
    def __init__(self, input_dim, latent_dim, hidden=32):
        super().__init__()
        self.input_dim, self.latent_dim = tuple(input_dim), latent_dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_dim), hidden), nn.ReLU())
        self.embedding = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class Decoder_AVAE_MLP(BaseDecoder):
    def __init__(self, input_dim, latent_dim, hidden=32):
        super().__init__()
        self.input_dim, self.latent_dim = tuple(input_dim), latent_dim
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(input_dim))
        )

    def forward(self, z):
        out = torch.sigmoid(self.body(z)).reshape(z.shape[0], *self.input_dim)
        return ModelOutput(reconstruction=out)


class NetBadInheritance(nn.Module):
    """A net that is neither a BaseEncoder nor a BaseDecoder."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, x):
        return self.fc(x)
