"""Deterministic FHIR ids."""

from __future__ import annotations

import re

import pytest

from transforms.fhir.ids import fhir_id

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def test_same_key_same_id_across_calls() -> None:
    assert fhir_id("Patient", "h1", "pk-a") == fhir_id("Patient", "h1", "pk-a")


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("Patient", "h1", "pk-a"), ("Patient", "h1", "pk-b")),
        (("Patient", "h1", "pk-a"), ("Patient", "h2", "pk-a")),
        (("Patient", "h1", "pk-a"), ("Observation", "h1", "pk-a")),
        (("Condition", "h1", "ab", "c"), ("Condition", "h1", "a", "bc")),
    ],
)
def test_different_keys_different_ids(left: tuple[str, ...], right: tuple[str, ...]) -> None:
    assert fhir_id(*left) != fhir_id(*right)


def test_id_is_valid_fhir_id() -> None:
    value = fhir_id("Observation", "h1", "pk-a", "AFP01", "2022-03-14T00:30:00Z")
    assert FHIR_ID.match(value)
    assert len(value) == 32
