"""Small nets, data, comparisons and checks shared by the SE, SE-AVAE and AVAE-SS tests."""

import dataclasses
import os

import torch
from pythae.models import AutoModel
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder
from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline
from pythae.trainers import BaseTrainerConfig
from torch import nn

from pythae_avae import GaussianVAE, GaussianVAEConfig
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


def assert_decoder_gradient_is_the_vaes(model):
    """``model`` (built on ``mlp_nets()``) gives its decoder the gradient of a VAE on the same
    nets and batch: its extra terms send the decoder nothing."""
    vae = GaussianVAE(GaussianVAEConfig(input_dim=SHAPE, latent_dim=LATENT), *mlp_nets())
    x = images(8)
    for m in (model, vae):
        torch.manual_seed(4)  # the same reparametrisation noise
        m({"data": x}).loss.backward()
    for p_model, p_vae in zip(model.decoder.parameters(), vae.decoder.parameters()):
        torch.testing.assert_close(p_model.grad, p_vae.grad, rtol=1e-5, atol=1e-7)


def assert_trains_in_pythae_pipeline_and_reloads(model, tmp_path):
    """Two epochs of Pythae's own ``TrainingPipeline`` change the weights, and
    ``AutoModel`` reloads the final model as the same class, config and weights."""
    before = snapshot(model)
    config = BaseTrainerConfig(output_dir=str(tmp_path), num_epochs=2, learning_rate=1e-3,
                               per_device_train_batch_size=8, per_device_eval_batch_size=8,
                               no_cuda=True)
    pipeline = PythaeTrainingPipeline(model, config)
    pipeline(train_data=images(24), eval_data=images(8, seed=5))
    assert not same_state(before, snapshot(model))
    best = pipeline.trainer._best_model
    reloaded = AutoModel.load_from_folder(os.path.join(pipeline.trainer.training_dir, "final_model"))
    assert type(reloaded) is type(model)
    assert dataclasses.asdict(reloaded.model_config) == dataclasses.asdict(best.model_config)
    assert_same_weights(reloaded, best)


def assert_reloads_with_both_loaders(model, tmp_path):
    """``AutoModel`` and the model's own class reload a saved model alike."""
    model.save(str(tmp_path))
    for loader in (AutoModel.load_from_folder, type(model).load_from_folder):
        reloaded = loader(str(tmp_path))
        assert type(reloaded) is type(model) and reloaded.model_config == model.model_config
        assert_same_weights(reloaded, model)
