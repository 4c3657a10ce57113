from typing import Literal

from pydantic.dataclasses import dataclass

from ..avae.avae_config import AVAEConfig
from ..base import STRICT
from ..se.se_config import SEConfig


@dataclass(config=STRICT)
class SE_AVAE_Config(SEConfig, AVAEConfig):
    """SE-AVAE config: every field of :class:`~pythae_avae.models.avae.AVAEConfig` (branch of
    the decoder delusion ``x~_a``: ``rho``, ``aux_noise``, ``coupling_estimator``) and of
    :class:`~pythae_avae.models.se.SEConfig` (branch of the attack point ``x~_s``:
    ``rho_se``, ``se_eps``, ``se_steps``, ``se_step_size``, ``se_random_start``,
    ``se_attack_loss``, ``se_recon_aux``). ``coupling`` applies to both branches.

    The two branches have unit weights: they follow from the joint target (paper §4; the
    details in the paper's appendix C.5 could not be read, spec §2.4). ``aux_weight`` (an
    ablation, default 1) weights the delusion's branch only.
    Table 1's "SE_0.1-AVAE" is ``se_eps=0.1``; Table 2's "SE^5-AVAE" is ``se_steps=5``.

    Parameters (besides both parents'):
        se_batch (str): which encoder batch the attack point ``x~_s`` joins in training, with
            BatchNorm encoders the batch its code is normalised in (spec §2.3: code and target
            in one batch, or the coupling compares codes normalised differently). ``"data"``
            (default): ``[x; x~_s]`` as in SE, then ``x~_a`` alone as in AVAE, so each branch
            computes its codes as in its own model. ``"delusion"``: ``x`` alone, then
            ``[x~_a; x~_s]`` (spec §2.4's shared auxiliary call; the layout the committed
            SE-AVAE rows were trained with, before 2026-11-28). Same cost: two training passes.
    """

    se_batch: Literal["data", "delusion"] = "data"

    #: what a field missing from a config written before it existed meant: those runs trained
    #: the delusion layout, not today's default (read by from_dict and by the trainer's resume check)
    ABSENT_MEANS = {"se_batch": "delusion"}

    @classmethod
    def from_dict(cls, config_dict):
        return super().from_dict({**cls.ABSENT_MEANS, **config_dict})
