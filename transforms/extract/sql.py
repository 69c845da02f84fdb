"""HIS database extract: rows changed since the last landed watermark, as Parquet chunks.

Each SQL source is read in (watermark, key) order with keyset conditions, streamed in chunks
of `chunk_size`; each chunk is written into the partial batch folder and records its high-water
mark in the manifest. A source's current watermark is the highest one recorded by batches
already landed, so it advances only when the batch folder is renamed into place: a run killed
between chunks leaves a `.partial` folder that is never read, and the next run starts again
from the last landed watermark (no gap, no duplicate).

Database URL of a source, first found wins: the environment variable named by `connection`
(default `WALNUT_HIS_URL_<HOSPITAL>`); an Airflow connection of that id when Airflow is already
loaded by the calling process (inside a task; the lookup costs seconds elsewhere); for the demo,
`sqlite:///<source folder>/his.sqlite` when that file exists. URLs never live in YAML.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    ColumnElement,
    Engine,
    MetaData,
    Table,
    and_,
    create_engine,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from transforms.errors import ConfigError
from transforms.extract.landing import LandedFile, landed_batches, read_manifest, sha256_of
from transforms.extract.raw import RawTable
from transforms.mapping import SiteMapping, SqlSource

log = logging.getLogger(__name__)

DEMO_SQLITE = "his.sqlite"
DELETIONS = "_deletions"
DELETION_COLUMNS = ("table_name", "row_key", "deleted_at")
# Driverless URLs pick SQLAlchemy's default DBAPI; fall back to an installed one.
_DRIVER_FALLBACKS = {
    "postgresql": (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")),
    "mysql": (("MySQLdb", "mysql+mysqldb"), ("pymysql", "mysql+pymysql")),
    "mariadb": (("MySQLdb", "mariadb+mysqldb"), ("pymysql", "mariadb+pymysql")),
}


def connection_name(mapping: SiteMapping, spec: SqlSource) -> str:
    """The environment variable / Airflow connection id holding the source's database URL."""
    return spec.connection or f"WALNUT_HIS_URL_{mapping.hospital.upper()}"


def _airflow_url(name: str) -> str | None:
    """URL of the Airflow connection `name`, only when Airflow is already loaded (in a task)."""
    if "airflow.sdk" not in sys.modules:
        return None
    try:
        from airflow.sdk import Connection

        uri = Connection.get(name).get_uri()
    except Exception:  # a missing connection simply means "not configured here"
        return None
    return "postgresql" + uri[len("postgres") :] if uri.startswith("postgres://") else uri


