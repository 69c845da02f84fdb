"""Tests for transforms.identity: resident ID checks, pseudonyms, row hashes and the key."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd
import pytest

from transforms.errors import PseudonymKeyMissing
from transforms.identity import (
    DEMO_PSEUDONYM_KEY,
    load_pseudonym_key,
    normalise_resident_id,
    pseudonymise,
    resident_id_valid,
    row_hashes,
)

KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"


def check_char(first17: str) -> str:
    """Reference ISO 7064 MOD 11-2, written out plainly to cross-check the vectorised code."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


VALID = "11010519491231002X"
VALID_DIGIT = "44030419900307124"  # check char computed below: a digit, 8
VALID_DIGIT += check_char(VALID_DIGIT)
BAD_DATE = "11010519491331002"  # month 13
BAD_DATE += check_char(BAD_DATE)
BORN_1899 = "11010518991231002"
BORN_1899 += check_char(BORN_1899)
BORN_2099 = "11010520990101001"
BORN_2099 += check_char(BORN_2099)


def test_reference_check_char_agrees_with_known_example() -> None:
    assert check_char(VALID[:17]) == "X"
    assert VALID_DIGIT[17] == "8"


def test_normalise_resident_id() -> None:
    raw = pd.Series(["１１０１０５１９４９１２３１００２ｘ", " 110105 19491231002x ", "", None])
    assert normalise_resident_id(raw).tolist()[:2] == [VALID, VALID]
    assert normalise_resident_id(raw).iloc[2:].isna().all()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (VALID, True),
        (VALID_DIGIT, True),
        ("11010519491231002x", True),
        ("１１０１０５１９４９１２３１００２Ｘ", True),
        (VALID[:17] + "1", False),  # wrong check digit
        (VALID_DIGIT[:17] + ("0" if VALID_DIGIT[17] != "0" else "1"), False),
        (VALID[:16], False),  # wrong length
        (VALID + "0", False),
        ("11010519491231X02X", False),  # X not last
        (BAD_DATE, False),  # checksum right, embedded date impossible
        (BORN_1899, False),  # checksum right, birth before 1900 implausible
        (BORN_2099, False),  # checksum right, birth date in the future
    ],
)
def test_resident_id_valid(raw: str, expected: bool) -> None:
    result = resident_id_valid(pd.Series([raw])).iloc[0]
    assert bool(result) is expected


def test_resident_id_valid_blank_is_na_and_vectorised() -> None:
    values = pd.Series([VALID, None, "  ", "abc", VALID_DIGIT], index=[5, 6, 7, 8, 9])
    result = resident_id_valid(values)
    assert result.dtype == "boolean"
    assert result.index.tolist() == [5, 6, 7, 8, 9]
    assert result.tolist() == [True, pd.NA, pd.NA, False, True]


def test_pseudonymise_is_hmac_and_deterministic() -> None:
    values = pd.Series([VALID, None, VALID, VALID_DIGIT])
    first = pseudonymise(values, KEY, "person")
    expected = hmac.new(KEY, ("person\x1f" + VALID).encode(), hashlib.sha256).hexdigest()
    assert first.iloc[0] == expected == first.iloc[2]
    assert pd.isna(first.iloc[1])
    assert first.iloc[3] != expected and len(first.iloc[3]) == 64
    assert pseudonymise(values, KEY, "person").equals(first)


@pytest.mark.parametrize("key", [b"k", KEY, b"long-key-" * 20])
def test_pseudonymise_matches_stdlib_hmac_for_any_key_length(key: bytes) -> None:
    values = pd.Series(["MRN0001", "患者"])
    expected = [
        hmac.new(key, f"mrn:h1\x1f{v}".encode(), hashlib.sha256).hexdigest() for v in values
    ]
    assert pseudonymise(values, key, "mrn:h1").tolist() == expected


def test_pseudonymise_depends_on_key_and_namespace() -> None:
    values = pd.Series(["MRN0001"])
    base = pseudonymise(values, KEY, "mrn:h1").iloc[0]
    assert pseudonymise(values, OTHER_KEY, "mrn:h1").iloc[0] != base
    assert pseudonymise(values, KEY, "mrn:h2").iloc[0] != base
    with pytest.raises(PseudonymKeyMissing):
        pseudonymise(values, b"", "person")


def test_row_hashes() -> None:
    frame = pd.DataFrame(
        {"a": ["1", "1\x1f2", None, "", "1"], "b": ["2\x1f", "2", "", None, "2\x1f"]},
        dtype=object,
    )
    hashes = row_hashes(frame, KEY, "h1:lab")
    assert hashes.str.len().eq(64).all()
    assert hashes.iloc[0] == hashes.iloc[4]  # same raw row, same hash
    assert hashes.iloc[:4].nunique() == 4  # separator inside a value and NA vs "" differ
    assert row_hashes(frame, KEY, "h1:lab").equals(hashes)
    assert row_hashes(frame, OTHER_KEY, "h1:lab").iloc[0] != hashes.iloc[0]
    assert row_hashes(frame, KEY, "h2:lab").iloc[0] != hashes.iloc[0]


def test_row_hashes_accept_undecodable_bytes() -> None:
    frame = pd.DataFrame({"a": ["x\udcb0y", "xy"]}, dtype=object)
    hashes = row_hashes(frame, KEY, "s")
    assert hashes.iloc[0] != hashes.iloc[1]


def test_load_pseudonym_key() -> None:
    secret = "s" * 40
    assert load_pseudonym_key({"WALNUT_PSEUDONYM_KEY": secret}) == secret.encode()
    assert load_pseudonym_key({}, allow_demo=True) == DEMO_PSEUDONYM_KEY
    with pytest.raises(PseudonymKeyMissing, match="WALNUT_PSEUDONYM_KEY is not set"):
        load_pseudonym_key({})
    short = "tooshort-secret"
    with pytest.raises(PseudonymKeyMissing) as excinfo:
        load_pseudonym_key({"WALNUT_PSEUDONYM_KEY": short}, allow_demo=True)
    assert short not in str(excinfo.value)
    assert "at least 32" in str(excinfo.value)
