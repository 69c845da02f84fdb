"""Chinese resident identity numbers (GB 11643) with the ISO 7064 MOD 11-2 check digit."""

from __future__ import annotations

import random
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"


def compute_check_digit(first17: str) -> str:
    """Check character for the first 17 digits: sum of weighted digits mod 11, mapped."""
    total = sum(int(ch) * w for ch, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def is_valid_resident_id(value: str) -> bool:
    """True when the value has 17 digits plus a matching check character (digit or X)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    return compute_check_digit(value[:17]) == value[17].upper()


def make_resident_id(rng: random.Random, area_code: str, birth: date, male: bool) -> str:
    """A valid 18-char ID; the sequence number's last digit is odd for men, even for women."""
    sequence = rng.randrange(0, 100) * 10 + rng.choice((1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8))
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + compute_check_digit(first17)


def corrupt_check_digit(value: str) -> str:
    """The same ID with a different, therefore wrong, check character."""
    correct = value[17]
    wrong = _CHECK_CHARS[(_CHECK_CHARS.index(correct) + 3) % 11]
    return value[:17] + wrong
