"""Training helpers: per-term logging (and the trainers our pipeline picks)."""

from .term_logging import TermLoggerCallback

__all__ = ["TermLoggerCallback"]
