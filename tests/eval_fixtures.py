"""Tiny encoders and data for the evaluation tests (no training needed)."""

import numpy as np
import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseEncoder


class LinearEncoder(BaseEncoder):
    """mu(x) = A flatten(x) + c: the composed classifier is linear in x (exact oracle)."""

    def __init__(self, in_dim, d=6, seed=0, batch_norm=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = torch.nn.Linear(in_dim, d)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(d, in_dim, generator=g) / in_dim**0.5 * 4)
            self.lin.bias.zero_()
        self.bn = torch.nn.BatchNorm1d(d) if batch_norm else torch.nn.Identity()

    def forward(self, x):
        mu = self.bn(self.lin(x.flatten(1)))
        return ModelOutput(embedding=mu, log_covariance=torch.zeros_like(mu))


def make_data(n, shape=(1, 4, 4), n_classes=3, seed=0, encoder=None):
    """Images in [0, 1] whose labels follow a random linear rule on mu(x) (learnable)."""
    g = np.random.default_rng(seed)
    X = g.uniform(0, 1, size=(n, *shape)).astype(np.float32)
    with torch.no_grad():
        feats = encoder(torch.from_numpy(X)).embedding.numpy()
    W = np.random.default_rng(123).normal(size=(feats.shape[1], n_classes))
    y = (feats @ W).argmax(1)
    return X, y
