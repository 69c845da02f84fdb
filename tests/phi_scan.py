"""Scan runtime data for planted identifiers: text, Parquet columns and DuckDB tables alike."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

# Sources and landing sit inside the hospital boundary and legitimately hold identifiers.
INSIDE_BOUNDARY = {"sources", "landing"}


def _strings_of_parquet(path: Path) -> Iterable[str]:
    table = pq.read_table(path)
    for column in table.columns:
        for value in column.to_pylist():
            if value is not None:
                yield str(value)


def _strings_of_duckdb(path: Path) -> Iterable[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
        ).fetchall()
        for schema, name in tables:
            for row in con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall():
                yield from (str(v) for v in row if v is not None)
    finally:
        con.close()


def find_phi(root: Path, needles: set[str]) -> list[tuple[str, str]]:
    """(relative file, needle) for every planted identifier found outside the boundary."""
    hits: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in INSIDE_BOUNDARY or path.name.endswith(".lock"):
            continue
        if path.suffix == ".parquet":
            text = "\n".join(_strings_of_parquet(path))
        elif path.suffix == ".duckdb":
            text = "\n".join(_strings_of_duckdb(path))
        else:
            data = path.read_bytes()
            text = data.decode("utf-8", errors="ignore") + data.decode("gb18030", errors="ignore")
        hits += [(str(rel), n) for n in needles if n in text]
    return hits


def find_phi_in_text(text: str, needles: set[str]) -> list[str]:
    return sorted(n for n in needles if n in text)


def planted_identifiers(sources: Path, hospital: str = "east_liver") -> set[str]:
    """Names, resident IDs, phones, addresses and MRNs of a synthetic east_liver export."""
    text = (sources / hospital / "患者.csv").read_bytes().decode("gb18030", errors="replace")
    needles: set[str] = set()
    for row in csv.DictReader(io.StringIO(text)):
        needles |= {row["姓名"], row["身份证号"], row["联系电话"], row["家庭住址"], row["住院号"]}
    return {n for n in needles if n and len(n) >= 2}
