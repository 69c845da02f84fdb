"""Read an HL7 v2 feed file into a raw frame: one row per occurrence of a chosen segment.

A feed file may hold many messages, framed by MLLP bytes or not, with `\\r`, `\\n` or `\\r\\n`
segment ends and a leading byte-order mark. A message that cannot be parsed rejects one row
(rule `extract.hl7_parse`), never the file.

Columns are named by field position: `OBX-5` is the first repetition of field 5 (escape
sequences resolved), `OBX-3.1` its first component, `OBX-3.1.2` a subcomponent (only where the
component has `&`), `PID-3[2]` and `PID-3[2].1` a later repetition. Every field and component
present in the row's segment and in its context segments is a column; context is, per other
segment type of the message, the nearest occurrence before the row's segment (else the first
after it), so an OBX row carries its message's MSH, PID and its own OBR. `COMMON_COLUMNS` are
always present (null where absent), so a mapping can rely on them even when a file happens not
to carry a field. `_source_row` is the 1-based occurrence of the segment within the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hl7
import pandas as pd

from transforms.encoding import detect_encoding
from transforms.extract.raw import RawTable, Rejected, take_all

log = logging.getLogger(__name__)

# Fields most mappings need; present as columns even when no message of a file carries them.
COMMON_COLUMNS: tuple[str, ...] = (
    "MSH-7",
    "MSH-9",
    "MSH-10",
    "MSH-12",
    "EVN-1",
    "EVN-2",
    "PID-3",
    "PID-3.1",
    "PID-5",
    "PID-7",
    "PID-8",
    "PID-29",
    "PID-30",
    "OBR-4.1",
    "OBR-7",
    "OBR-14",
    "OBX-1",
    "OBX-2",
    "OBX-3.1",
    "OBX-3.2",
    "OBX-3.3",
    "OBX-5",
    "OBX-6.1",
    "OBX-7",
    "OBX-8",
    "OBX-11",
    "OBX-14",
)

_FRAMING = str.maketrans("", "", "\x0b\x1c")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_ENVELOPE = frozenset({"FHS", "FTS", "BHS", "BTS"})
_SURROGATE = re.compile("[\udc80-\udcff]")
_BOM = "\ufeff"


@dataclass(frozen=True)
class Separators:
    """The message's delimiters, read from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def of(cls, msh: str) -> Separators:
        field = msh[3]
        chars = msh[4 : msh.find(field, 4)] if msh.find(field, 4) > 0 else msh[4:]
        defaults = "^~\\&"
        chars = chars + defaults[len(chars) :]
        return cls(field, chars[0], chars[1], chars[2], chars[3])


def unescape(text: str, seps: Separators) -> str:
    """Resolve HL7 escape sequences (`\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\`).

    Highlighting (`\\H\\ \\N\\`), character-set switches and unknown sequences are removed;
    nothing here logs the text, which may hold patient data.
    """
    esc = seps.escape
    if esc not in text:
        return text
    known = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": esc,
        ".br": "\n",
        ".sp": "\n",
    }
    out: list[str] = []
    parts = text.split(esc)
    # Odd positions sit between two escape characters; an unpaired trailing one stays literal.
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif i == len(parts) - 1:
            out.append(esc + part)
        elif part in known:
            out.append(known[part])
        elif part[:1] == "X" and len(part) > 1:
            out.append(_hex_text(part[1:]))
    return "".join(out)


def _hex_text(digits: str) -> str:
    try:
        return bytes.fromhex(digits).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def split_messages(text: str) -> list[list[str]]:
    """Messages of a feed file as lists of segments (MLLP bytes, BOMs and blank lines gone).

    Segments before the first MSH (other than file/batch envelopes) form a message of their
    own, which then fails to parse.
    """
    cleaned = text.translate(_FRAMING).replace("\r\n", "\r").replace("\n", "\r")
    messages: list[list[str]] = []
    for raw in cleaned.split("\r"):
        segment = raw.lstrip(_BOM).strip(" \t")
        if not segment.strip():
            continue
        name = segment[:3]
        if name in _ENVELOPE:
            continue
        if name == "MSH" or not messages:
            messages.append([segment])
        else:
            messages[-1].append(segment)
    return messages


def _check_message(segments: list[str]) -> str | None:
    """Why the message cannot be parsed, or None; the reason never quotes message text."""
    first = segments[0]
    if not first.startswith("MSH") or len(first) < 8:
        return "message does not start with an MSH header"
    for number, segment in enumerate(segments, start=1):
        if not _SEGMENT_ID.fullmatch(segment[:3]) or (len(segment) > 3 and segment[3] != first[3]):
            return f"segment {number} of the message has no valid segment id"
        if _SURROGATE.search(segment):
            return f"segment {number} of the message has undecodable bytes"
    # The library judges the header (field separator, encoding characters); once the checks
    # above pass, the other segments cannot make it fail (30k random mutations of real
    # messages: every parser failure came from MSH alone), and parsing them too took a
    # quarter of a large HL7 feed's staging time.
    try:
        hl7.parse(first)
    except Exception as exc:  # the library raises assorted errors on malformed input
        return f"hl7 parser failed ({type(exc).__name__})"
    return None


