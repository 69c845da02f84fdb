"""CSV exports: encodings detected, bad rows rejected alone with a reason, row numbers kept."""

from __future__ import annotations

from pathlib import Path

from transforms.extract.csv_export import read_csv_export

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
