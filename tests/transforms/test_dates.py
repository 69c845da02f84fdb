"""Tests for transforms.dates: Chinese date spellings, Excel serials, UTC and local dates."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from transforms.dates import (
    DEFAULT_DATE_FORMATS,
    parse_local_datetimes,
    to_local_date,
    to_utc,
    unparseable_mask,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05", "2024-03-05 00:00"),
        ("2024/3/5", "2024-03-05 00:00"),
        ("2024/03/05", "2024-03-05 00:00"),
        ("2024年3月5日", "2024-03-05 00:00"),
        ("20240305", "2024-03-05 00:00"),
        ("2024.03.05", "2024-03-05 00:00"),
        ("2024-03-05 14:30", "2024-03-05 14:30"),
        ("2024-03-05 14:30:15", "2024-03-05 14:30:15"),
        ("2024/3/5 14:30", "2024-03-05 14:30"),
        ("2024年3月5日 14时30分", "2024-03-05 14:30"),
        ("2024年3月5日 14:30", "2024-03-05 14:30"),
        ("2024-03-05T14:30:15", "2024-03-05 14:30:15"),
        ("45356", "2024-03-05 00:00"),
        ("45356.5", "2024-03-05 12:00"),
        ("  2024-03-05  ", "2024-03-05 00:00"),
        ("２０２４年３月５日", "2024-03-05 00:00"),
        ("2024-03-05   14:30", "2024-03-05 14:30"),
    ],
)
def test_parse_local_datetimes_formats(text: str, expected: str) -> None:
    parsed = parse_local_datetimes(pd.Series([text]))
    assert parsed.dtype == "datetime64[us]"
    assert parsed.iloc[0] == pd.Timestamp(expected)


def test_excel_serial_numbers_and_date_objects() -> None:
    numbers = parse_local_datetimes(pd.Series([45356, 45356.25, 20240305, 12, np.nan]))
    assert numbers.tolist()[:3] == [
        pd.Timestamp("2024-03-05"),
        pd.Timestamp("2024-03-05 06:00"),
        pd.Timestamp("2024-03-05"),
    ]
    assert numbers.iloc[3:].isna().all()
    mixed = pd.Series([dt.date(2024, 3, 5), dt.datetime(2024, 3, 5, 14, 30), 45356, "2024/3/5"])
    assert parse_local_datetimes(mixed).tolist() == [
        pd.Timestamp("2024-03-05"),
        pd.Timestamp("2024-03-05 14:30"),
        pd.Timestamp("2024-03-05"),
        pd.Timestamp("2024-03-05"),
    ]


def test_datetime_inputs_keep_wall_time() -> None:
    aware = pd.Series(pd.to_datetime(["2024-03-05 14:30"]).tz_localize("Asia/Shanghai"))
    assert parse_local_datetimes(aware).iloc[0] == pd.Timestamp("2024-03-05 14:30")
    dates = pd.Series([dt.date(2024, 3, 5), None])
    parsed = parse_local_datetimes(dates)
    assert parsed.iloc[0] == pd.Timestamp("2024-03-05")
    assert pd.isna(parsed.iloc[1])


def test_impossible_and_blank_values() -> None:
    values = pd.Series(
        ["2024-13-45", "2023-02-29", "abc", "12345", "2024031", "", "   ", None, "2024-03-05"],
        index=range(10, 19),
    )
    parsed = parse_local_datetimes(values)
    assert parsed.index.tolist() == list(range(10, 19))
    assert parsed.iloc[:8].isna().all()
    assert parsed.iloc[8] == pd.Timestamp("2024-03-05")
    flagged = unparseable_mask(values, parsed)
    assert flagged.tolist() == [True, True, True, True, True, False, False, False, False]


def test_repeated_values_and_all_blank() -> None:
    repeated = parse_local_datetimes(pd.Series(["2024/3/5", None, "2024/3/5", "bad"]))
    assert repeated.iloc[0] == repeated.iloc[2] == pd.Timestamp("2024-03-05")
    assert repeated.iloc[1:2].isna().all() and pd.isna(repeated.iloc[3])
    empty = parse_local_datetimes(pd.Series([None, None], dtype=object))
    assert empty.dtype == "datetime64[us]" and empty.isna().all()


def test_custom_formats_are_used_in_order() -> None:
    values = pd.Series(["05/03/2024"])
    assert parse_local_datetimes(values).isna().all()
    parsed = parse_local_datetimes(values, formats=("%d/%m/%Y", *DEFAULT_DATE_FORMATS))
    assert parsed.iloc[0] == pd.Timestamp("2024-03-05")


def test_to_utc_shanghai() -> None:
    local = parse_local_datetimes(pd.Series(["2024-03-05 14:30", None]))
    utc = to_utc(local, "Asia/Shanghai")
    assert str(utc.dtype) == "datetime64[us, UTC]"
    assert utc.iloc[0] == pd.Timestamp("2024-03-05 06:30", tz="UTC")
    assert pd.isna(utc.iloc[1])


def test_to_utc_shanghai_historical_dst_never_nat() -> None:
    # China observed DST 1986-1991: 1986-05-04 02:30 was skipped, 1986-09-14 01:30 repeated.
    local = pd.Series(pd.to_datetime(["1986-05-04 02:30", "1986-09-14 01:30"]))
    utc = to_utc(local, "Asia/Shanghai")
    assert utc.tolist() == [
        pd.Timestamp("1986-05-03 18:00", tz="UTC"),
        pd.Timestamp("1986-09-13 17:30", tz="UTC"),
    ]


def test_to_utc_other_zone_ambiguous_is_nat_and_gap_shifts() -> None:
    local = pd.Series(pd.to_datetime(["2024-03-10 02:30", "2024-11-03 01:30", "2024-07-01 12:00"]))
    utc = to_utc(local, "America/New_York")
    assert utc.iloc[0] == pd.Timestamp("2024-03-10 07:00", tz="UTC")
    assert pd.isna(utc.iloc[1])
    assert utc.iloc[2] == pd.Timestamp("2024-07-01 16:00", tz="UTC")


def test_to_local_date_is_midnight_and_casts_to_date32() -> None:
    local = parse_local_datetimes(pd.Series(["2024-03-05 23:59", None]))
    dates = to_local_date(local)
    assert dates.dtype == "datetime64[ms]"
    assert dates.iloc[0] == pd.Timestamp("2024-03-05")
    arrow = pa.array(dates).cast(pa.date32())
    assert arrow.to_pylist() == [dt.date(2024, 3, 5), None]
