"""SeenRows: the staged row hashes of a batch, as compact sorted runs."""

from __future__ import annotations

import hashlib

import numpy as np

from transforms.seen_rows import SeenRows


def _hashes(numbers: range) -> list[str]:
    return [hashlib.sha256(str(n).encode()).hexdigest() for n in numbers]


def test_contains_what_was_added_in_any_earlier_chunk() -> None:
    seen = SeenRows()
    assert not seen and seen.contains(_hashes(range(3))).tolist() == [False] * 3
    for start in range(0, 1000, 70):  # runs of many sizes, merged as they come
        seen.add(_hashes(range(start, min(start + 70, 1000))))
    assert len(seen) == 1000
    probe = _hashes(range(990, 1010))
    assert seen.contains(probe).tolist() == [True] * 10 + [False] * 10


def test_runs_stay_few_and_sorted() -> None:
    seen = SeenRows()
    for start in range(0, 64_000, 500):
        seen.add(_hashes(range(start, start + 500)))
    runs = seen._runs
    assert len(runs) <= 8  # O(log n): 128 chunks
    assert all((np.sort(run) == run).all() for run in runs)
    assert sum(len(run) for run in runs) == 64_000


def test_repeats_and_empty_chunks_are_kept_once() -> None:
    seen = SeenRows()
    seen.add([])
    seen.add(_hashes(range(5)) * 2)
    seen.add(_hashes(range(3)))
    assert len(seen) == 5 and seen.contains(_hashes(range(6))).tolist() == [True] * 5 + [False]


def test_only_the_leading_128_bits_count() -> None:
    a = "ab" * 16 + "00" * 16
    b = "ab" * 16 + "ff" * 16
    c = "ab" * 15 + "00" + "00" * 16  # differs inside the key, ends in a zero byte
    seen = SeenRows()
    seen.add([a])
    assert seen.contains([b, c]).tolist() == [True, False]
