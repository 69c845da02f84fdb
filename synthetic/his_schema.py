"""south_general's HIS tables in portable SQLAlchemy Core types, plus a chunked row writer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Date, DateTime, Integer, MetaData, String, Table

metadata = MetaData()
_KW = {"mysql_charset": "utf8mb4"}  # MariaDB needs it for Chinese text; ignored elsewhere


def _updated_at() -> Column:
    return Column("updated_at", DateTime, nullable=False)


PAT_MASTER = Table(
    "pat_master",
    metadata,
    Column("pat_id", String(16), primary_key=True),
    Column("pat_name", String(64)),
    Column("sex_code", String(1)),
    Column("birth_dt", Date),
    Column("id_card_no", String(18)),
    Column("phone", String(20)),
    Column("address", String(200)),
    _updated_at(),
    **_KW,
)
DIAG_RECORD = Table(
    "diag_record",
    metadata,
    Column("diag_id", Integer, primary_key=True, autoincrement=False),
    Column("pat_id", String(16), nullable=False),
    Column("diag_dt", Date),
    Column("icd_code", String(16)),
    Column("diag_name", String(64)),
    Column("morphology", String(16)),
    _updated_at(),
    **_KW,
)
DRUG_ORDER = Table(
    "drug_order",
    metadata,
    Column("order_id", Integer, primary_key=True, autoincrement=False),
    Column("pat_id", String(16), nullable=False),
    Column("drug_code", String(16)),
    Column("drug_name", String(64)),
    Column("start_dt", Date),
    Column("stop_dt", Date),
    _updated_at(),
    **_KW,
)
SURGERY = Table(
    "surgery",
    metadata,
    Column("op_id", Integer, primary_key=True, autoincrement=False),
    Column("pat_id", String(16), nullable=False),
    Column("op_code", String(16)),
    Column("op_name", String(64)),
    Column("op_dt", Date),
    _updated_at(),
    **_KW,
)
VISIT = Table(
    "visit",
    metadata,
    Column("visit_id", Integer, primary_key=True, autoincrement=False),
    Column("pat_id", String(16), nullable=False),
    Column("visit_dt", Date),
    Column("dept", String(32)),
    Column("outcome", String(8)),
    _updated_at(),
    **_KW,
)
DELETED_ROWS = Table(
    "deleted_rows",
    metadata,
    Column("table_name", String(32), primary_key=True),
    Column("row_key", String(32), primary_key=True),
    Column("deleted_at", DateTime, nullable=False),
    **_KW,
)
TABLES = (PAT_MASTER, DIAG_RECORD, DRUG_ORDER, SURGERY, VISIT, DELETED_ROWS)


class TableWriter:
    """Inserts rows in chunks so that memory stays flat at any cohort size."""

    def __init__(self, conn: Connection, table: Table, chunk: int = 2000) -> None:
        self._conn = conn
        self._table = table
        self._chunk = chunk
        self._pending: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, row: dict[str, Any]) -> int:
        """Queue one row; returns its 1-based position (primary keys are written ascending)."""
        self._pending.append(row)
        if len(self._pending) >= self._chunk:
            self.flush()
        self.rows += 1
        return self.rows

    def flush(self) -> None:
        if self._pending:
            self._conn.execute(self._table.insert(), self._pending)
            self._pending = []
