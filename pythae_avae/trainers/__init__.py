"""Training helpers: per-term logging (and the trainers our pipeline picks)."""

from .data_free import DataFreeTrainer, DataFreeTrainerConfig
from .resumable import ResumableTrainer, ResumableTrainerConfig
from .term_logging import TermLoggerCallback

__all__ = [
    "DataFreeTrainer",
    "DataFreeTrainerConfig",
    "ResumableTrainer",
    "ResumableTrainerConfig",
    "TermLoggerCallback",
]
