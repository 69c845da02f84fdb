"""north_chest: a lung-cancer centre exporting one Excel workbook with titled sheets."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import xlsxwriter

from synthetic.course import Course
from synthetic.dates import UNPARSEABLE_DATES, format_date
from synthetic.defects import Defect, DefectLog, Target, plan_defects
from synthetic.lung import build_lung_course
from synthetic.people import Person, make_person
from synthetic.resident_id import corrupt_check_digit
from synthetic.truth import PersonLog, person_index

log = logging.getLogger(__name__)

HOSPITAL = "north_chest"
WORKBOOK = "北方胸科_导出.xlsx"
TITLE = "北方胸科医院 数据导出"
# Fixed document properties keep the workbook byte-identical between runs.
PROPERTIES = {
    "title": TITLE,
    "author": "walnut synthetic",
    "company": "北方胸科医院",
    "created": datetime(2025, 7, 1, 8, 0, 0),
}
SHEETS = {
    "patient": "患者",
    "diagnosis": "诊断",
    "pathology": "病理",
    "drug": "用药",
    "followup": "随访",
    "lab": "检验",
}
CANONICAL = {
    "patient": "patient",
    "diagnosis": "diagnosis",
    "pathology": "biomarker",
    "drug": "treatment",
    "followup": "followup",
    "lab": "lab",
}
HEADERS: dict[str, tuple[str, ...]] = {
    "patient": (
        "病案号",
        "姓名",
        "性别",
        "出生日期",
        "身份证号",
        "联系电话",
        "联系地址",
        "吸烟史",
        "死亡日期",
    ),
    "diagnosis": (
        "病案号",
        "确诊日期",
        "诊断代码",
        "诊断名称",
        "组织学",
        "形态学编码",
        "T分期",
        "N分期",
        "M分期",
        "临床分期",
        "ECOG",
    ),
    "pathology": ("病案号", "检测日期", "检测项目", "结果"),
    "drug": ("病案号", "药品代码", "药品名称", "开始日期", "结束日期"),
    "followup": ("病案号", "随访日期", "生存状态", "死亡日期"),
    "lab": ("病案号", "检验时间", "项目代码", "项目名称", "结果", "单位"),
}
DIAGNOSES = {
    "ADC": ("NCD-ADC", "肺腺癌", "腺癌", "8140/3"),
    "SCC": ("NCD-SCC", "肺鳞状细胞癌", "鳞癌", "8070/3"),
    "SCLC": ("NCD-SCLC", "小细胞肺癌", "小细胞癌", "8041/3"),
}
DRUGS = {
    "OSI": ("NCM-OSI", "奥希替尼"),
    "ALC": ("NCM-ALC", "阿来替尼"),
    "PEMB": ("NCM-PEMB", "帕博利珠单抗"),
    "CBP": ("NCM-CBP", "卡铂"),
    "PMX": ("NCM-PMX", "培美曲塞"),
    "DDP": ("NCM-DDP", "顺铂"),
    "ETO": ("NCM-ETO", "依托泊苷"),
}
LAB_TESTS = {"CEA": ("NCL-CEA", "癌胚抗原", ("ng/mL", "ng/mL", "ng/mL", "μg/L"))}
DEFECT_VARIANTS: dict[str, tuple[str, ...]] = {
    "invalid_id_checksum": ("patient",),
    "death_before_birth": ("patient",),
    "future_date": ("diagnosis",),
    "lab_out_of_range": ("lab",),
    "negative_lab": ("lab",),
    "unknown_unit": ("lab",),
    "unknown_local_code": ("drug", "diagnosis"),
    "duplicate_row": ("drug", "followup", "pathology"),
    "blank_mandatory": ("patient", "diagnosis", "lab"),
    "unparseable_date": ("drug", "diagnosis", "followup"),
}

EXCEL_MAX_ROWS = 1_048_576

Cell = str | int | float | date | datetime | None


@dataclass
class Rendered:
    """One patient's typed cells per sheet; a date object becomes an Excel date cell."""

    rows: dict[str, list[list[Cell]]] = field(default_factory=dict)

    def add(self, table: str, row: list[Cell]) -> None:
        self.rows.setdefault(table, []).append(row)


def mrn_of(index: int) -> str:
    """The hospital's record number, e.g. NC000123."""
    return f"NC{index + 1:06d}"


def plan_north_chest_defects(seed: int, patients: int) -> dict[int, Defect]:
    """Defect plan of this site, reproducible from the seed alone (linkage avoids these)."""
    return plan_defects(random.Random(f"{seed}:{HOSPITAL}:defects"), patients, DEFECT_VARIANTS)


