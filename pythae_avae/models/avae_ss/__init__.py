"""AVAE-SS: data-free AVAE post-training of a pretrained VAE's encoder (AVAE paper §4).

Train it with :class:`pythae_avae.trainers.DataFreeTrainerConfig`. Available samplers: every
sampler of Pythae's VAE family; prior samples equal those of the pretrained model.
"""

from .avae_ss_config import AVAE_SS_Config
from .avae_ss_model import AVAE_SS, FROM_PRIOR

__all__ = ["AVAE_SS", "AVAE_SS_Config", "FROM_PRIOR"]
