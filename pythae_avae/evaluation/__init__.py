"""Robustness evaluation of any Pythae encoder (paper §4, "Evaluation Protocol").

frozen mean ``mu(x)`` -> scikit-learn linear probe -> PGD / AutoAttack on the composition.
"""

from .attacks import autoattack_config, autoattack_robust_mask, pgd_linf, pgd_robust_mask
from .features import embed
from .linear_probe import LinearProbe, ProbeClassifier, fit_probes, linear_from_sklearn
from .robustbench_shim import import_robustbench
from .robustness import WORST, RobustnessTable, evaluate_robustness, format_table1, model_cards, write_reports

__all__ = [
    "WORST",
    "LinearProbe",
    "ProbeClassifier",
    "RobustnessTable",
    "autoattack_config",
    "autoattack_robust_mask",
    "embed",
    "evaluate_robustness",
    "fit_probes",
    "format_table1",
    "import_robustbench",
    "linear_from_sklearn",
    "model_cards",
    "pgd_linf",
    "pgd_robust_mask",
    "write_reports",
]