def build_north_chest_patient(
    seed: int, index: int, dies: bool | None = None
) -> tuple[Person, Course]:
    """The person and lung course of patient `index`; other sites reuse it for shared patients."""
    person = make_person(random.Random(f"{seed}:{HOSPITAL}:{index}:person"))
    course = build_lung_course(random.Random(f"{seed}:{HOSPITAL}:{index}:course"), dies)
    return person, course


def render_date(rng: random.Random, value: date | None) -> Cell:
    """Mostly a real date cell; some clerks typed dates as text."""
    if value is None:
        return None
    roll = rng.random()
    if roll < 0.85:
        return value
    return format_date(value, "cn" if roll < 0.93 else "compact")


def render_patient(rng: random.Random, mrn: str, person: Person, course: Course) -> Rendered:
    """All rows of one patient across the sheets."""
    out = Rendered()
    death = course.death_date if course.death_date and rng.random() < 0.7 else None
    out.add(
        "patient",
        [
            mrn,
            person.name,
            "男" if person.male else "女",
            render_date(rng, person.birth_date),
            person.resident_id,
            person.phone,
            person.address,
            course.smoking,
            render_date(rng, death),
        ],
    )
    code, name, histology, morphology = DIAGNOSES[course.subtype]
    st = course.stage
    out.add(
        "diagnosis",
        [
            mrn,
            render_date(rng, course.diagnosis_date),
            code,
            name,
            histology,
            morphology,
            st["t"],
            st["n"],
            st["m"],
            st["group"],
            int(st["ecog"]),
        ],
    )
    for marker in course.biomarkers:
        out.add("pathology", [mrn, render_date(rng, marker.tested_on), marker.test, marker.result])
    for event in course.treatments:
        if event.code in DRUGS:
            code, name = DRUGS[event.code]
            out.add(
                "drug",
                [mrn, code, name, render_date(rng, event.start), render_date(rng, event.end)],
            )
    for day in course.contacts:
        dead = course.death_date is not None and day >= course.death_date
        out.add(
            "followup",
            [
                mrn,
                render_date(rng, day),
                "死亡" if dead else "存活",
                render_date(rng, course.death_date) if dead else None,
            ],
        )
    code, name, units = LAB_TESTS["CEA"]
    for draw in course.labs:
        out.add(
            "lab",
            [
                mrn,
                render_date(rng, draw.taken_at),
                code,
                name,
                round(draw.values["CEA"], 2),
                rng.choice(units),
            ],
        )
    return out


def _set(out: Rendered, table: str, index: int, column: str, value: Cell) -> None:
    out.rows[table][index][HEADERS[table].index(column)] = value


def _fallback(out: Rendered, table: str) -> str:
    """Sheets a patient may lack (no drugs, no pathology) fall back to follow-up."""
    return table if out.rows.get(table) else "followup"


def inject_defect(
    rng: random.Random, defect: Defect, out: Rendered, person: Person, course: Course
) -> Target:
    """Make exactly one row of this patient defective in exactly one way."""
    kind, table = defect.kind, defect.variant
    if kind == "invalid_id_checksum":
        _set(out, "patient", 0, "身份证号", corrupt_check_digit(person.resident_id))
        return Target(kind, "patient", 0, "身份证号")
    if kind == "death_before_birth":
        _set(
            out, "patient", 0, "死亡日期", person.birth_date - timedelta(days=rng.randint(30, 3000))
        )
        return Target(kind, "patient", 0, "死亡日期")
    if kind == "future_date":
        future = date(rng.randint(2031, 2035), rng.randint(1, 12), rng.randint(1, 28))
        _set(out, "diagnosis", 0, "确诊日期", future)
        return Target(kind, "diagnosis", 0, "确诊日期")
    if kind in ("lab_out_of_range", "negative_lab", "unknown_unit"):
        column = "单位" if kind == "unknown_unit" else "结果"
        value: Cell = {
            "lab_out_of_range": 2500000.0,
            "unknown_unit": rng.choice(("单位", "mg/L?")),
            "negative_lab": -round(float(out.rows["lab"][0][4] or 1.0), 2),
        }[kind]
        _set(out, "lab", 0, column, value)
        return Target(kind, "lab", 0, column)
    if kind == "unknown_local_code":
        if table == "drug" and out.rows.get("drug"):
            _set(out, "drug", 0, "药品代码", "NCM-XXX")
            return Target(kind, "drug", 0, "药品代码")
        _set(out, "diagnosis", 0, "诊断代码", "NCD-XXX")
        return Target(kind, "diagnosis", 0, "诊断代码")
    if kind == "duplicate_row":
        table = _fallback(out, table)
        out.rows[table].insert(1, list(out.rows[table][0]))
        return Target(kind, table, 1, "")
    if kind == "blank_mandatory":
        column = {"patient": "出生日期", "lab": "结果", "diagnosis": "病案号"}[table]
        _set(out, table, 0, column, None)
        return Target(kind, table, 0, column)
    if kind == "unparseable_date":
        table = _fallback(out, table)
        column = {"drug": "开始日期", "diagnosis": "确诊日期", "followup": "随访日期"}[table]
        _set(out, table, 0, column, rng.choice(UNPARSEABLE_DATES))
        return Target(kind, table, 0, column)
    raise ValueError(f"unknown defect kind {kind!r}")


