"""Source readers: one module per source kind, each turning a landed file into raw tables.

A raw table is the source's rows as strings under the source's own column names, plus
`_source_row`; rows that cannot be read are rejected with a reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from transforms.extract.raw import RawTable
from transforms.mapping import SourceSpec

Reader = Callable[[SourceSpec, Path], Iterator[RawTable]]


def _read_csv(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.csv_export import read_csv_export

    yield read_csv_export(path, spec.encoding, spec.delimiter)


def _read_excel(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.excel import read_excel_sheet

    yield read_excel_sheet(path, spec.sheet, spec.header_row)


def _read_sql(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.sql import read_sql_chunk

    yield from read_sql_chunk(spec, path)


def _read_hl7v2(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.hl7v2 import read_hl7_file

    yield read_hl7_file(path, spec.segment, spec.encoding)


def _read_fhir(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.fhir_intake import read_fhir_export

    yield read_fhir_export(path, spec.resource_type, spec.columns)


READERS: dict[str, Reader] = {
    "csv": _read_csv,
    "excel": _read_excel,
    "sql": _read_sql,
    "hl7v2": _read_hl7v2,
    "fhir": _read_fhir,
}


def read_landed(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    """Raw tables of one landed file for one source spec (several for chunked sources)."""
    try:
        reader = READERS[spec.kind]
    except KeyError:
        raise NotImplementedError(f"no reader for source kind {spec.kind!r} yet") from None
    yield from reader(spec, path)