def resolve_database_url(
    mapping: SiteMapping,
    spec: SqlSource,
    source_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The database URL of a SQL source (see the module docstring for the lookup order)."""
    env = os.environ if environ is None else environ
    name = connection_name(mapping, spec)
    url = env.get(name) or _airflow_url(name)
    if url:
        return url
    if source_dir is not None and (source_dir / DEMO_SQLITE).is_file():
        return f"sqlite:///{source_dir / DEMO_SQLITE}"
    raise ConfigError(
        f"{mapping.hospital}: no database URL for source {spec.key!r}: set the environment "
        f"variable {name} (or an Airflow connection with that id) to a SQLAlchemy URL"
    )


def _with_driver(url: str) -> str:
    parsed = make_url(url)
    for module, driver in _DRIVER_FALLBACKS.get(parsed.drivername, ()):
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=driver).render_as_string(hide_password=False)
    return url


def open_database(url: str, name: str) -> Engine:
    """An engine whose connection was tried once; errors name the variable, never the password."""
    try:
        parsed = make_url(url)
        engine = create_engine(_with_driver(url))
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{name}: not a usable SQLAlchemy URL or its database driver is not installed "
            f"({type(exc).__name__})"
        ) from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", exc) or type(exc).__name__).splitlines()[0][:200]
        raise ConfigError(f"cannot connect to the database in {name} ({shown}): {first}") from None
    return engine


def _encode(value: Any) -> dict[str, Any]:
    """A watermark part as JSON that restores to the same Python type for binding."""
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, bool | int):
        return {"type": "int", "value": int(value)}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    return {"type": "str", "value": str(value)}


def _decode(part: dict[str, Any]) -> Any:
    kind, value = part["type"], part["value"]
    decoders = {
        "datetime": datetime.fromisoformat,
        "date": date.fromisoformat,
        "int": int,
        "decimal": Decimal,
        "float": float,
        "str": str,
    }
    return decoders[kind](value)


def current_watermarks(landing: Path) -> dict[str, tuple]:
    """Highest (watermark, key...) recorded per cursor by the batches already landed."""
    marks: dict[str, tuple] = {}
    for batch in landed_batches(landing):
        for landed in read_manifest(landing / batch):
            cursor, mark = landed.extra.get("cursor"), landed.extra.get("high_water")
            if cursor is None or mark is None:
                continue
            value = tuple(_decode(p) for p in mark)
            if cursor not in marks or value > marks[cursor]:
                marks[cursor] = value
    return marks


def after(columns: Sequence[ColumnElement], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in (columns...) order: keyset pagination, ties included.

    (w, k) > (w0, k0) is written out as w > w0 OR (w = w0 AND k > k0) so that every dialect
    uses its indexes and no row sharing the watermark value is skipped or read twice.
    """
    first, rest = columns[0], columns[1:]
    if not rest:
        return first > values[0]
    return or_(first > values[0], and_(first == values[0], after(rest, values[1:])))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def write_chunk(rows: Sequence[Sequence[Any]], columns: Sequence[str], path: Path) -> None:
    """One chunk as Parquet of strings (the raw layer keeps source values as text)."""
    arrays = [pa.array([_text(r[i]) for r in rows], pa.string()) for i in range(len(columns))]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(columns)), path, compression="zstd")


