"""End-to-end checks of the generated tree: determinism, layout, encodings, defects, linkage."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest
from python_calamine import CalamineWorkbook

from synthetic import east_liver, north_chest
from synthetic.__main__ import parse_args
from synthetic.generate import generate_all
from synthetic.people import HOMOPHONES
from synthetic.resident_id import is_valid_resident_id

EL_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y%m%d", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M")
# Plausible raw-value bounds per (test, unit) for east_liver.
EL_BOUNDS = {
    "AFP": (0.0, 1e6), "TBIL": (0.0, 1000.0), "ALB": (0.5, 70.0), "INR": (0.5, 10.0),
    "PLT": (1.0, 2000.0), "ALT": (1.0, 5000.0), "AST": (1.0, 5000.0), "CREA": (0.1, 2000.0),
}


def parse_el_date(text: str) -> date | None:
    for fmt in EL_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sqlite_dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def read_el(root: Path, name: str) -> tuple[list[bytes], list[list[str] | None]]:
    """Raw data lines and their parsed fields (None where strict decoding fails)."""
    encoding = "utf-8-sig" if name == "随访.csv" else "gbk"
    lines = (root / "east_liver" / name).read_bytes().split(b"\r\n")
    assert lines[-1] == b""
    parsed: list[list[str] | None] = []
    for line in lines[:-1]:
        try:
            parsed.append(next(csv.reader(io.StringIO(line.decode(encoding)))))
        except UnicodeDecodeError:
            parsed.append(None)
    return lines[1:-1], parsed


def sheet_rows(root: Path, sheet: str) -> list[list[Any]]:
    book = CalamineWorkbook.from_path(str(root / "north_chest" / north_chest.WORKBOOK))
    return book.get_sheet_by_name(sheet).to_python()


def hl7_messages(path: Path) -> list[list[str]]:
    data = path.read_bytes().decode("utf-8")
    if data.startswith("\x0b"):
        chunks = [c.lstrip("\x0b") for c in data.split("\x1c\r") if c]
    else:
        chunks = [c for c in data.split("\n") if c]
    return [chunk.split("\r") for chunk in chunks]


def test_same_seed_gives_identical_bytes(tmp_path: Path, generated) -> None:
    first, summary = generated
    second = generate_all(tmp_path / "again", patients=200, seed=42)
    assert second == summary
    assert tree_hashes(first) == tree_hashes(tmp_path / "again")
    his = Path("south_general") / "his.sqlite"
    assert sqlite_dump(first / his) == sqlite_dump(tmp_path / "again" / his)


def test_rerun_overwrites_and_other_seed_differs(tmp_path: Path) -> None:
    generate_all(tmp_path, patients=30, seed=7)
    (tmp_path / "south_general" / "hl7" / "lab_29990101.hl7").write_text("stale")
    before = tree_hashes(tmp_path)
    generate_all(tmp_path, patients=30, seed=7)
    assert tree_hashes(tmp_path) == {k: v for k, v in before.items() if "29990101" not in k}
    generate_all(tmp_path / "other", patients=30, seed=8)
    assert tree_hashes(tmp_path / "other")["east_liver/患者.csv"] != before["east_liver/患者.csv"]


def test_east_liver_files_headers_and_encodings(generated) -> None:
    root, summary = generated
    folder = root / "east_liver"
    assert sorted(p.name for p in folder.iterdir()) == sorted(east_liver.FILES.values())
    for table, name in east_liver.FILES.items():
        raw = (folder / name).read_bytes()
        header = raw.split(b"\r\n", 1)[0]
        if table == "followup":
            assert raw.startswith(b"\xef\xbb\xbf")
            assert header.decode("utf-8-sig").split(",") == list(east_liver.HEADERS[table])
        else:
            assert not raw.startswith(b"\xef\xbb\xbf")
            assert header.decode("gbk").split(",") == list(east_liver.HEADERS[table])
            with pytest.raises(UnicodeDecodeError):
                header.decode("utf-8")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert raw.count(b"\r\n") - 1 == summary["rows"]["east_liver"][name]


def test_east_liver_mixes_date_formats_and_units(generated) -> None:
    root, _ = generated
    _, lab = read_el(root, "检验.csv")
    stamps = [row[1] for row in lab[1:] if row]
    for marker in ("/", "年", "-", ":"):
        assert any(marker in s for s in stamps)
    assert any(len(s) == 8 and s.isdigit() for s in stamps)
    units = {(row[2], row[5]) for row in lab[1:] if row}
    for pair in [("AFP", "ng/mL"), ("AFP", "IU/mL"), ("TBIL", "umol/L"), ("TBIL", "μmol/L"),
                 ("TBIL", "mg/dL"), ("ALB", "g/dL"), ("INR", ""), ("INR", "1")]:
        assert pair in units
    afp = [float(row[4]) for row in lab[1:] if row and row[2] == "AFP" and row[5] == "ng/mL"
           and row[4]]
    assert sum(v > 400 for v in afp) > 10


def el_problems(table: str, row: list[str]) -> set[str]:
    """An independent mini-validator: which defect kinds a row of east_liver shows."""
    found: set[str] = set()

    def check_date(text: str, mandatory: bool = True) -> date | None:
        if not text:
            if mandatory:
                found.add("blank_mandatory")
            return None
        parsed = parse_el_date(text)
        if parsed is None:
            found.add("unparseable_date")
        elif parsed.year > 2030:
            found.add("future_date")
        return parsed

    if not row[0]:
        found.add("blank_mandatory")
    if table == "patient":
        if not is_valid_resident_id(row[4]):
            found.add("invalid_id_checksum")
        birth, death = check_date(row[3]), check_date(row[9], mandatory=False)
        if birth and death and death < birth:
            found.add("death_before_birth")
        if birth and row[4][6:14] != f"{birth:%Y%m%d}":
            found.add("id_birth_mismatch")
    elif table == "diagnosis":
        check_date(row[1])
        if row[2] not in {code for code, _, _ in east_liver.DIAGNOSES.values()}:
            found.add("unknown_local_code")
    elif table == "lab":
        check_date(row[1])
        if row[2] not in east_liver.LAB_TESTS:
            found.add("unknown_local_code")
            return found
        units = {u for u, *_ in east_liver.LAB_TESTS[row[2]][1]}
        if row[5] not in units:
            found.add("unknown_unit")
        if not row[4]:
            found.add("blank_mandatory")
            return found
        value = float(row[4])
        low, high = EL_BOUNDS[row[2]]
        if value < 0:
            found.add("negative_lab")
        elif not low <= value <= high:
            found.add("lab_out_of_range")
    elif table == "treatment":
        start, end = check_date(row[1]), check_date(row[2], mandatory=False)
        if row[3] not in {code for code, _, _ in east_liver.TREATMENTS.values()}:
            found.add("unknown_local_code")
        if start and end and end < start:
            found.add("end_before_start")
    elif table == "followup":
        check_date(row[1])
    return found


def test_east_liver_every_row_has_exactly_its_recorded_defect(generated, defects) -> None:
    root, _ = generated
    truth = {(d["source_file"], int(d["source_row"])): d for d in defects
             if d["hospital"] == "east_liver"}
    kinds = defaultdict(int)
    for table, name in east_liver.FILES.items():
        raw_lines, parsed = read_el(root, name)
        previous = None
        for number, (raw, row) in enumerate(zip(raw_lines, parsed[1:], strict=True), start=1):
            found: set[str] = set()
            if row is None:
                with pytest.raises(UnicodeDecodeError):
                    raw.decode("gb18030")
                row = next(csv.reader(io.StringIO(raw.decode("gb18030", errors="replace"))))
                found.add("undecodable_bytes")
            else:
                found |= el_problems(table, row)
            if row == previous:
                found.add("duplicate_row")
            expected = truth.get((name, number))
            assert found == ({expected["kind"]} if expected else set()), (name, number)
            if expected:
                kinds[expected["kind"]] += 1
                assert expected["table"] == table
                column = expected["column"]
                assert column == "" or column in east_liver.HEADERS[table]
            previous = row
    assert len(kinds) == 11 and min(kinds.values()) >= 2


def test_north_chest_workbook_layout_and_defects(generated, defects) -> None:
    root, summary = generated
    book = CalamineWorkbook.from_path(str(root / "north_chest" / north_chest.WORKBOOK))
    assert book.sheet_names == list(north_chest.SHEETS.values())
    data_merges = []
    for table, name in north_chest.SHEETS.items():
        sheet = book.get_sheet_by_name(name)
        rows = sheet.to_python()
        assert rows[0][0] == north_chest.TITLE
        assert rows[1] == list(north_chest.HEADERS[table])
        assert len(rows) - 2 == summary["rows"]["north_chest"][f"{north_chest.WORKBOOK}#{name}"]
        merges = sheet.merged_cell_ranges
        assert ((0, 0), (0, len(north_chest.HEADERS[table]) - 1)) in merges
        data_merges += [(name, m) for m in merges if m[0][0] >= 2]
    assert len(data_merges) == 1
    name, ((r0, c0), (r1, c1)) = data_merges[0]
    drugs = sheet_rows(root, name)
    assert (c0, c1, r1 - r0) == (0, 0, 1) and drugs[r0][0].startswith("NC") and drugs[r1][0] == ""
    births = [r[3] for r in sheet_rows(root, "患者")[2:]]
    assert sum(isinstance(b, date) for b in births) > 150 and any(isinstance(b, str) and "年" in b
                                                                  for b in births)
    seen = set()
    for d in (d for d in defects if d["hospital"] == "north_chest"):
        sheet = d["source_file"].split("#")[1]
        rows = sheet_rows(root, sheet)
        row = rows[int(d["source_row"]) + 1]
        header = rows[1]
        value = row[header.index(d["column"])] if d["column"] else None
        kind = d["kind"]
        seen.add(kind)
        if kind == "invalid_id_checksum":
            assert len(value) == 18 and not is_valid_resident_id(value)
        elif kind == "death_before_birth":
            assert value < row[header.index("出生日期")]
        elif kind == "future_date":
            assert value.year > 2030
        elif kind == "duplicate_row":
            assert row == rows[int(d["source_row"])]
        elif kind == "blank_mandatory":
            assert value == ""
        elif kind == "unparseable_date":
            assert isinstance(value, str) and parse_el_date(value) is None
        elif kind == "negative_lab":
            assert value < 0
        elif kind == "lab_out_of_range":
            assert value > 1e6
        elif kind == "unknown_unit":
            assert value not in {"ng/mL", "μg/L"}
        elif kind == "unknown_local_code":
            assert value.endswith("-XXX")
    assert len(seen) == 10


def test_south_general_tables_tombstones_and_defects(generated, defects) -> None:
    root, summary = generated
    with sqlite3.connect(root / "south_general" / "his.sqlite") as conn:
        tables = {name: [r[1] for r in conn.execute(f"pragma table_info({name})")]
                  for (name,) in conn.execute("select name from sqlite_master where type='table'")}
        assert set(tables) == {"pat_master", "diag_record", "drug_order", "surgery", "visit",
                               "deleted_rows"}
        assert all("updated_at" in cols for name, cols in tables.items() if name != "deleted_rows")
        keys = {"pat_master": "pat_id", "diag_record": "diag_id", "drug_order": "order_id",
                "surgery": "op_id", "visit": "visit_id"}
        rows = {t: conn.execute(f"select * from {t} order by {k}").fetchall()
                for t, k in keys.items()}
        tombstones = conn.execute("select table_name, row_key from deleted_rows").fetchall()
    assert len(tombstones) == 2
    for table, key in tombstones:
        assert int(key) not in {r[0] for r in rows[table]}
    assert {r[2] for r in rows["pat_master"]} == {"1", "2"}
    assert {r[4] for r in rows["visit"]} == {"alive", "dead"}
    icd = {r[3] for r in rows["diag_record"]}
    assert {"C22.000", "K74.600"} <= icd and any(c.startswith("C34.") for c in icd)
    for d in (d for d in defects if d["hospital"] == "south_general"
              and not d["source_file"].endswith(".hl7")):
        columns = tables[d["source_file"]]
        value = rows[d["source_file"]][int(d["source_row"]) - 1][columns.index(d["column"])]
        check = {
            "invalid_id_checksum": lambda v: not is_valid_resident_id(v),
            "future_date": lambda v: int(v[:4]) > 2030,
            "unknown_local_code": lambda v: v == "ZZZ9",
            "blank_mandatory": lambda v: v is None,
        }[d["kind"]]
        assert check(value), d
    assert summary["rows"]["south_general"]["pat_master"] == len(rows["pat_master"])


def test_south_general_hl7_feed(generated, defects) -> None:
    root, summary = generated
    folder = root / "south_general" / "hl7"
    labs = sorted(folder.glob("lab_*.hl7"))
    assert len(labs) == summary["rows"]["south_general"]["hl7_files"]
    assert labs[0].read_bytes().startswith(b"\x0b") and labs[0].read_bytes().endswith(b"\x1c\r")
    assert not labs[1].read_bytes().startswith(b"\x0b")
    messages = {p.name: hl7_messages(p) for p in labs}
    total = sum(len(m) for m in messages.values())
    assert total == summary["rows"]["south_general"]["hl7_messages"]
    first = messages[labs[1].name][0]
    assert first[0].startswith("MSH|^~\\&|") and first[0].split("|")[8] == "ORU^R01^ORU_R01"
    assert first[1].split("|")[3].startswith("SG")
    obx_codes = {s.split("|")[3].split("^")[0] for msgs in messages.values() for m in msgs
                 for s in m if s.startswith("OBX")}
    assert {"1834-1", "2039-6", "1975-2", "1751-7", "6301-6", "777-3"} <= obx_codes
    assert any("\\S\\" in s for m in messages[labs[1].name] for s in m if s.startswith("OBX"))
    parsed = hl7.parse("\r".join(first))
    assert str(parsed.segment("PID")[3][0][0]) == first[1].split("|")[3].split("^")[0]
    units = [parsed.unescape(str(seg[6])) for seg in parsed.segments("OBX")]
    assert "10^9/L" in units or units == ["ng/mL"]
    adt = hl7_messages(folder / "adt_20250701.hl7")
    assert adt and all(m[0].split("|")[8] == "ADT^A08^ADT_A01" for m in adt)
    hl7_defects = [d for d in defects if d["source_file"].endswith(".hl7")]
    assert {d["kind"] for d in hl7_defects} == {"lab_out_of_range", "negative_lab", "unknown_unit",
                                               "unknown_local_code", "duplicate_row",
                                               "blank_mandatory"}
    for d in hl7_defects:
        message_no, obx_no = (int(x) for x in d["source_row"].split("."))
        obx = [s.split("|") for s in messages[d["source_file"]][message_no - 1]
               if s.startswith("OBX")]
        segment = obx[obx_no - 1]
        kind = d["kind"]
        if kind == "duplicate_row":
            assert segment == obx[obx_no - 2]
        elif kind == "negative_lab":
            assert float(segment[5]) < 0
        elif kind == "lab_out_of_range":
            assert float(segment[5]) in (900.0, 80.0, 2500000.0)
        elif kind == "blank_mandatory":
            assert segment[5] == ""
        elif kind == "unknown_unit":
            assert segment[6] in ("单位", "mg/L?")
        elif kind == "unknown_local_code":
            assert segment[3].startswith("ZZZ9^")


def test_cross_site_persons_share_identity(generated) -> None:
    root, summary = generated
    with (root / "_truth" / "persons.csv").open(encoding="utf-8", newline="") as f:
        persons = list(csv.DictReader(f))
    assert len(persons) == 3 * 200
    groups = defaultdict(list)
    for p in persons:
        groups[p["person_index"]].append(p)
    shared = [g for g in groups.values() if len(g) > 1]
    assert len(shared) == summary["rows"]["south_general"]["linked_patients"] >= 10
    missing_ids = 0
    for group in shared:
        south, = [p for p in group if p["hospital"] == "south_general"]
        other, = [p for p in group if p["hospital"] != "south_general"]
        assert (south["birth_date"], south["sex"]) == (other["birth_date"], other["sex"])
        assert is_valid_resident_id(other["resident_id"])
        if south["resident_id"]:
            assert south["resident_id"] == other["resident_id"]
        else:
            missing_ids += 1
        diffs = [(a, b) for a, b in zip(other["name"], south["name"], strict=True) if a != b]
        assert len(diffs) == 1 and HOMOPHONES[diffs[0][0]] == diffs[0][1]
    assert missing_ids >= 1


def test_summary_file_and_cli_args(generated) -> None:
    root, summary = generated
    assert json.loads((root / "_truth" / "summary.json").read_text("utf-8")) == summary
    assert summary["defects"] == sum(sum(v.values()) for v in
                                     summary["defects_by_hospital"].values())
    args = parse_args(["--out", "x", "--patients", "5", "--seed", "3"])
    assert (args.out, args.patients, args.seed, args.db_url) == (Path("x"), 5, 3, None)
    with pytest.raises(SystemExit):
        parse_args(["--help"])
