"""east_liver: a liver-cancer centre exporting five CSV files with Chinese headers (GBK)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from synthetic.course import Course
from synthetic.csv_sink import RAW_PLACEHOLDER, CsvSink
from synthetic.dates import (
    UNPARSEABLE_DATES,
    format_date,
    pick_date_style,
    pick_datetime_style,
)
from synthetic.defects import Defect, DefectLog, Target, plan_defects
from synthetic.liver import LIVER_LAB_CODES, build_liver_course
from synthetic.people import Person, make_person
from synthetic.resident_id import corrupt_check_digit
from synthetic.truth import PersonLog, person_index

log = logging.getLogger(__name__)

HOSPITAL = "east_liver"
FILES = {
    "patient": "患者.csv",
    "diagnosis": "诊断.csv",
    "lab": "检验.csv",
    "treatment": "治疗.csv",
    "followup": "随访.csv",
}
HEADERS: dict[str, tuple[str, ...]] = {
    "patient": (
        "住院号",
        "姓名",
        "性别",
        "出生日期",
        "身份证号",
        "联系电话",
        "家庭住址",
        "乙肝表面抗原",
        "丙肝抗体",
        "死亡日期",
    ),
    "diagnosis": (
        "住院号",
        "诊断日期",
        "诊断编码",
        "诊断名称",
        "病理形态",
        "BCLC分期",
        "CNLC分期",
        "Child-Pugh分级",
        "腹水",
        "肝性脑病",
        "ECOG",
    ),
    "lab": ("住院号", "检验时间", "项目代码", "项目名称", "结果", "单位"),
    "treatment": ("住院号", "开始日期", "结束日期", "治疗代码", "治疗名称", "治疗类别"),
    "followup": ("住院号", "随访日期", "生存状态", "死亡日期"),
}
# 随访.csv comes from a different (newer) system that writes UTF-8 with a BOM.
ENCODINGS = {"followup": "utf-8"}
DIAGNOSES = {
    "HCC": ("ELD-HCC", "肝细胞癌", "8170/3"),
    "ICC": ("ELD-ICC", "肝内胆管癌", "8160/3"),
    "CIR": ("ELD-CIR", "肝硬化", ""),
    "HBV": ("ELD-HBV", "慢性乙型肝炎", ""),
}
# code -> (name, ((unit, factor from canonical unit, decimals, weight), ...)); canonical first.
# GBK has no U+00B5 micro sign, so this site writes the Greek mu or a plain u.
LAB_TESTS: dict[str, tuple[str, tuple[tuple[str, float, int, int], ...]]] = {
    "AFP": ("甲胎蛋白", (("ng/mL", 1.0, 1, 70), ("IU/mL", 1 / 1.21, 1, 30))),
    "TBIL": (
        "总胆红素",
        (("μmol/L", 1.0, 1, 50), ("umol/L", 1.0, 1, 30), ("mg/dL", 1 / 17.1, 2, 20)),
    ),
    "ALB": ("白蛋白", (("g/L", 1.0, 1, 85), ("g/dL", 0.1, 2, 15))),
    "INR": ("国际标准化比值", (("", 1.0, 2, 70), ("1", 1.0, 2, 30))),
    "PLT": ("血小板", (("10^9/L", 1.0, 0, 100),)),
    "ALT": ("丙氨酸氨基转移酶", (("U/L", 1.0, 0, 100),)),
    "AST": ("天门冬氨酸氨基转移酶", (("U/L", 1.0, 0, 100),)),
    "CREA": ("肌酐", (("μmol/L", 1.0, 0, 75), ("mg/dL", 1 / 88.4, 2, 25))),
}
TREATMENTS = {
    "RES": ("ELT-RES", "肝切除术", "手术"),
    "RFA": ("ELT-RFA", "射频消融", "介入"),
    "TACE": ("ELT-TACE", "经动脉化疗栓塞", "介入"),
    "SOR": ("ELM-SOR", "索拉非尼", "药物"),
    "LEN": ("ELM-LEN", "仑伐替尼", "药物"),
    "ATZ": ("ELM-ATZ", "阿替利珠单抗", "药物"),
    "BEV": ("ELM-BEV", "贝伐珠单抗", "药物"),
}
DEFECT_VARIANTS: dict[str, tuple[str, ...]] = {
    "invalid_id_checksum": ("patient",),
    "death_before_birth": ("patient",),
    "future_date": ("diagnosis",),
    "lab_out_of_range": ("lab",),
    "negative_lab": ("lab",),
    "unknown_unit": ("lab",),
    "unknown_local_code": ("diagnosis", "lab", "treatment"),
    "duplicate_row": ("lab", "treatment", "followup", "diagnosis"),
    "undecodable_bytes": ("lab",),
    "blank_mandatory": ("patient", "lab", "diagnosis"),
    "unparseable_date": ("lab", "treatment", "diagnosis", "followup"),
}


@dataclass
class Rendered:
    """One patient's rows per source table, as strings, plus each row's date style."""

    rows: dict[str, list[list[str]]] = field(default_factory=dict)
    styles: dict[str, list[str]] = field(default_factory=dict)

    def add(self, table: str, row: list[str], style: str) -> None:
        self.rows.setdefault(table, []).append(row)
        self.styles.setdefault(table, []).append(style)


def mrn_of(index: int) -> str:
    """The hospital's inpatient number, e.g. EL000123."""
    return f"EL{index + 1:06d}"