def stream_chunks(
    engine: Engine,
    table: Table,
    order: Sequence[str],
    since: tuple | None,
    chunk_size: int,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> Iterator[tuple[list[str], list[Sequence[Any]]]]:
    """(column names, rows) chunks of rows after `since`, in `order`, memory bounded."""
    columns = [c for c in table.columns if c.name not in exclude]
    ordering = [table.c[name] for name in order]
    query = select(*columns).order_by(*ordering)
    if since is not None:
        query = query.where(after(ordering, since))
    names = [c.name for c in columns]
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(query)
        for part in result.partitions(chunk_size):
            yield names, list(part)


def _reflect(engine: Engine, name: str, where: str) -> Table:
    try:
        return Table(name, MetaData(), autoload_with=engine)
    except NoSuchTableError:
        raise ConfigError(f"{where}: table {name!r} not found in the database") from None


def _land_cursor(
    engine: Engine,
    table: Table,
    order: Sequence[str],
    since: tuple | None,
    chunk_size: int,
    *,
    cursor: str,
    sources: list[str],
    stem: str,
    partial_dir: Path,
    received_at: str,
    exclude: set[str] | frozenset[str] = frozenset(),
    flags: dict[str, Any] | None = None,
) -> list[LandedFile]:
    landed: list[LandedFile] = []
    for number, (names, rows) in enumerate(
        stream_chunks(engine, table, order, since, chunk_size, exclude), start=1
    ):
        path = partial_dir / f"{stem}.{number:05d}.parquet"
        write_chunk(rows, names, path)
        last = rows[-1]
        high_water = [_encode(last[names.index(name)]) for name in order]
        extra = {"cursor": cursor, "rows": len(rows), "high_water": high_water, **(flags or {})}
        landed.append(
            LandedFile(sources, path.name, sha256_of(path), path.stat().st_size, received_at, extra)
        )
    return landed


def land_sql_sources(
    mapping: SiteMapping,
    partial_dir: Path,
    received_at: str,
    *,
    source_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[LandedFile]:
    """Land each SQL source's new or changed rows (and new tombstones) into the partial batch.

    The `DatabaseLander` hook of `land_files`; the landing folder is the partial folder's parent.
    """
    specs = [s for s in mapping.sources if isinstance(s, SqlSource)]
    if not specs:
        return []
    marks = current_watermarks(partial_dir.parent)
    engines: dict[str, Engine] = {}
    landed: list[LandedFile] = []
    tombstones: dict[tuple[str, str], int] = {}
    try:
        for spec in specs:
            name = connection_name(mapping, spec)
            if name not in engines:
                url = resolve_database_url(mapping, spec, source_dir, environ)
                engines[name] = open_database(url, name)
            engine = engines[name]
            where = f"{mapping.hospital}/source.yaml: {spec.key}"
            table = _reflect(engine, spec.source_table, where)
            missing = [c for c in (spec.key_column, spec.watermark) if c not in table.c]
            if missing:
                raise ConfigError(f"{where}: column(s) {missing} not in table {spec.source_table}")
            columns = mapping.tables[spec.key].columns
            dropped = {c for c, s in columns.items() if s.drop} - {spec.key_column, spec.watermark}
            files = _land_cursor(
                engine,
                table,
                (spec.watermark, spec.key_column),
                marks.get(spec.key),
                spec.chunk_size,
                cursor=spec.key,
                sources=[spec.key],
                stem=spec.key,
                partial_dir=partial_dir,
                received_at=received_at,
                exclude=dropped,  # never land what the mapping drops (phones, addresses)
            )
            log.info(
                "%s: %s landed %d row(s) in %d chunk(s)",
                mapping.hospital,
                spec.key,
                sum(f.extra["rows"] for f in files),
                len(files),
            )
            landed += files
            if spec.deletions_table:
                tombstones.setdefault((name, spec.deletions_table), spec.chunk_size)
        for (name, table_name), chunk_size in tombstones.items():
            cursor = f"{DELETIONS}:{name}:{table_name}"
            table = _reflect(engines[name], table_name, f"{mapping.hospital} deletions")
            files = _land_cursor(
                engines[name],
                table,
                ("deleted_at", "table_name", "row_key"),
                marks.get(cursor),
                chunk_size,
                cursor=cursor,
                sources=[],  # not rows of any source: apply_deletions reads them
                stem=f"{DELETIONS}.{table_name}",
                partial_dir=partial_dir,
                received_at=received_at,
                flags={"deletions": True},
            )
            log.info(
                "%s: landed %d tombstone(s) from %s",
                mapping.hospital,
                sum(f.extra["rows"] for f in files),
                table_name,
            )
            landed += files
    finally:
        for engine in engines.values():
            engine.dispose()
    return landed


def read_sql_chunk(
    spec: SqlSource, path: Path, chunk_rows: int | None = None
) -> Iterator[RawTable]:
    """A landed chunk as raw tables of at most `chunk_rows` rows (None: one table).

    `_source_row` is the row's 1-based position in the landed chunk. A database row has no
    stable file position; its identity is the primary key, which staging turns into
    `_source_key`. Constant columns of the spec are added here, not at landing.
    """
    start = 1
    for table in _parquet_parts(path, chunk_rows):
        frame = table.to_pandas(types_mapper=lambda _: pd.StringDtype())
        for column, value in spec.constants.items():
            frame[column] = pd.Series(value, index=frame.index, dtype="string")
        frame["_source_row"] = range(start, start + len(frame))
        start += len(frame)
        yield RawTable(frame, "utf-8", len(frame), source_name=path.name)


def _parquet_parts(path: Path, chunk_rows: int | None) -> Iterator[pa.Table]:
    """The file as one table, or as tables of at most `chunk_rows` rows (at least one)."""
    if chunk_rows is None:
        yield pq.read_table(path)
        return
    with pq.ParquetFile(path) as parquet:
        empty = True
        for batch in parquet.iter_batches(chunk_rows):
            empty = False
            yield pa.Table.from_batches([batch])
        if empty:
            yield parquet.schema_arrow.empty_table()


def read_deletions(batch_dir: Path) -> pd.DataFrame:
    """Tombstones landed in a batch: table_name, row_key, deleted_at (strings)."""
    frames = [
        pq.read_table(batch_dir / f.name).to_pandas()
        for f in read_manifest(batch_dir)
        if f.extra.get("deletions")
    ]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in DELETION_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(DELETION_COLUMNS)].astype("string")
