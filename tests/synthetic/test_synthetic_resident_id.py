"""Resident ID check digits (ISO 7064 MOD 11-2)."""

from __future__ import annotations

import random
from datetime import date

import pytest

from synthetic.resident_id import (
    compute_check_digit,
    corrupt_check_digit,
    is_valid_resident_id,
    make_resident_id,
)


@pytest.mark.parametrize(
    ("first17", "check"),
    [("11010519491231002", "X"), ("44052418800101001", "4"), ("33010619900307123", "6")],
)
def test_compute_check_digit(first17: str, check: str) -> None:
    assert compute_check_digit(first17) == check


def test_make_resident_id_is_valid_and_encodes_birth_and_sex() -> None:
    rng = random.Random(1)
    for male in (True, False):
        value = make_resident_id(rng, "330106", date(1961, 2, 3), male)
        assert is_valid_resident_id(value)
        assert value[6:14] == "19610203"
        assert int(value[16]) % 2 == (1 if male else 0)


def test_corrupt_check_digit_fails_validation() -> None:
    valid = "11010519491231002X"
    assert is_valid_resident_id(valid)
    broken = corrupt_check_digit(valid)
    assert broken[:17] == valid[:17] and broken != valid
    assert not is_valid_resident_id(broken)
