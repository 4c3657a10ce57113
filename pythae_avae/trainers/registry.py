"""Training-config class -> trainer class, for trainers Pythae's pipeline cannot select.

Pythae 0.1.2's ``TrainingPipeline`` picks a trainer through an ``isinstance`` chain over its
own config classes; :class:`pythae_avae.pipelines.TrainingPipeline` looks here first. A trainer
with ``needs_data = False`` is built without a dataset.
"""

from typing import Dict

TRAINER_REGISTRY: Dict[type, type] = {}


def register_trainer(config_cls: type):
    """Class decorator: ``TrainingPipeline`` builds this trainer for ``config_cls`` configs."""

    def decorator(trainer_cls):
        TRAINER_REGISTRY[config_cls] = trainer_cls
        return trainer_cls

    return decorator
