"""Static offline HTML report of the warehouse: loads, reconciliation, DQ, cohorts, survival.

Everything is in one file: CSS inline, figures as base64 PNG (matplotlib Agg), no scripts, so
it opens offline and can be mailed. Every count passes through `suppress_count` (<5).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from pipeline.settings import Settings, load_settings
from transforms.errors import ConfigError
from warehouse.feasibility import SMALL_CELL, suppress_count

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "report_template.html"
REPORT_NAME = "walnut_report.html"
DAYS_PER_MONTH = 365.25 / 12
TOP_DQ_FAILURES = 15
CORE_TABLES = ("patient", "condition", "observation", "procedure", "medication", "encounter")
# (cohort, title) of the Kaplan-Meier figures; strata come from cohort.survival.stratum.
KM_FIGURES = (
    ("liver", "Liver cancer: overall survival by BCLC stage"),
    ("lung", "Lung cancer: overall survival by EGFR status"),
)


@dataclass(frozen=True)
class Column:
    """A report table column: source column, header, and whether it holds a count."""

    name: str
    header: str
    count: bool = False


def kaplan_meier(durations: pd.Series, events: pd.Series) -> pd.DataFrame:
    """Product-limit estimate: one row per distinct time (and 0), columns at_risk, observed,
    censored, survival. Same timeline and values as lifelines' KaplanMeierFitter."""
    frame = pd.DataFrame({"t": np.asarray(durations, float), "e": np.asarray(events, int)})
    times = np.unique(np.concatenate([[0.0], frame["t"].to_numpy()]))
    rows = []
    survival = 1.0
    for t in times:
        at_risk = int((frame["t"] >= t).sum())
        observed = int(((frame["t"] == t) & (frame["e"] == 1)).sum())
        censored = int(((frame["t"] == t) & (frame["e"] == 0)).sum())
        if at_risk:
            survival *= 1.0 - observed / at_risk
        rows.append((t, at_risk, observed, censored, survival))
    table = pd.DataFrame(rows, columns=["timeline", "at_risk", "observed", "censored", "survival"])
    return table.set_index("timeline")


def median_survival(km: pd.DataFrame) -> float | None:
    """First time the survival estimate reaches 0.5 or below; None if it never does."""
    reached = km.index[km["survival"] <= 0.5]
    return float(reached[0]) if len(reached) else None


def survival_at(km: pd.DataFrame, time: float) -> float | None:
    """Survival estimate at `time`; None beyond the last observed time."""
    if time > km.index.max():
        return None
    return float(km.loc[km.index <= time, "survival"].iloc[-1])


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame | None:
    """A frame, or None when the table or column is absent (an empty or older warehouse)."""
    try:
        return con.execute(sql).df()
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        log.info("report section skipped: %s", type(exc).__name__)
        return None


