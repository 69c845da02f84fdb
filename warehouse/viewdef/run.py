"""Run compiled ViewDefinitions on a DuckDB connection: to Arrow, to a table, or load test input."""

from __future__ import annotations

import json
import logging
import re

import duckdb
import pyarrow as pa

from warehouse.viewdef.compile import compile_view
from warehouse.viewdef.errors import ViewDefinitionError
from warehouse.viewdef.validate import view_label

log = logging.getLogger(__name__)

_OUR_ERROR = re.compile(r"ViewDefinitionError: (.*)", re.DOTALL)
# Errors about the query's shape carry no data values, so their text is safe to pass on.
_STRUCTURAL = (duckdb.BinderException, duckdb.ParserException, duckdb.CatalogException)
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _execution_error(view: dict, exc: duckdb.Error) -> ViewDefinitionError:
    """Turn a DuckDB failure into a ViewDefinitionError that never echoes data values."""
    ours = _OUR_ERROR.search(str(exc))
    if ours:
        return ViewDefinitionError(ours.group(1).strip())
    if isinstance(exc, _STRUCTURAL):
        return ViewDefinitionError(f"view {view_label(view)}: compiled SQL rejected: {exc}")
    return ViewDefinitionError(
        f"view {view_label(view)}: execution failed ({type(exc).__name__}); "
        "values are not shown to keep patient data out of errors"
    )


def _check_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise ViewDefinitionError(f"invalid table name {name!r}")
    return name


def run_view(con: duckdb.DuckDBPyConnection, view: dict, source: str) -> pa.Table:
    """Flatten the resources in `source` through `view`; one Arrow row per view row."""
    sql = compile_view(view, source)
    try:
        table = con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise _execution_error(view, exc) from None
    log.info("view %s: %s rows", view_label(view), table.num_rows)
    return table


def materialize_view(con: duckdb.DuckDBPyConnection, view: dict, source: str, target: str) -> int:
    """CREATE OR REPLACE TABLE `target` from `view` over `source`; return its row count."""
    sql = compile_view(view, source)
    target = _check_table_name(target)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {target} AS {sql}")
        row = con.execute(f"SELECT count(*) FROM {target}").fetchone()  # noqa: S608
    except duckdb.Error as exc:
        raise _execution_error(view, exc) from None
    count = int(row[0]) if row else 0
    log.info("view %s: materialized %s rows into %s", view_label(view), count, target)
    return count


def load_resources(con: duckdb.DuckDBPyConnection, resources: list[dict], name: str) -> None:
    """Create (or replace) table `name` with one JSON column `resource`, one row per resource."""
    name = _check_table_name(name)
    # A list parameter avoids registering an Arrow table (whose first use imports pandas, ~3 s).
    texts = [json.dumps(resource) for resource in resources]
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS "
        "SELECT CAST(unnest(CAST(? AS VARCHAR[])) AS JSON) AS resource",
        [texts],
    )
