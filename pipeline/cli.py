"""The `walnut` command: generate demo data, sync hospitals, build and inspect the warehouse."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.settings import hospitals, load_settings

app = typer.Typer(
    help="Walnut: hospital EMR exports -> validated FHIR R4 -> DuckDB oncology warehouse.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("great_expectations", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
) -> None:
    """Settings come from the environment: WALNUT_HOME (default ./var), WALNUT_PSEUDONYM_KEY
    (secret HMAC key, required outside the demo), WALNUT_DEMO=1 (use the public demo key)."""
    from transforms.processes import quick_exit

    _setup_logging(verbose)
    quick_exit()


@app.command("demo-data")
def demo_data(
    patients: Annotated[int, typer.Option(help="Patients per hospital.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 42,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Default: $WALNUT_HOME/sources.")
    ] = None,
    db_url: Annotated[
        str | None,
        typer.Option(help="Write south_general's HIS tables to this database instead of SQLite."),
    ] = None,
) -> None:
    """Generate the three fictional hospitals' messy exports (deterministic)."""
    from synthetic.generate import generate_all

    target = out_dir or load_settings().sources
    with console.status(f"generating {patients} patients per hospital into {target} ..."):
        summary = generate_all(target, patients=patients, seed=seed, db_url=db_url)
    out.print(f"synthetic exports written to {target}")
    out.print(summary)


def _run_sync(hospital: str) -> dict:
    from pipeline import sync

    settings = load_settings()
    with console.status(f"{hospital}: landing new files ..."):
        batch_id = sync.land_sources(hospital, settings)
    if batch_id is None:
        return {"hospital": hospital, "status": "nothing new"}
    steps = sync.BATCH_STAGES
    result: dict = {}
    for i, (label, step) in enumerate(steps, start=1):
        with console.status(f"{hospital} [{i}/{len(steps)}] {label} batch {batch_id} ..."):
            result = step(hospital, batch_id, settings)
        console.print(f"{hospital} [{i}/{len(steps)}] {label}: done")
    return result


@app.command()
def sync(
    hospital: Annotated[
        str | None, typer.Argument(help="Hospital id (a folder in mappings/).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Sync every hospital.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="With --all: hospitals synced at once, one process each "
            "(default: WALNUT_SYNC_JOBS, else the number of CPUs).",
        ),
    ] = None,
) -> None:
    """Land new exports of a hospital and take them through staging, validation and FHIR."""
    from pipeline.sync import has_sources
    from transforms.errors import WalnutError

    names = hospitals() if all_ else [hospital] if hospital else []
    if not names:
        _fail(ValueError("name a hospital or pass --all (known: " + ", ".join(hospitals()) + ")"))
    if all_:
        ready = []
        for name in names:
            if has_sources(name):
                ready.append(name)
            else:
                console.print(
                    f"{name}: skipped, no source folder {load_settings().source_dir(name)} "
                    "(sync it by name once its exports are there)"
                )
        try:
            _sync_all(ready, jobs)
        except WalnutError as exc:  # a setting such as WALNUT_SYNC_JOBS, before any hospital ran
            _fail(exc)
        return
    try:
        run = _run_sync(names[0])
    except (WalnutError, FileNotFoundError) as exc:
        _fail(exc)
    _print_run(names[0], run)


def _print_run(name: str, run: dict) -> None:
    if run.get("status") == "success":
        out.print(
            f"{name}: batch {run['batch_id']}: read {run['read']}, loaded {run['loaded']}, "
            f"quarantined {run['quarantined']}, dropped {run['dropped']}, "
            f"{run['resources']} FHIR resources"
        )
    elif run.get("status") == "nothing new":
        out.print(f"{name}: nothing new to land")


