"""Data dictionary: every table has a grain, every core column a description, offline HTML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.settings import Settings, load_settings
from tests.warehouse.warehouse_home import batch_id, condition, patient, write_batch
from warehouse.build import build_warehouse
from warehouse.docs import (
    COHORTS_DIR,
    MISSING,
    collect_tables,
    read_cohort_docs,
    read_view_docs,
    write_data_dictionary,
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load_settings({"WALNUT_HOME": str(tmp_path_factory.mktemp("home"))})
    b = batch_id(1)
    write_batch(
        settings,
        1,
        [patient("p1", b), condition("c1", "p1", b)],
        tombstones=[{"resourceType": "Patient", "id": "gone", "deleted_at": "2026-01-01"}],
    )
    build_warehouse(settings)
    return settings


def test_every_view_column_has_a_description() -> None:
    docs = read_view_docs()
    assert {"patient", "condition", "observation"} <= set(docs)
    for name, (grain, columns) in docs.items():
        assert grain.startswith("Grain:"), name
        assert columns and all(columns.values()), (name, [c for c, d in columns.items() if not d])


def test_every_core_and_gov_column_is_described(settings: Settings) -> None:
    import duckdb

    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        tables = {f"{t.schema}.{t.name}": t for t in collect_tables(con)}
    finally:
        con.close()
    core = [t for t in tables.values() if t.schema == "core"]
    assert {t.name for t in core} >= {"patient", "condition", "observation", "procedure"}
    for table in core + [t for t in tables.values() if t.schema == "gov"]:
        assert table.grain != MISSING, table.name
        undocumented = [c for c, _, d in table.columns if d == MISSING]
        assert not undocumented, (table.schema, table.name, undocumented)
    patient_columns = {c: (ty, d) for c, ty, d in tables["core.patient"].columns}
    assert patient_columns["person_key"][0] == "VARCHAR"
    assert "links one person across hospitals" in patient_columns["person_key"][1]
    assert patient_columns["hospital"][1] == "Hospital id, taken from the lineage key."
    assert tables["core.patient"].rows == 1
    assert tables["gov.tombstone"].rows == 1
    assert tables["gov.tombstone"].grain.startswith("One row per deleted resource")
    assert tables["fhir.patient"].grain.startswith("Raw layer")


def test_cohort_grain_and_columns_from_sql_header_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "_helpers.sql").write_text("-- helpers, not a table\nSELECT 1;\n")
    (tmp_path / "lung_patient.sql").write_text(
        "-- cohort.lung_patient\n-- Grain: one row per lung cancer patient.\n"
        "-- Columns are in cohorts.yaml.\n\nCREATE TABLE cohort.lung_patient AS SELECT 1;\n"
    )
    (tmp_path / "survival.sql").write_text("-- Survival per patient from index date.\nSELECT 1;\n")
    (tmp_path / "cohorts.yaml").write_text(
        "lung_patient:\n  columns:\n    patient_id: The patient.\n"
        "    egfr: {description: EGFR status.}\n"
    )
    docs = read_cohort_docs(tmp_path)
    assert docs == {
        "lung_patient": (
            "Grain: one row per lung cancer patient.",
            {"patient_id": "The patient.", "egfr": "EGFR status."},
        ),
        "survival": ("Survival per patient from index date.", {}),
    }


def test_shipped_cohort_sql_states_its_grain() -> None:
    if not COHORTS_DIR.is_dir():
        pytest.skip("no cohort SQL yet")
    for name, (grain, _) in read_cohort_docs().items():
        assert grain.lower().startswith("grain:"), name


def test_write_data_dictionary_markdown_and_offline_html(settings: Settings) -> None:
    result = write_data_dictionary(settings)
    markdown = Path(result["markdown"]).read_text(encoding="utf-8")
    page = Path(result["html"]).read_text(encoding="utf-8")
    assert result["markdown"] == str(settings.reports / "data_dictionary.md")
    assert "## core.patient" in markdown
    assert "| `person_key` | VARCHAR |" in markdown
    assert "## gov.applied_batch" in markdown
    assert "<h2 id='core.condition'>core.condition</h2>" in page
    assert "&lt;hospital&gt;" in page  # lineage description is escaped
    assert not re.search(r"<(script|link)\b|\bsrc=|@import", page)  # nothing fetched online
    assert result["tables"] == markdown.count("\n## ")


def test_docs_command(settings: Settings, tmp_path: Path) -> None:
    from pipeline.cli import app

    ok = CliRunner().invoke(app, ["docs"], env={"WALNUT_HOME": str(settings.home)})
    assert ok.exit_code == 0, ok.output
    assert "data_dictionary.html" in ok.output
    missing = CliRunner().invoke(app, ["docs"], env={"WALNUT_HOME": str(tmp_path)})
    assert missing.exit_code == 2
    assert "run `walnut build` first" in " ".join(missing.output.split())  # rich wraps
