import warnings
from typing import Literal, Optional

from pydantic.dataclasses import dataclass

from ..base import STRICT, AVAEFamilyConfig
from ..coupling import check_coupling_options, check_rho
from ...validation import check_int, check_number


@dataclass(config=STRICT)
class AVAEConfig(AVAEFamilyConfig):
    """Autoencoding VAE config (Cemgil et al., NeurIPS 2020).

    Parameters (besides :class:`~pythae_avae.models.base.AVAEFamilyConfig`'s):
        rho (float): coupling strength of ``p_rho(z'|z) = N(rho z, (1 - rho^2) I)``, in [0, 1).
            Default: 0.975 (paper, Table 1).
        aux_noise (bool): True (default) draws the auxiliary image as ``Q_AVAE`` states,
            ``x~ = g(z) + sqrt(obs_var) N(0, I)`` (detached); False uses the noise-free decoder
            mean like the official code. Our ablation (``benchmarks/results/ablations``:
            3,000 iterations, seeds 0 and 1) found the noisy delusion the only variant that
            beats the VAE under attack: digit accuracy at eps = 0.1 of 46.4 / 36.0 % against
            7.8 / 7.8 % for the VAE and 7.0 % for the mean-delusion AVAE (seed 0). Default: True.
        aux_noise_std (float): standard deviation of the delusion's noise; None (default) uses
            ``sqrt(obs_var)``, the sample ``Q_AVAE`` states (with ``reconstruction_loss="bce"``,
            which has no such variance, that is warned about: give a value or
            ``aux_noise=False``). Another value decouples the noise
            from the likelihood's variance (RESULTS.md, Fig. 5 section: on colorMNIST at v = 0.5,
            std 0.3 kept 70.7 / 74.0% of digits at eps = 0.1 after 9,000 / 20,000 iterations
            against 67.0 / 70.8% with sqrt(v), three seeds; the colorMNIST commands use 0.3,
            :data:`pythae_avae.recipes.COMMAND_AUX_NOISE_STD`). Needs ``aux_noise=True``.
            Default: None.
        coupling_estimator (str): ``"analytic"`` integrates z over ``q(z|x)`` treating ``x~`` as
            fixed (official code); ``"paired"`` evaluates the coupling at the sample z that
            produced ``x~`` (spec §1.4). Default: ``"analytic"``.
        coupling (str): ``"product"`` coupling ``q(z|x) q(z'|x~)`` (paper) or the optimal
            ``"entropic_ot"`` joint Gaussian coupling (spec §2.6; with the ``"analytic"``
            estimator only, the one its gain is derived for). Default: ``"product"``.
        aux_batch_norm (str): how the delusion's encoder pass, a batch of its own, uses the
            encoder's BatchNorm layers during training (the paper does not say):
            ``"batch"`` like a data batch, its statistics folded into the running ones that
            evaluation uses; ``"frozen"`` with its own batch statistics, the running ones left
            to the data; ``"eval"`` with the running statistics, i.e. through the encoder
            evaluated at test time (:mod:`pythae_avae.models.batch_norm`). On colorMNIST
            (RESULTS.md, Fig. 5 section; one seed, 3,000 and 9,000 iterations) ``"frozen"``
            measured like ``"batch"`` and ``"eval"`` 8-19 points less robust. Default: ``"batch"``.
        warmup_epoch (int): epochs over which the delusion's terms (-C and -H) ramp linearly
            from weight 0 to 1, like the KL of Pythae's ``DisentangledBetaVAE``: weight
            ``min((epoch - 1) / warmup_epoch, 1)`` in training epoch ``epoch`` (1-based, as the
            trainers pass it to training and eval steps; AVAE-SS's data-free epochs count too),
            1 where no epoch is given (a call outside a trainer). The logged ``coupling_loss``
            and ``entropy_loss`` are the weighted terms. Why try it: on colorMNIST the AVAE's
            reconstruction stays on a plateau (SSE/2v ~ 75) until epoch ~40 or ~77 (seeds 0, 1)
            where the VAE leaves it in epoch ~22. Measured (RESULTS.md, Fig. 5 section, three
            seeds): 20 epochs of warm-up neither end that plateau sooner nor make the AVAE more
            robust (digits at eps = 0.1 after 9,000 iterations: 68.7 +- 1.9% against
            70.7 +- 1.1%). 0 (default, the paper): full weight from the first step.
        aux_samples (int): delusions per data point. 1 (default, the paper) makes the delusion
            from the reconstruction's sample (no extra decoder pass); K > 1 also decodes K - 1
            fresh samples ``z ~ q(z|x)`` (without gradient: the delusion is stop-gradient) and
            averages ``-C`` and ``-H`` over the K, a lower-variance estimate of the same
            expectation, at the cost of K - 1 decoder passes (no backward) and an encoder pass on
            K times the batch (a decoder with BatchNorm folds each of its passes into its running
            statistics). With the ``"analytic"`` estimator only (``"paired"`` needs each
            delusion's sample).
        aux_weight (float): weight of the delusion's terms ``-C - H`` beside the ELBO's, > 0.
            The paper's objective has unit weights (they follow from its joint target, spec §1);
            another value is an ablation of how hard the consistency pull should be. It
            multiplies the warm-up's weight, and the logged ``coupling_loss`` and
            ``entropy_loss`` are the weighted terms. Measured on colorMNIST (RESULTS.md, Fig. 5
            section; seed 0, Adam 4e-3, 9,000 iterations): 0.3 / 3 / 10 kept 63.8 / 74.0 / 69.6%
            of digits at eps = 0.1 against 74.6% at 1. Default: 1.0.
    """

    rho: float = 0.975
    aux_noise: bool = True
    aux_noise_std: Optional[float] = None
    coupling_estimator: Literal["analytic", "paired"] = "analytic"
    coupling: Literal["product", "entropic_ot"] = "product"
    aux_batch_norm: Literal["batch", "frozen", "eval"] = "batch"
    warmup_epoch: int = 0
    aux_samples: int = 1
    aux_weight: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_rho(self.rho, "rho")
        check_int(self.warmup_epoch, "warmup_epoch", minimum=0, why="epochs")
        check_coupling_options(self.coupling_estimator, self.coupling)
        check_int(self.aux_samples, "aux_samples", why="delusions per data point")
        check_number(self.aux_weight, "aux_weight", strict=True, why="weight of the delusion's terms; 1 is the paper's")
        if self.aux_samples > 1 and self.coupling_estimator != "analytic":
            raise ValueError(f"aux_samples={self.aux_samples} needs coupling_estimator='analytic' (the paired "
                             "estimator evaluates the coupling at the one sample that made the delusion)")
        if self.aux_noise and self.aux_noise_std is None and self.reconstruction_loss == "bce":
            # a warning, not an error: configs saved before it was said must still load
            warnings.warn(f"reconstruction_loss='bce' has no observation variance: the delusion's noise std is "
                          f"sqrt(obs_var) = {self.obs_var ** 0.5:.3g}, a value the likelihood does not use. Give "
                          "aux_noise_std (e.g. 0.3) or aux_noise=False", UserWarning)
        if self.aux_noise_std is not None:
            if not self.aux_noise:
                raise ValueError("aux_noise_std needs aux_noise=True (the delusion is noise-free otherwise), "
                                 f"got aux_noise_std={self.aux_noise_std}")
            check_number(self.aux_noise_std, "aux_noise_std", why="pixel noise std, or None for sqrt(obs_var)")
