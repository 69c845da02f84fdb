"""Profile a new export before writing its mapping (the job OHDSI's WhiteRabbit does).

Per table (CSV file, Excel sheet, HL7 segment, FHIR resource type): rows, detected encoding,
and per column the inferred type (with the date formats that parse it), blank share, distinct
count and the most common value shapes. No raw value ever reaches the profile: shapes replace
characters by their class, and the draft columns.yaml holds headers, types and shares only.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from transforms.extract.raw import RawTable
from transforms.onboarding.draft import ColumnHint, draft_columns_yaml
from transforms.onboarding.patterns import guess_type, value_shape

log = logging.getLogger(__name__)

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
HL7_SUFFIXES = {".hl7", ".txt"}
FHIR_SUFFIXES = {".ndjson", ".json"}
TOP_SHAPES = 5
HEADER_SCAN_ROWS = 10
_HL7_SEGMENTS = ("OBX", "PID")


@dataclass
class ColumnProfile:
    name: str
    kind: str
    formats: list[str]
    format_shares: list[float]
    null_rate: float
    distinct: int
    shapes: list[tuple[str, int]]


@dataclass
class TableProfile:
    name: str
    kind: str
    encoding: str
    rows: int
    rejected: int
    columns: list[ColumnProfile] = field(default_factory=list)
    header_row: int | None = None


def _entry_name(table: str) -> str:
    stem = table.split("#")[-1] if "#" in table else Path(table).stem
    return re.sub(r"\W+", "_", stem).strip("_").lower() or "source"


def draft_for(tables: list[TableProfile]) -> str:
    """The columns.yaml draft of profiled tables, one entry per table (names made unique)."""
    sources: dict[str, list[ColumnHint]] = {}
    for table in tables:
        name = base = _entry_name(table.name)
        number = 2
        while name in sources:
            name, number = f"{base}_{number}", number + 1
        sources[name] = [
            ColumnHint(c.name, c.kind, tuple(c.formats), c.null_rate) for c in table.columns
        ]
    return draft_columns_yaml(sources)


def profile_column(name: str, values: pd.Series) -> ColumnProfile:
    """Type, blank share, distinct count and top shapes of one column of strings."""
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    present = text[~blank]
    shapes = Counter(value_shape(v) for v in present.dropna().tolist())
    guess = guess_type(present)
    return ColumnProfile(
        name=name,
        kind=guess.kind,
        formats=list(guess.formats),
        format_shares=[round(s, 4) for s in guess.shares],
        null_rate=float(blank.mean()) if len(text) else 0.0,
        distinct=int(present.nunique()),
        shapes=shapes.most_common(TOP_SHAPES),
    )


def profile_raw(name: str, kind: str, raw: RawTable, header_row: int | None = None) -> TableProfile:
    """Profile one raw table as a reader produced it."""
    table = TableProfile(name, kind, raw.encoding, len(raw.frame), len(raw.rejected))
    table.header_row = header_row
    for column in raw.frame.columns:
        if column != "_source_row":
            table.columns.append(profile_column(str(column), raw.frame[column]))
    return table


def guess_header_row(path: Path, sheet: str) -> int:
    """1-based header row of a sheet: the first well-filled row (title rows fill one cell)."""
    from python_calamine import CalamineWorkbook

    with CalamineWorkbook.from_path(str(path)) as workbook:
        grid = workbook.get_sheet_by_name(sheet).to_python(
            skip_empty_area=False, nrows=HEADER_SCAN_ROWS
        )
    filled = [sum(1 for c in row if str(c).strip()) for row in grid]
    if not filled or max(filled) == 0:
        return 1
    widest = max(filled)
    return next(i for i, n in enumerate(filled, start=1) if n >= 2 and n >= widest / 2)


def _profile_excel(path: Path, sheet: str | None) -> list[TableProfile]:
    from python_calamine import CalamineWorkbook

    from transforms.extract.excel import read_excel_sheet

    with CalamineWorkbook.from_path(str(path)) as workbook:
        sheets = [sheet] if sheet else list(workbook.sheet_names)
    tables = []
    for name in sheets:
        header_row = guess_header_row(path, name)
        raw = read_excel_sheet(path, name, header_row)
        tables.append(profile_raw(f"{path.name}#{name}", "excel", raw, header_row))
    return tables


def _is_hl7(path: Path) -> bool:
    with path.open("rb") as handle:
        start = handle.read(16).lstrip(b"\xef\xbb\xbf\x0b\r\n ")
    return start.startswith(b"MSH")


def _profile_hl7(path: Path, segment: str | None, encoding: str) -> list[TableProfile]:
    from transforms.extract.hl7v2 import read_hl7_file

    text = path.read_bytes().decode("latin-1")
    present = [s for s in _HL7_SEGMENTS if re.search(rf"(^|[\r\n\x0b]){s}\|", text)]
    wanted = segment or (present[0] if present else "MSH")
    raw = read_hl7_file(path, wanted, encoding)
    return [profile_raw(f"{path.name}#{wanted}", "hl7v2", raw)]


def _resource_types(path: Path) -> list[str]:
    import orjson

    data = path.read_bytes().lstrip(b"\xef\xbb\xbf")
    found: Counter[str] = Counter()
    docs = data.splitlines() if path.suffix == ".ndjson" else [data]
    for line in docs:
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if doc.get("resourceType") == "Bundle":
            found.update(
                e.get("resource", {}).get("resourceType", "") for e in doc.get("entry", [])
            )
        else:
            found[doc.get("resourceType", "")] += 1
    return sorted(t for t in found if t)


def _profile_fhir(path: Path, resource_type: str | None) -> list[TableProfile]:
    from transforms.extract.fhir_intake import read_fhir_export

    types = [resource_type] if resource_type else _resource_types(path)
    return [profile_raw(f"{path.name}#{t}", "fhir", read_fhir_export(path, t)) for t in types]


def profile_export(
    path: Path, *, sheet: str | None = None, encoding: str = "auto"
) -> list[TableProfile]:
    """Profile one export file; `sheet` picks an Excel sheet, HL7 segment or FHIR type."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        return _profile_excel(path, sheet)
    if suffix in FHIR_SUFFIXES:
        return _profile_fhir(path, sheet)
    if suffix in HL7_SUFFIXES and _is_hl7(path) or suffix == ".hl7":
        return _profile_hl7(path, sheet, encoding)
    if suffix in CSV_SUFFIXES:
        from transforms.extract.csv_export import read_csv_export

        raw = read_csv_export(path, encoding, "\t" if suffix == ".tsv" else ",")
        return [profile_raw(path.name, "csv", raw)]
    raise ValueError(
        f"{path.name}: unsupported export type {suffix!r}; expected one of "
        f"{sorted(CSV_SUFFIXES | EXCEL_SUFFIXES | HL7_SUFFIXES | FHIR_SUFFIXES)}"
    )


