"""HL7 v2.5 lab feed files: ORU^R01 messages batched into lab_YYYYMMDD.hl7 files."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

ENCODING_CHARACTERS = "^~\\&"
MLLP_START = b"\x0b"
MLLP_END = b"\x1c\r"


def build_segment(name: str, fields: dict[int, str]) -> list[str]:
    """Field list of one segment from {position: value}; index 0 holds the segment name."""
    size = max(fields) + 1 if fields else 1
    out = [""] * size
    out[0] = name
    for position, value in fields.items():
        out[position] = value
    return out


def build_msh(timestamp: str, message_type: str, control_id: str, application: str) -> str:
    """MSH header; MSH-1 is the field separator itself, so MSH-2 is the first joined field."""
    fields = [
        "MSH",
        ENCODING_CHARACTERS,
        application,
        "SOUTH_GENERAL",
        "WALNUT",
        "WALNUT",
        timestamp,
        "",
        message_type,
        control_id,
        "P",
        "2.5",
        "",
        "",
        "",
        "",
        "CHN",
        "UNICODE UTF-8",
    ]
    return "|".join(fields)


def render_message(head: list[str], obx: list[list[str]]) -> str:
    """Segments joined by carriage returns, the HL7 segment terminator."""
    return "\r".join(head + ["|".join(segment) for segment in obx])


class Hl7Feed:
    """Batches messages into dated files; the first file is MLLP-framed like a socket capture."""

    def __init__(
        self, folder: Path, first_day: date, prefix: str = "lab", per_file: int = 40
    ) -> None:
        self._folder = folder
        self._first_day = first_day
        self._prefix = prefix
        self._per_file = per_file
        self._pending: list[str] = []
        self.files = 0
        self.messages = 0

    @property
    def current_name(self) -> str:
        day = self._first_day + timedelta(days=self.files)
        return f"{self._prefix}_{day:%Y%m%d}.hl7"

    def add(self, message: str) -> tuple[str, int]:
        """Queue a message; returns its file name and 1-based message index in that file."""
        if len(self._pending) >= self._per_file:
            self.flush()
        self._pending.append(message)
        self.messages += 1
        return self.current_name, len(self._pending)

    def flush(self) -> None:
        if not self._pending:
            return
        encoded = [m.encode("utf-8") for m in self._pending]
        if self.files == 0 and self._prefix == "lab":
            data = b"".join(MLLP_START + m + MLLP_END for m in encoded)
        else:
            data = b"\n".join(encoded) + b"\n"
        (self._folder / self.current_name).write_bytes(data)
        self.files += 1
        self._pending = []
