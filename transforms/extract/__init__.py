"""Source readers: one module per source kind, each turning a landed file into raw tables.

A raw table is the source's rows as strings under the source's own column names, plus
`_source_row`; rows that cannot be read are rejected with a reason, never dropped silently.
Readers can yield a file in chunks so that staging memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from transforms.extract.raw import RawTable
from transforms.mapping import SourceSpec

Reader = Callable[[SourceSpec, Path, int | None], Iterator[RawTable]]


def _read_csv(spec: SourceSpec, path: Path, chunk_rows: int | None) -> Iterator[RawTable]:
    from transforms.extract.csv_export import iter_csv_export

    yield from iter_csv_export(path, spec.encoding, spec.delimiter, chunk_rows)


def _read_excel(spec: SourceSpec, path: Path, chunk_rows: int | None) -> Iterator[RawTable]:
    from transforms.extract.excel import iter_excel_sheet

    yield from iter_excel_sheet(path, spec.sheet, spec.header_row, chunk_rows)


def _read_sql(spec: SourceSpec, path: Path, chunk_rows: int | None) -> Iterator[RawTable]:
    from transforms.extract.sql import read_sql_chunk

    yield from read_sql_chunk(spec, path, chunk_rows)


def _read_hl7v2(spec: SourceSpec, path: Path, chunk_rows: int | None) -> Iterator[RawTable]:
    from transforms.extract.hl7v2 import iter_hl7_file

    yield from iter_hl7_file(path, spec.segment, spec.encoding, chunk_rows)


def _read_fhir(spec: SourceSpec, path: Path, chunk_rows: int | None) -> Iterator[RawTable]:
    """Whole file: a resource's columns are its element paths, known only after every one."""
    from transforms.extract.fhir_intake import read_fhir_export

    yield read_fhir_export(path, spec.resource_type, spec.columns)


READERS: dict[str, Reader] = {
    "csv": _read_csv,
    "excel": _read_excel,
    "sql": _read_sql,
    "hl7v2": _read_hl7v2,
    "fhir": _read_fhir,
}


def read_landed(spec: SourceSpec, path: Path, chunk_rows: int | None = None) -> Iterator[RawTable]:
    """Raw tables of one landed file for one source spec, in file order.

    With `chunk_rows`, each holds at most about that many source rows (HL7 in whole messages;
    FHIR files stay whole); without, one per file (one per landed chunk for SQL sources).
    Chunks of one file share its `source_name`, carry its columns and number rows as one read.
    """
    try:
        reader = READERS[spec.kind]
    except KeyError:
        raise NotImplementedError(f"no reader for source kind {spec.kind!r} yet") from None
    yield from reader(spec, path, chunk_rows)
