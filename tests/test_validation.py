"""The package's one check of numeric settings: what it refuses, and what its message says."""

import re

import numpy as np
import pytest

from pythae_avae.validation import check_bool, check_int, check_number


@pytest.mark.parametrize("value", [0, -3, True, 2.0, "2", None])
def test_check_int_refuses(value):
    expected = rf"^steps must be an int >= 1 \(PGD iterations\), got {re.escape(repr(value))}$"
    with pytest.raises(ValueError, match=expected):
        check_int(value, "steps", why="PGD iterations")


def test_check_int_accepts_numpy_ints_and_the_bound():
    assert check_int(np.int64(3), "n") == 3 and type(check_int(np.int64(3), "n")) is int
    assert check_int(0, "n", minimum=0) == 0


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1", None, 10**400])
def test_check_number_refuses(value):
    with pytest.raises(ValueError, match=r"^eps must be a finite number >= 0, got "):
        check_number(value, "eps")


def test_check_number_strict_bound_and_reason():
    assert check_number(0.0, "eps") == 0.0
    assert check_number(np.float32(0.5), "obs_var", strict=True) == 0.5
    with pytest.raises(ValueError, match=r"^obs_var must be a finite number > 0 \(observation variance\), got 0.0$"):
        check_number(0.0, "obs_var", strict=True, why="observation variance")


@pytest.mark.parametrize("value", ["False", 0, 1, None])
def test_check_bool_refuses_truthy_stand_ins(value):
    with pytest.raises(ValueError, match=rf"^batch_norm must be True or False, got {re.escape(repr(value))}$"):
        check_bool(value, "batch_norm")
    assert check_bool(False, "batch_norm") is False
