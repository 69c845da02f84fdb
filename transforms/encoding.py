"""Detect export file encodings (GBK/GB18030, UTF-8, UTF-8-BOM) and find undecodable lines."""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

import charset_normalizer
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

SAMPLE_BYTES = 64 * 1024
_BLOCK_BYTES = 1 << 20  # read size when checking a whole file is UTF-8
# GB2312 and GBK are subsets of GB18030, so decoding with GB18030 loses nothing and also reads
# the rarer characters (names!) that GBK-labelled exports contain in practice.
_CHINESE_CODECS = frozenset({"gb2312", "gbk", "gb18030"})
# Encodings a Chinese hospital export can plausibly be in; any other detector answer on such
# bytes (cp1125, koi8, ...) is a misfire, usually caused by a few corrupted bytes.
_PLAUSIBLE = frozenset({"gb18030", "big5", "big5hkscs", "utf-8"})
_FALLBACK_ORDER = ("gb18030", "utf-8")  # ties go to gb18030: UTF-8 was already tried strictly
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_SURROGATE = re.compile("[\udc80-\udcff]")


def detect_encoding(data: bytes) -> str:
    """Python codec name for an export file's bytes.

    Order: a byte-order mark; strict UTF-8 (ASCII included); charset-normalizer on the first
    64 KiB (cut at a line end) and then on the whole file, with Chinese answers mapped to
    gb18030. If the detector gives up or answers something implausible (typically a GBK file
    with a corrupted row), the candidate among gb18030 and utf-8 with the fewest undecodable
    lines wins, so the good rows load and the bad ones are quarantined.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"

    guess = _guess_with_detector(_sample(data))
    if guess is None and len(data) > SAMPLE_BYTES:
        guess = _guess_with_detector(data)
    if guess in _PLAUSIBLE and guess != "utf-8":
        return guess
    failing = {name: len(decode_lines_report(data, name)[1]) for name in _FALLBACK_ORDER}
    chosen = min(_FALLBACK_ORDER, key=lambda name: failing[name])
    log.info(
        "encoding detector answered %s; chose %s with %s undecodable lines",
        guess,
        chosen,
        failing[chosen],
    )
    return chosen


def detect_file_encoding(path: Path) -> str:
    """`detect_encoding` of the file's bytes, without holding the file in the usual cases.

    Same answer in the same order: a byte-order mark (leading bytes); valid UTF-8 (checked
    block by block); the detector's answer on the leading sample when it is a plausible
    non-UTF-8 codec. Only when the detector is unsure (typically a corrupted file) are the
    whole bytes read, by `detect_encoding` itself.
    """
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES + 1)  # one past the sample: `_sample` cuts as on all
    if len(head) <= SAMPLE_BYTES:
        return detect_encoding(head)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if _is_utf8(path):
        return "utf-8"
    guess = _guess_with_detector(_sample(head))
    if guess in _PLAUSIBLE and guess != "utf-8":
        return guess
    return detect_encoding(path.read_bytes())


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as strict UTF-8, read in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            for block in iter(lambda: handle.read(_BLOCK_BYTES), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def decode_lines_report(data: bytes, encoding: str) -> tuple[str, list[int]]:
    """Decode keeping bad bytes as surrogates; return text and 0-based lines holding them.

    Lines are split on "\\n" (a "\\r\\n" line ends in "\\r"). The caller quarantines the listed
    lines and reads the rest; note that Arrow-backed pandas strings reject surrogates, so the
    bad lines must be split off before building a frame.
    """
    text = data.decode(encoding, errors="surrogateescape")
    bad_lines: list[int] = []
    line = 0
    position = 0
    for match in _SURROGATE.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        if not bad_lines or bad_lines[-1] != line:
            bad_lines.append(line)
    return text, bad_lines


def normalise_nfkc(text: pd.Series) -> pd.Series:
    """NFKC-fold strings (full-width digits, letters, punctuation and spaces to ASCII).

    Returns a nullable "string" Series on the same index. Uses Arrow's kernel, since pandas'
    `.str.normalize` runs per value in Python, and returns early when all text is ASCII.
    """
    strings = text.astype("string")
    if strings.dtype.storage != "pyarrow":
        return strings.str.normalize("NFKC")
    array = pa.array(strings)
    if len(array) == 0 or pc.all(pc.string_is_ascii(array)).as_py() is not False:
        return strings
    folded = pc.utf8_normalize(array, "NFKC")
    return pd.Series(folded, dtype=strings.dtype, index=strings.index, name=strings.name)


def _sample(data: bytes) -> bytes:
    """The first SAMPLE_BYTES cut after a line end, so no multi-byte character is split."""
    if len(data) <= SAMPLE_BYTES:
        return data
    cut = data.rfind(b"\n", 0, SAMPLE_BYTES)
    return data[: cut + 1] if cut > 0 else data[:SAMPLE_BYTES]


def _guess_with_detector(data: bytes) -> str | None:
    """charset-normalizer's best guess as a normalised Python codec name, or None."""
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        return None
    try:
        name = codecs.lookup(best.encoding).name
    except LookupError:
        return None
    return "gb18030" if name in _CHINESE_CODECS else name