def _sync_all(names: list[str], jobs: int | None) -> None:
    """Sync hospitals in parallel processes; every failure is reported, then exit 2 if any."""
    from pipeline.parallel import default_jobs, sync_hospitals
    from transforms.errors import WalnutError

    jobs = min(jobs or default_jobs(), len(names)) if names else 1
    failed: list[str] = []
    pending = set(names)
    with console.status(f"syncing {len(names)} hospital(s), {jobs} at a time ...") as status:
        for name, run in sync_hospitals(names, load_settings(), jobs):
            pending.discard(name)
            status.update(f"syncing: {', '.join(sorted(pending)) or 'done'} ...")
            if isinstance(run, (WalnutError, FileNotFoundError)):
                console.print(f"[red]{name}: failed:[/red] {run}")
                failed.append(name)
            elif isinstance(run, Exception):
                raise run
            else:
                _print_run(name, run)
    if failed:
        _fail(ValueError(f"sync failed for {', '.join(failed)} (errors above)"))


@app.command()
def build(
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild from every batch instead of only new ones.")
    ] = False,
) -> None:
    """Merge newly synced batches into the DuckDB warehouse, export Parquet, swap both in
    atomically. With nothing new the warehouse is left untouched."""
    from transforms.errors import WalnutError
    from warehouse.build import build_warehouse

    try:
        with console.status("building the warehouse ..."):
            result = build_warehouse(load_settings(), full=full)
    except WalnutError as exc:
        _fail(exc)
    if result["status"] == "nothing new":
        out.print("warehouse: nothing new (no new batches, views unchanged); file left as is")
    else:
        out.print(f"warehouse: {result['mode']} build applied {result['batches']} batch(es)")
    out.print(f"warehouse: {result['path']} ({result['seconds']:.2f} s)")
    for table, n in result["tables"].items():
        out.print(f"  {table:<32} {n:>9,} rows")


@app.command()
def status() -> None:
    """Last runs per hospital, row counts per layer and quarantine counts by rule."""
    from warehouse.status import collect_status

    info = collect_status(load_settings())
    runs = Table(title="last sync per hospital")
    for col in (
        "hospital",
        "batch",
        "status",
        "read",
        "loaded",
        "quarantined",
        "dropped",
        "resources",
    ):
        runs.add_column(col)
    for r in info["runs"]:
        runs.add_row(
            *(
                str(r.get(k, ""))
                for k in (
                    "hospital",
                    "batch_id",
                    "status",
                    "read",
                    "loaded",
                    "quarantined",
                    "dropped",
                    "resources",
                )
            )
        )
    out.print(runs)
    layers = Table(title="rows per layer")
    for col in ("hospital", "landed files", "staged rows", "FHIR resources", "quarantined rows"):
        layers.add_column(col)
    for h, c in info["layers"].items():
        layers.add_row(
            h,
            *(
                f"{c[k]:,}"
                for k in ("landed_files", "staged_rows", "fhir_resources", "quarantined_rows")
            ),
        )
    out.print(layers)
    rules = Table(title="quarantine by rule")
    for col in ("hospital", "rule", "rows"):
        rules.add_column(col)
    for h, rule, n in info["quarantine"]:
        rules.add_row(h, rule, f"{n:,}")
    out.print(rules)
    out.print(f"warehouse: {info['warehouse'] or 'not built yet (run `walnut build`)'}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run read-only on the warehouse.")],
) -> None:
    """Run a read-only SQL query on the warehouse and print the result."""
    import duckdb

    db = load_settings().warehouse_db
    if not db.is_file():
        _fail(FileNotFoundError(f"no warehouse at {db}; run `walnut build` first"))
    con = duckdb.connect(str(db), read_only=True)
    try:
        out.print(con.sql(query))
    except duckdb.Error as exc:
        _fail(exc)
    finally:
        con.close()


@app.command()
def docs() -> None:
    """Write the data dictionary (every warehouse table's grain, every column's type and
    meaning) to $WALNUT_HOME/reports/data_dictionary.md and .html (self-contained, offline)."""
    from transforms.errors import WalnutError
    from warehouse.docs import write_data_dictionary

    try:
        with console.status("writing the data dictionary ..."):
            result = write_data_dictionary(load_settings())
    except (WalnutError, OSError) as exc:
        _fail(exc)
    out.print(f"data dictionary: {result['tables']} tables")
    out.print(f"  {result['markdown']}")
    out.print(f"  {result['html']}")
    if result["undocumented_columns"]:
        out.print(f"  {result['undocumented_columns']} column(s) have no description yet")


