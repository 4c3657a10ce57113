from .training import TRAINER_REGISTRY, TrainingPipeline, register_trainer

__all__ = ["TRAINER_REGISTRY", "TrainingPipeline", "register_trainer"]
