from typing import Literal

from pydantic.dataclasses import dataclass

from ..base import STRICT, AVAEFamilyConfig
from ..coupling import check_rho


@dataclass(config=STRICT)
class AVAEConfig(AVAEFamilyConfig):
    """Autoencoding VAE config (Cemgil et al., NeurIPS 2020).

    Parameters (besides :class:`~pythae_avae.models.base.AVAEFamilyConfig`'s):
        rho (float): coupling strength of ``p_rho(z'|z) = N(rho z, (1 - rho^2) I)``, in [0, 1).
            Default: 0.975 (paper, Table 1).
        aux_noise (bool): the auxiliary image ``x~`` is the detached decoder mean ``g(z)``
            (official code, Fig. 1 "no observation noise"); True adds ``sqrt(obs_var) N(0, I)``
            noise as ``Q_AVAE`` literally states. Default: False.
        coupling_estimator (str): ``"analytic"`` integrates z over ``q(z|x)`` treating ``x~`` as
            fixed (official code); ``"paired"`` evaluates the coupling at the sample z that
            produced ``x~`` (spec §1.4). Default: ``"analytic"``.
        coupling (str): ``"product"`` coupling ``q(z|x) q(z'|x~)`` (paper) or the optimal
            ``"entropic_ot"`` joint Gaussian coupling (spec §2.6). Default: ``"product"``.
    """

    rho: float = 0.975
    aux_noise: bool = False
    coupling_estimator: Literal["analytic", "paired"] = "analytic"
    coupling: Literal["product", "entropic_ot"] = "product"

    def __post_init__(self):
        super().__post_init__()
        check_rho(self.rho, "rho")
