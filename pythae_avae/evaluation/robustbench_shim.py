"""The one place that makes ``import robustbench`` work beside PyPI's AutoAttack.

RobustBench 1.1.1 imports ``autoattack`` (the GitHub package), but its PyPI dependency
``pyautoattack`` installs the module ``pyautoattack`` (RobustBench issue #211), so a plain
``import robustbench`` fails. RobustBench also imports ``pkg_resources``, which setuptools 82
removed (``setuptools<82`` is pinned in ``pyproject.toml``).

:func:`import_robustbench` registers ``pyautoattack`` under the name ``autoattack`` when no real
``autoattack`` is installed (a no-op once upstream is fixed), then imports RobustBench. Nothing
else in this package imports RobustBench directly.
"""

import importlib
import importlib.util
import sys


def alias_autoattack() -> None:
    """Makes ``import autoattack`` resolve to ``pyautoattack`` if the former is missing."""
    if "autoattack" in sys.modules or importlib.util.find_spec("autoattack") is not None:
        return
    pyautoattack = importlib.import_module("pyautoattack")
    sys.modules["autoattack"] = pyautoattack
    for sub in ("state", "autopgd_base", "fab_pt", "square", "checks", "other_utils"):
        try:
            sys.modules[f"autoattack.{sub}"] = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:
            pass


def import_robustbench():
    """Imports RobustBench with the ``autoattack`` alias; clear errors for known traps."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "robustbench 1.1.1 needs pkg_resources, removed in setuptools 82: "
            "pip install 'setuptools<82'"
        ) from err
    alias_autoattack()
    return importlib.import_module("robustbench")
