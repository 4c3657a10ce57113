"""attack_mode: the attacks run the network in eval mode without weight gradients, and leave
its modes and requires_grad flags exactly as they found them."""

import pytest
import torch
from torch import nn

from pythae_avae.attack_mode import attack_mode
from pythae_avae.evaluation import autoattack_robust_mask, pgd_linf
from pythae_avae.models.se.select import select_pgd
from pythae_avae.nets import build_nets


def mixed_state_net():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    net.train()
    net[1].eval()  # a submodule in another mode than its parent
    net[3].bias.requires_grad_(False)  # a parameter frozen by the user
    return net


def state(net):
    return [m.training for m in net.modules()], [p.requires_grad for p in net.parameters()]


def test_inside_eval_mode_no_weight_grads_input_grads_flow():
    net = mixed_state_net()
    x = torch.randn(5, 4, requires_grad=True)
    with attack_mode(net):
        assert not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
        (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_restores_modes_and_flags_even_when_the_block_raises():
    net = mixed_state_net()
    before = state(net)
    with pytest.raises(RuntimeError, match="inside"):
        with attack_mode(net):
            raise RuntimeError("inside")
    assert state(net) == before


def test_attacks_leave_the_network_as_they_found_it():
    torch.manual_seed(0)
    encoder, _ = build_nets("colormnist-conv", 4)
    encoder.train()
    next(encoder.parameters()).requires_grad_(False)
    before = state(encoder)
    x = torch.rand(3, 3, 28, 28)
    select_pgd(encoder, x, eps=0.1, steps=2)
    assert state(encoder) == before

    class Head(nn.Module):  # probe on the encoder's mean, like the evaluation's classifier
        def __init__(self):
            super().__init__()
            self.encoder, self.linear = encoder, nn.Linear(4, 10)

        def forward(self, images):
            return self.linear(self.encoder(images)["embedding"])

    model = Head().train()
    before = state(model)
    pgd_linf(model, x, torch.zeros(3, dtype=torch.long), eps=0.1, steps=2)
    assert state(model) == before
    assert all(p.grad is None for p in model.parameters())


def test_autoattack_leaves_no_gradient_on_the_model():
    # FAB calls .backward(): without attack_mode it filled every parameter's .grad
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 10))
    X = torch.rand(8, 3, 8, 8)
    y = model(X).argmax(1)
    robust = autoattack_robust_mask(model, X, y, eps=1e-4, n_classes=10, device="cpu")
    assert robust.sum() > 0  # the points reach FAB (it attacks what APGD leaves standing)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
