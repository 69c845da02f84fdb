"""HIS database extract: incremental by (watermark, key), chunked, crash-safe, on 3 databases."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, text

from tests.conftest import require
from transforms.errors import ConfigError
from transforms.extract import read_landed
from transforms.extract import sql as sql_extract
from transforms.extract.landing import land_files, landed_batches, read_manifest
from transforms.mapping import load_site_mapping

SERVERS = {
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/",
}
T0 = datetime(2025, 7, 1, 3, 0)
T1 = datetime(2025, 7, 2, 3, 0)

metadata = MetaData()
VISIT = Table(
    "visit",
    metadata,
    Column("visit_id", Integer, primary_key=True, autoincrement=False),
    Column("pat_id", String(16)),
    Column("outcome", String(8)),
    Column("phone", String(20)),
    Column("updated_at", DateTime, nullable=False),
    mysql_charset="utf8mb4",
)
DELETED = Table(
    "deleted_rows",
    metadata,
    Column("table_name", String(32), primary_key=True),
    Column("row_key", String(32), primary_key=True),
    Column("deleted_at", DateTime, nullable=False),
    mysql_charset="utf8mb4",
)


def _server_database(backend: str) -> Iterator[str]:
    """A fresh database on a local server for one test, dropped afterwards."""
    admin = create_engine(SERVERS[backend], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable here
        admin.dispose()
        require(False, f"{backend} server not reachable at 127.0.0.1 ({type(exc).__name__})")
    name = f"walnut_test_{uuid.uuid4().hex[:10]}"
    extra = " CHARACTER SET utf8mb4" if backend == "mariadb" else ""
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}{extra}"))
    base = SERVERS[backend].rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}" + ("?charset=utf8mb4" if backend == "mariadb" else "")
    finally:
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'his.sqlite'}"
    else:
        yield from _server_database(request.param)


@pytest.fixture
def mapping(tmp_path: Path):
    folder = tmp_path / "mappings" / "demo_his"
    folder.mkdir(parents=True)
    (folder / "source.yaml").write_text(
        "hospital: demo_his\n"
        "sources:\n"
        "  - {name: followup, table: followup, kind: sql, source_table: visit,\n"
        "     key_column: visit_id, chunk_size: 3, connection: DEMO_HIS_URL,\n"
        "     deletions_table: deleted_rows, constants: {dept: oncology}}\n",
        encoding="utf-8",
    )
    (folder / "columns.yaml").write_text(
        "followup:\n  pat_id: mrn\n  outcome: vital_status\n  phone: drop\n  dept: drop\n",
        encoding="utf-8",
    )
    return load_site_mapping(folder)


def _fill(url: str, rows: int) -> None:
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        # Every row shares one timestamp: only the key tie-break keeps chunks apart.
        conn.execute(
            VISIT.insert(),
            [
                {
                    "visit_id": i,
                    "pat_id": f"P{i}",
                    "outcome": "alive",
                    "phone": "1",
                    "updated_at": T0,
                }
                for i in range(1, rows + 1)
            ],
        )
    engine.dispose()


def _execute(url: str, statement, params: list[dict] | dict | None = None) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(statement, params)
    engine.dispose()


def _land(mapping, url: str, landing: Path) -> str | None:
    def lander(m, partial, received):
        return sql_extract.land_sql_sources(m, partial, received, environ={"DEMO_HIS_URL": url})

    return land_files(mapping, landing / "no_files", landing, land_database=lander)


def _keys(landing: Path, batch: str, source: str = "followup") -> list[int]:
    keys = []
    for f in read_manifest(landing / batch):
        if f.sources == [source]:
            keys += [
                int(k) for k in pq.read_table(landing / batch / f.name)["visit_id"].to_pylist()
            ]
    return keys


def test_incremental_chunks_with_ties_read_each_row_once(
    db_url: str, mapping, tmp_path: Path
) -> None:
    _fill(db_url, 7)
    landing = tmp_path / "landing"
    first = _land(mapping, db_url, landing)
    files = read_manifest(landing / first)
    chunks = [f for f in files if f.sources == ["followup"]]
    assert [f.name for f in chunks] == [f"followup.0000{n}.parquet" for n in (1, 2, 3)]
    assert [f.extra["rows"] for f in chunks] == [3, 3, 1]
    assert _keys(landing, first) == list(range(1, 8))
    assert sql_extract.current_watermarks(landing)["followup"] == (T0, 7)
    landed = pq.read_table(landing / first / chunks[0].name)
    assert "phone" not in landed.column_names  # dropped by the mapping: never selected
    assert _land(mapping, db_url, landing) is None  # nothing changed: no batch at all

    # An update, a new row sharing the old high-water timestamp (tie, higher key) and a
    # tombstone: the next batch holds exactly those.
    _execute(db_url, VISIT.update().where(VISIT.c.visit_id == 2).values(updated_at=T1))
    _execute(
        db_url,
        VISIT.insert(),
        {"visit_id": 8, "pat_id": "P8", "outcome": "dead", "phone": "1", "updated_at": T0},
    )
    _execute(db_url, DELETED.insert(), {"table_name": "visit", "row_key": "5", "deleted_at": T1})
    second = _land(mapping, db_url, landing)
    assert _keys(landing, second) == [8, 2]
    deletions = sql_extract.read_deletions(landing / second)
    assert deletions.to_dict("records") == [
        {"table_name": "visit", "row_key": "5", "deleted_at": "2025-07-02 03:00:00"}
    ]
    assert sql_extract.current_watermarks(landing)["followup"] == (T1, 2)


def test_killed_extract_resumes_with_no_gap_and_no_duplicate(
    db_url: str, mapping, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(db_url, 4)
    landing = tmp_path / "landing"
    first = _land(mapping, db_url, landing)
    _execute(
        db_url,
        VISIT.insert(),
        [
            {"visit_id": i, "pat_id": f"P{i}", "outcome": "alive", "phone": "1", "updated_at": T1}
            for i in range(5, 13)
        ],
    )
    real_write = sql_extract.write_chunk
    written: list[Path] = []

    def dying_write(rows, columns, path: Path) -> None:
        if len(written) == 2:  # killed after chunk 2 of 3: keep what a SIGKILL would leave
            shutil.copytree(path.parent, landing / ".killed.partial")
            raise KeyboardInterrupt
        real_write(rows, columns, path)
        written.append(path)

    monkeypatch.setattr(sql_extract, "write_chunk", dying_write)
    with pytest.raises(KeyboardInterrupt):
        _land(mapping, db_url, landing)
    assert landed_batches(landing) == [first]
    assert sql_extract.current_watermarks(landing)["followup"] == (T0, 4)
    monkeypatch.setattr(sql_extract, "write_chunk", real_write)
    resumed = _land(mapping, db_url, landing)
    assert landed_batches(landing) == [first, resumed]
    assert _keys(landing, first) + _keys(landing, resumed) == list(range(1, 13))


def _landed_four_rows(mapping, tmp_path: Path) -> list[Path]:
    """Four followup rows in SQLite landed as one batch: its chunk files, in order."""
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    _fill(url, 4)
    landing = tmp_path / "landing"
    batch = landing / _land(mapping, url, landing)
    return [batch / landed.name for landed in read_manifest(batch)]


def test_reader_numbers_rows_within_the_chunk_and_adds_constants(mapping, tmp_path: Path) -> None:
    chunks = _landed_four_rows(mapping, tmp_path)
    (raw,) = read_landed(mapping.sources[0], chunks[1])
    assert raw.source_name == "followup.00002.parquet" and raw.rows_read == 1
    assert raw.frame.to_dict("records") == [
        {
            "visit_id": "4",
            "pat_id": "P4",
            "outcome": "alive",
            "updated_at": "2025-07-01 03:00:00",
            "dept": "oncology",
            "_source_row": 1,
        }
    ]


def test_reader_chunks_number_rows_as_one_read(mapping, tmp_path: Path) -> None:
    first = _landed_four_rows(mapping, tmp_path)[0]
    spec = mapping.sources[0]
    (whole,) = read_landed(spec, first)
    chunks = list(read_landed(spec, first, chunk_rows=2))
    assert [c.rows_read for c in chunks] == [2, 1]
    assert {c.source_name for c in chunks} == {whole.source_name}
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    assert whole.frame["_source_row"].tolist() == [1, 2, 3]


def test_demo_sqlite_is_the_fallback_and_a_missing_url_names_the_variable(
    mapping, tmp_path: Path
) -> None:
    spec = mapping.sources[0]
    with pytest.raises(ConfigError, match="set the environment variable DEMO_HIS_URL"):
        sql_extract.resolve_database_url(mapping, spec, tmp_path, environ={})
    (tmp_path / "his.sqlite").touch()
    url = sql_extract.resolve_database_url(mapping, spec, tmp_path, environ={})
    assert url == f"sqlite:///{tmp_path / 'his.sqlite'}"
    env = {"DEMO_HIS_URL": "sqlite:///elsewhere.db"}
    assert sql_extract.resolve_database_url(mapping, spec, tmp_path, env) == env["DEMO_HIS_URL"]


def test_unreachable_server_names_the_variable_not_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        sql_extract.open_database(
            "postgresql+psycopg2://walnut:s3cret-pw@127.0.0.1:1/his", "WALNUT_HIS_URL_X"
        )
    message = str(caught.value)
    assert "WALNUT_HIS_URL_X" in message and "127.0.0.1" in message
    assert "s3cret-pw" not in message


def test_keyset_condition_orders_ties_by_key() -> None:
    frame = pd.DataFrame({"w": [1, 1, 1, 2], "k": [1, 2, 3, 1]})
    engine = create_engine("sqlite://")
    frame.to_sql("t", engine, index=False)
    table = Table("t", MetaData(), autoload_with=engine)
    query = table.select().where(sql_extract.after([table.c.w, table.c.k], (1, 2)))
    with engine.connect() as conn:
        assert conn.execute(query.order_by(table.c.w, table.c.k)).fetchall() == [(1, 3), (2, 1)]
