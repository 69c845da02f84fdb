"""Linkage truth: one row per hospital record of every invented person (`_truth/persons.csv`)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

PERSON_COLUMNS = ("person_index", "hospital", "mrn", "resident_id", "name", "birth_date", "sex")


class PersonLog:
    """Streams exported identities; records sharing person_index are the same human being."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(PERSON_COLUMNS)

    def record(
        self,
        person_index: int,
        hospital: str,
        mrn: str,
        resident_id: str | None,
        name: str,
        birth_date: date | None,
        male: bool,
    ) -> None:
        """Values as the hospital exported them (empty when missing there)."""
        birth = birth_date.isoformat() if birth_date else ""
        self._writer.writerow(
            (
                person_index,
                hospital,
                mrn,
                resident_id or "",
                name,
                birth,
                "male" if male else "female",
            )
        )

    def close(self) -> None:
        self._file.close()


def person_index(hospital: str, index: int, patients: int) -> int:
    """Global 1-based person number: east_liver first, then north_chest, then south_general."""
    offset = {"east_liver": 0, "north_chest": patients, "south_general": 2 * patients}[hospital]
    return offset + index + 1
