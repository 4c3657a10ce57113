import torch
from torch import nn

from ..validation import check_int


def latent_dim_of(spec) -> int:
    """Accepts an int or anything with ``.latent_dim`` (a Pythae model config)."""
    return check_int(getattr(spec, "latent_dim", spec), "latent_dim")


def check_shape(x: torch.Tensor, shape: tuple, net: str) -> torch.Tensor:
    """``x`` if it is a batch of ``shape`` images; a convolution would take some other sizes
    (29-32 px for 28) and an MLP any layout of as many values (channels-last) silently."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{net} takes images of shape (batch, {', '.join(map(str, shape))}), "
                         f"got {tuple(x.shape)}")
    return x


#: nonlinearities an encoder may be built with: ReLU (the spec's) or a smooth one, whose
#: gradients do not jump at zero (smooth activations help adversarial training, Xie et al. 2020)
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def conv_block(c_in, c_out, kernel, batch_norm=True, activation="relu", stride=2):
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(activation_layer(activation))
    return layers


def split_gaussian(h: torch.Tensor, latent_dim: int):
    """First ``d`` outputs are the mean, the last ``d`` the log-variance (official layout)."""
    return h[:, :latent_dim], h[:, latent_dim:]
