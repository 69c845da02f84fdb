"""Check a hospital's mapping folder against its exports without running a sync.

Parses every mapping file (the same checks a sync starts with), then compares each source
with what its exports really hold: globs that match nothing, sheets that do not exist, mapped
columns missing from an export (errors), export columns the mapping does not list and so drops
(notes), code and value maps nobody uses (warnings). Reads headers only where a format has one.
Reports names of files and columns, never values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from transforms.errors import WalnutError
from transforms.mapping import FILE_KINDS, SiteMapping, SqlSource, load_site_mapping
from transforms.onboarding.headers import read_file_columns, read_sql_columns

log = logging.getLogger(__name__)


@dataclass
class MappingCheck:
    """Outcome of `check_mapping`: errors fail the check, warnings and notes do not."""

    hospital: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unmapped: dict[str, list[str]] = field(default_factory=dict)  # source key -> columns
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _unused_maps(mapping: SiteMapping) -> list[str]:
    specs = [s for t in mapping.tables.values() for s in t.columns.values()]
    used_codes = {s.codes for s in specs if s.codes}
    used_values = {s.values for s in specs if s.values}
    found = [
        f"codes/{name}.csv is not used by any column of columns.yaml"
        for name in sorted(set(mapping.code_maps) - used_codes)
    ]
    found += [
        f"columns.yaml: value map {name!r} is not used by any column"
        for name in sorted(set(mapping.value_maps) - used_values)
    ]
    return found


def _compare(
    report: MappingCheck,
    mapping: SiteMapping,
    key: str,
    where: str,
    columns: list[str],
    *,
    implicit: set[str],
    sparse: bool = False,
) -> None:
    specs = mapping.tables[key].columns
    present = set(columns)
    missing = [c for c, s in specs.items() if not s.drop and c not in present | implicit]
    if missing:
        message = f"{where}: mapped column(s) {missing} not in the export"
        if sparse:
            report.warnings.append(f"{message} (no resource of the file has them)")
        else:
            report.errors.append(f"{message}; its columns are {columns}")
    unmapped = [c for c in columns if c not in specs and c not in implicit]
    if unmapped:
        known = report.unmapped.setdefault(key, [])
        known += [c for c in unmapped if c not in known]


def _check_files(report: MappingCheck, mapping: SiteMapping, source_dir: Path) -> None:
    for spec in mapping.sources:
        if spec.kind not in FILE_KINDS:
            continue
        paths = [p for p in sorted(source_dir.glob(spec.files)) if p.is_file()]
        if not paths:
            report.errors.append(
                f"source.yaml: {spec.key}: files {spec.files!r} match nothing in {source_dir.name}/"
            )
            continue
        for path in paths:
            where = f"{spec.key}: {path.name}"
            try:
                columns = read_file_columns(spec, path)
            except (WalnutError, KeyError, OSError, ValueError) as exc:
                report.errors.append(f"{where}: cannot read ({exc})")
                continue
            report.files_checked += 1
            implicit = {"id"} if spec.kind == "fhir" else set()
            _compare(
                report,
                mapping,
                spec.key,
                where,
                columns,
                implicit=implicit,
                sparse=spec.kind == "fhir",
            )


def _check_tables(
    report: MappingCheck,
    mapping: SiteMapping,
    source_dir: Path,
    environ: Mapping[str, str] | None,
) -> None:
    for spec in mapping.sources:
        if not isinstance(spec, SqlSource):
            continue
        where = f"{spec.key}: table {spec.source_table}"
        try:
            columns = read_sql_columns(mapping, spec, source_dir, environ)
        except WalnutError as exc:
            report.warnings.append(f"{spec.key}: database columns not checked ({exc})")
            continue
        except Exception as exc:  # a missing table or driver must not hide the other checks
            report.errors.append(f"{where}: cannot read its columns ({type(exc).__name__})")
            continue
        report.files_checked += 1
        for needed in (spec.key_column, spec.watermark):
            if needed not in columns:
                report.errors.append(f"{where}: column {needed!r} (source.yaml) not in the table")
        implicit = {spec.key_column, spec.watermark, *spec.constants}
        _compare(report, mapping, spec.key, where, columns, implicit=implicit)


def check_mapping(
    folder: Path, source_dir: Path, environ: Mapping[str, str] | None = None
) -> MappingCheck:
    """Validate mappings/<hospital>/ and compare it with the exports in `source_dir`."""
    report = MappingCheck(hospital=folder.name)
    try:
        mapping = load_site_mapping(folder)
    except WalnutError as exc:
        report.errors.append(str(exc))
        return report
    report.warnings += _unused_maps(mapping)
    if any(s.kind in FILE_KINDS for s in mapping.sources):
        if source_dir.is_dir():
            _check_files(report, mapping, source_dir)
        else:
            report.warnings.append(
                f"source folder {source_dir} not found: exports not checked "
                "(set WALNUT_SOURCES or copy the exports there)"
            )
    _check_tables(report, mapping, source_dir, environ)
    log.info(
        "%s: mapping check: %d error(s), %d warning(s), %d export(s) compared",
        report.hospital,
        len(report.errors),
        len(report.warnings),
        report.files_checked,
    )
    return report
