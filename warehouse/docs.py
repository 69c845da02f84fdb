"""Data dictionary of the warehouse: every table's grain, every column's type and meaning.

Descriptions come from where each table is defined: core.* from the ViewDefinitions
(`description` of the view and of each column), cohort.* from the cohort SQL header
(`-- Grain:` line) and warehouse/cohorts/*.yaml, gov.* and fhir.* from warehouse/tables.yaml.
Types come from the built warehouse itself. Output is Markdown and a self-contained HTML page
(inline CSS, no CDN), so it reads offline.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
VIEWS_DIR = HERE / "views"
COHORTS_DIR = HERE / "cohorts"
TABLES_YAML = HERE / "tables.yaml"
SCHEMA_ORDER = ("core", "cohort", "gov", "fhir")
MISSING = "(no description)"


@dataclass
class TableDoc:
    """One warehouse table as the dictionary shows it."""

    schema: str
    name: str
    grain: str
    rows: int
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, description


def _view_columns(selects: list[dict]) -> dict[str, str]:
    found: dict[str, str] = {}
    for select in selects:
        for column in select.get("column", []):
            found[column["name"]] = column.get("description", "")
        found |= _view_columns(select.get("select", []))
        found |= _view_columns(select.get("unionAll", []))
    return found


def read_view_docs(views_dir: Path = VIEWS_DIR) -> dict[str, tuple[str, dict[str, str]]]:
    """core table name -> (grain, column descriptions) from the ViewDefinitions."""
    docs = {}
    for path in sorted(views_dir.glob("*.json")):
        view = json.loads(path.read_text(encoding="utf-8"))
        docs[view["name"]] = (view.get("description", ""), _view_columns(view["select"]))
    return docs


def _sql_grain(path: Path) -> str:
    """The `-- Grain:` line of a cohort SQL header, else its first comment line."""
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        header.append(line.lstrip("- ").strip())
    grains = [h for h in header if h.lower().startswith("grain:")]
    described = [h for h in header if h and not h.startswith(("cohort.", "core."))]
    return grains[0] if grains else (described[0] if described else "")


def _yaml_columns(raw: object) -> dict[str, str]:
    """Column descriptions from a mapping {name: text | {description}} or a list of dicts."""
    if isinstance(raw, dict):
        return {
            str(k): v.get("description", "") if isinstance(v, dict) else str(v)
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return {str(c["name"]): str(c.get("description", "")) for c in raw if isinstance(c, dict)}
    return {}


def _yaml_tables(raw: object) -> dict[str, dict]:
    """Table entries from a YAML shaped {name: {...}}, {tables: ...} or a list of {name: ...}."""
    if isinstance(raw, dict) and "tables" in raw:
        raw = raw["tables"]
    if isinstance(raw, list):
        raw = {t["name"]: t for t in raw if isinstance(t, dict) and "name" in t}
    if not isinstance(raw, dict):
        return {}
    return {str(k).removeprefix("cohort."): v for k, v in raw.items() if isinstance(v, dict)}


def read_cohort_docs(cohorts_dir: Path = COHORTS_DIR) -> dict[str, tuple[str, dict[str, str]]]:
    """cohort table name -> (grain, column descriptions) from the cohort SQL and YAML files."""
    docs: dict[str, tuple[str, dict[str, str]]] = {}
    if not cohorts_dir.is_dir():
        return docs
    for path in sorted(cohorts_dir.glob("[!_]*.sql")):
        docs[path.stem] = (_sql_grain(path), {})
    for path in sorted([*cohorts_dir.glob("*.yaml"), *cohorts_dir.glob("*.yml")]):
        for name, entry in _yaml_tables(yaml.safe_load(path.read_text(encoding="utf-8"))).items():
            grain, columns = docs.get(name, ("", {}))
            text = entry.get("grain") or entry.get("description") or ""
            docs[name] = (grain or str(text), columns | _yaml_columns(entry.get("columns")))
    return docs


def _describe(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[tuple[str, str]]]:
    rows = con.execute(
        """SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
        WHERE database_name = current_database() ORDER BY schema_name, table_name, column_index"""
    ).fetchall()
    tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, dtype in rows:
        if schema in SCHEMA_ORDER:
            tables.setdefault((schema, table), []).append((column, dtype))
    return tables


def collect_tables(con: duckdb.DuckDBPyConnection) -> list[TableDoc]:
    """Every warehouse table with grain, row count and described columns, core first."""
    meta = yaml.safe_load(TABLES_YAML.read_text(encoding="utf-8"))
    sources = {
        "core": read_view_docs()
        | {n: (e["grain"], e["columns"]) for n, e in meta.get("core", {}).items()},
        "cohort": read_cohort_docs(),
        "gov": {n: (e["grain"], e["columns"]) for n, e in meta["gov"].items()},
    }
    docs = []
    for (schema, table), columns in _describe(con).items():
        if schema == "fhir":
            grain, described = meta["fhir"]["grain"], meta["fhir"]["columns"]
        else:
            grain, described = sources[schema].get(table, ("", {}))
        if schema == "core":
            described = described | meta["core_added_columns"]
        rows = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
        docs.append(
            TableDoc(
                schema,
                table,
                grain or MISSING,
                rows,
                [(c, t, described.get(c) or MISSING) for c, t in columns],
            )
        )
    return sorted(docs, key=lambda d: (SCHEMA_ORDER.index(d.schema), d.name))


def render_markdown(tables: list[TableDoc]) -> str:
    """The dictionary as Markdown: an index, then one section per table."""
    lines = ["# Walnut warehouse data dictionary", ""]
    lines += [f"- `{t.schema}.{t.name}`: {t.grain}" for t in tables]
    for t in tables:
        lines += ["", f"## {t.schema}.{t.name}", "", f"{t.grain}", "", f"Rows: {t.rows:,}", ""]
        lines += ["| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c}` | {ty} | {d.replace('|', '/')} |" for c, ty, d in t.columns]
    return "\n".join(lines) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}code{font-size:.95em}"
)


def render_html(tables: list[TableDoc]) -> str:
    """The dictionary as one self-contained HTML page (inline CSS, works offline)."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Walnut data dictionary</title><style>{_CSS}</style></head><body>",
        "<h1>Walnut warehouse data dictionary</h1><ul>",
    ]
    parts += [
        f"<li><a href='#{esc(t.schema)}.{esc(t.name)}'><code>{esc(t.schema)}.{esc(t.name)}"
        f"</code></a>: {esc(t.grain)}</li>"
        for t in tables
    ]
    parts.append("</ul>")
    for t in tables:
        anchor = f"{esc(t.schema)}.{esc(t.name)}"
        parts.append(f"<h2 id='{anchor}'>{anchor}</h2><p>{esc(t.grain)}</p>")
        parts.append(f"<p>Rows: {t.rows:,}</p><table><tr><th>column</th><th>type</th>")
        parts.append("<th>description</th></tr>")
        parts += [
            f"<tr><td><code>{esc(c)}</code></td><td>{esc(ty)}</td><td>{esc(d)}</td></tr>"
            for c, ty, d in t.columns
        ]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_data_dictionary(settings: Settings | None = None) -> dict:
    """Write reports/data_dictionary.md and .html from the live warehouse; returns paths, counts."""
    settings = settings or load_settings()
    db = settings.warehouse_db
    if not db.is_file():
        raise WalnutError(f"no warehouse at {db}; run `walnut build` first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = collect_tables(con)
    finally:
        con.close()
    settings.reports.mkdir(parents=True, exist_ok=True)
    paths = {}
    for suffix, text in (("md", render_markdown(tables)), ("html", render_html(tables))):
        path = settings.reports / f"data_dictionary.{suffix}"
        tmp = path.with_suffix(f".{suffix}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        paths[suffix] = str(path)
    undocumented = sum(d == MISSING for t in tables for _, _, d in t.columns)
    log.info("data dictionary: %d table(s), %d undocumented column(s)", len(tables), undocumented)
    return {
        "markdown": paths["md"],
        "html": paths["html"],
        "tables": len(tables),
        "undocumented_columns": undocumented,
    }
