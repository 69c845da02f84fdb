"""Hospital mapping files (source.yaml, columns.yaml, codes/*.csv) parsed into typed models.

A mistake in a mapping stops the run before anything is read, with one message naming the
file, the key and what was expected.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.canonical import TABLES
from transforms.errors import MappingError

# Source columns may feed an identity role instead of a canonical column. Identity roles are
# consumed by pseudonymisation and never reach staging.
IDENTITY_ROLES = {"mrn", "resident_id", "name"}

CODE_SYSTEMS = {
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://terminology.hl7.org/CodeSystem/icd-o-3",
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.whocc.no/atc",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
}

CODE_COLUMNS = ("local_code", "system", "code", "display", "source_url", "updated")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Source(_Strict):
    """One export feeding one canonical table; `name` keys its entry in columns.yaml."""

    name: str | None = Field(default=None, description="defaults to the table name")
    table: str

    @property
    def key(self) -> str:
        return self.name or self.table

    @field_validator("table")
    @classmethod
    def _known_table(cls, value: str) -> str:
        if value not in TABLES:
            raise ValueError(f"unknown canonical table {value!r}; expected one of {sorted(TABLES)}")
        return value


class CsvSource(_Source):
    kind: Literal["csv"]
    files: str = Field(description="glob relative to the hospital's source folder")
    encoding: str = "auto"
    delimiter: str = ","


class ExcelSource(_Source):
    kind: Literal["excel"]
    files: str = Field(description="glob relative to the hospital's source folder")
    sheet: str
    header_row: int = Field(default=1, ge=1, description="1-based row of the column headers")


class SqlSource(_Source):
    """A HIS table read incrementally by a watermark column, in chunks."""

    kind: Literal["sql"]
    source_table: str
    key_column: str = Field(
        description="the table's primary key column, which names rows in deletions and replays"
    )
    watermark: str = "updated_at"
    chunk_size: int = Field(default=50_000, ge=1)
    connection: str = Field(
        default="",
        description="environment variable (or Airflow connection id) holding the database URL; "
        "default WALNUT_HIS_URL_<HOSPITAL>",
    )
    deletions_table: str | None = Field(
        default=None,
        description="tombstone table (table_name, row_key, deleted_at) of deleted HIS rows",
    )
    constants: dict[str, str] = Field(
        default_factory=dict,
        description="fixed raw columns added to every row, e.g. category: medication when the "
        "table holds one kind of treatment; columns.yaml maps them like real columns",
    )


class Hl7Source(_Source):
    """An HL7 v2 feed (ORU, ADT); columns are field positions such as `OBX-3.1`."""

    kind: Literal["hl7v2"]
    files: str = Field(description="glob relative to the hospital's source folder")
    segment: str = Field(
        default="OBX",
        pattern=r"^[A-Z][A-Z0-9]{2}$",
        description="one raw row per occurrence of this segment (OBX results, PID updates)",
    )
    encoding: str = Field(default="auto", description="codec; auto detects BOM/UTF-8/GB18030")


class FhirSource(_Source):
    """FHIR NDJSON or Bundles; columns are FHIRPath-like paths such as `code.coding[0].code`."""

    kind: Literal["fhir"]
    files: str = Field(description="glob of NDJSON or Bundle JSON files")
    resource_type: str
    columns: list[str] = Field(
        default_factory=list,
        description="paths always present as columns (null where a resource lacks them), "
        "for elements only some resources carry, e.g. deceasedDateTime",
    )

    @field_validator("resource_type")
    @classmethod
    def _known_resource_type(cls, value: str) -> str:
        from fhir.resources.R4B import get_fhir_model_class  # lazily: slow import

        try:
            get_fhir_model_class(value)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unknown FHIR R4B resource type {value!r}") from exc
        return value


SourceSpec = Annotated[
    CsvSource | ExcelSource | SqlSource | Hl7Source | FhirSource, Field(discriminator="kind")
]
FILE_KINDS = ("csv", "excel", "hl7v2", "fhir")


class SourceFile(_Strict):
    hospital: str
    name: str = ""
    timezone: str = "Asia/Shanghai"
    sources: list[SourceSpec]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; expected an IANA name") from exc
        return value


class ColumnSpec(_Strict):
    """How one source column becomes a canonical column (or an identity role, or is dropped)."""

    to: str | None = None
    drop: bool = False
    values: str | None = Field(default=None, description="name of a value map in columns.yaml")
    codes: str | None = Field(default=None, description="codes/<name>.csv concept map")
    formats: list[str] | None = None


class TableColumns(_Strict):
    columns: dict[str, ColumnSpec]


class CodeEntry(_Strict):
    system: str
    code: str
    display: str


class SiteMapping(_Strict):
    """Everything needed to stage one hospital, plus a version hash of the files it came from."""

    hospital: str
    timezone: str
    sources: list[SourceSpec]
    tables: dict[str, TableColumns]  # by source key
    value_maps: dict[str, dict[str, str]]
    code_maps: dict[str, dict[str, list[CodeEntry]]]
    version: str
    constants: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="by source key: canonical column -> fixed value"
    )


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise MappingError(f"{path.name}: file not found in {path.parent.name}/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"{path.parent.name}/{path.name}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise MappingError(f"{path.parent.name}/{path.name}: expected a mapping at the top level")
    return data


_SOURCE_KINDS: dict[str, type[_Source]] = {
    "csv": CsvSource,
    "excel": ExcelSource,
    "sql": SqlSource,
    "hl7v2": Hl7Source,
    "fhir": FhirSource,
}


def _field_hint(loc: tuple) -> str:
    """The description of the source field an error points at (`sources.N.<kind>.<field>`)."""
    if len(loc) == 4 and loc[0] == "sources" and loc[2] in _SOURCE_KINDS:
        field = _SOURCE_KINDS[loc[2]].model_fields.get(str(loc[3]))
        if field is not None and field.description:
            return f" ({field.description})"
    return ""


def _explain(path: Path, exc: ValidationError) -> MappingError:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    if first["type"] == "union_tag_invalid":
        found = first["ctx"]["tag"]
        message = f"unknown source kind {found!r}; expected one of {list(_SOURCE_KINDS)}"
        return MappingError(f"{path.parent.name}/{path.name}: {key}.kind: {message}")
    if first["type"] == "union_tag_not_found":
        message = f"no `kind`; expected one of {list(_SOURCE_KINDS)}"
        return MappingError(f"{path.parent.name}/{path.name}: {key}: {message}")
    message = "required key is missing" if first["type"] == "missing" else first["msg"]
    if first["type"] in {"greater_than_equal", "greater_than"}:
        message += f", got {first['input']!r}"
    return MappingError(f"{path.parent.name}/{path.name}: {key}: {message}{_field_hint(loc)}")


def _explain_column(where: str, exc: ValidationError) -> MappingError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["loc"][:1] == ("formats",):
        return MappingError(
            f"{where}: formats: expected a list of strptime patterns, e.g. ['%d/%m/%Y']"
        )
    return MappingError(f"{where}: {key}: {first['msg']}" if key else f"{where}: {first['msg']}")


def _parse_columns(
    path: Path, raw: dict, source_tables: dict[str, str]
) -> tuple[dict[str, TableColumns], dict[str, dict]]:
    """Column maps keyed by source key (a source's name, or its table when unnamed)."""
    value_maps = _check_value_maps(path, raw.pop("value_maps", {}) or {})
    tables: dict[str, TableColumns] = {}
    for key, columns in raw.items():
        where = f"{path.parent.name}/{path.name}: {key}"
        if key not in source_tables:
            raise MappingError(
                f"{where}: no source of that name in source.yaml; "
                f"expected one of {sorted(source_tables)}"
            )
        table = source_tables[key]
        if not isinstance(columns, dict):
            raise MappingError(f"{where}: expected source column -> spec entries")
        specs: dict[str, ColumnSpec] = {}
        targets: dict[str, str] = {}
        allowed = {c.name for c in TABLES[table]} | IDENTITY_ROLES
        for source, spec in columns.items():
            if spec == "drop":
                spec = {"drop": True}
            elif isinstance(spec, str):
                spec = {"to": spec}
            try:
                parsed = ColumnSpec.model_validate(spec)
            except ValidationError as exc:
                raise _explain_column(f"{where}.{source}", exc) from exc
            if parsed.drop:
                specs[str(source)] = parsed
                continue
            if parsed.to not in allowed:
                raise MappingError(
                    f"{where}.{source}: unknown canonical column {parsed.to!r}; "
                    f"expected one of {sorted(allowed)} or 'drop'"
                )
            if parsed.to in targets:
                raise MappingError(
                    f"{where}.{source}: duplicate mapping to {parsed.to!r} "
                    f"(already mapped from {targets[parsed.to]!r})"
                )
            if parsed.values and parsed.values not in value_maps:
                raise MappingError(
                    f"{where}.{source}: value map {parsed.values!r} is not defined under value_maps"
                )
            if parsed.formats is not None:
                _check_formats(f"{where}.{source}", parsed.formats, table, parsed.to)
            targets[parsed.to] = str(source)
            specs[str(source)] = parsed
        if "mrn" not in targets:
            raise MappingError(f"{where}: no column maps to 'mrn' (the patient's record number)")
        tables[key] = TableColumns(columns=specs)
    return tables, value_maps


# strptime directives (https://docs.python.org/3/library/datetime.html#format-codes).
DATE_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_YEAR_DIRECTIVES = ("%Y", "%y", "%G")


def _check_formats(where: str, formats: list[str], table: str, target: str | None) -> None:
    """Date patterns must be strptime patterns with a year, on a date or timestamp column."""
    dtypes = {c.name: c.dtype for c in TABLES[table]}
    if dtypes.get(target or "") not in {"date", "timestamp"}:
        raise MappingError(
            f"{where}: formats: only date and timestamp columns take formats; "
            f"{target!r} is {dtypes.get(target or '', 'an identity role')}"
        )
    if not formats:
        raise MappingError(f"{where}: formats: expected at least one strptime pattern")
    for pattern in formats:
        directives = re.findall(r"%(.?)", pattern)
        unknown = sorted({f"%{d}" for d in directives if d not in DATE_DIRECTIVES})
        if unknown:
            raise MappingError(
                f"{where}: formats: {pattern!r} has unknown directive(s) {unknown}; "
                "expected strptime directives such as %Y %m %d %H %M %S"
            )
        if not any(year in pattern for year in _YEAR_DIRECTIVES):
            raise MappingError(
                f"{where}: formats: {pattern!r} has no year; expected a strptime pattern "
                "with %Y (or %y), e.g. '%d/%m/%Y'"
            )


def _check_value_maps(path: Path, value_maps: object) -> dict[str, dict[str, str]]:
    """value_maps: name -> {source text: canonical text}; numbers must be quoted in YAML."""
    where = f"{path.parent.name}/{path.name}: value_maps"
    if not isinstance(value_maps, dict):
        raise MappingError(f"{where}: expected name -> {{source value: canonical value}} entries")
    for name, entries in value_maps.items():
        if not isinstance(entries, dict):
            raise MappingError(
                f"{where}.{name}: expected a mapping of source value -> canonical value, "
                f"got a {type(entries).__name__}"
            )
        for source, target in entries.items():
            if not isinstance(source, str) or not isinstance(target, str):
                raise MappingError(
                    f"{where}.{name}: entry {source!r}: expected text -> text "
                    '(quote numbers and yes/no in YAML, e.g. "1": male)'
                )
    return value_maps


def _parse_constants(
    path: Path, raw: object, source_tables: dict[str, str], tables: dict[str, TableColumns]
) -> dict[str, dict[str, str]]:
    """constants: source key -> {canonical text column: value every row of that source gets}."""
    where = f"{path.parent.name}/{path.name}: constants"
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: expected source -> {{canonical column: value}} entries")
    constants: dict[str, dict[str, str]] = {}
    for key, values in raw.items():
        if key not in source_tables:
            raise MappingError(
                f"{where}.{key}: no source of that name in source.yaml; "
                f"expected one of {sorted(source_tables)}"
            )
        if not isinstance(values, dict):
            raise MappingError(f"{where}.{key}: expected canonical column -> value entries")
        table = source_tables[key]
        text_columns = {c.name for c in TABLES[table] if c.dtype == "string"}
        text_columns -= {"patient_key", "person_key", "name_key", "surname_key", "name_bigrams"}
        mapped = {s.to: src for src, s in tables[key].columns.items() if not s.drop}
        for column, value in values.items():
            if column not in text_columns:
                raise MappingError(
                    f"{where}.{key}.{column}: not a text column of {table}; "
                    f"expected one of {sorted(text_columns)}"
                )
            if column in mapped:
                raise MappingError(
                    f"{where}.{key}.{column}: duplicate mapping to {column!r} "
                    f"(already mapped from {mapped[column]!r})"
                )
            if not isinstance(value, str):
                raise MappingError(f"{where}.{key}.{column}: expected a text value")
        constants[key] = {str(c): v for c, v in values.items()}
    return constants


def _read_code_map(path: Path) -> dict[str, list[CodeEntry]]:
    where = f"{path.parent.parent.name}/codes/{path.name}"
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CODE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MappingError(f"{where}: missing columns {missing}; expected {list(CODE_COLUMNS)}")
        entries: dict[str, list[CodeEntry]] = {}
        seen: set[tuple[str, str]] = set()
        for line, row in enumerate(reader, start=2):
            if row["system"] not in CODE_SYSTEMS:
                raise MappingError(
                    f"{where}: line {line}: unknown code system {row['system']!r}; "
                    f"expected one of {sorted(CODE_SYSTEMS)}"
                )
            key = (row["local_code"], row["system"])
            if key in seen:
                raise MappingError(
                    f"{where}: line {line}: duplicate mapping of {row['local_code']!r} "
                    f"to {row['system']}"
                )
            seen.add(key)
            entry = CodeEntry(system=row["system"], code=row["code"], display=row["display"])
            entries.setdefault(row["local_code"], []).append(entry)
    return entries


def _version_of(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_site_mapping(folder: Path) -> SiteMapping:
    """Parse and cross-check mappings/<hospital>/; raises MappingError naming file and key."""
    source_path = folder / "source.yaml"
    try:
        source = SourceFile.model_validate(_read_yaml(source_path))
    except ValidationError as exc:
        raise _explain(source_path, exc) from exc
    if source.hospital != folder.name:
        raise MappingError(
            f"{folder.name}/source.yaml: hospital: {source.hospital!r} must equal the folder name"
        )
    source_tables: dict[str, str] = {}
    for spec in source.sources:
        if spec.key in source_tables:
            raise MappingError(
                f"{folder.name}/source.yaml: sources: two sources named {spec.key!r}; "
                "give each source feeding the same table its own `name`"
            )
        source_tables[spec.key] = spec.table
    columns_path = folder / "columns.yaml"
    columns_raw = _read_yaml(columns_path)
    constants_raw = columns_raw.pop("constants", {}) or {}
    tables, value_maps = _parse_columns(columns_path, columns_raw, source_tables)
    constants = _parse_constants(columns_path, constants_raw, source_tables, tables)
    code_maps = {p.stem: _read_code_map(p) for p in sorted((folder / "codes").glob("*.csv"))}
    for key in source_tables:
        if key not in tables:
            raise MappingError(
                f"{folder.name}/columns.yaml: no entry for source {key!r} used in source.yaml"
            )
    for table, cols in tables.items():
        for source_col, col in cols.columns.items():
            if col.codes and col.codes not in code_maps:
                raise MappingError(
                    f"{folder.name}/columns.yaml: {table}.{source_col}: "
                    f"codes/{col.codes}.csv not found"
                )
    return SiteMapping(
        hospital=source.hospital,
        timezone=source.timezone,
        sources=source.sources,
        tables=tables,
        value_maps=value_maps,
        code_maps=code_maps,
        version=_version_of(folder),
        constants=constants,
    )
