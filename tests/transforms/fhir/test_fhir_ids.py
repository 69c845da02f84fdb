"""Deterministic FHIR ids."""

from __future__ import annotations

import re

import pandas as pd
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


def test_database_rows_keep_their_id_through_edits(diagnosis_frame) -> None:
    """A HIS row edited at the source (new code, new date) replaces the same resource."""
    from transforms.fhir.mapper import map_table

    frame = diagnosis_frame.head(1).copy()
    frame["_source_key"] = "sk-1"
    before = map_table("diagnosis", frame, "h1").resources["Condition"][0]["id"]
    edited = frame.copy()
    edited["diagnosis_date"] = edited["diagnosis_date"] + pd.Timedelta(days=3)
    edited["_row_hash"] = "rh-edited"
    after = map_table("diagnosis", edited, "h1").resources["Condition"][0]["id"]
    assert before == after
    file_row = diagnosis_frame.head(1).copy()
    file_row["_source_key"] = None
    assert map_table("diagnosis", file_row, "h1").resources["Condition"][0]["id"] != before
