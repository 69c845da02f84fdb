"""Data-quality results from the warehouse's gov tables: worst checks, trends, and an HTML report.

The HTML report is one self-contained file (inline CSS, no scripts, no CDN) that opens offline
and may leave the warehouse, so every count in it passes the small-cell rule (`<5`). It holds
check ids, explanations, rule ids, batch ids and counts only: never a source value.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
from pathlib import Path
from string import Template

import duckdb
import pandas as pd

from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError
from warehouse.feasibility import suppress_count

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("dq_report_template.html")
REPORT_NAME = "dq_report.html"
KAHN_CATEGORIES = ("completeness", "conformance", "plausibility")
SEVERITY_ORDER = {"critical": 0, "quarantine": 1, "warn": 2}
TREND_BATCHES = 5
_IS_REPLAY = "regexp_matches(batch_id, '-replay-[0-9]+$')"


class DqReportError(WalnutError):
    """The warehouse is missing or lacks the gov tables the report reads."""


def _where_hospital(hospital: str | None, alias: str = "") -> tuple[str, list]:
    if hospital is None:
        return "TRUE", []
    return f"{alias}hospital = ?", [hospital]


def check_results(
    con: duckdb.DuckDBPyConnection, hospital: str | None = None, last: int = TREND_BATCHES
) -> pd.DataFrame:
    """One row per hospital x table x check: the latest sync batch's counts plus a trend.

    Grain: hospital, table, check_id. `trend` lists failed rows of the last `last` sync
    batches that delivered the table, oldest first. Replay batches re-check only quarantined
    rows, so their results would distort a trend and are left out.
    """
    where, params = _where_hospital(hospital)
    return con.execute(
        f"""WITH ranked AS (
            SELECT *, dense_rank() OVER (PARTITION BY hospital, "table"
                                         ORDER BY batch_id DESC) AS recency
            FROM gov.dq_result WHERE NOT {_IS_REPLAY} AND {where}
        )
        SELECT hospital, "table", check_id,
               arg_max(category, batch_id) AS category,
               arg_max(severity, batch_id) AS severity,
               arg_max(explanation, batch_id) AS explanation,
               max(batch_id) FILTER (WHERE recency = 1) AS batch_id,
               sum(failed) FILTER (WHERE recency = 1) AS failed,
               sum(evaluated) FILTER (WHERE recency = 1) AS evaluated,
               list(failed ORDER BY batch_id) FILTER (WHERE recency <= ?) AS trend
        FROM ranked GROUP BY hospital, "table", check_id
        HAVING evaluated IS NOT NULL
        ORDER BY hospital, "table", check_id""",
        [*params, last],
    ).df()


def _with_pass_rate(frame: pd.DataFrame) -> pd.DataFrame:
    evaluated = frame["evaluated"].astype(float)
    rate = 1 - frame["failed"].astype(float) / evaluated.where(evaluated > 0)
    return frame.assign(pass_rate=rate.fillna(1.0))


def worst_checks(
    con: duckdb.DuckDBPyConnection,
    hospital: str | None = None,
    limit: int = 20,
    last: int = TREND_BATCHES,
) -> pd.DataFrame:
    """Checks failing in their latest batch: critical first, then most failing rows.

    `open_rows` is how many rows the check still holds in quarantine now, after replays.
    """
    frame = _with_pass_rate(check_results(con, hospital, last))
    frame = frame[frame["failed"] > 0]
    order = frame["severity"].map(SEVERITY_ORDER).fillna(len(SEVERITY_ORDER))
    frame = frame.assign(_order=order).sort_values(
        ["_order", "failed", "pass_rate", "check_id"], ascending=[True, False, True, True]
    )
    frame = frame.drop(columns="_order").head(limit).reset_index(drop=True)
    still = quarantine_by_rule(con, hospital)[["hospital", "table", "rule_id", "open_rows"]]
    still = still.rename(columns={"rule_id": "check_id"})
    merged = frame.merge(still, on=["hospital", "table", "check_id"], how="left")
    return merged.assign(open_rows=merged["open_rows"].fillna(0).astype("int64"))


def quarantine_by_rule(con: duckdb.DuckDBPyConnection, hospital: str | None = None) -> pd.DataFrame:
    """Distinct source rows per hospital x table x rule: still open, and released by replays."""
    where, params = _where_hospital(hospital, "q.")
    row = "concat_ws('|', q.origin_batch_id, q.source_file, q.source_row)"
    return con.execute(
        f"""SELECT q.hospital, q."table", q.rule_id, min(q.stage) AS stage,
               count(DISTINCT {row}) FILTER (WHERE q.open) AS open_rows,
               count(DISTINCT {row}) FILTER (WHERE q.released_by IS NOT NULL) AS released_rows,
               coalesce(any_value(d.explanation), min(q.reason)) AS explanation
        FROM gov.quarantine q
        LEFT JOIN (SELECT DISTINCT check_id, explanation FROM gov.dq_result) d
               ON d.check_id = q.rule_id
        WHERE {where}
        GROUP BY ALL ORDER BY q.hospital, open_rows DESC, released_rows DESC, q.rule_id""",
        params,
    ).df()


def reconciliation(con: duckdb.DuckDBPyConnection, hospital: str | None = None) -> pd.DataFrame:
    """Rows read, loaded, quarantined and dropped per batch and table, oldest batch first."""
    where, params = _where_hospital(hospital)
    return con.execute(
        f"""SELECT hospital, batch_id,
               CASE WHEN {_IS_REPLAY} THEN 'replay' ELSE 'sync' END AS kind,
               "table", "read", loaded, quarantined, dropped, balanced
        FROM gov.reconciliation WHERE {where}
        ORDER BY hospital, batch_id, "table"
        """,
        params,
    ).df()


def open_warehouse(settings: Settings) -> duckdb.DuckDBPyConnection:
    db = settings.warehouse_db
    if not db.is_file():
        raise DqReportError(f"no warehouse at {db}; run `walnut build` first")
    con = duckdb.connect(str(db), read_only=True)
    have = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'gov'"
        ).fetchall()
    }
    missing = {"dq_result", "quarantine", "reconciliation"} - have
    if missing or "open" not in _columns(con, "quarantine"):
        con.close()
        raise DqReportError(
            f"the warehouse lacks gov tables {sorted(missing) or ['quarantine.open']}; "
            "run `walnut build --full`"
        )
    return con


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'gov' AND table_name = ?",
            [table],
        ).fetchall()
    }


def format_trend(values: object, suppress: bool = False) -> str:
    """Failed rows over the last batches, oldest first, e.g. `12 → 3 → 0`."""
    show = suppress_count if suppress else str
    return " → ".join(show(int(v)) for v in ([] if values is None else list(values)))


def format_pass(row: object) -> str:
    """Pass % to one decimal; a suppressed (<5) failure count gets a bound, so the exact count
    cannot be worked back from rows checked, and a failing check never reads 100.0."""
    failed, evaluated = int(row.failed), int(row.evaluated)
    if failed == 0 or evaluated == 0:
        return "100.0"
    if failed < 5:
        bound = math.floor(1000 * (1 - 4 / evaluated)) / 10
        return f"≥{max(bound, 0.0):.1f}"
    return f"{min(math.floor(1000 * row.pass_rate) / 10, 99.9):.1f}"


def _esc(value: object) -> str:
    return html.escape("" if value is None or value is pd.NA else str(value))


def _count(value: object) -> str:
    number = 0 if value is None or pd.isna(value) else int(value)
    return f'<td class="num">{_esc(suppress_count(number))}</td>'


def _severity(value: str) -> str:
    return f'<span class="sev {_esc(value)}">{_esc(value)}</span>'


def _table(headers: list[tuple[str, bool]], rows: list[str]) -> str:
    head = "".join(
        f'<th class="num">{_esc(h)}</th>' if n else f"<th>{_esc(h)}</th>" for h, n in headers
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _checks_table(frame: pd.DataFrame) -> str:
    rows = []
    for r in frame.itertuples(index=False):
        failing = int(r.failed) > 0
        rows.append(
            f'<tr class="{"fail" if failing else "pass"}"><td class="code">{_esc(r.check_id)}</td>'
            f"<td>{_severity(r.severity)}</td>{_count(r.evaluated)}{_count(r.failed)}"
            f'<td class="num {"bad" if failing else "ok"}">{_esc(format_pass(r))}</td>'
            f'<td class="num">{_esc(format_trend(r.trend, suppress=True))}</td>'
            f'<td class="why">{_esc(r.explanation)}</td></tr>'
        )
    headers = [
        ("Check", False),
        ("Severity", False),
        ("Rows checked", True),
        ("Rows failing", True),
        ("Pass %", True),
        ("Failing trend", True),
        ("Explanation", False),
    ]
    return _table(headers, rows)


def _table_section(table: str, checks: pd.DataFrame) -> str:
    batch = checks["batch_id"].max()
    failing = int((checks["failed"] > 0).sum())
    parts = [
        f"<h3>{_esc(table)}</h3>",
        f'<p class="note">Latest sync batch {_esc(batch)} &middot; {len(checks)} checks, '
        f"{failing} failing.</p>",
    ]
    categories = [c for c in KAHN_CATEGORIES if c in set(checks["category"])]
    categories += sorted(set(checks["category"]) - set(KAHN_CATEGORIES))
    for category in categories:
        group = checks[checks["category"] == category]
        failed = group[group["failed"] > 0]
        order = failed["severity"].map(SEVERITY_ORDER).fillna(len(SEVERITY_ORDER))
        failed = failed.assign(_o=order, _f=-failed["failed"]).sort_values(["_f", "_o", "check_id"])
        parts.append(f"<h4>{_esc(category)}</h4>")
        if len(failed):
            parts.append(_checks_table(failed))
        passed = sorted(group.loc[group["failed"] == 0, "check_id"])
        if passed:
            names = ", ".join(f"<code>{_esc(c)}</code>" for c in passed)
            parts.append(f'<p class="passed">Passing: {names}</p>')
    return "".join(parts)


def _quarantine_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="empty">Nothing was quarantined.</p>'
    rows = [
        f'<tr><td>{_esc(r.table)}</td><td class="code">{_esc(r.rule_id)}</td>'
        f"<td>{_esc(r.stage)}</td>{_count(r.open_rows)}{_count(r.released_rows)}"
        f'<td class="why">{_esc(r.explanation)}</td></tr>'
        for r in frame.itertuples(index=False)
    ]
    headers = [
        ("Table", False),
        ("Rule", False),
        ("Stage", False),
        ("Open rows", True),
        ("Released rows", True),
        ("Reason", False),
    ]
    return _table(headers, rows)


def _reconciliation_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="empty">No reconciled batches.</p>'
    rows = []
    for r in frame.itertuples(index=False):
        verdict = '<td class="ok">yes</td>' if r.balanced else '<td class="bad">NO</td>'
        rows.append(
            f'<tr><td class="code">{_esc(r.batch_id)}</td><td>{_esc(r.kind)}</td>'
            f"<td>{_esc(r.table)}</td>{_count(r.read)}{_count(r.loaded)}"
            f"{_count(r.quarantined)}{_count(r.dropped)}{verdict}</tr>"
        )
    headers = [
        ("Batch", False),
        ("Kind", False),
        ("Table", False),
        ("Read", True),
        ("Loaded", True),
        ("Quarantined", True),
        ("Dropped", True),
        ("Balanced", False),
    ]
    return _table(headers, rows)


def quarantine_totals(con: duckdb.DuckDBPyConnection, hospital: str) -> tuple[int, int]:
    """Distinct source rows still in quarantine, and released by replays, for one hospital."""
    row = "concat_ws('|', origin_batch_id, \"table\", source_file, source_row)"
    return con.execute(
        f"""SELECT count(DISTINCT {row}) FILTER (WHERE open),
               count(DISTINCT {row}) FILTER (WHERE released_by IS NOT NULL)
        FROM gov.quarantine WHERE hospital = ?""",
        [hospital],
    ).fetchone()


def _summary(checks: pd.DataFrame, totals: tuple[int, int], recon: pd.DataFrame) -> str:
    batches = recon.drop_duplicates("batch_id")
    sync = batches[batches["kind"] == "sync"]
    unbalanced = int((~recon["balanced"].astype(bool)).sum())
    items = {
        "Sync batches": suppress_count(len(sync)),
        "Replay batches": suppress_count(len(batches) - len(sync)),
        "Latest sync batch": sync["batch_id"].max() if len(sync) else "none",
        "Checks failing (latest)": suppress_count(int((checks["failed"] > 0).sum())),
        "Rows in quarantine (open)": suppress_count(int(totals[0])),
        "Rows released by replay": suppress_count(int(totals[1])),
        "Reconciliation": "every batch balances"
        if not unbalanced
        else f"{suppress_count(unbalanced)} batch table(s) do not balance",
    }
    body = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items.items())
    return f'<dl class="summary">{body}</dl>'


def _hospital_section(hospital: str, con: duckdb.DuckDBPyConnection, last: int) -> str:
    checks = _with_pass_rate(check_results(con, hospital, last))
    quarantine = quarantine_by_rule(con, hospital)
    recon = reconciliation(con, hospital)
    parts = [f'<section id="{_esc(hospital)}"><h2>{_esc(hospital)}</h2>']
    parts.append(_summary(checks, quarantine_totals(con, hospital), recon))
    parts.append("<h3>Quarantine by rule</h3>" + _quarantine_table(quarantine))
    for table, group in checks.groupby("table", sort=True):
        parts.append(_table_section(str(table), group))
    parts.append("<h3>Reconciliation per batch</h3>")
    parts.append('<p class="note">Every batch balances: read = loaded + quarantined + dropped.</p>')
    parts.append(_reconciliation_table(recon))
    parts.append("</section>")
    return "".join(parts)


def report_hospitals(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT hospital FROM gov.reconciliation UNION "
        "SELECT DISTINCT hospital FROM gov.dq_result ORDER BY 1"
    ).fetchall()
    return [h for (h,) in rows if h]


def render_dq_report(
    con: duckdb.DuckDBPyConnection,
    hospital: str | None = None,
    generated: dt.datetime | None = None,
    last: int = TREND_BATCHES,
) -> str:
    """The whole report as one HTML string (one section per hospital)."""
    names = [hospital] if hospital else report_hospitals(con)
    generated = generated or dt.datetime.now(dt.UTC)
    sections = [_hospital_section(h, con, last) for h in names]
    body = "".join(sections) or '<section><p class="empty">No batches yet.</p></section>'
    nav = "".join(f'<a href="#{_esc(h)}">{_esc(h)}</a>' for h in names)
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        generated=_esc(generated.strftime("%Y-%m-%d %H:%M UTC")),
        hospital_count=len(names),
        nav=nav,
        body=body,
        last=last,
    )


def write_dq_report(settings: Settings | None = None, hospital: str | None = None) -> Path:
    """Write $WALNUT_HOME/reports/dq_report.html from the warehouse (atomically)."""
    settings = settings or load_settings()
    con = open_warehouse(settings)
    try:
        text = render_dq_report(con, hospital)
    finally:
        con.close()
    path = settings.reports / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("wrote DQ report to %s", path)
    return path
