"""A Pythae trainer for models that learn without a training set (AVAE-SS).

Pythae's trainers iterate over a ``DataLoader``. :class:`DataFreeTrainer` (a
:class:`ResumableTrainer`) iterates over *prior requests* instead (:meth:`AVAE_SS.prior_batch`:
a batch size, no data), so everything else works unchanged: epochs of ``steps_per_epoch``
optimizer steps, the progress bar, callbacks (e.g. :class:`TermLoggerCallback`), checkpoints
every ``checkpoint_every`` steps with exact resume, DDP and the ``final_model`` folder. ``pythae_avae.pipelines.TrainingPipeline``
builds it with no data::

    model = AVAE_SS.from_pretrained(vae, rho=0.975)
    TrainingPipeline(model, DataFreeTrainerConfig(num_steps=1000, steps_per_epoch=100))()

An evaluation set of real images may be passed (``eval_data=``): its loss is then logged as
``eval_epoch_loss`` and, as in Pythae, selects the saved best model.
"""

import math
from typing import List, Optional

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback
from torch.utils.data import DataLoader, Dataset

from ..fingerprints import tensors_digest
from ..validation import check_int
from .registry import register_trainer
from .resumable import ResumableTrainer, ResumableTrainerConfig, unwrap_model


@dataclass(config=ConfigDict(extra="forbid"))
class DataFreeTrainerConfig(ResumableTrainerConfig):
    """:class:`ResumableTrainerConfig` for data-free training; unknown keys raise.

    Parameters (besides those of ``ResumableTrainerConfig``, e.g. ``learning_rate``,
    ``checkpoint_every``, ``output_dir``, ``seed``):
        steps_per_epoch (int): optimizer steps per Pythae epoch (epochs drive logging, callbacks
            and checkpoints). Default: 100.
        num_steps (int): total optimizer steps; sets ``num_epochs = num_steps /
            steps_per_epoch`` and must be a multiple of ``steps_per_epoch``. Default: None
            (``num_epochs`` epochs).
        num_epochs (int): epochs of ``steps_per_epoch`` steps; given together with
            ``num_steps`` it must agree with it. Default: None (``num_steps / steps_per_epoch``,
            or Pythae's 100 when ``num_steps`` is not given either).
        batch_size (int): prior samples per step, a synonym of
            ``per_device_train_batch_size``; given both, they must agree. Default: None (64, Pythae's).
    """

    steps_per_epoch: int = 100
    num_steps: Optional[int] = None
    batch_size: Optional[int] = None
    # None here (Pythae's default otherwise), so that a value given beside its synonym can be
    # told from the default and a disagreement refused rather than settled silently
    num_epochs: Optional[int] = None
    per_device_train_batch_size: Optional[int] = None

    def __post_init__(self):
        for name in ("steps_per_epoch", "num_steps", "batch_size"):  # num_epochs: the parent's check
            value = getattr(self, name)
            if value is not None:
                check_int(value, name)
        if self.num_steps is not None:
            if self.num_steps % self.steps_per_epoch:
                raise ValueError(
                    f"num_steps ({self.num_steps}) must be a multiple of steps_per_epoch "
                    f"({self.steps_per_epoch}), e.g. steps_per_epoch="
                    f"{math.gcd(self.num_steps, self.steps_per_epoch)}"
                )
        self.num_epochs = _one_value(
            "num_epochs", self.num_epochs, "num_steps / steps_per_epoch",
            None if self.num_steps is None else self.num_steps // self.steps_per_epoch, _PYTHAE_NUM_EPOCHS)
        self.per_device_train_batch_size = self.batch_size = _one_value(
            "per_device_train_batch_size", self.per_device_train_batch_size, "batch_size", self.batch_size,
            _PYTHAE_BATCH_SIZE)
        super().__post_init__()


_PYTHAE_NUM_EPOCHS, _PYTHAE_BATCH_SIZE = (BaseTrainerConfig.__dataclass_fields__[name].default
                                          for name in ("num_epochs", "per_device_train_batch_size"))


def _one_value(name: str, value, synonym: str, synonym_value, default):
    """The value a setting and its synonym agree on, ``default`` when neither is given."""
    if value is not None and synonym_value is not None and value != synonym_value:
        raise ValueError(f"{name} ({value}) disagrees with {synonym} ({synonym_value}); give one of them, "
                         "or values that agree")
    for given in (value, synonym_value):
        if given is not None:
            return given
    return default


class _PriorRequests(Dataset):
    """``steps`` items, each a whole batch asking for ``batch_size`` prior samples."""

    def __init__(self, make_batch, steps: int, batch_size: int):
        self.make_batch, self.steps, self.batch_size = make_batch, steps, batch_size

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        if not 0 <= index < self.steps:
            raise IndexError(index)
        return self.make_batch(self.batch_size)


def _as_is(batch):
    return batch


@register_trainer(DataFreeTrainerConfig)
class DataFreeTrainer(ResumableTrainer):
    """:class:`ResumableTrainer` (checkpoints, resume, DDP) on prior requests instead of a
    training set.

    The model must declare ``data_free = True`` and provide ``prior_batch(batch_size)``
    (:class:`~pythae_avae.models.avae_ss.AVAE_SS` does). Each of ``num_epochs`` epochs takes
    ``steps_per_epoch`` steps of ``per_device_train_batch_size`` prior samples. Under DDP every
    process takes all steps with its own prior samples (the step seed includes the rank).

    Args:
        model: a data-free model, e.g. ``AVAE_SS``.
        train_dataset: must be None (kept for ``BaseTrainer``'s signature).
        eval_dataset: optional real images to evaluate the loss on.
        training_config (DataFreeTrainerConfig): the training configuration; None uses the
            defaults.
        callbacks (List[TrainingCallback]): as for Pythae's trainers.
    """

    #: ``pythae_avae.pipelines.TrainingPipeline`` builds this trainer without training data
    needs_data = False

    def __init__(
        self,
        model,
        train_dataset=None,
        eval_dataset=None,
        training_config: Optional[DataFreeTrainerConfig] = None,
        callbacks: Optional[List[TrainingCallback]] = None,
    ):
        if training_config is None:
            training_config = DataFreeTrainerConfig()
        if not isinstance(training_config, DataFreeTrainerConfig):
            raise TypeError(
                f"DataFreeTrainer needs a DataFreeTrainerConfig, got {type(training_config).__name__}"
            )
        if train_dataset is not None:
            raise ValueError(
                "DataFreeTrainer trains without data: pass no train_data (eval_data is allowed)"
            )
        if not getattr(model, "data_free", False):
            raise TypeError(
                f"{type(model).__name__} cannot train without data; DataFreeTrainer trains "
                "data-free models such as AVAE_SS (see AVAE_SS.from_pretrained)"
            )
        requests = _PriorRequests(
            type(model).prior_batch,
            training_config.steps_per_epoch,
            training_config.per_device_train_batch_size,
        )
        super().__init__(model, requests, eval_dataset, training_config, callbacks)

    def get_train_dataloader(self, train_dataset) -> DataLoader:
        # each item is already a batch; no shuffling (the items are identical) and no
        # DistributedSampler (every process takes all steps)
        return DataLoader(train_dataset, batch_size=None, shuffle=False, collate_fn=_as_is)

    def steps_per_epoch(self) -> int:
        return self.training_config.steps_per_epoch

    def _data_settings(self) -> dict:
        # No training set: the frozen decoder makes the data, so only a run post-training the same
        # pretrained model continues a checkpoint (else loading it would swap in the old decoder);
        # steps_per_epoch places the saved (epoch, step in epoch)
        return {"steps_per_epoch": self.training_config.steps_per_epoch,
                "decoder_weights": weights_digest(unwrap_model(self.model).decoder)}

    def _epoch_batches(self, epoch: int, start: int):
        return (self.train_dataset[i] for i in range(start, self.training_config.steps_per_epoch))


def weights_digest(module) -> str:
    """A short SHA-1 of ``module``'s state (names, dtypes, shapes and values)."""
    return tensors_digest(sorted(module.state_dict().items()))
