"""Checks of numeric settings, with one message format for the whole package.

A bad setting stops with ``ValueError`` naming the parameter, the range it expects (and why,
where the range is not obvious) and the value it got. Pydantic configs coerce ``True`` to
``1`` and ``"0.5"`` to ``0.5`` before these run; infinities and NaN pass pydantic, not these.
"""

import math
from numbers import Integral, Real


def _reason(why: str) -> str:
    return f" ({why})" if why else ""


def check_int(value, name: str, minimum: int = 1, why: str = "") -> int:
    """Returns ``value`` as an int if it is an integer ``>= minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{_reason(why)}, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """Returns ``value`` if it is ``True`` or ``False`` (a string such as ``"False"`` is truthy:
    refused rather than read as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _finite(value: Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def check_number(value, name: str, minimum: float = 0.0, strict: bool = False, why: str = "") -> float:
    """Returns ``value`` as a float if it is finite and ``>= minimum`` (``> minimum`` if
    ``strict``); bools refused."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, Real)
        and _finite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not valid:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}{_reason(why)}, got {value!r}")
    return float(value)