def _flatten_segment(segment: str, seps: Separators) -> dict[str, str]:
    """Columns of one segment by field position (MSH-1/MSH-2 hold the separators themselves)."""
    name = segment[:3]
    fields = segment.split(seps.field)
    out: dict[str, str] = {}
    if name == "MSH":
        out["MSH-1"] = seps.field
        out["MSH-2"] = fields[1] if len(fields) > 1 else ""
        numbered = enumerate(fields[2:], start=3)
    else:
        numbered = enumerate(fields[1:], start=1)
    for position, field in numbered:
        base = f"{name}-{position}"
        for rep_index, repetition in enumerate(field.split(seps.repetition), start=1):
            key = base if rep_index == 1 else f"{base}[{rep_index}]"
            out[key] = unescape(repetition, seps)
            for comp_index, component in enumerate(repetition.split(seps.component), start=1):
                out[f"{key}.{comp_index}"] = unescape(component, seps)
                if seps.subcomponent in component:
                    subs = component.split(seps.subcomponent)
                    for sub_index, sub in enumerate(subs, start=1):
                        out[f"{key}.{comp_index}.{sub_index}"] = unescape(sub, seps)
    return out


def _rows_of(segments: list[str], target: str) -> list[dict[str, str]]:
    """One flattened row per target segment, with the message's context segments merged in."""
    seps = Separators.of(segments[0])
    names = [s[:3] for s in segments]
    flat = [_flatten_segment(s, seps) for s in segments]
    rows = []
    for i, name in enumerate(names):
        if name != target:
            continue
        chosen: dict[str, int] = {}
        for j, other in enumerate(names):
            if other == target:
                continue
            if j < i or other not in chosen:
                chosen[other] = j
        row: dict[str, str] = {}
        for j in sorted(chosen.values()):
            row.update(flat[j])
        row.update(flat[i])
        rows.append(row)
    return rows


def read_hl7_file(path: Path, segment: str = "OBX", encoding: str = "auto") -> RawTable:
    """Raw frame of one HL7 v2 feed file: one row per `segment`, lineage row = its occurrence."""
    (raw,) = iter_hl7_file(path, segment, encoding)
    return raw


@dataclass(frozen=True)
class _Message:
    """One message of a feed file: its segments, why it cannot be parsed, its target count."""

    segments: list[str]
    reason: str | None
    count: int


def iter_hl7_file(
    path: Path, segment: str = "OBX", encoding: str = "auto", chunk_rows: int | None = None
) -> Iterator[RawTable]:
    """`read_hl7_file` in groups of whole messages holding about `chunk_rows` rows (None: one).

    Every chunk carries the columns a whole-file read would have, in the same order, so row
    hashes do not depend on the chunking; finding them costs a second pass over the messages,
    taken only when the file holds more than `chunk_rows` rows.
    """
    data = path.read_bytes()
    codec = detect_encoding(data) if encoding == "auto" else encoding
    messages = [
        _Message(segments, _check_message(segments), sum(1 for s in segments if s[:3] == segment))
        for segments in split_messages(data.decode(codec, errors="surrogateescape"))
    ]
    del data
    total = sum(m.count for m in messages if m.reason is None)
    columns = None
    if chunk_rows is not None and total > chunk_rows:
        columns = _column_order(messages, segment)
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    rejected: list[Rejected] = []
    occurrence = 0
    bad_without_rows = 0
    yielded = False
    for index, message in enumerate(messages, start=1):
        if message.reason is None:
            found = _rows_of(message.segments, segment)
            rows += found
            numbers += range(occurrence + 1, occurrence + len(found) + 1)
        elif message.count:
            reason = message.reason
            rule = "extract.decodable" if "undecodable" in reason else "extract.hl7_parse"
            rejected.append(
                Rejected(
                    occurrence + 1,
                    rule,
                    f"message {index}: {reason}; {message.count} {segment} lost",
                )
            )
        else:
            bad_without_rows += 1
        occurrence += message.count
        if columns is not None and len(rows) >= chunk_rows:
            yielded = True
            yield _raw_table(take_all(rows), take_all(numbers), take_all(rejected), codec, columns)
    if rows or rejected or not yielded:
        yield _raw_table(rows, numbers, rejected, codec, columns)
    if bad_without_rows:
        log.warning(
            "%s: %d unparseable message(s) without %s segments skipped",
            path.name,
            bad_without_rows,
            segment,
        )
    log.info(
        "%s: %d %s row(s), %d message(s) rejected",
        path.name,
        total,
        segment,
        sum(1 for m in messages if m.reason is not None and m.count),
    )


def _column_order(messages: list[_Message], segment: str) -> list[str]:
    """Columns of the file's rows in first-seen order, as one frame of all rows would have."""
    seen: dict[str, None] = {}
    for message in messages:
        if message.reason is None:
            for row in _rows_of(message.segments, segment):
                seen.update(dict.fromkeys(row))
    return list(seen)


def _raw_table(
    rows: list[dict[str, str]],
    numbers: list[int],
    rejected: list[Rejected],
    codec: str,
    columns: list[str] | None,
) -> RawTable:
    """Rows as a frame (under `columns` when given), with `COMMON_COLUMNS` and `_source_row`."""
    frame = pd.DataFrame(rows, dtype=object, columns=columns)
    for column in COMMON_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(None, index=frame.index, dtype=object)
    frame["_source_row"] = pd.Series(numbers, index=frame.index, dtype="int64")
    return RawTable(frame, codec, len(rows) + len(rejected), rejected)
