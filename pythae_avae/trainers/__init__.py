"""Training helpers: per-term logging (and the trainers our pipeline picks)."""

from .data_free import DataFreeTrainer, DataFreeTrainerConfig
from .resumable import (CheckpointMismatchError, NonFiniteLossError, ResumableTrainer, ResumableTrainerConfig,
                        latest_checkpoint, unwrap_model)
from .term_logging import TermLoggerCallback

__all__ = [
    "CheckpointMismatchError",
    "DataFreeTrainer",
    "DataFreeTrainerConfig",
    "NonFiniteLossError",
    "ResumableTrainer",
    "ResumableTrainerConfig",
    "TermLoggerCallback",
    "latest_checkpoint",
    "unwrap_model",
]
