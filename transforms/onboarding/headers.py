"""Column names of an export without reading its rows (CSV/Excel headers, SQL table columns).

HL7 v2 and FHIR files have no header: their columns are the field positions and paths that
occur in the file, so those files are read whole by the regular readers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from transforms.encoding import detect_encoding
from transforms.mapping import CsvSource, ExcelSource, SiteMapping, SourceSpec, SqlSource

HEADER_SAMPLE_BYTES = 64 * 1024


def read_csv_header(path: Path, encoding: str = "auto", delimiter: str = ",") -> list[str]:
    """Header names of a delimited export, read from its first 64 KiB."""
    with path.open("rb") as handle:
        data = handle.read(HEADER_SAMPLE_BYTES)
    cut = data.rfind(b"\n")
    sample = data[: cut + 1] if 0 < cut < len(data) - 1 else data
    codec = detect_encoding(sample) if encoding == "auto" else encoding
    text = sample.decode(codec, errors="replace")
    for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if record:
            return [h.strip().lstrip("\ufeff") for h in record]
    return []


def read_excel_header(path: Path, sheet: str, header_row: int = 1) -> list[str]:
    """Header names of one sheet (blank headers named `_column_<n>` as the reader does)."""
    from python_calamine import CalamineWorkbook

    from transforms.extract.excel import format_cell

    with CalamineWorkbook.from_path(str(path)) as workbook:
        if sheet not in workbook.sheet_names:
            raise KeyError(f"sheet {sheet!r} not found; the workbook has {workbook.sheet_names}")
        grid = workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=False, nrows=header_row)
    if len(grid) < header_row:
        return []
    cells = [format_cell(c).strip() for c in grid[header_row - 1]]
    return [c or f"_column_{i + 1}" for i, c in enumerate(cells)]


def read_file_columns(spec: SourceSpec, path: Path) -> list[str]:
    """Columns a source's reader will produce for `path` (headers only where there are any)."""
    if isinstance(spec, CsvSource):
        return read_csv_header(path, spec.encoding, spec.delimiter)
    if isinstance(spec, ExcelSource):
        return read_excel_header(path, spec.sheet, spec.header_row)
    from transforms.extract import read_landed

    names: list[str] = []
    for raw in read_landed(spec, path):
        names += [c for c in raw.frame.columns if c != "_source_row" and c not in names]
    return names


def read_sql_columns(
    mapping: SiteMapping,
    spec: SqlSource,
    source_dir: Path | None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Column names of a SQL source's table (ConfigError when no database is configured)."""
    from sqlalchemy import inspect

    from transforms.extract.sql import connection_name, open_database, resolve_database_url

    url = resolve_database_url(mapping, spec, source_dir, environ)
    engine = open_database(url, connection_name(mapping, spec))
    try:
        return [c["name"] for c in inspect(engine).get_columns(spec.source_table)]
    finally:
        engine.dispose()