class SheetWriter:
    """Row-by-row writer of one sheet: title row, header row, then typed data rows."""

    def __init__(self, workbook: xlsxwriter.Workbook, table: str, formats: dict) -> None:
        self.sheet = workbook.add_worksheet(SHEETS[table])
        self.formats = formats
        header = HEADERS[table]
        self.sheet.merge_range(0, 0, 0, len(header) - 1, TITLE, formats["title"])
        self.sheet.write_row(1, 0, header, formats["header"])
        self.rows = 0

    def write(self, row: list[Cell], merge_down: bool = False, skip_first: bool = False) -> int:
        """Write one data row; `merge_down` merges column A over this row and the next one."""
        excel_row = self.rows + 2
        if excel_row + 1 >= EXCEL_MAX_ROWS:  # xlsxwriter would silently drop the row
            raise ValueError(
                f"sheet {self.sheet.name} exceeds Excel's row limit; use fewer patients"
            )
        for col, value in enumerate(row):
            if col == 0 and merge_down:
                self.sheet.merge_range(excel_row, 0, excel_row + 1, 0, value)
            elif col == 0 and skip_first:
                continue
            else:
                self._write_cell(excel_row, col, value)
        self.rows += 1
        return self.rows

    def _write_cell(self, row: int, col: int, value: Cell) -> None:
        if value is None:
            return
        if isinstance(value, datetime):
            self.sheet.write_datetime(row, col, value, self.formats["datetime"])
        elif isinstance(value, date):
            self.sheet.write_datetime(row, col, value, self.formats["date"])
        elif isinstance(value, str):
            self.sheet.write_string(row, col, value)
        else:
            self.sheet.write_number(row, col, value)


def write_north_chest(
    out_dir: Path, patients: int, seed: int, defects: DefectLog, persons: PersonLog
) -> dict[str, int]:
    """Write out_dir/north_chest/北方胸科_导出.xlsx; returns data rows per sheet."""
    folder = out_dir / HOSPITAL
    folder.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(folder / WORKBOOK), {"constant_memory": True})
    workbook.set_properties(PROPERTIES)
    formats = {
        "title": workbook.add_format({"bold": True, "align": "center"}),
        "header": workbook.add_format({"bold": True}),
        "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
        "datetime": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
    }
    sheets = {table: SheetWriter(workbook, table, formats) for table in SHEETS}
    plan = plan_north_chest_defects(seed, patients)
    merged = False
    for index in range(patients):
        defect = plan.get(index)
        dies = True if defect and defect.kind == "death_before_birth" else None
        person, course = build_north_chest_patient(seed, index, dies)
        rng = random.Random(f"{seed}:{HOSPITAL}:{index}:render")
        out = render_patient(rng, mrn_of(index), person, course)
        target = inject_defect(rng, defect, out, person, course) if defect else None
        merge_here = not merged and defect is None and len(out.rows.get("drug", [])) >= 2
        merged = merged or merge_here
        for table in SHEETS:
            for position, row in enumerate(out.rows.get(table, [])):
                merge = merge_here and table == "drug"
                number = sheets[table].write(
                    row, merge_down=merge and position == 0, skip_first=merge and position == 1
                )
                if target is not None and (target.table, target.index) == (table, position):
                    defects.record(
                        target.kind,
                        HOSPITAL,
                        CANONICAL[table],
                        f"{WORKBOOK}#{SHEETS[table]}",
                        number,
                        target.column,
                    )
        patient_row = out.rows["patient"][0]
        persons.record(
            person_index(HOSPITAL, index, patients),
            HOSPITAL,
            mrn_of(index),
            str(patient_row[4]),
            person.name,
            person.birth_date if patient_row[3] else None,
            person.male,
        )
    workbook.close()
    log.info("north_chest: %s patients written", patients)
    return {f"{WORKBOOK}#{SHEETS[table]}": sheet.rows for table, sheet in sheets.items()}
