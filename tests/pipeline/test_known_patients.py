"""Known patients for the cross-table checks: every finished batch's good patient rows, newest
value per patient, read from a per-hospital cache extended by the batches finished since."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import pipeline.sync as sync
from pipeline.batch_files import BatchFiles, write_json
from pipeline.settings import Settings, load_settings

HOSPITAL = "east_liver"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})


def _batch(
    settings: Settings,
    n: int,
    rows: list[tuple[str, str, str | None]],
    quarantined: tuple[str, ...] = (),
    finished: bool = True,
) -> BatchFiles:
    """A batch's staged patients (key, birth date, death date; row hash = key@n)."""
    files = BatchFiles(settings, HOSPITAL, f"2026010{n}T000000Z-0000000{n}")
    frame = pd.DataFrame(
        {
            "patient_key": [key for key, _, _ in rows],
            "birth_date": pd.to_datetime([birth for _, birth, _ in rows]).date,
            "death_date": [pd.Timestamp(d).date() if d else None for _, _, d in rows],
            "_row_hash": [f"{key}@{n}" for key, _, _ in rows],
        }
    )
    files.staging("patient").parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(files.staging("patient"), index=False)
    files.gov.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"row_hash": list(quarantined)}, dtype="string").to_parquet(
        files.quarantine("validate"), index=False
    )
    write_json(files.gov / "load_run.json", {"status": "success" if finished else "failed"})
    return files


def _known(settings: Settings, this: BatchFiles | None = None) -> dict[str, tuple]:
    files = this or BatchFiles(settings, HOSPITAL, "20260201T000000Z-99999999")
    known = sync._known_patients(files, None, set())
    return {
        row.patient_key: (
            str(row.birth_date.date()),
            None if pd.isna(row.death_date) else str(row.death_date.date()),
        )
        for row in known.itertuples()
    }


def test_newest_good_row_per_patient_of_finished_batches(settings: Settings) -> None:
    _batch(settings, 1, [("p1", "1950-01-01", None), ("p2", "1960-01-01", None)])
    _batch(settings, 2, [("p1", "1950-01-02", "2024-05-01"), ("p3", "1970-01-01", None)], ("p3@2",))
    _batch(settings, 3, [("p4", "1980-01-01", None)], finished=False)
    assert _known(settings) == {
        "p1": ("1950-01-02", "2024-05-01"),
        "p2": ("1960-01-01", None),
    }


def test_later_syncs_read_the_cache_and_only_the_batches_finished_since(
    settings: Settings,
) -> None:
    first = _batch(settings, 1, [("p1", "1950-01-01", None)])
    _batch(settings, 2, [("p2", "1960-01-01", None)])
    assert set(_known(settings)) == {"p1", "p2"}
    assert (settings.staging / HOSPITAL / sync.KNOWN_PATIENTS).is_file()
    first.quarantine("validate").unlink()  # were batch 1 read again, this would change nothing
    first.staging("patient").write_bytes(b"not parquet any more")
    _batch(settings, 3, [("p1", "1950-03-03", None)])
    assert _known(settings) == {"p1": ("1950-03-03", None), "p2": ("1960-01-01", None)}


def test_a_batch_finished_out_of_order_rebuilds_the_cache(settings: Settings) -> None:
    _batch(settings, 1, [("p1", "1950-01-01", None)])
    late = _batch(settings, 2, [("p1", "1950-02-02", None)], finished=False)
    _batch(settings, 3, [("p3", "1970-01-01", None)])
    assert _known(settings) == {"p1": ("1950-01-01", None), "p3": ("1970-01-01", None)}
    write_json(late.gov / "load_run.json", {"status": "success"})
    assert _known(settings) == {"p1": ("1950-02-02", None), "p3": ("1970-01-01", None)}


def test_the_batch_being_validated_is_never_taken_from_the_cache(settings: Settings) -> None:
    _batch(settings, 1, [("p1", "1950-01-01", None)])
    second = _batch(settings, 2, [("p2", "1960-01-01", None)])
    assert set(_known(settings)) == {"p1", "p2"}
    assert set(_known(settings, second)) == {"p1"}  # a re-run of batch 2 sees batch 1 only
    assert set(_known(settings)) == {"p1", "p2"}


def test_no_finished_batch_gives_an_empty_typed_frame(settings: Settings) -> None:
    files = BatchFiles(settings, HOSPITAL, "20260101T000000Z-00000001")
    known = sync._known_patients(files, None, set())
    assert list(known.columns) == ["patient_key", "birth_date", "death_date"] and known.empty
