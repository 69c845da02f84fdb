"""Runner API: typed output, materialize, PHI-free errors, and a Synthea bulk-export view."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from warehouse.viewdef import (
    ViewDefinitionError,
    compile_view,
    load_resources,
    materialize_view,
    run_view,
)

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "active": True, "multipleBirthInteger": 2,
     "name": [{"family": "Secretname", "given": ["A", "B"]}, {"family": "Other"}]},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Solo"}]},
    {"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 1.5}},
]
VIEW = {
    "resource": "Patient",
    "name": "patient_names",
    "select": [
        {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"},
                    {"name": "active", "path": "active", "type": "boolean"},
                    {"name": "births", "path": "multipleBirth.ofType(integer)",
                     "type": "integer"}]},
        {"forEach": "name", "column": [
            {"name": "family", "path": "family", "type": "string"},
            {"name": "given", "path": "given", "type": "string", "collection": True},
            {"name": "idx", "path": "%rowIndex", "type": "integer"}]},
    ],
}


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    load_resources(connection, PATIENTS, "src")
    return connection


def test_run_view_types_and_rows(con: duckdb.DuckDBPyConnection) -> None:
    table = run_view(con, VIEW, "src")
    assert table.column_names == ["id", "active", "births", "family", "given", "idx"]
    rows = sorted(table.to_pylist(), key=lambda r: (r["id"], r["idx"]))
    assert rows == [
        {"id": "p1", "active": True, "births": 2, "family": "Secretname", "given": ["A", "B"],
         "idx": 0},
        {"id": "p1", "active": True, "births": 2, "family": "Other", "given": [], "idx": 1},
        {"id": "p2", "active": None, "births": None, "family": "Solo", "given": [], "idx": 0},
    ]


def test_materialize_view_creates_typed_table(con: duckdb.DuckDBPyConnection) -> None:
    assert materialize_view(con, VIEW, "src", "patient_names") == 3
    types = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'patient_names'").fetchall())
    assert types == {"id": "VARCHAR", "active": "BOOLEAN", "births": "BIGINT",
                     "family": "VARCHAR", "given": "VARCHAR[]", "idx": "BIGINT"}


def test_many_values_error_names_column_not_value(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Patient", "name": "bad",
            "select": [{"column": [{"name": "family", "path": "name.family"}]}]}
    with pytest.raises(ViewDefinitionError, match="column 'family'") as info:
        run_view(con, view, "src")
    assert "Secretname" not in str(info.value)


@pytest.mark.parametrize(("view", "message"), [
    ({"resource": "Patient", "select": [{"column": [{"name": "a b", "path": "id"}]}]},
     "name must match"),
    ({"resource": "Patient", "oops": 1, "select": [{"column": [{"name": "a", "path": "id"}]}]},
     "unknown key"),
    ({"resource": "Patient", "select": [{"unionAll": [
        {"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "b", "path": "id"}]}]}]},
     "unionAll"),
    ({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "nope("}]}]},
     "syntax"),
    ({"select": [{"column": [{"name": "a", "path": "id"}]}]}, "resource"),
])
def test_invalid_views_raise(view: dict, message: str) -> None:
    with pytest.raises(ViewDefinitionError, match=message):
        compile_view(view, "src")


def test_synthea_conditions_flatten(shared_data: Path) -> None:
    ndjson = shared_data / "synthea" / "bulk-10-patients" / "Condition.000.ndjson"
    connection = duckdb.connect()
    connection.execute("CREATE TABLE src AS SELECT json AS resource FROM read_ndjson_objects(?)",
                       [str(ndjson)])
    view = {"resource": "Condition", "name": "condition_code", "select": [
        {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)",
                     "type": "string"}]},
        {"forEach": "code.coding.where(system = 'http://snomed.info/sct')",
         "column": [{"name": "code", "path": "code", "type": "code"}]}]}
    rows = run_view(connection, view, "src").to_pylist()
    assert len({r["id"] for r in rows}) == 555
    lung = {r["patient"] for r in rows if r["code"] in ("254637007", "424132000")}
    assert lung == {"129c6ac7-8d06-89de-ad63-0204a93e76c3"}
