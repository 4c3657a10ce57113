"""A ``TrainingPipeline`` that knows this package's trainers and logs every loss term.

It subclasses Pythae's pipeline instead of patching it. Trainers are chosen from
:data:`TRAINER_REGISTRY` (training-config class -> trainer class, most specific class first);
configs not in it go to Pythae's own dispatch, with :class:`TermLoggerCallback` prepended.
"""

from typing import List, Optional

from pythae.pipelines import TrainingPipeline as PythaeTrainingPipeline
from pythae.trainers.training_callbacks import TrainingCallback

from ..models.batch_norm import check_batches_for_batch_norm
from ..trainers.registry import TRAINER_REGISTRY, register_trainer  # noqa: F401 (re-export)
from ..trainers.term_logging import TermLoggerCallback


def _with_term_logger(callbacks: Optional[List[TrainingCallback]]):
    callbacks = list(callbacks or [])
    if not any(isinstance(cb, TermLoggerCallback) for cb in callbacks):
        callbacks.insert(0, TermLoggerCallback())
    return callbacks


def registered_trainer(training_config):
    """The trainer class :data:`TRAINER_REGISTRY` holds for ``training_config`` (its most
    specific registered class), or None."""
    for config_cls in type(training_config).__mro__:
        if config_cls in TRAINER_REGISTRY:
            return TRAINER_REGISTRY[config_cls]
    return None


class TrainingPipeline(PythaeTrainingPipeline):
    """Pythae's ``TrainingPipeline`` plus per-term logging and this package's trainers.

    Args:
        model: any Pythae model (ours or Pythae's).
        training_config: a Pythae ``BaseTrainerConfig`` (or subclass), or a config of a trainer
            in :data:`TRAINER_REGISTRY` (e.g. the data-free trainer of AVAE-SS).

    Example:
        >>> pipeline = TrainingPipeline(model, BaseTrainerConfig(num_epochs=10))
        >>> pipeline(train_data=x_train, eval_data=x_eval)
    """

    def _to_dataset(self, data):
        if data is None:
            return None
        if hasattr(data, "shape"):  # numpy array or torch tensor
            data = self.data_processor.to_dataset(self.data_processor.process_data(data))
        self._check_dataset(data)
        return data

    def __call__(self, train_data=None, eval_data=None, callbacks=None):
        for name, data in (("train_data", train_data), ("eval_data", eval_data)):
            if data is not None and hasattr(data, "__len__") and len(data) == 0:
                raise ValueError(f"{name} must hold at least 1 image, got 0")
        if train_data is not None and hasattr(train_data, "__len__"):
            config = self.training_config
            check_batches_for_batch_norm(self.model, len(train_data), config.per_device_train_batch_size,
                                         max(getattr(config, "world_size", 1), 1))  # Pythae's -1: one process
        callbacks = _with_term_logger(callbacks)
        trainer_cls = registered_trainer(self.training_config)
        if trainer_cls is None:
            if train_data is None:
                raise ValueError(
                    "train_data is required: only data-free trainers (e.g. AVAE-SS) run "
                    "without it"
                )
            return super().__call__(train_data, eval_data, callbacks=callbacks)
        if getattr(trainer_cls, "needs_data", True) and train_data is None:
            raise ValueError(f"train_data is required by {trainer_cls.__name__}")
        self.trainer = trainer_cls(
            model=self.model,
            train_dataset=self._to_dataset(train_data),
            eval_dataset=self._to_dataset(eval_data),
            training_config=self.training_config,
            callbacks=callbacks,
        )
        self.trainer.train()
