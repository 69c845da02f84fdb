"""Streaming CSV writer with a fixed byte encoding, CRLF line ends and injectable raw bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

# Stand-in text swapped for raw bytes after encoding; plain ASCII so csv never quotes it.
RAW_PLACEHOLDER = "QQRAWBYTESQQ"


class CsvSink:
    """Writes a header then data rows; `write` returns the 1-based data row number."""

    def __init__(self, path: Path, encoding: str, header: Sequence[str], bom: bool = False):
        self._file = path.open("wb")
        self._encoding = encoding
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        self.rows = 0
        if bom:
            self._file.write(b"\xef\xbb\xbf")
        self._emit(header, None)

    def write(self, fields: Sequence[str], raw: bytes | None = None) -> int:
        """Encode one row; `raw` replaces RAW_PLACEHOLDER inside it with undecodable bytes."""
        self._emit(fields, raw)
        self.rows += 1
        return self.rows

    def _emit(self, fields: Sequence[str], raw: bytes | None) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(fields)
        data = self._buffer.getvalue().encode(self._encoding)
        if raw is not None:
            data = data.replace(RAW_PLACEHOLDER.encode("ascii"), raw)
        self._file.write(data)

    def close(self) -> None:
        self._file.close()