def plan_east_liver_defects(seed: int, patients: int) -> dict[int, Defect]:
    """Defect plan of this site, reproducible from the seed alone (linkage avoids these)."""
    return plan_defects(random.Random(f"{seed}:{HOSPITAL}:defects"), patients, DEFECT_VARIANTS)


def build_east_liver_patient(
    seed: int, index: int, dies: bool | None = None
) -> tuple[Person, Course]:
    """The person and liver course of patient `index`; other sites reuse it for shared patients."""
    person = make_person(random.Random(f"{seed}:{HOSPITAL}:{index}:person"))
    course = build_liver_course(random.Random(f"{seed}:{HOSPITAL}:{index}:course"), dies)
    return person, course


def render_lab_value(rng: random.Random, code: str, value: float) -> tuple[str, str]:
    """Result text and unit: one of the units this site uses for the test, weighted."""
    options = LAB_TESTS[code][1]
    unit, factor, decimals, _ = rng.choices(options, [o[3] for o in options])[0]
    return f"{value * factor:.{decimals}f}", unit


def render_patient(rng: random.Random, mrn: str, person: Person, course: Course) -> Rendered:
    """All rows of one patient across the five files."""
    out = Rendered()
    style = pick_date_style(rng)
    death = course.death_date if course.death_date and rng.random() < 0.7 else None
    out.add(
        "patient",
        [
            mrn,
            person.name,
            "男" if person.male else "女",
            format_date(person.birth_date, style),
            person.resident_id,
            person.phone,
            person.address,
            course.hbsag or "",
            course.hcv_ab or "",
            format_date(death, style),
        ],
        style,
    )
    code, name, morphology = DIAGNOSES[course.subtype]
    st = course.stage
    style = pick_date_style(rng)
    out.add(
        "diagnosis",
        [
            mrn,
            format_date(course.diagnosis_date, style),
            code,
            name,
            morphology,
            st["bclc"],
            st["cnlc"],
            st["child_pugh"],
            st["ascites"],
            st["encephalopathy"],
            st["ecog"],
        ],
        style,
    )
    for key, day in course.comorbidities:
        code, name, _ = DIAGNOSES[key]
        style = pick_date_style(rng)
        out.add("diagnosis", [mrn, format_date(day, style), code, name] + [""] * 7, style)
    for draw in course.labs:
        for code in LIVER_LAB_CODES:
            style = pick_datetime_style(rng)
            result, unit = render_lab_value(rng, code, draw.values[code])
            out.add(
                "lab",
                [mrn, format_date(draw.taken_at, style), code, LAB_TESTS[code][0], result, unit],
                style,
            )
    for event in course.treatments:
        code, name, category = TREATMENTS[event.code]
        style = pick_date_style(rng)
        out.add(
            "treatment",
            [
                mrn,
                format_date(event.start, style),
                format_date(event.end, style),
                code,
                name,
                category,
            ],
            style,
        )
    for day in course.contacts:
        style = pick_date_style(rng)
        dead = course.death_date is not None and day >= course.death_date
        out.add(
            "followup",
            [
                mrn,
                format_date(day, style),
                "死亡" if dead else "存活",
                format_date(course.death_date if dead else None, style),
            ],
            style,
        )
    return out


def _first(out: Rendered, table: str, code: str) -> int:
    """Index of the patient's first lab row for a test code."""
    return next(i for i, row in enumerate(out.rows[table]) if row[2] == code)


def _set(out: Rendered, table: str, index: int, column: str, value: str) -> None:
    out.rows[table][index][HEADERS[table].index(column)] = value


