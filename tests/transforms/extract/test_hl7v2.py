"""HL7 v2 reader: separators, MLLP, BOM, escapes, context segments, bad messages, samples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from transforms.extract import read_landed
from transforms.extract.hl7v2 import (
    COMMON_COLUMNS,
    Separators,
    iter_hl7_file,
    read_hl7_file,
    split_messages,
    unescape,
)
from transforms.mapping import Hl7Source

MSH = "MSH|^~\\&|LIS|SG|WALNUT|WALNUT|202507011030||ORU^R01^ORU_R01|{cid}|P|2.5"
PID = "PID|1||SG000001^^^SOUTH_GENERAL^MR~990011^^^SSN||Zhang^San||19600101|M"


def _message(cid: str, *segments: str) -> str:
    return "\r".join([MSH.format(cid=cid), PID, *segments])


FIRST = _message(
    "M1",
    "OBR|1|P1|F1|LIVER^Liver panel^L|||202507010800",
    "OBX|1|NM|1834-1^AFP^LN||12.5|ng/mL|0-7|H|||F|||202507010800",
    "OBX|2|NM|777-3^Platelets^LN||210|10\\S\\9/L|125-350|N|||F|||202507010800",
    "OBR|2|P2|F2|TM^Tumour markers^L|||202507010900",
    "OBX|1|ST|2039-6^CEA^LN||see\\.br\\note \\F\\ 1|ng/mL|||||F|||20250701090015",
)
SECOND = _message("M2", "OBX|1|NM|1751-7^Albumin^LN||38.0|g/L|35-55|N|||F|||202507020800")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10\\S\\9/L", "10^9/L"),
        ("a\\F\\b\\R\\c\\T\\d\\E\\e", "a|b~c&d\\e"),
        ("line1\\.br\\line2", "line1\nline2"),
        ("\\H\\bold\\N\\", "bold"),
        ("\\X4E4F\\", "NO"),
        ("C:\\dir", "C:\\dir"),
        ("plain", "plain"),
    ],
)
def test_unescape(text: str, expected: str) -> None:
    assert unescape(text, Separators()) == expected


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_segment_ends_mllp_and_bom(tmp_path: Path, end: str) -> None:
    body = (FIRST + "\r").replace("\r", end) + (SECOND + "\r").replace("\r", end)
    framed = "\ufeff" + "\x0b" + body.replace(end + "MSH", end + "\x1c\r\x0bMSH") + "\x1c\r"
    path = tmp_path / "lab_20250701.hl7"
    path.write_bytes(framed.encode("utf-8"))
    raw = read_hl7_file(path)
    frame = raw.frame
    assert raw.rows_read == 4 and raw.rejected == []
    assert frame["_source_row"].tolist() == [1, 2, 3, 4]
    assert frame["OBX-3.1"].tolist() == ["1834-1", "777-3", "2039-6", "1751-7"]
    assert frame["OBX-6.1"].tolist() == ["ng/mL", "10^9/L", "ng/mL", "g/L"]
    assert frame.at[2, "OBX-5"] == "see\nnote | 1"
    # each OBX carries its own OBR (the nearest before it), and the message's MSH and PID
    assert frame["OBR-4.1"].tolist()[:3] == ["LIVER", "LIVER", "TM"]
    assert pd.isna(frame.at[3, "OBR-4.1"])
    assert frame["MSH-10"].tolist() == ["M1", "M1", "M1", "M2"]
    assert frame["MSH-9"].iloc[0] == "ORU^R01^ORU_R01" and frame["MSH-9.2"].iloc[0] == "R01"
    assert frame["PID-3.1"].tolist() == ["SG000001"] * 4
    assert frame["PID-3[2].1"].iloc[0] == "990011"
    assert frame["PID-3.4"].iloc[0] == "SOUTH_GENERAL"
    assert frame["OBX-14"].tolist()[2] == "20250701090015"


def test_unparseable_message_rejects_only_itself(tmp_path: Path) -> None:
    broken = "\r".join(
        [MSH.format(cid="BAD"), PID, "obx|1|NM|x", "OBX|2|NM|1834-1^AFP^LN||1|ng/mL"]
    )
    path = tmp_path / "feed.hl7"
    path.write_text("\r".join([FIRST, broken, SECOND]) + "\r", encoding="utf-8")
    raw = read_hl7_file(path)
    assert raw.rows_read == 5
    assert [(r.source_row, r.rule) for r in raw.rejected] == [(4, "extract.hl7_parse")]
    assert "message 2" in raw.rejected[0].reason and "SG000001" not in raw.rejected[0].reason
    # the OBX after the broken message keeps its position in the file
    assert raw.frame["_source_row"].tolist() == [1, 2, 3, 5]


def test_header_the_hl7_library_rejects_rejects_the_message(tmp_path: Path) -> None:
    """A repeated encoding character in MSH-2 passes the structural checks; hl7 refuses it."""
    broken = "\r".join([MSH.replace("^~\\&", "^~\\~").format(cid="BAD"), PID, "OBX|1|NM|x"])
    path = tmp_path / "feed.hl7"
    path.write_text("\r".join([FIRST, broken, SECOND]) + "\r", encoding="utf-8")
    raw = read_hl7_file(path)
    assert [r.rule for r in raw.rejected] == ["extract.hl7_parse"]
    assert "hl7 parser failed" in raw.rejected[0].reason
    assert raw.frame["_source_row"].tolist() == [1, 2, 3, 5]


def test_segments_before_any_header_and_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "feed.hl7"
    path.write_bytes(
        b"OBX|1|NM|1834-1^AFP^LN||1|ng/mL\r"
        + SECOND.encode()
        + b"\r"
        + _message("M3", "OBX|1|NM|1834-1^AFP^LN||\xff\xfe|ng/mL").encode("latin-1")
    )
    raw = read_hl7_file(path, encoding="utf-8")
    assert [(r.source_row, r.rule) for r in raw.rejected] == [
        (1, "extract.hl7_parse"),
        (3, "extract.decodable"),
    ]
    assert raw.frame["_source_row"].tolist() == [2]


def test_chunks_are_whole_messages_with_the_whole_files_columns(tmp_path: Path) -> None:
    broken = "\r".join([MSH.format(cid="BAD"), PID, "obx|1|NM|x", "OBX|2|NM|1834-1^AFP^LN||1"])
    # the last message has a field (OBX-17) and a component (OBX-6.2) no earlier one has
    last = _message("M4", "OBX|1|NM|1751-7^Albumin^LN||38|g/L^grams|||||F|||2025||||EQ1")
    path = tmp_path / "feed.hl7"
    path.write_text("\r".join([FIRST, broken, SECOND, last]) + "\r", encoding="utf-8")
    whole = read_hl7_file(path)
    chunks = list(iter_hl7_file(path, chunk_rows=2))
    # FIRST has 3 OBX (one chunk, never split), the broken one none, SECOND and M4 one each
    assert [len(c.frame) for c in chunks] == [3, 2]
    assert [c.rows_read for c in chunks] == [3, 3]
    assert [r for c in chunks for r in c.rejected] == whole.rejected
    assert all(list(c.frame.columns) == list(whole.frame.columns) for c in chunks)
    assert "OBX-17" in whole.frame.columns and "OBX-6.2" in whole.frame.columns
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)


def test_split_messages_skips_envelopes_and_blank_lines() -> None:
    text = "FHS|^~\\&\nBHS|^~\\&\n\n" + FIRST + "\n\n" + SECOND + "\nBTS|2\nFTS|1\n"
    messages = split_messages(text)
    assert [m[0][:3] for m in messages] == ["MSH", "MSH"]
    assert [len(m) for m in messages] == [7, 3]


def test_empty_file_has_common_columns(tmp_path: Path) -> None:
    path = tmp_path / "empty.hl7"
    path.write_bytes(b"")
    raw = read_hl7_file(path)
    assert raw.rows_read == 0 and len(raw.frame) == 0
    assert set(COMMON_COLUMNS) <= set(raw.frame.columns)


def test_registered_reader_reads_pid_rows(tmp_path: Path) -> None:
    adt = "\r".join(
        [
            MSH.format(cid="A1").replace("ORU^R01^ORU_R01", "ADT^A08^ADT_A01"),
            "EVN|A08|202507010901",
            PID,
            "PV1|1|O",
        ]
    )
    path = tmp_path / "adt.hl7"
    path.write_text(adt, encoding="utf-8")
    spec = Hl7Source(table="patient", kind="hl7v2", files="*.hl7", segment="PID")
    (raw,) = read_landed(spec, path)
    assert raw.frame[["PID-3.1", "PID-7", "EVN-1", "PV1-2"]].values.tolist() == [
        ["SG000001", "19600101", "A08", "O"]
    ]


# README section 3 of the shared data: MSH-9 and MSH-12 per file, and OBX per file.
SAMPLES = {
    "ADT-A01-01.hl7": ("ADT^A01^ADT_A01", "2.8", 1),
    "ADT-A01-02.hl7": ("ADT^A01^ADT_A01", "2.8", 0),
    "ADT01-23.hl7": ("ADT^A01", "2.3", 0),
    "ADT01-28.hl7": ("ADT^A01^ADT_A01", "2.5.1", 0),
    "ADT-A08-01.hl7": ("ADT^A08^ADT_A08", "2.8", 1),
    "ADT-A08-02.hl7": ("ADT^A08^ADT_A08", "2.8", 0),
    "ORU-R01-01.hl7": ("ORU^R01^ORU_R01", "2.5.1", 5),
    "ORU-R01-RMGEAD.hl7": ("ORU^R01", "2.4", 1),
    "LAB-ORU-1.hl7": ("ORU^R01", "2.5", 10),
    "LAB-ORU-2.hl7": ("ORU^R01", "2.5", 10),
    "LRI_2.0-NG_CBC_Typ_Message.hl7": ("ORU^R01^ORU_R01", "2.5.1", 28),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_public_samples(shared_data: Path, name: str) -> None:
    message_type, version, obx = SAMPLES[name]
    path = shared_data / "hl7v2" / name
    headers = read_hl7_file(path, segment="MSH")
    assert headers.rejected == []
    assert headers.frame[["MSH-9", "MSH-12"]].values.tolist() == [[message_type, version]]
    results = read_hl7_file(path)
    assert results.rejected == [] and results.rows_read == len(results.frame) == obx
    assert results.frame["_source_row"].tolist() == list(range(1, obx + 1))
    patients = read_hl7_file(path, segment="PID")
    assert len(patients.frame) == 1 and patients.frame["PID-3.1"].notna().all()


def test_lri_cbc_values(shared_data: Path) -> None:
    raw = read_hl7_file(shared_data / "hl7v2" / "LRI_2.0-NG_CBC_Typ_Message.hl7")
    assert raw.encoding == "utf-8-sig"
    first = raw.frame.iloc[0]
    assert (first["OBX-3.1"], first["OBX-5"], first["OBX-6.1"]) == ("26453-1", "4.41", "10*6/uL")
    assert raw.frame["OBR-4.1"].unique().tolist() == ["57021-8"]
    assert raw.frame["OBX-14"].iloc[0] == "20110103143428-0800"


@pytest.mark.slow
def test_south_general_sync_stages_hl7_labs_and_catches_defects(tmp_path: Path) -> None:
    """Synthetic south_general (HIS + HL7 feed): each HL7 defect is caught by its rule.

    The generator records HL7 defects as `<message>.<OBX>` within the file; the reader's
    `_source_row` is the OBX occurrence within the file, so the test converts.
    """
    from pipeline.settings import load_settings
    from pipeline.sync import sync_hospital
    from synthetic.generate import generate_all

    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=60, seed=7)
    run = sync_hospital("south_general", settings)
    assert run["status"] == "success"
    hl7_dir = settings.sources / "south_general" / "hl7"
    lab_files = sorted(p.name for p in hl7_dir.glob("lab_*.hl7"))
    (batch,) = [p for p in (settings.landing / "south_general").iterdir() if p.is_dir()]
    assert set(lab_files) <= {p.name for p in batch.iterdir()}
    staged = pq.read_table(next((settings.staging / "south_general" / "lab").glob("*.parquet")))
    staged = staged.to_pandas()
    assert set(staged["_source_file"]) == set(lab_files)
    assert staged["loinc_code"].notna().mean() > 0.95

    def occurrence(file: str, message_obx: str) -> int:
        message_no, obx_no = (int(x) for x in message_obx.split("."))
        messages = split_messages((hl7_dir / file).read_bytes().decode("utf-8"))
        before = sum(s[:3] == "OBX" for m in messages[: message_no - 1] for s in m)
        return before + obx_no

    expected = {
        "lab_out_of_range": "lab.range_",
        "negative_lab": "lab.value_non_negative",
        "unknown_unit": "lab.unit_convertible",
        "unknown_local_code": "lab.code_mapped",
        "blank_mandatory": "lab.",
        "duplicate_row": "dropped",
    }
    defects = pd.read_csv(settings.sources / "_truth" / "defects.csv", dtype=str)
    defects = defects[
        (defects["hospital"] == "south_general") & defects["source_file"].str.endswith(".hl7")
    ]
    assert len(defects) >= 5
    quarantine = pd.concat(
        pq.read_table(p).to_pandas()
        for p in (settings.gov / "south_general").glob("*/quarantine_*.parquet")
    )
    missed = []
    for d in defects.itertuples(index=False):
        row = occurrence(d.source_file, d.source_row)
        hits = quarantine[
            (quarantine["source_file"] == d.source_file) & (quarantine["source_row"] == row)
        ]
        if expected[d.kind] == "dropped":
            in_staging = (
                (staged["_source_file"] == d.source_file) & (staged["_source_row"] == row)
            ).any()
            caught = hits.empty and not in_staging
        else:
            caught = hits["rule_id"].str.startswith(expected[d.kind]).any()
        if not caught:
            missed.append((d.kind, d.source_file, d.source_row, sorted(hits["rule_id"])))
    assert not missed, missed