def profile_path(
    path: Path, *, sheet: str | None = None, encoding: str = "auto"
) -> list[TableProfile]:
    """Profile a file, or every supported file directly inside a folder."""
    path = Path(path)
    if not path.is_dir():
        return profile_export(path, sheet=sheet, encoding=encoding)
    known = CSV_SUFFIXES | EXCEL_SUFFIXES | HL7_SUFFIXES | FHIR_SUFFIXES
    tables: list[TableProfile] = []
    for item in sorted(path.iterdir()):
        if item.is_file() and item.suffix.lower() in known:
            tables += profile_export(item, sheet=sheet, encoding=encoding)
    return tables


def write_profile(tables: list[TableProfile], out_dir: Path) -> dict[str, Path]:
    """profile.json (every table and column) and columns.draft.yaml (one entry per table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "profile.json"
    report.write_text(
        json.dumps([asdict(t) for t in tables], ensure_ascii=False, indent=1), encoding="utf-8"
    )
    draft = out_dir / "columns.draft.yaml"
    header = (
        "# Drafted by `walnut profile`: guessed targets only. Copy into\n"
        "# mappings/<hospital>/columns.yaml, fix every TODO, then run `walnut check-mapping`.\n"
    )
    draft.write_text(header + draft_for(tables), encoding="utf-8")
    log.info("profiled %d table(s) into %s", len(tables), out_dir)
    return {"profile": report, "draft": draft}
