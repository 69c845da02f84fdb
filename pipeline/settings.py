"""Runtime settings: where data lives and which hospitals exist, read once from the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Rows per chunk when staging, validating and mapping a batch: bounds memory whatever the input
# size. Measured on a 310k-row table: peak RSS ~510/555/630 MB at 25k/50k/100k rows, while
# each extra chunk costs a GX validation call (~0.3-0.6 s fixed) and a garbage collection.
DEFAULT_CHUNK_ROWS = 50_000
# DuckDB memory for a warehouse build; beyond it DuckDB spills to disk. At ~1.5M resources a
# full build peaks at ~2 GB RSS unbounded, ~700 MB at 512MB, ~495 MB at 320MB; its merge and
# flattening at ~433 MB at 256MB and ~371 MB at 192MB, in the same 15-19 s (linkage, which
# used to be the peak, scores in its own process: warehouse/pair_scorer.py). With insertion
# order kept, 256MB cost the merge +3.5 s as it started to spill; the build lets DuckDB reorder
# rows (see warehouse/build.py).
DEFAULT_DUCKDB_MEMORY = "192MB"
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Plain paths and flags; serialisable, so tasks can rebuild it from the environment."""

    home: Path
    mappings: Path
    sources: Path
    demo: bool
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    duckdb_memory: str = DEFAULT_DUCKDB_MEMORY

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def staging(self) -> Path:
        return self.home / "staging"

    @property
    def fhir(self) -> Path:
        return self.home / "fhir"

    @property
    def gov(self) -> Path:
        return self.home / "gov"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def warehouse_db(self) -> Path:
        return self.warehouse / "walnut.duckdb"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def source_dir(self, hospital: str) -> Path:
        return self.sources / hospital


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from WALNUT_HOME, _MAPPINGS, _SOURCES, _DEMO, _CHUNK_ROWS (rows per chunk) and
    _DUCKDB_MEMORY (memory limit of a warehouse build)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("WALNUT_HOME") or REPO_ROOT / "var").resolve()
    mappings = Path(env.get("WALNUT_MAPPINGS") or REPO_ROOT / "mappings").resolve()
    sources = Path(env.get("WALNUT_SOURCES") or home / "sources").resolve()
    demo = env.get("WALNUT_DEMO", "").lower() in {"1", "true", "yes"}
    chunk_rows = _chunk_rows(env.get("WALNUT_CHUNK_ROWS", ""))
    return Settings(
        home=home,
        mappings=mappings,
        sources=sources,
        demo=demo,
        chunk_rows=chunk_rows,
        duckdb_memory=_duckdb_memory(env.get("WALNUT_DUCKDB_MEMORY", "")),
    )


def _duckdb_memory(value: str) -> str:
    """WALNUT_DUCKDB_MEMORY as a DuckDB size such as 512MB or 2GB (the default when unset)."""
    if not value.strip():
        return DEFAULT_DUCKDB_MEMORY
    if not _MEMORY.fullmatch(value.strip()):
        from transforms.errors import ConfigError

        raise ConfigError(
            f"WALNUT_DUCKDB_MEMORY must be a size such as 512MB or 2GB, not {value!r}"
        )
    return value.strip()


_BYTES = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTES |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(size: str) -> int:
    """Bytes of a DuckDB size such as 320MB (10^6 bytes) or 1GiB (2^30), as DuckDB reads it."""
    match = _MEMORY.fullmatch(size.strip())
    if match is None:
        raise ValueError(f"not a memory size: {size!r}")
    return int(float(size.strip()[: match.start(2)]) * _BYTES[match.group(2).lower()])


def _chunk_rows(value: str) -> int:
    """WALNUT_CHUNK_ROWS as a positive integer (the default when unset or blank)."""
    if not value.strip():
        return DEFAULT_CHUNK_ROWS
    try:
        rows = int(value)
    except ValueError:
        rows = 0
    if rows < 1:
        from transforms.errors import ConfigError

        raise ConfigError(f"WALNUT_CHUNK_ROWS must be a positive integer, not {value!r}")
    return rows


def hospitals(settings: Settings | None = None) -> list[str]:
    """Hospital ids: folders under mappings/ holding a source.yaml (`_shared` excluded)."""
    root = (settings or load_settings()).mappings
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith("_") and (p / "source.yaml").is_file()
    )