def _cell(value: object, count: bool) -> str:
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return "<td></td>"
    if count:
        return f'<td class="num">{html.escape(suppress_count(int(value)))}</td>'
    if isinstance(value, bool | np.bool_):
        css = "good" if value else "bad"
        return f'<td class="{css}">{"yes" if value else "NO"}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.2f}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def html_table(frame: pd.DataFrame | None, columns: list[Column]) -> str:
    """An escaped HTML table; count columns are small-cell suppressed."""
    if frame is None or frame.empty:
        return '<p class="empty">No data.</p>'
    head = "".join(
        f'<th class="num">{html.escape(c.header)}</th>' if c.count else f"<th>{c.header}</th>"
        for c in columns
    )
    body = "".join(
        "<tr>" + "".join(_cell(row[c.name], c.count) for c in columns) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(anchor: str, title: str, note: str, body: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{html.escape(title)}</h2>'
        f'<p class="note">{html.escape(note)}</p>{body}</section>'
    )


def loads_section(con: duckdb.DuckDBPyConnection) -> str:
    """Per hospital: rows through each layer (gov.load_run) and rows per core table."""
    runs = _query(
        con,
        """SELECT hospital, count(*) AS batches, sum("read") AS "read", sum(loaded) AS loaded,
        sum(quarantined) AS quarantined, sum(dropped) AS dropped, sum(resources) AS resources,
        strftime(max(finished_at), '%Y-%m-%d %H:%M') AS last_sync
        FROM gov.load_run GROUP BY hospital ORDER BY hospital""",
    )
    runs_html = html_table(
        runs,
        [
            Column("hospital", "Hospital"),
            Column("batches", "Batches", True),
            Column("read", "Source rows read", True),
            Column("loaded", "Staged and mapped", True),
            Column("quarantined", "Quarantined", True),
            Column("dropped", "Dropped", True),
            Column("resources", "FHIR resources", True),
            Column("last_sync", "Last sync (UTC)"),
        ],
    )
    union = " UNION ALL ".join(
        f"SELECT hospital, '{t}' AS tbl, count(*) AS n FROM core.{t} GROUP BY hospital"
        for t in CORE_TABLES
    )
    core = _query(
        con,
        f"PIVOT ({union}) ON tbl IN ({', '.join(repr(t) for t in CORE_TABLES)}) "
        "USING sum(n) GROUP BY hospital ORDER BY hospital",
    )
    if core is not None:
        core = core.fillna(0)
    core_html = html_table(
        core, [Column("hospital", "Hospital")] + [Column(t, f"core.{t}", True) for t in CORE_TABLES]
    )
    return _section(
        "loads",
        "Loads per hospital",
        "Rows read from the sources, loaded, quarantined and dropped over all reconciled "
        "batches (gov.load_run), and rows per hospital in the warehouse's core tables.",
        f"<h3>Sync layers</h3>{runs_html}<h3>Warehouse core tables</h3>{core_html}",
    )


def reconciliation_section(con: duckdb.DuckDBPyConnection) -> str:
    frame = _query(
        con,
        """SELECT hospital, batch_id, "table", "read", staged, quarantined, dropped, loaded,
        balanced FROM gov.reconciliation ORDER BY hospital, batch_id, "table" """,
    )
    table = html_table(
        frame,
        [
            Column("hospital", "Hospital"),
            Column("batch_id", "Batch"),
            Column("table", "Table"),
            Column("read", "Read", True),
            Column("staged", "Staged", True),
            Column("quarantined", "Quarantined", True),
            Column("dropped", "Dropped", True),
            Column("loaded", "Loaded", True),
            Column("balanced", "Balanced"),
        ],
    )
    return _section(
        "reconciliation",
        "Reconciliation per batch and table",
        "Every batch must balance: rows read = loaded + quarantined + dropped.",
        table,
    )


def dq_section(con: duckdb.DuckDBPyConnection) -> str:
    frame = _query(
        con,
        f"""SELECT hospital, "table", check_id, category, severity, sum(failed) AS failed,
        sum(evaluated) AS evaluated, 100.0 * (1 - sum(failed) / nullif(sum(evaluated), 0))
            AS pass_percent
        FROM gov.dq_result WHERE failed > 0
        GROUP BY ALL ORDER BY failed DESC, hospital, check_id LIMIT {TOP_DQ_FAILURES}""",
    )
    table = html_table(
        frame,
        [
            Column("hospital", "Hospital"),
            Column("table", "Table"),
            Column("check_id", "Check"),
            Column("category", "Kahn category"),
            Column("severity", "Severity"),
            Column("failed", "Rows failing", True),
            Column("evaluated", "Rows checked", True),
            Column("pass_percent", "Pass %"),
        ],
    )
    return _section(
        "dq",
        f"Top {TOP_DQ_FAILURES} data-quality failures",
        "Expectations with failing rows over all batches (gov.dq_result), most failures first.",
        table,
    )


def cohorts_section(con: duckdb.DuckDBPyConnection) -> str:
    frame = _query(
        con,
        """WITH liver AS (
            SELECT hospital, count(*) AS liver, count(*) FILTER (WHERE histology = 'hcc') AS hcc,
                count(*) FILTER (WHERE histology = 'cholangiocarcinoma') AS icc
            FROM cohort.liver_patient GROUP BY hospital),
        lung AS (
            SELECT hospital, count(*) AS lung,
                count(*) FILTER (WHERE histology IN ('adenocarcinoma', 'squamous', 'other'))
                    AS nsclc,
                count(*) FILTER (WHERE histology = 'small_cell') AS sclc,
                count(*) FILTER (WHERE egfr_status IN ('exon19del', 'L858R')) AS egfr
            FROM cohort.lung_patient GROUP BY hospital),
        lines AS (
            SELECT hospital, count(DISTINCT patient_id) AS treated FROM cohort.line_of_therapy
            GROUP BY hospital),
        hospitals AS (SELECT DISTINCT hospital FROM core.patient)
        SELECT h.hospital, coalesce(liver, 0) AS liver, coalesce(hcc, 0) AS hcc,
            coalesce(icc, 0) AS icc, coalesce(lung, 0) AS lung, coalesce(nsclc, 0) AS nsclc,
            coalesce(sclc, 0) AS sclc, coalesce(egfr, 0) AS egfr,
            coalesce(treated, 0) AS treated
        FROM hospitals h LEFT JOIN liver USING (hospital) LEFT JOIN lung USING (hospital)
        LEFT JOIN lines USING (hospital) ORDER BY h.hospital""",
    )
    table = html_table(
        frame,
        [
            Column("hospital", "Hospital"),
            Column("liver", "Liver cancer", True),
            Column("hcc", "HCC", True),
            Column("icc", "Cholangiocarcinoma", True),
            Column("lung", "Lung cancer", True),
            Column("nsclc", "NSCLC", True),
            Column("sclc", "Small cell", True),
            Column("egfr", "EGFR exon19del/L858R", True),
            Column("treated", "With systemic therapy", True),
        ],
    )
    return _section(
        "cohorts",
        "Cohort sizes",
        "Patients per hospital in cohort.liver_patient and cohort.lung_patient; systemic "
        "therapy from cohort.line_of_therapy.",
        table,
    )


def at_risk_counts(groups: dict[str, pd.Series], ticks: list[float]) -> dict[str, list[str]]:
    """Patients still at risk (time >= tick) per stratum at each tick, small-cell suppressed."""
    return {
        label: [suppress_count(int((times >= tick).sum())) for tick in ticks]
        for label, times in groups.items()
    }


def _draw_at_risk(table_ax: Axes, rows: dict[str, list[str]], ticks: list[float]) -> None:
    """Number-at-risk table in its own axes under the curves, aligned with the x ticks.

    Drawn here rather than by lifelines' add_at_risk_counts, which fails under numpy 2.4
    (int() of a 1-element array) in lifelines 0.30.3 and cannot apply the <5 rule.
    """
    table_ax.set_ylim(len(rows) + 0.6, 0.4)
    table_ax.axis("off")
    table_ax.text(
        -0.02,
        1.0,
        "Number at risk",
        transform=table_ax.transAxes,
        fontsize=9,
        fontweight="bold",
        va="bottom",
        ha="right",
    )
    for line, (label, cells) in enumerate(rows.items(), start=1):
        table_ax.annotate(
            label,
            xy=(-0.04, line),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="center",
            fontsize=9,
        )
        for tick, cell in zip(ticks, cells, strict=True):
            table_ax.text(tick, line, cell, ha="center", va="center", fontsize=9)


def km_figure(frame: pd.DataFrame, title: str) -> str:
    """Kaplan-Meier curves per stratum (lifelines) with a number-at-risk table, as base64 PNG.

    Strata with fewer than 5 patients are not drawn; at-risk counts under 5 read <5.
    """
    import matplotlib

    matplotlib.use("Agg")
    from lifelines import KaplanMeierFitter
    from matplotlib import pyplot as plt

    strata = {
        str(stratum): group
        for stratum, group in frame.groupby("stratum", sort=True)
        if len(group) >= SMALL_CELL
    }
    table_height = 0.3 * (len(strata) + 1)
    fig, (ax, table_ax) = plt.subplots(
        2,
        1,
        figsize=(10, 5.0 + table_height),
        sharex=True,
        gridspec_kw={"height_ratios": [5.0 - 0.9, table_height], "hspace": 0.3},
    )
    months = {}
    for stratum, group in strata.items():
        fitter = KaplanMeierFitter(label=f"{stratum} (n={suppress_count(len(group))})")
        months[stratum] = group["time_days"] / DAYS_PER_MONTH
        fitter.fit(months[stratum], group["event"])
        fitter.plot_survival_function(ax=ax, ci_show=False, linewidth=1.8)
    ax.set_title(title)
    ax.set_xlabel("Months since diagnosis")
    ax.xaxis.set_tick_params(labelbottom=True)
    ax.set_ylabel("Overall survival")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    low, high = ax.get_xlim()
    ticks = [float(t) for t in ax.get_xticks() if low <= t <= high]
    _draw_at_risk(table_ax, at_risk_counts(months, ticks), ticks)
    if not strata:
        ax.text(0.5, 0.5, "fewer than 5 patients per stratum", ha="center", transform=ax.transAxes)
    fig.subplots_adjust(left=0.17, right=0.97, top=0.94, bottom=0.03)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def km_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stratum: patients, deaths, median and 1/3-year survival (none for strata under 5)."""
    rows = []
    for stratum, group in frame.groupby("stratum", sort=True):
        row: dict[str, object] = {
            "stratum": stratum,
            "patients": len(group),
            "deaths": int(group["event"].sum()),
        }
        if len(group) >= SMALL_CELL:
            km = kaplan_meier(group["time_days"], group["event"])
            median = median_survival(km)
            one, three = survival_at(km, 365.25), survival_at(km, 3 * 365.25)
            row["median"] = "not reached" if median is None else f"{median / DAYS_PER_MONTH:.1f}"
            row["one_year"] = None if one is None else f"{100 * one:.0f} %"
            row["three_year"] = None if three is None else f"{100 * three:.0f} %"
        else:
            row["median"] = "not estimated (under 5 patients)"
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["stratum", "patients", "deaths", "median", "one_year", "three_year"]
    )


def survival_section(con: duckdb.DuckDBPyConnection) -> str:
    data = _query(con, "SELECT cohort, stratum, time_days, event FROM cohort.survival")
    parts = []
    for cohort, title in KM_FIGURES:
        frame = None if data is None else data[data["cohort"] == cohort]
        parts.append(f"<h3>{html.escape(title)}</h3>")
        if frame is None or frame.empty:
            parts.append('<p class="empty">No patients in this cohort yet.</p>')
            continue
        png = km_figure(frame, title)
        parts.append(
            f'<img class="km" alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
        )
        parts.append(
            html_table(
                km_summary(frame),
                [
                    Column("stratum", "Stratum"),
                    Column("patients", "Patients", True),
                    Column("deaths", "Deaths", True),
                    Column("median", "Median OS (months)"),
                    Column("one_year", "1-year OS"),
                    Column("three_year", "3-year OS"),
                ],
            )
        )
    return _section(
        "survival",
        "Overall survival (Kaplan-Meier)",
        "From the first diagnosis; event = death, censored at last contact (cohort.survival). "
        "Strata with fewer than 5 patients are not drawn.",
        "".join(parts),
    )


def render_report(con: duckdb.DuckDBPyConnection, generated: dt.datetime | None = None) -> str:
    """The whole report as one HTML string from the warehouse on `con`."""
    generated = generated or dt.datetime.now(dt.UTC)
    hospitals = _query(con, "SELECT count(DISTINCT hospital) AS n FROM core.patient")
    sections = [
        loads_section(con),
        reconciliation_section(con),
        dq_section(con),
        cohorts_section(con),
        survival_section(con),
    ]
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        generated=html.escape(generated.strftime("%Y-%m-%d %H:%M UTC")),
        hospital_count=0 if hospitals is None else int(hospitals["n"].iloc[0]),
        sections="\n".join(sections),
    )


def write_report(settings: Settings | None = None) -> Path:
    """Render the live warehouse to $WALNUT_HOME/reports/walnut_report.html; returns its path."""
    settings = settings or load_settings()
    if not settings.warehouse_db.is_file():
        raise ConfigError(
            f"no warehouse at {settings.warehouse_db}; run `walnut build` before `walnut report`"
        )
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        text = render_report(con)
    finally:
        con.close()
    settings.reports.mkdir(parents=True, exist_ok=True)
    path = settings.reports / REPORT_NAME
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    log.info("report written: %s", path.name)
    return path