@app.command()
def feasibility(
    criteria: Annotated[
        str,
        typer.Argument(
            help="Criteria YAML file, or the name of a shipped one in warehouse/criteria/ "
            "(e.g. hcc_bclc_bc_child_a, egfr_nsclc_first_line)."
        ),
    ],
) -> None:
    """Trial feasibility: patients per hospital and in total meeting CRITERIA on a cohort mart,
    with the attrition funnel (count after each criterion). Optional criteria are extra steps
    that never change the headline. Counts under 5 are shown as <5."""
    import duckdb

    from transforms.errors import WalnutError
    from warehouse.feasibility import (
        feasibility_rows,
        load_criteria,
        resolve_criteria,
        run_feasibility,
        suppress_count,
    )

    db = load_settings().warehouse_db
    if not db.is_file():
        _fail(FileNotFoundError(f"no warehouse at {db}; run `walnut build` first"))
    try:
        spec = load_criteria(resolve_criteria(criteria))
        con = duckdb.connect(str(db), read_only=True)
        try:
            result = run_feasibility(con, spec)
        finally:
            con.close()
    except (WalnutError, duckdb.Error) as exc:
        _fail(exc)
    table = Table(title=f"{spec.name} (cohort.{spec.cohort})")
    for column in ("step", *result.hospitals, "total"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in feasibility_rows(result):
        table.add_row(*row)
    out.print(table)
    headline = suppress_count(result.headline.total)
    out.print(f"headline, after every required criterion: {headline} patient(s) in total")


@app.command()
def report() -> None:
    """Write the static, offline HTML report to $WALNUT_HOME/reports/walnut_report.html: loads
    per hospital, reconciliation, top data-quality failures, cohort sizes and Kaplan-Meier
    curves (liver by BCLC stage, lung by EGFR status). Counts under 5 are shown as <5."""
    import duckdb

    from transforms.errors import WalnutError
    from warehouse.report import write_report

    try:
        with console.status("rendering the warehouse report ..."):
            path = write_report(load_settings())
    except (WalnutError, OSError, duckdb.Error) as exc:
        _fail(exc)
    out.print(f"report: {path}")


@app.command()
def replay(
    hospital: Annotated[str, typer.Argument(help="Hospital id (a folder in mappings/).")],
    rule: Annotated[
        str | None,
        typer.Option(help="Only rows quarantined by this rule id (glob allowed, e.g. 'lab.*')."),
    ] = None,
    batch: Annotated[
        str | None, typer.Option(help="Only rows of this original (or replay) batch id.")
    ] = None,
) -> None:
    """Re-stage rows still in quarantine with the current mappings, after fixing a mapping.

    Rows are read again from landing and taken through staging, validation and FHIR as a new
    replay batch (<batch>-replay-NNN); rows that now pass are loaded and released with an
    audit record, the others stay quarantined with their new reasons. Replaying with nothing
    changed writes nothing. Run `walnut build` afterwards to update the warehouse."""
    from pipeline.replay import replay_quarantine
    from transforms.errors import WalnutError

    try:
        with console.status(f"{hospital}: replaying quarantined rows ..."):
            result = replay_quarantine(hospital, rule=rule, batch=batch, settings=load_settings())
    except (WalnutError, FileNotFoundError) as exc:
        _fail(exc)
    if not result["replays"]:
        out.print(f"{hospital}: no open quarantined rows match; nothing to replay")
        return
    for r in result["replays"]:
        name = r["batch_id"] or "(discarded: nothing changed)"
        out.print(
            f"{hospital}: {r['replay_of']} -> {name}: replayed {r['rows']}, "
            f"released {r['released']}, still quarantined {r['still_quarantined']}, "
            f"not found {r['not_found']}, {r['resources']} FHIR resources"
        )
    if result["released"]:
        out.print("run `walnut build` to load the released rows into the warehouse")


@app.command()
def dq(
    hospital: Annotated[str | None, typer.Argument(help="Hospital id; default: all.")] = None,
    limit: Annotated[int, typer.Option(help="How many of the worst checks to list.")] = 20,
    html: Annotated[
        bool,
        typer.Option("--html", help="Also write $WALNUT_HOME/reports/dq_report.html (offline)."),
    ] = False,
) -> None:
    """Worst data-quality checks of the latest sync batches (from the warehouse's gov tables):
    failing rows, pass rate, severity, Kahn category, rows still quarantined now, and the
    failing trend over the last 5 sync batches (oldest first)."""
    from transforms.errors import WalnutError
    from warehouse.dq_report import format_trend, open_warehouse, worst_checks, write_dq_report

    settings = load_settings()
    try:
        con = open_warehouse(settings)
    except WalnutError as exc:
        _fail(exc)
    try:
        worst = worst_checks(con, hospital, limit=limit)
    finally:
        con.close()
    table = Table(title="worst data-quality checks (latest sync batch per table)")
    for col in (
        "hospital",
        "table",
        "check",
        "category",
        "severity",
        "failed",
        "pass %",
        "open now",
        "trend",
        "explanation",
    ):
        table.add_column(col, overflow="fold")
    for r in worst.itertuples(index=False):
        table.add_row(
            r.hospital,
            r.table,
            r.check_id,
            r.category,
            r.severity,
            f"{int(r.failed):,}",
            f"{100 * r.pass_rate:.2f}",
            f"{int(r.open_rows):,}",
            format_trend(r.trend),
            r.explanation,
        )
    out.print(table if len(worst) else "no failing checks")
    if html:
        try:
            with console.status("writing the DQ report ..."):
                path = write_dq_report(settings, hospital)
        except (WalnutError, OSError) as exc:
            _fail(exc)
        out.print(f"DQ report: {path}")


@app.command()
def trace(
    resource_id: Annotated[
        str, typer.Argument(help="FHIR resource id (or Type/id), e.g. from core.observation.")
    ],
) -> None:
    """Show where a warehouse row came from: core table -> FHIR resource and batch file ->
    staging row (_row_hash) -> landed file (sha256) and source row -> mapping version.
    Prints names, hashes and row numbers only, never source values."""
    from transforms.errors import WalnutError
    from warehouse.trace import trace_resource

    try:
        chain = trace_resource(resource_id, load_settings())
    except WalnutError as exc:
        _fail(exc)
    wh, fhir, stg, landed, mapping = (
        chain[k] for k in ("warehouse", "fhir", "staging", "landed", "mapping")
    )
    if wh and wh["core_table"]:
        out.print(f"warehouse   {wh['core_table']} ({wh['id_column']} = {chain['resource_id']})")
    else:
        out.print("warehouse   not in the warehouse (run `walnut build`)")
    out.print(
        f"FHIR        {fhir['resource_type']}/{chain['resource_id']} in {fhir['file']}"
        f" line {fhir['line']} (batch {fhir['batch_id']})"
    )
    out.print(f"staging     {stg['table']} row _row_hash={stg['row_hash']} in {stg['file']}")
    out.print(
        f"landed      {landed['name']} sha256={landed['sha256']} (batch "
        f"{landed['batch_id']}, received {landed['received_at']}), source row "
        f"{landed['source_row']}"
    )
    kind = f", replay of {mapping['replay_of']}" if mapping["replay_of"] else ""
    out.print(f"mapping     version {mapping['mapping_version']} ({mapping['kind']}{kind})")
    for r in chain["released_from_quarantine"]:
        out.print(
            f"quarantine  released from {r['rule_id']} (batch {r['quarantined_in']}) "
            f"at {r['released_at']}"
        )


def _shorten(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


@app.command("check-mapping")
def check_mapping(
    hospital: Annotated[str, typer.Argument(help="Hospital id (a folder in mappings/).")],
) -> None:
    """Validate mappings/HOSPITAL/ without running anything: parse every file, cross-check code
    and value maps, check that each file glob matches an export in the source folder (a
    warning when the folder is absent), read only the headers (and the SQL tables' columns
    when a database is configured), and list mapped columns missing from the exports (errors)
    and export columns the mapping drops (notes). Exit 0 when fine, 2 with the messages."""
    from transforms.onboarding.check import check_mapping as run_check

    settings = load_settings()
    folder = settings.mappings / hospital
    if not folder.is_dir():
        _fail(ValueError(f"no mappings/{hospital}/source.yaml (known: {', '.join(hospitals())})"))
    with console.status(f"{hospital}: checking the mapping against its exports ..."):
        report = run_check(folder, settings.source_dir(hospital))
    for where, columns in report.unmapped.items():
        out.print(f"note: {where}: export columns not mapped (dropped): {_shorten(columns)}")
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    if not report.ok:
        for error in report.errors:
            console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2)
    out.print(f"{hospital}: mapping OK ({report.files_checked} export(s) compared)")


@app.command()
def unmapped(
    hospital: Annotated[str, typer.Argument(help="Hospital id (a folder in mappings/).")],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", help="CSV to write; default $WALNUT_HOME/reports/unmapped_<hospital>.csv."
        ),
    ] = None,
) -> None:
    """Write a CSV of local codes that no concept map in mappings/HOSPITAL/codes/ covers yet,
    from the staged batches: table, source, local_code, rows, first/last batch. Codes and
    counts only (no PHI): hand it to a terminologist, add the rows to codes/*.csv, then
    `walnut replay HOSPITAL`."""
    from transforms.errors import WalnutError
    from transforms.mapping import load_site_mapping
    from transforms.onboarding.unmapped import write_unmapped_codes

    settings = load_settings()
    target = out_file or settings.reports / f"unmapped_{hospital}.csv"
    try:
        mapping = load_site_mapping(settings.mappings / hospital)
        codes = write_unmapped_codes(
            mapping, settings.staging / hospital, settings.landing / hospital, target
        )
    except (WalnutError, OSError) as exc:
        _fail(exc)
    rows = int(codes["rows"].sum()) if len(codes) else 0
    out.print(f"{hospital}: {len(codes)} unmapped local code(s) over {rows} staged row(s)")
    out.print(f"written to {target}")


