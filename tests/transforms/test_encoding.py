"""Tests for transforms.encoding: GBK/GB18030, UTF-8 and UTF-8-BOM exports, corrupted lines."""

from __future__ import annotations

import pandas as pd
import pytest

from transforms.encoding import (
    SAMPLE_BYTES,
    decode_lines_report,
    detect_encoding,
    normalise_nfkc,
)

HEADER = "患者编号,姓名,性别,出生日期,诊断名称,检验项目,结果,单位"
ROWS = [
    "P0001,张伟,男,1965-03-02,原发性肝细胞癌,甲胎蛋白,1200,ng/mL",
    "P0002,李娜,女,1970年5月1日,肺腺癌,癌胚抗原,5.2,ng/mL",
    "P0003,王芳,女,19800101,肝内胆管细胞癌,总胆红素,17.1,μmol/L",
    "P0004,刘洋,男,1958/7/9,肺鳞状细胞癌,白蛋白,35,g/L",
    "P0005,陈静,女,1962-11-23,乙型肝炎后肝硬化,凝血酶原时间国际标准化比值,1.1,",
]
TEXT = "\r\n".join([HEADER, *ROWS]) + "\r\n"


def test_gbk_file_is_gb18030() -> None:
    data = TEXT.encode("gbk")
    encoding = detect_encoding(data)
    assert encoding == "gb18030"
    text, bad = decode_lines_report(data, encoding)
    assert text == TEXT
    assert bad == []


def test_gb18030_only_characters() -> None:
    # 㐀 (U+3400) is outside GBK; a GB18030 export containing it must still decode.
    text = TEXT + "P0006,张㐀,男,1950-01-01,肝癌,甲胎蛋白,20,ng/mL\r\n"
    data = text.encode("gb18030")
    assert detect_encoding(data) == "gb18030"
    assert decode_lines_report(data, "gb18030") == (text, [])


def test_utf8_file() -> None:
    data = TEXT.encode("utf-8")
    assert detect_encoding(data) == "utf-8"
    assert decode_lines_report(data, "utf-8") == (TEXT, [])


def test_utf8_bom_file() -> None:
    data = TEXT.encode("utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")
    assert detect_encoding(data) == "utf-8-sig"
    text, bad = decode_lines_report(data, "utf-8-sig")
    assert text == TEXT and bad == []


def test_ascii_file_is_utf8() -> None:
    assert detect_encoding(b"id,value\n1,2\n") == "utf-8"
    assert detect_encoding(b"") == "utf-8"


@pytest.mark.parametrize("repeat", [1, 400])
def test_gbk_with_one_corrupted_line(repeat: int) -> None:
    lines = [HEADER.encode("gbk")] + [row.encode("gbk") for row in ROWS * repeat]
    corrupted_at = len(lines) // 2
    # A truncated double-byte character plus an invalid byte, as left by a broken export.
    lines[corrupted_at] = lines[corrupted_at][:9] + b"\xff\x81" + lines[corrupted_at][12:]
    data = b"\r\n".join(lines) + b"\r\n"
    if repeat > 1:
        assert len(data) > SAMPLE_BYTES
    encoding = detect_encoding(data)
    assert encoding == "gb18030"
    text, bad = decode_lines_report(data, encoding)
    assert bad == [corrupted_at]
    decoded_lines = text.split("\r\n")
    assert decoded_lines[0] == HEADER
    assert decoded_lines[corrupted_at + 1] == (ROWS * repeat)[corrupted_at]


def test_decode_lines_report_lists_each_bad_line_once() -> None:
    data = b"ok\n\xff\xfe bad twice\nok\nbad \x80\n"
    text, bad = decode_lines_report(data, "utf-8")
    assert bad == [1, 3]
    assert text.split("\n")[2] == "ok"


def test_utf8_with_one_corrupted_line() -> None:
    lines = [HEADER.encode("utf-8")] + [row.encode("utf-8") for row in ROWS]
    lines[3] = lines[3][:10] + b"\xe8\xff" + lines[3][12:]
    data = b"\n".join(lines) + b"\n"
    encoding = detect_encoding(data)
    assert encoding == "utf-8"
    assert decode_lines_report(data, encoding)[1] == [3]


def test_normalise_nfkc() -> None:
    folded = normalise_nfkc(pd.Series(["１２３Ｘ", "ａ\u3000ｂ", None, "abc"], index=[3, 4, 5, 6]))
    assert folded.index.tolist() == [3, 4, 5, 6]
    assert folded.tolist()[:2] == ["123X", "a b"]
    assert pd.isna(folded.iloc[2]) and folded.iloc[3] == "abc"
    ascii_only = normalise_nfkc(pd.Series(["abc", None], dtype=object))
    assert ascii_only.dtype == "string" and ascii_only.iloc[0] == "abc"
    assert normalise_nfkc(pd.Series([], dtype=object)).empty
