"""The raw table every reader produces: source rows as strings, plus rejected rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd

T = TypeVar("T")


@dataclass(frozen=True)
class Rejected:
    """A source row that could not be read (bad bytes, wrong field count ...), with why."""

    source_row: int
    rule: str
    reason: str


@dataclass
class RawTable:
    """Source rows as strings under their original headers, plus `_source_row` (1-based).

    `source_name` is the lineage name of the rows (file name, `file#sheet`, chunk file) and
    defaults to the landed file's name.
    """

    frame: pd.DataFrame
    encoding: str
    rows_read: int
    rejected: list[Rejected] = field(default_factory=list)
    source_name: str | None = None


def take_all(items: list[T]) -> list[T]:
    """The list's items, leaving it empty: a reader yielding a chunk then holds none of it."""
    taken = items.copy()
    items.clear()
    return taken
