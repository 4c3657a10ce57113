"""Build and train the paper's models by name, with a budget in iterations.

Used by ``examples/`` and ``benchmarks/``; every model goes through
:class:`pythae_avae.pipelines.TrainingPipeline` (Pythae's pipeline plus per-term logging).
"""

import math
import os
from typing import Dict, List, Optional

import torch
from pythae.trainers import BaseTrainerConfig

from .models.registry import MODEL_REGISTRY
from .nets import ARCHITECTURES, build_nets
from .pipelines import TrainingPipeline

#: command-line model name -> config class name in the registry
MODEL_NAMES: Dict[str, str] = {
    "VAE": "GaussianVAEConfig",
    "AVAE": "AVAEConfig",
    "SE": "SEConfig",
    "SE-AVAE": "SE_AVAE_Config",
    "AVAE-SS": "AVAE_SS_Config",
}


def available_models() -> List[str]:
    return [name for name, config in MODEL_NAMES.items() if config in MODEL_REGISTRY]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(name: str, arch: str = "colormnist-conv", latent_dim: int = 64, **config):
    """A fresh model of the given name on the named architecture.

    Args:
        name: one of :data:`MODEL_NAMES` (``"VAE"`` is :class:`GaussianVAE`).
        arch: a key of :data:`pythae_avae.nets.ARCHITECTURES`.
        latent_dim: latent dimension ``d``.
        **config: further config fields (e.g. ``rho=0.9``, ``obs_var=0.5``); unknown ones raise.
    """
    if name not in MODEL_NAMES or MODEL_NAMES[name] not in MODEL_REGISTRY:
        raise ValueError(f"model name must be one of {available_models()}, got {name!r}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    model_cls, config_cls = MODEL_REGISTRY[MODEL_NAMES[name]]
    encoder, decoder = build_nets(arch, latent_dim)
    model_config = config_cls(input_dim=ARCHITECTURES[arch][2], latent_dim=latent_dim, **config)
    return model_cls(model_config, encoder=encoder, decoder=decoder)


def train_for_iterations(
    model,
    train_data,
    eval_data=None,
    iterations: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    output_dir: str = "outputs",
    device: Optional[str] = None,
    callbacks=None,
    steps_saving: Optional[int] = None,
):
    """Trains ``model`` through the pipeline for about ``iterations`` optimiser steps.

    Pythae counts epochs; the budget is rounded up to whole epochs. Returns the model after
    the last step (Pythae's ``final_model`` folder holds the best-loss one instead), and saves
    it to ``<training dir>/last_model``.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    steps_per_epoch = math.ceil(len(train_data) / batch_size)
    device = device or default_device()
    config = BaseTrainerConfig(
        output_dir=output_dir,
        num_epochs=max(1, math.ceil(iterations / steps_per_epoch)),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=256,
        learning_rate=learning_rate,
        seed=seed,
        no_cuda=device == "cpu",
        steps_saving=steps_saving,
    )
    pipeline = TrainingPipeline(model, config)
    pipeline(train_data, eval_data, callbacks=callbacks)
    trained = pipeline.trainer.model
    trained.save(os.path.join(pipeline.trainer.training_dir, "last_model"))
    return trained.eval()
