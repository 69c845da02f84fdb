"""The row hashes a batch has staged so far, 16 bytes each, to drop exact duplicates across
every chunk and file of a source.

A Python set of the 64-character hex hashes held ~140 bytes per row: ~45 MB for the ~300k
rows of one lab export at ~1M rows, and it grew with the export until the batch was staged.
Here a row costs 16 bytes: the first 128 bits of its keyed SHA-256, which two different rows
share with a probability of about n² / 2¹²⁹ (~10⁻²⁶ for ten million rows).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np

KEY_BYTES = 16


def _keys(hashes: Sequence[str]) -> np.ndarray:
    """The first KEY_BYTES of each hex hash, as fixed-width bytes (NumPy truncates to S32)."""
    if not len(hashes):
        return np.empty(0, dtype=f"S{KEY_BYTES}")
    hexes = np.asarray(hashes, dtype=f"S{2 * KEY_BYTES}")
    return np.frombuffer(binascii.unhexlify(hexes.tobytes()), dtype=f"S{KEY_BYTES}")


class SeenRows:
    """Sorted runs of keys, the newest smallest; two neighbours merge once the newer one is at
    least half the older's size, so there are O(log n) runs and each key is re-sorted
    O(log n) times. A lookup is one binary search per run."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def contains(self, hashes: Sequence[str]) -> np.ndarray:
        """Per hash: was it added before?"""
        keys = _keys(hashes)
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            at = np.searchsorted(run, keys)
            at[at == len(run)] = 0
            found |= run[at] == keys
        return found

    def add(self, hashes: Sequence[str]) -> None:
        keys = np.unique(_keys(hashes))
        if not len(keys):
            return
        self._runs.append(keys)
        while len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2]):
            newer = self._runs.pop()
            self._runs[-1] = np.union1d(self._runs[-1], newer)
