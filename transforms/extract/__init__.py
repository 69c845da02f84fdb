"""Source readers: one module per source kind, each turning a landed file into raw tables.

A raw table is the source's rows as strings under the source's own column names, plus
`_source_row`; rows that cannot be read are rejected with a reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from transforms.extract.raw import RawTable
from transforms.mapping import SourceSpec

Reader = Callable[[SourceSpec, Path], Iterator[RawTable]]


def _read_csv(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    from transforms.extract.csv_export import read_csv_export

    yield read_csv_export(path, spec.encoding, spec.delimiter)


READERS: dict[str, Reader] = {"csv": _read_csv}


def read_landed(spec: SourceSpec, path: Path) -> Iterator[RawTable]:
    """Raw tables of one landed file for one source spec (several for chunked sources)."""
    try:
        reader = READERS[spec.kind]
    except KeyError:
        raise NotImplementedError(f"no reader for source kind {spec.kind!r} yet") from None
    yield from reader(spec, path)
