"""CSV exports: encodings detected, bad rows rejected alone with a reason, row numbers kept."""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pytest

from transforms.encoding import SAMPLE_BYTES, detect_encoding, detect_file_encoding
from transforms.extract.csv_export import iter_csv_export, read_csv_export
from transforms.extract.raw import RawTable

HEADER = "住院号,项目名称,结果\r\n"


def test_gbk_file_with_one_undecodable_row(tmp_path: Path) -> None:
    path = tmp_path / "检验.csv"
    body = HEADER.encode("gbk")
    body += "EL001,甲胎蛋白,12.5\r\n".encode("gbk")
    body += b"EL002,\xff\x80\xe7\x99\xbd,40\r\n"
    body += 'EL003,"白蛋白, 血清",38\r\n'.encode("gbk")
    path.write_bytes(body)
    raw = read_csv_export(path)
    assert raw.encoding == "gb18030"
    assert raw.rows_read == 3
    assert [(r.source_row, r.rule) for r in raw.rejected] == [(2, "extract.decodable")]
    assert raw.frame["_source_row"].tolist() == [1, 3]
    assert raw.frame["项目名称"].tolist() == ["甲胎蛋白", "白蛋白, 血清"]


def test_utf8_bom_headers_are_clean(tmp_path: Path) -> None:
    path = tmp_path / "随访.csv"
    path.write_bytes(("\ufeff" + "住院号,生存状态\r\nEL001,存活\r\n").encode("utf-8"))
    raw = read_csv_export(path)
    assert raw.encoding in {"utf-8-sig", "utf_8_sig"}
    assert list(raw.frame.columns) == ["住院号", "生存状态", "_source_row"]
    assert raw.frame.iloc[0]["生存状态"] == "存活"


def test_wrong_field_count_rejected_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "EL001,AFP\r\nEL002,AFP,3\r\n", encoding="gbk")
    raw = read_csv_export(path)
    assert raw.rejected[0].source_row == 1
    assert raw.rejected[0].reason == "expected 3 fields, found 2"
    assert raw.frame["_source_row"].tolist() == [2]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    raw = read_csv_export(path)
    assert raw.rows_read == 0 and raw.frame.empty


def _joined(chunks: list[RawTable]) -> RawTable:
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    rejected = [r for c in chunks for r in c.rejected]
    return RawTable(frame, chunks[0].encoding, sum(c.rows_read for c in chunks), rejected)


def test_chunks_number_rows_and_reject_as_one_read(tmp_path: Path) -> None:
    path = tmp_path / "检验.csv"
    body = HEADER.encode("gbk")
    for n in range(1, 12):
        body += f"EL{n:03d},甲胎蛋白,{n}\r\n".encode("gbk")
        if n == 4:
            body += b"EL004,\xff\x80,4\r\n\r\n"  # undecodable row, then a blank line
        if n == 8:
            body += "EL008,AFP\r\n".encode("gbk")  # wrong field count
    path.write_bytes(body)
    whole = read_csv_export(path)
    chunks = list(iter_csv_export(path, chunk_rows=3))
    assert [c.rows_read for c in chunks] == [3, 3, 3, 3, 1]
    assert {c.encoding for c in chunks} == {"gb18030"}
    joined = _joined(chunks)
    assert joined.rows_read == whole.rows_read == 13
    assert joined.rejected == whole.rejected
    assert [(r.source_row, r.rule) for r in whole.rejected] == [
        (5, "extract.decodable"),
        (10, "extract.field_count"),
    ]
    pd.testing.assert_frame_equal(joined.frame, whole.frame)


def test_header_only_file_is_one_empty_chunk(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(HEADER, encoding="gbk")
    (raw,) = iter_csv_export(path, chunk_rows=2)
    assert raw.rows_read == 0
    assert list(raw.frame.columns) == ["住院号", "项目名称", "结果", "_source_row"]


def _big(head: bytes, line: bytes, tail: bytes = b"") -> bytes:
    return head + line * (SAMPLE_BYTES // len(line) + 10) + tail


@pytest.mark.parametrize(
    "data",
    [
        _big("住院号,结果\n".encode(), "EL001,阴性\n".encode()),
        _big("住院号,结果\n".encode("gbk"), "EL001,阴性\n".encode("gbk")),
        _big(codecs.BOM_UTF8 + "住院号\n".encode(), b"EL001\n"),
        _big(b"mrn,result\n", b"EL001,12\n", "EL002,阴性\n".encode("gbk")),
        _big("住院号,结果\n".encode(), "EL001,阴性\n".encode(), b"EL002,\xff\x80\n"),
        _big("住院号,结果\n".encode("gbk"), "EL001,阴性\n".encode("gbk"), b"EL002,\xff\n"),
    ],
    ids=["utf8", "gbk", "utf8-bom", "ascii-head-gbk-tail", "utf8-bad-tail", "gbk-bad-tail"],
)
def test_file_encoding_is_the_whole_file_answer(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    assert detect_file_encoding(path) == detect_encoding(data)