def inject_defect(
    rng: random.Random, defect: Defect, out: Rendered, person: Person, course: Course
) -> Target:
    """Make exactly one row of this patient defective in exactly one way."""
    kind, table = defect.kind, defect.variant
    if table == "treatment" and not out.rows.get("treatment"):
        table = "lab"  # e.g. BCLC D patients without treatment
    if kind == "invalid_id_checksum":
        _set(out, "patient", 0, "身份证号", corrupt_check_digit(person.resident_id))
        return Target(kind, "patient", 0, "身份证号")
    if kind == "death_before_birth":
        death = person.birth_date - timedelta(days=rng.randint(30, 3000))
        _set(out, "patient", 0, "死亡日期", format_date(death, out.styles["patient"][0]))
        return Target(kind, "patient", 0, "死亡日期")
    if kind == "future_date":
        future = date(rng.randint(2031, 2035), rng.randint(1, 12), rng.randint(1, 28))
        _set(out, "diagnosis", 0, "诊断日期", format_date(future, out.styles["diagnosis"][0]))
        return Target(kind, "diagnosis", 0, "诊断日期")
    if kind == "lab_out_of_range":
        code, value, unit = rng.choice((("ALB", "900.0", "g/L"), ("INR", "80.00", "")))
        index = _first(out, "lab", code)
        _set(out, "lab", index, "结果", value)
        _set(out, "lab", index, "单位", unit)
        return Target(kind, "lab", index, "结果")
    if kind == "negative_lab":
        index = _first(out, "lab", "ALT")
        _set(out, "lab", index, "结果", "-" + out.rows["lab"][index][4])
        return Target(kind, "lab", index, "结果")
    if kind == "unknown_unit":
        index = _first(out, "lab", "AFP")
        _set(out, "lab", index, "单位", rng.choice(("单位", "mg/L?")))
        return Target(kind, "lab", index, "单位")
    if kind == "unknown_local_code":
        return _inject_unknown_code(out, table, course)
    if kind == "duplicate_row":
        source = out.rows[table][0]
        out.rows[table].insert(1, list(source))
        out.styles[table].insert(1, out.styles[table][0])
        return Target(kind, table, 1, "")
    if kind == "undecodable_bytes":
        index = _first(out, "lab", "AFP")
        _set(out, "lab", index, "项目名称", LAB_TESTS["AFP"][0] + RAW_PLACEHOLDER)
        return Target(kind, "lab", index, "项目名称", raw=b"\xff\x80")
    if kind == "blank_mandatory":
        column = {"patient": "出生日期", "lab": "结果", "diagnosis": "住院号"}[table]
        _set(out, table, 0, column, "")
        return Target(kind, table, 0, column)
    if kind == "unparseable_date":
        column = {
            "lab": "检验时间",
            "treatment": "开始日期",
            "diagnosis": "诊断日期",
            "followup": "随访日期",
        }[table]
        _set(out, table, 0, column, rng.choice(UNPARSEABLE_DATES))
        return Target(kind, table, 0, column)
    raise ValueError(f"unknown defect kind {kind!r}")


def _inject_unknown_code(out: Rendered, table: str, course: Course) -> Target:
    """A code the site's mapping does not know, on an otherwise normal row."""
    if table == "diagnosis":
        style = out.styles["diagnosis"][0]
        row = [
            out.rows["diagnosis"][0][0],
            format_date(course.diagnosis_date, style),
            "ELD-XXX",
            "其他肝脏疾病",
        ] + [""] * 7
        out.add("diagnosis", row, style)
        return Target("unknown_local_code", "diagnosis", len(out.rows["diagnosis"]) - 1, "诊断编码")
    if table == "treatment":
        _set(out, "treatment", 0, "治疗代码", "ELT-XXX")
        return Target("unknown_local_code", "treatment", 0, "治疗代码")
    index = _first(out, "lab", "ALT")
    _set(out, "lab", index, "项目代码", "ZZZ9")
    return Target("unknown_local_code", "lab", index, "项目代码")


def write_east_liver(
    out_dir: Path, patients: int, seed: int, defects: DefectLog, persons: PersonLog
) -> dict[str, int]:
    """Write the five CSV files under out_dir/east_liver/; returns data rows per file."""
    folder = out_dir / HOSPITAL
    folder.mkdir(parents=True, exist_ok=True)
    sinks = {
        table: CsvSink(
            folder / name, ENCODINGS.get(table, "gbk"), HEADERS[table], bom=table == "followup"
        )
        for table, name in FILES.items()
    }
    plan = plan_east_liver_defects(seed, patients)
    try:
        for index in range(patients):
            defect = plan.get(index)
            dies = True if defect and defect.kind == "death_before_birth" else None
            person, course = build_east_liver_patient(seed, index, dies)
            rng = random.Random(f"{seed}:{HOSPITAL}:{index}:render")
            out = render_patient(rng, mrn_of(index), person, course)
            target = inject_defect(rng, defect, out, person, course) if defect else None
            for table, rows in out.rows.items():
                for position, row in enumerate(rows):
                    hit = target is not None and (target.table, target.index) == (table, position)
                    number = sinks[table].write(row, target.raw if hit and target else None)
                    if hit and target:
                        defects.record(
                            target.kind, HOSPITAL, table, FILES[table], number, target.column
                        )
            patient_row = out.rows["patient"][0]
            persons.record(
                person_index(HOSPITAL, index, patients),
                HOSPITAL,
                mrn_of(index),
                patient_row[4],
                person.name,
                person.birth_date if patient_row[3] else None,
                person.male,
            )
    finally:
        for sink in sinks.values():
            sink.close()
    log.info("east_liver: %s patients written", patients)
    return {FILES[table]: sink.rows for table, sink in sinks.items()}
