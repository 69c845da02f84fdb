"""Processes: how many workers a step may use, forking them from a frozen heap, their replies,
a quick exit."""

from __future__ import annotations

import atexit
import ctypes
import gc
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from transforms.errors import ConfigError


def processes(variable: str) -> int:
    """The positive count in `variable` (at least 1), else the CPUs this process may run on."""
    configured = os.environ.get(variable, "").strip()
    if not configured:
        return max(1, len(os.sched_getaffinity(0)))
    try:
        return max(1, int(configured))
    except ValueError:
        raise ConfigError(
            f"{variable} must be a whole number of processes such as 2, not {configured!r}"
        ) from None


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector of forked workers off the objects they inherit.

    CPython's advice for fork without exec (`gc.freeze`): a child's collections then never
    free or touch its parent's objects (garbage included), such as Arrow buffers allocated by
    the parent's reader threads, which the child's allocator state does not own; and pages
    stay shared instead of being copied when the collector writes to object headers. The
    parent collects them as usual once unfrozen. Workers must be forked inside.

    Memory the parent freed but its allocators kept is handed back first
    (`release_free_memory`): a forked worker's RSS starts at its parent's.
    """
    release_free_memory()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release_free_memory() -> None:
    """Return freed memory that Arrow's pool and glibc's malloc keep cached to the OS.

    Both keep what a chunk freed for the next one. Before a fork that is ~80 MB (Arrow) and
    ~10 MB (malloc) of a hospital process at ~1M rows that every worker would start with and
    count in its RSS. Costs a few milliseconds; a no-op where there is nothing to release.
    """
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


def fork_worker(
    target: Callable[..., None], *args: Any, duplex: bool = False, daemon: bool = False
) -> tuple[Connection, BaseProcess]:
    """Fork a process running `target(*args, conn)` from a frozen heap; returns this side's end
    of the pipe and the process. Without `duplex` the child only writes to it; a `daemon` is
    terminated when this process exits.

    Each side closes the other's end, so EOF on either means the other process is gone.
    """
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe(duplex=duplex)
    process = context.Process(target=_run_worker, args=(mine, target, *args, theirs), daemon=daemon)
    with frozen_heap():
        process.start()
    theirs.close()
    return mine, process


def _run_worker(parents: Connection, target: Callable[..., None], *args: Any) -> None:
    parents.close()
    target(*args)


def send_outcome(
    writer: Connection, work: Callable[[], Any], wrap: Callable[[Any], Any] = lambda o: o
) -> None:
    """A forked worker's reply: what `work()` returned or the exception it raised, through
    `wrap` (e.g. tagged with its hospital); the parent decides what to report.

    An outcome that does not pickle goes as a RuntimeError with its type and message.
    """
    try:
        outcome = work()
    except Exception as exc:  # sent to the parent, which reports or raises it
        outcome = exc
    try:
        writer.send(wrap(outcome))
    except Exception:
        writer.send(wrap(RuntimeError(f"{type(outcome).__name__}: {outcome}")))


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    """glibc's malloc_trim from the symbols already loaded; None on other C libraries."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def quick_exit() -> None:
    """Let this command's interpreter exit without the collector's passes over its heap.

    With GX, the FHIR models and DuckDB loaded, finalisation took ~0.8 s of every `walnut`
    command (a tenth of a nightly delta's sync); freezing the heap first (an atexit handler,
    registered last so it runs first) brings that to ~0.05 s. Other atexit handlers and
    module teardown still run; only cyclic garbage is left for the OS to reclaim.
    """
    atexit.register(gc.freeze)
