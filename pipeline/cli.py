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
    _setup_logging(verbose)


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
        console.print(f"{hospital}: nothing new to land")
        return {"hospital": hospital, "status": "nothing new"}
    steps = [
        ("staging", sync.stage_batch),
        ("validating", sync.validate_batch),
        ("mapping to FHIR", sync.map_batch_to_fhir),
        ("reconciling", sync.reconcile_batch),
    ]
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
) -> None:
    """Land new exports of a hospital and take them through staging, validation and FHIR."""
    from transforms.errors import WalnutError

    names = hospitals() if all_ else [hospital] if hospital else []
    if not names:
        _fail(ValueError("name a hospital or pass --all (known: " + ", ".join(hospitals()) + ")"))
    for name in names:
        try:
            run = _run_sync(name)
        except (WalnutError, FileNotFoundError) as exc:
            _fail(exc)
        if run.get("status") == "success":
            out.print(
                f"{name}: batch {run['batch_id']}: read {run['read']}, loaded {run['loaded']}, "
                f"quarantined {run['quarantined']}, dropped {run['dropped']}, "
                f"{run['resources']} FHIR resources"
            )


@app.command()
def build() -> None:
    """Rebuild the DuckDB warehouse from the FHIR layer and swap it in atomically."""
    from transforms.errors import WalnutError
    from warehouse.build import build_warehouse

    try:
        with console.status("building the warehouse ..."):
            result = build_warehouse(load_settings())
    except WalnutError as exc:
        _fail(exc)
    out.print(f"warehouse: {result['path']}")
    for table, n in result["tables"].items():
        out.print(f"  {table:<28} {n:>9,} rows")


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


if __name__ == "__main__":
    app()
