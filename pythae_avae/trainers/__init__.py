"""Training helpers: per-term logging (and the trainers our pipeline picks)."""

from .resumable import ResumableTrainer, ResumableTrainerConfig
from .term_logging import TermLoggerCallback

__all__ = ["ResumableTrainer", "ResumableTrainerConfig", "TermLoggerCallback"]
