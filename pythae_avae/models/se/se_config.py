from typing import Literal, Optional

from pydantic.dataclasses import dataclass

from ..base import STRICT, AVAEFamilyConfig
from ..coupling import check_rho
from ...validation import check_int, check_number
from .select import W2_NEEDS_RANDOM_START


@dataclass(config=STRICT)
class SEConfig(AVAEFamilyConfig):
    """Smooth Encoder config (Cemgil et al., ICLR 2020, as a special case of AVAE, paper §3.1).

    The SE paper's body could not be read (spec §0): the attack settings and the weight of
    the auxiliary reconstruction are our reconstruction (spec §2.3) and are all configurable.

    Parameters (besides :class:`~pythae_avae.models.base.AVAEFamilyConfig`'s):
        rho_se (float): coupling strength between the codes of ``x`` and ``x~``, in [0, 1).
            Default: 0.95 (paper, Table 1).
        se_eps (float): L-infinity radius ``eps'`` of the Select attack on [0, 1] pixels,
            ``>= 0``; 0 means ``x~ = x`` (no attack is run). Default: 0.1 (paper: 0.1 or 0.2).
        se_steps (int): PGD steps ``L >= 1`` (``SE^L``). To switch the attack off set
            ``se_eps = 0``. Default: 5.
        se_step_size (float): PGD step ``alpha > 0``; None means ``2.5 se_eps / se_steps``.
            Default: None.
        se_random_start (bool): start PGD at a uniform random point of the eps-ball.
            Default: True.
        se_attack_loss (str): what Select maximises: ``"coupling_kl"`` =
            ``KL(q(z|x~) || N(rho_se mu(x), (1 - rho_se^2) I))`` (= ``-(C + H)`` up to terms
            constant in ``x~``) or ``"w2"`` = squared W2 distance between ``q(z|x)`` and
            ``q(z|x~)`` (needs ``se_random_start``: its gradient is 0 at ``x~ = x``).
            Default: ``"coupling_kl"``.
        se_recon_aux (float): weight ``lambda_rec >= 0`` of the reconstruction term
            ``log p(x~|z')`` of the auxiliary point. 1 follows the SE target (paper eq. 6)
            literally (the decoder also reconstructs ``x~``); 0 is the AVAE reading with a flat
            ``u(x~)``. The SE paper's choice is unknown (spec §2.3, §8.12); our default is 1.
            Default: 1.0.
        coupling (str): ``"product"`` coupling ``q(z|x) q(z'|x~)`` or the optimal
            ``"entropic_ot"`` joint Gaussian coupling (spec §2.6). Default: ``"product"``.
    """

    rho_se: float = 0.95
    se_eps: float = 0.1
    se_steps: int = 5
    se_step_size: Optional[float] = None
    se_random_start: bool = True
    se_attack_loss: Literal["coupling_kl", "w2"] = "coupling_kl"
    se_recon_aux: float = 1.0
    coupling: Literal["product", "entropic_ot"] = "product"

    def __post_init__(self):
        super().__post_init__()
        check_rho(self.rho_se, "rho_se")
        check_number(self.se_eps, "se_eps", why="L-infinity radius")
        check_int(self.se_steps, "se_steps", why="PGD steps; use se_eps=0 for no attack")
        if self.se_step_size is not None:
            check_number(self.se_step_size, "se_step_size", strict=True, why="or None for 2.5 se_eps / se_steps")
        if self.se_attack_loss == "w2" and not self.se_random_start:
            raise ValueError(f"se_random_start=False: se_{W2_NEEDS_RANDOM_START}")
        check_number(self.se_recon_aux, "se_recon_aux", why="lambda_rec")
