"""Paths read off the root resource go through one multi-path call per kind, and every column
still means what one json_extract call per path meant, including on odd JSON shapes."""

from __future__ import annotations

import json

import duckdb
import pytest

from warehouse.build import VIEWS_DIR
from warehouse.viewdef import compile_view

# Odd shapes on purpose: missing and null first items, later-only matches, non-arrays,
# nested arrays, references with history, prefixes and line breaks.
OBSERVATIONS = [
    {
        "id": "o1",
        "code": {"coding": [{"system": "s", "code": "c1"}, {"code": "c2"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 1.50},
    },
    {
        "id": "o2",
        "code": {"coding": [{"system": "s"}, {"code": "c2"}]},
        "subject": {"reference": "a/Patient/p2/_history/3"},
    },
    {
        "id": "o3",
        "code": {"coding": [{"code": None}, {"code": "c3"}]},
        "subject": {"reference": "Patient/p3/_history/"},
    },
    {"id": "o4", "code": {"coding": [None, {"code": "c4"}]}, "subject": {"reference": "Patient/"}},
    {
        "id": "o5",
        "code": {"coding": {"code": "not-an-array"}},
        "subject": {"reference": "Patient/x/y"},
    },
    {
        "id": "o6",
        "category": [{"coding": []}, {"coding": [{"code": "k6"}]}],
        "subject": {"reference": "Patient/\u00e9\n"},
        "focus": [{"reference": "Condition/f6"}],
    },
    {
        "id": "o7",
        "category": [{"coding": [{"system": "x"}, {"code": "k7"}]}],
        "subject": {"reference": "Condition/c7"},
        "focus": [{"display": "no reference"}, {"reference": "x/Condition/f7/_history/2"}],
    },
    {
        "id": "o8",
        "category": [[{"coding": [{"code": "nested"}]}]],
        "code": {"coding": []},
        "subject": "not-an-object",
        "valueInteger": 8,
    },
    {"id": "o9", "code": {"coding": [{"code": 9}, {"code": "c9"}]}, "category": {"coding": []}},
    {"code": {"coding": [{"code": "no-id"}]}, "subject": {"reference": "Patient/p10"}},
]
OTHERS = [{"resourceType": "Patient", "id": "p1", "code": {"coding": [{"code": "patient"}]}}]

FIRST_CODE = "(json_extract(resource, '$.code.coding[*].code'))[1]"
REFERENCE_PATTERN = "'(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$'"
# FHIRPath column -> the same value read with one json_extract call per path.
COLUMNS = [
    ("code.coding.code.first()", f"{FIRST_CODE} ->> '$'"),
    ("code.coding.code.first().exists()", f"{FIRST_CODE} IS NOT NULL"),
    ("code.coding.first()", "(json_extract(resource, '$.code.coding[*]'))[1]"),
    (
        "category.coding.code.first()",
        "(json_extract(resource, '$.category[*].coding[*].code'))[1] ->> '$'",
    ),
    ("code.coding.code.count()", "len(json_extract(resource, '$.code.coding[*].code'))"),
    (
        "subject.getReferenceKey(Patient)",
        "NULLIF(regexp_extract(json_extract_string(resource, '$.subject.reference'), "
        f"{REFERENCE_PATTERN}, 1), '')",
    ),
    (
        "focus.getReferenceKey(Condition).first()",
        "list_filter(list_transform(json_extract_string(resource, '$.focus[*].reference'), "
        "lambda x: NULLIF(regexp_extract(x, '(?:^|/)Condition/([^/]+)(?:/_history/[^/]+)?$', "
        "1), '')), lambda x: x IS NOT NULL)[1]",
    ),
    ("getResourceKey()", "json_extract_string(resource, '$.id')"),
    (
        "value.ofType(Quantity).value",
        "CAST(json_extract(resource, '$.valueQuantity.value') AS DOUBLE)",
    ),
    ("value.ofType(integer)", "CAST(json_extract(resource, '$.valueInteger') AS BIGINT)"),
]


def _connect(texts: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE src AS SELECT CAST(unnest(CAST(? AS VARCHAR[])) AS JSON) AS resource",
        [texts],
    )
    return con


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    texts = [json.dumps({"resourceType": "Observation", **o}) for o in OBSERVATIONS]
    return _connect(texts + [json.dumps(o) for o in OTHERS])


@pytest.mark.parametrize(("path", "reference"), COLUMNS, ids=[path for path, _ in COLUMNS])
def test_column_matches_one_call_per_path(
    con: duckdb.DuckDBPyConnection, path: str, reference: str
) -> None:
    view = {"resource": "Observation", "select": [{"column": [{"name": "v", "path": path}]}]}
    got = con.execute(compile_view(view, "src")).fetchall()
    expected = con.execute(
        f"SELECT {reference} FROM src "
        "WHERE json_extract_string(resource, '$.resourceType') = 'Observation'"
    ).fetchall()
    assert got == expected


def test_first_reads_later_items_only_when_needed(con: duckdb.DuckDBPyConnection) -> None:
    view = {
        "resource": "Observation",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "code", "path": "code.coding.code.first()"},
                    {"name": "category", "path": "category.coding.code.first()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "focus", "path": "focus.getReferenceKey(Condition).first()"},
                ]
            }
        ],
    }
    rows = con.execute(compile_view(view, "src")).fetchall()
    assert rows == [
        ("o1", "c1", None, "p1", None),
        ("o2", "c2", None, "p2", None),
        ("o3", None, None, None, None),
        ("o4", "c4", None, None, None),
        ("o5", None, None, None, None),
        ("o6", None, "k6", "\u00e9\n", "f6"),
        ("o7", None, "k7", None, "f7"),
        ("o8", None, None, None, None),
        ("o9", "9", None, None, None),
        (None, "no-id", None, "p10", None),
    ]


@pytest.mark.parametrize(
    ("text", "selected"),
    [
        ('{"resourceType":"Observation","id":"a"}', True),
        ('{"resourceType": "Observation", "id": "a"}', True),
        ('{"id":"a","resourceType":"Observation"}', True),
        ('{"resourceType":"Observation","resourceType":"Patient","id":"a"}', True),
        ('{"resourceType":"Patient","resourceType":"Observation","id":"a"}', False),
        ('{"resourceType":"ObservationDefinition","id":"a"}', False),
        ('{"resourceType":"Obs\\u0065rvation","id":"a"}', True),
        ('{"id":"a"}', False),
    ],
)
def test_resource_type_filter(text: str, selected: bool) -> None:
    view = {"resource": "Observation", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    rows = _connect([text]).execute(compile_view(view, "src")).fetchall()
    assert rows == ([("a",)] if selected else [])


@pytest.mark.parametrize("path", sorted(VIEWS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_core_views_parse_each_resource_once_per_kind(path: object) -> None:
    view = json.loads(path.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    sql = compile_view(view, "src")
    assert sql.count("json_extract_string(r, [") == 1
    assert sql.count("json_extract(r, [") <= 1
