"""Score linkage pairs with Splink in a process forked when the build starts.

Splink's training (its own DuckDB database, sqlglot's parsers) adds 50-90 MB of RSS to the
process it runs in. In the build process that came on top of everything the build had
gathered by then (DuckDB's buffer pool, allocator caches, pandas): ~330 MB before linkage at
~1M rows, so training was the full build's peak (~430 MB). A process forked before the build's
first query holds only the imported modules (~130 MB); it waits for the linkage records, scores
them and sends the pairs back, and the build process never holds Splink at all.

The process is started whatever the build will do; told nothing to score (linkage inputs
unchanged) or left behind by a failing build, it exits.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from transforms.processes import fork_worker, send_outcome

if TYPE_CHECKING:
    import pandas as pd


class ScoringProcessDied(RuntimeError):
    """The scoring process ended without sending the scored pairs (killed, or a native crash)."""


class PairScorer:
    """`score_pairs` run in the forked process; call it once, with the linkage records."""

    def __init__(self) -> None:
        self._conn, self._process = fork_worker(_serve, duplex=True, daemon=True)

    def __call__(self, records: pd.DataFrame) -> pd.DataFrame:
        try:
            self._conn.send(records)
            outcome = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._process.join()
            raise ScoringProcessDied(
                "patient linkage: the scoring process ended without a result "
                f"(exit code {self._process.exitcode}); the build stops and the warehouse "
                "stays as it was"
            ) from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        """Let the process go (it exits on the closed pipe) and reap it."""
        self._conn.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


@contextmanager
def pair_scorer() -> Iterator[Callable[[pd.DataFrame], pd.DataFrame]]:
    """A scoring process for the duration of a build; fork it before the build's queries.

    Inside a daemonic process (which may not have children) pairs are scored in-process.
    """
    if multiprocessing.current_process().daemon:
        from warehouse.linkage import score_pairs

        yield score_pairs
        return
    scorer = PairScorer()
    try:
        yield scorer
    finally:
        scorer.close()


def _serve(conn: Connection) -> None:
    try:
        records = conn.recv()
    except EOFError:  # nothing to score
        return
    from warehouse.linkage import score_pairs  # lazily: pandas and Splink load here only

    send_outcome(conn, partial(score_pairs, records))  # an exception is raised in the build
