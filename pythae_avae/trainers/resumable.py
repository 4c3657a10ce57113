"""A ``BaseTrainer`` that starts from a saved model and optimizer state.

Pythae 0.1.2 writes ``optimizer.pt`` into every checkpoint but never reads it back, so an
interrupted run restarts from scratch. :func:`pythae_avae.recipes.train_for_iterations` trains
in chunks with this trainer and saves the state after each, so a rerun continues.
"""

import os
from typing import Optional

import torch
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from pythae.trainers import BaseTrainer, BaseTrainerConfig

from .registry import register_trainer


@dataclass(config=ConfigDict(extra="forbid"))
class ResumableTrainerConfig(BaseTrainerConfig):
    """``BaseTrainerConfig`` plus ``resume_from``: a folder holding ``model.pt`` (from
    ``model.save``) and ``optimizer.pt`` (an optimizer ``state_dict``). Unknown keys raise."""

    resume_from: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        if self.resume_from is not None:
            for name in ("model.pt", "optimizer.pt"):
                if not os.path.isfile(os.path.join(self.resume_from, name)):
                    raise FileNotFoundError(
                        f"resume_from={self.resume_from!r} must hold {name} (a saved training state)"
                    )


@register_trainer(ResumableTrainerConfig)
class ResumableTrainer(BaseTrainer):
    """Loads ``resume_from``'s weights before training and its optimizer state after Pythae
    builds the optimizer; otherwise exactly ``BaseTrainer``."""

    def __init__(self, model, train_dataset, eval_dataset=None, training_config=None, callbacks=None):
        if training_config is not None and training_config.resume_from is not None:
            state = torch.load(
                os.path.join(training_config.resume_from, "model.pt"), map_location="cpu", weights_only=True
            )
            model.load_state_dict(state["model_state_dict"])
        super().__init__(model, train_dataset, eval_dataset, training_config, callbacks)

    def set_optimizer(self):
        super().set_optimizer()
        resume_from = self.training_config.resume_from
        if resume_from is not None:
            state = torch.load(os.path.join(resume_from, "optimizer.pt"), map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(state)
            self._set_optimizer_on_device(self.optimizer, self.device)
