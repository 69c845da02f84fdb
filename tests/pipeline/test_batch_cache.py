"""newest_per_key: the last row per key over batches in order, from a cache plus new batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.batch_cache import newest_per_key

BATCHES = {
    "b1": [("k1", "one"), ("k2", "two"), (None, "no key")],
    "b2": [("k1", "one again")],
    "b3": [("k3", "three"), ("k2", "two again")],
}


def _reader(read: list[str]):
    def read_batch(batch_id: str) -> pd.DataFrame:
        read.append(batch_id)
        return pd.DataFrame(BATCHES[batch_id], columns=["key", "value"]).assign(extra=1)

    return read_batch


def _newest(path: Path, batches: list[str], read: list[str]) -> dict[str, str]:
    frame = newest_per_key(path, batches, _reader(read), "key", ["key", "value"])
    assert list(frame.columns) == ["key", "value"]
    return dict(zip(frame["key"], frame["value"], strict=True))


def test_the_cache_is_extended_by_the_new_batches_only(tmp_path: Path) -> None:
    path, read = tmp_path / "cache.parquet", []
    assert _newest(path, ["b1", "b2"], read) == {"k1": "one again", "k2": "two"}
    assert _newest(path, ["b1", "b2", "b3"], read) == {
        "k1": "one again",
        "k2": "two again",
        "k3": "three",
    }
    assert _newest(path, ["b1", "b2", "b3"], read) == {
        "k1": "one again",
        "k2": "two again",
        "k3": "three",
    }
    assert read == ["b1", "b2", "b3"]


def test_batches_that_do_not_extend_the_cached_ones_are_all_read_again(tmp_path: Path) -> None:
    path, read = tmp_path / "cache.parquet", []
    _newest(path, ["b1", "b3"], read)
    assert _newest(path, ["b1", "b2", "b3"], read) == {
        "k1": "one again",
        "k2": "two again",
        "k3": "three",
    }
    assert read == ["b1", "b3", "b1", "b2", "b3"]
    assert _newest(path, ["b2"], read) == {"k1": "one again"}  # fewer batches: no cache


def test_no_batches_and_a_broken_cache_file(tmp_path: Path) -> None:
    path, read = tmp_path / "cache.parquet", []
    assert _newest(path, [], read) == {} and not path.exists()
    path.write_bytes(b"not parquet")
    assert _newest(path, ["b2"], read) == {"k1": "one again"} and read == ["b2"]