@app.command()
def profile(
    path: Annotated[Path, typer.Argument(help="An export file, or a folder of exports.")],
    sheet: Annotated[
        str | None,
        typer.Option(help="Only this Excel sheet (or HL7 segment, or FHIR resource type)."),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of CSV/HL7 files; auto detects it.")
    ] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Also write profile.json and columns.draft.yaml here."),
    ] = None,
) -> None:
    """Profile a new export before mapping it (CSV in any encoding, every sheet of an Excel
    workbook, HL7 v2, FHIR NDJSON/Bundles): per table the rows and detected encoding, per
    column the inferred type (date with the formats that parse it, integer, decimal, code,
    text), blank share, distinct count and value shapes (9 digit, A/a letter, C CJK; never
    raw values); then a draft columns.yaml to edit. Next: edit it into mappings/<hospital>/,
    `walnut check-mapping`, `walnut sync`."""
    from transforms.onboarding.profile import draft_for, profile_path, write_profile

    if not path.exists():
        _fail(FileNotFoundError(f"{path} not found"))
    try:
        with console.status(f"profiling {path.name} ..."):
            tables = profile_path(path, sheet=sheet, encoding=encoding)
    except (ValueError, OSError, KeyError) as exc:
        _fail(exc)
    for t in tables:
        header = f", header on row {t.header_row}" if t.header_row else ""
        grid = Table(
            title=f"{t.name} ({t.kind}, {t.encoding}, {t.rows} rows, {t.rejected} rejected{header})"
        )
        for col in ("column", "type", "blank %", "distinct", "top shapes"):
            grid.add_column(col, overflow="fold")
        for c in t.columns:
            kind = c.kind + (f" ({', '.join(c.formats[:3])})" if c.formats else "")
            shapes = "  ".join(f"{s} x{n}" for s, n in c.shapes[:3])
            grid.add_row(c.name, kind, f"{100 * c.null_rate:.0f}", str(c.distinct), shapes)
        out.print(grid)
    if out_dir is None:
        typer.echo(draft_for(tables))  # plain text: rich would wrap the YAML
        return
    written = write_profile(tables, out_dir)
    out.print(f"profile: {written['profile']}")
    out.print(f"draft columns.yaml: {written['draft']}")


if __name__ == "__main__":
    app()
