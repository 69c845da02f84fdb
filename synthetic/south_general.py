"""south_general: a general hospital's HIS database tables plus an HL7 v2 lab feed."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine

from synthetic.course import Course
from synthetic.defects import Defect, DefectLog, Target, plan_defects
from synthetic.east_liver import build_east_liver_patient, plan_east_liver_defects
from synthetic.his_schema import (
    TABLES,
    TableWriter,
    metadata,
)
from synthetic.hl7_feed import Hl7Feed, build_msh, build_segment, render_message
from synthetic.liver import build_liver_course
from synthetic.lung import build_lung_course
from synthetic.north_chest import build_north_chest_patient, plan_north_chest_defects
from synthetic.people import Person, make_address, make_person, make_phone, misspell_name
from synthetic.resident_id import corrupt_check_digit
from synthetic.truth import PersonLog, person_index

log = logging.getLogger(__name__)

HOSPITAL = "south_general"
SQLITE_FILE = "his.sqlite"
FEED_FIRST_DAY = date(2025, 7, 1)
TOMBSTONE_AT = datetime(2025, 7, 1, 3, 0)
LINK_RATE = 0.10  # share of this hospital's patients also treated at a specialist centre
MISSING_ID_RATE = 0.25  # of those, share whose resident ID this hospital never recorded
CANONICAL = {
    "pat_master": "patient",
    "diag_record": "diagnosis",
    "drug_order": "treatment",
    "surgery": "treatment",
    "visit": "followup",
    "hl7": "lab",
}
DIAGNOSES = {
    "HCC": ("C22.000", "肝细胞癌", "8170/3"),
    "ICC": ("C22.100", "肝内胆管癌", "8160/3"),
    "CIR": ("K74.600", "肝硬化", None),
    "HBV": ("B18.100", "慢性乙型病毒性肝炎", None),
}
LUNG_SITES = (
    ("C34.100", "上叶，支气管或肺恶性肿瘤"),
    ("C34.300", "下叶，支气管或肺恶性肿瘤"),
    ("C34.900", "支气管或肺恶性肿瘤"),
)
LUNG_MORPHOLOGY = {"ADC": "8140/3", "SCC": "8070/3", "SCLC": "8041/3"}
DRUGS = {
    "SOR": ("XY0101", "甲苯磺酸索拉非尼片"),
    "LEN": ("XY0102", "甲磺酸仑伐替尼胶囊"),
    "ATZ": ("XY0103", "阿替利珠单抗注射液"),
    "BEV": ("XY0104", "贝伐珠单抗注射液"),
    "OSI": ("XY0201", "甲磺酸奥希替尼片"),
    "ALC": ("XY0202", "盐酸阿来替尼胶囊"),
    "PEMB": ("XY0203", "帕博利珠单抗注射液"),
    "CBP": ("XY0204", "卡铂注射液"),
    "PMX": ("XY0205", "注射用培美曲塞二钠"),
    "DDP": ("XY0206", "顺铂注射液"),
    "ETO": ("XY0207", "依托泊苷注射液"),
}
# ICD-9-CM-3 (China clinical edition style) procedure codes.
SURGERIES = {
    "RES": ("50.2200", "肝部分切除术"),
    "RFA": ("50.2400", "肝病损射频消融术"),
    "TACE": ("99.2501", "经导管肝动脉化疗栓塞术"),
    "LOB": ("32.4100", "肺叶切除术"),
}
# abstract code -> (LOINC, OBX-3 text, decimals, reference range, ((unit, weight), ...)).
# `\S\` is HL7's escape for the component separator: 10^9/L must travel as 10\S\9/L.
LAB_TESTS: dict[str, tuple[str, str, int, tuple[float, float], tuple[tuple[str, int], ...]]] = {
    "AFP": ("1834-1", "AFP", 1, (0.0, 7.0), (("ng/mL", 1),)),
    "TBIL": ("1975-2", "Bilirubin total", 1, (3.4, 20.5), (("umol/L", 3), ("µmol/L", 1))),
    "ALB": ("1751-7", "Albumin", 1, (35.0, 55.0), (("g/L", 1),)),
    "INR": ("6301-6", "INR", 2, (0.8, 1.2), (("", 1),)),
    "PLT": ("777-3", "Platelets", 0, (125.0, 350.0), (("10\\S\\9/L", 1),)),
    "CEA": ("2039-6", "CEA", 2, (0.0, 5.0), (("ng/mL", 1),)),
}
PANELS = {"liver": ("AFP", "TBIL", "ALB", "INR", "PLT"), "lung": ("CEA",)}
DEFECT_VARIANTS: dict[str, tuple[str, ...]] = {
    "invalid_id_checksum": ("pat_master",),
    "future_date": ("diag_record",),
    "lab_out_of_range": ("hl7",),
    "negative_lab": ("hl7",),
    "unknown_unit": ("hl7",),
    "unknown_local_code": ("drug_order", "hl7", "diag_record"),
    "duplicate_row": ("hl7",),
    "blank_mandatory": ("pat_master", "hl7"),
}


@dataclass
class Message:
    """One ORU^R01 message: MSH/PID/OBR text plus OBX segments as field lists."""

    head: list[str]
    obx: list[list[str]]


@dataclass
class Rendered:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)


@dataclass
class Identity:
    """Who a south_general patient is, and whether a specialist centre also holds them."""

    person: Person
    course: Course
    person_index: int
    resident_id: str | None
    linked_from: str | None = None


def mrn_of(index: int) -> str:
    """The HIS patient id, also sent in PID-3, e.g. SG000123."""
    return f"SG{index + 1:06d}"


def resolve_identity(
    seed: int, index: int, patients: int, plans: dict[str, dict[int, Defect]]
) -> Identity:
    """A shared person (typo'd name, maybe no ID) about 10 % of the time, else a new one."""
    rng = random.Random(f"{seed}:{HOSPITAL}:{index}:link")
    if rng.random() < LINK_RATE and index not in plans[HOSPITAL]:
        source = "east_liver" if rng.random() < 0.5 else "north_chest"
        if index not in plans[source]:
            build = {
                "east_liver": build_east_liver_patient,
                "north_chest": build_north_chest_patient,
            }[source]
            person, course = build(seed, index)
            person = misspell_name(person, rng)
            resident_id = None if rng.random() < MISSING_ID_RATE else person.resident_id
            return Identity(
                person, course, person_index(source, index, patients), resident_id, source
            )
    person = make_person(random.Random(f"{seed}:{HOSPITAL}:{index}:person"))
    course_rng = random.Random(f"{seed}:{HOSPITAL}:{index}:course")
    course = (build_liver_course if course_rng.random() < 0.5 else build_lung_course)(course_rng)
    return Identity(person, course, person_index(HOSPITAL, index, patients), person.resident_id)


def _stamp(rng: random.Random, day: date) -> datetime:
    """updated_at: the nightly HIS job after the event."""
    return datetime.combine(day + timedelta(days=1), time(rng.randint(1, 4), rng.randrange(60)))


def render_patient(rng: random.Random, mrn: str, identity: Identity) -> Rendered:
    """HIS rows (without surrogate keys yet) and lab messages of one patient."""
    person, course = identity.person, identity.course
    out = Rendered()
    out.add(
        "pat_master",
        {
            "pat_id": mrn,
            "pat_name": person.name,
            "sex_code": "1" if person.male else "2",
            "birth_dt": person.birth_date,
            "id_card_no": identity.resident_id,
            "phone": person.phone,
            "address": person.address,
            "updated_at": _stamp(rng, course.last_contact),
        },
    )
    if course.cancer == "liver":
        code, name, morphology = DIAGNOSES[course.subtype]
    else:
        code, name = rng.choice(LUNG_SITES)
        morphology = LUNG_MORPHOLOGY[course.subtype]
    diagnoses = [(course.diagnosis_date, code, name, morphology)]
    diagnoses += [(day, *DIAGNOSES[key]) for key, day in course.comorbidities]
    for day, code, name, morphology in diagnoses:
        out.add(
            "diag_record",
            {
                "pat_id": mrn,
                "diag_dt": day,
                "icd_code": code,
                "diag_name": name,
                "morphology": morphology,
                "updated_at": _stamp(rng, day),
            },
        )
    for event in course.treatments:
        if event.code in DRUGS:
            code, name = DRUGS[event.code]
            out.add(
                "drug_order",
                {
                    "pat_id": mrn,
                    "drug_code": code,
                    "drug_name": name,
                    "start_dt": event.start,
                    "stop_dt": event.end,
                    "updated_at": _stamp(rng, event.end or event.start),
                },
            )
        else:
            code, name = SURGERIES[event.code]
            out.add(
                "surgery",
                {
                    "pat_id": mrn,
                    "op_code": code,
                    "op_name": name,
                    "op_dt": event.start,
                    "updated_at": _stamp(rng, event.start),
                },
            )
    depts = ("肝胆外科", "肿瘤科") if course.cancer == "liver" else ("胸外科", "肿瘤科", "呼吸内科")
    for day in course.contacts:
        dead = course.death_date is not None and day >= course.death_date
        out.add(
            "visit",
            {
                "pat_id": mrn,
                "visit_dt": course.death_date if dead else day,
                "dept": rng.choice(depts),
                "outcome": "dead" if dead else "alive",
                "updated_at": _stamp(rng, day),
            },
        )
    out.messages = [
        render_lab_message(rng, mrn, identity, draw_index) for draw_index in range(len(course.labs))
    ]
    return out


def render_lab_message(
    rng: random.Random, mrn: str, identity: Identity, draw_index: int
) -> Message:
    """One ORU^R01 with a header, PID-3 = HIS patient id, one OBR and an OBX per test."""
    person, course = identity.person, identity.course
    draw = course.labs[draw_index]
    taken = f"{draw.taken_at:%Y%m%d%H%M}"
    reported = f"{draw.taken_at + timedelta(hours=rng.randint(2, 8)):%Y%m%d%H%M}"
    order = f"{mrn}-{draw_index + 1:02d}"
    panel = "LIVER^肝功能+AFP^L" if course.cancer == "liver" else "TM^肿瘤标志物^L"
    pid = build_segment(
        "PID",
        {
            1: "1",
            3: f"{mrn}^^^SOUTH_GENERAL^MR",
            5: f"{person.name[0]}^{person.name[1:]}",
            7: f"{person.birth_date:%Y%m%d}",
            8: "M" if person.male else "F",
        },
    )
    obr = build_segment(
        "OBR",
        {
            1: "1",
            2: f"P{order}",
            3: f"F{order}",
            4: panel,
            7: taken,
            14: taken,
            22: reported,
            24: "LAB",
            25: "F",
        },
    )
    head = [
        build_msh(reported, "ORU^R01^ORU_R01", f"ORU{order}", "LIS"),
        "|".join(pid),
        "|".join(obr),
    ]
    obx = []
    for set_id, code in enumerate(PANELS[course.cancer], start=1):
        loinc, text, decimals, (low, high), units = LAB_TESTS[code]
        value = draw.values[code]
        unit = rng.choices([u for u, _ in units], [w for _, w in units])[0]
        flag = "H" if value > high else "L" if value < low else "N"
        obx.append(
            build_segment(
                "OBX",
                {
                    1: str(set_id),
                    2: "NM",
                    3: f"{loinc}^{text}^LN",
                    5: f"{value:.{decimals}f}",
                    6: unit,
                    7: f"{low:g}-{high:g}",
                    8: flag,
                    11: "F",
                    14: taken,
                },
            )
        )
    return Message(head, obx)


def inject_defect(rng: random.Random, defect: Defect, out: Rendered) -> Target:
    """Make exactly one row (or OBX segment) of this patient defective in exactly one way."""
    kind, table = defect.kind, defect.variant
    if kind == "invalid_id_checksum":
        row = out.rows["pat_master"][0]
        row["id_card_no"] = corrupt_check_digit(row["id_card_no"])
        return Target(kind, "pat_master", 0, "id_card_no")
    if kind == "future_date":
        out.rows["diag_record"][0]["diag_dt"] = date(
            rng.randint(2031, 2035), rng.randint(1, 12), rng.randint(1, 28)
        )
        return Target(kind, "diag_record", 0, "diag_dt")
    if kind == "unknown_local_code" and table == "drug_order" and out.rows.get("drug_order"):
        out.rows["drug_order"][0]["drug_code"] = "ZZZ9"
        return Target(kind, "drug_order", 0, "drug_code")
    if kind == "unknown_local_code" and table != "hl7":
        out.rows["diag_record"][0]["icd_code"] = "ZZZ9"
        return Target(kind, "diag_record", 0, "icd_code")
    if kind == "blank_mandatory" and table == "pat_master":
        out.rows["pat_master"][0]["birth_dt"] = None
        return Target(kind, "pat_master", 0, "birth_dt")
    return _inject_obx_defect(rng, kind, out.messages[0])


def _inject_obx_defect(rng: random.Random, kind: str, message: Message) -> Target:
    """Lab defects live in the first OBX (AFP or CEA) of the patient's first message."""
    obx = message.obx
    if kind == "lab_out_of_range":
        codes = [segment[3].split("^")[0] for segment in obx]
        if "1751-7" in codes:  # albumin 900 g/L or INR 80
            position = codes.index(rng.choice(("1751-7", "6301-6")))
            obx[position][5] = "900.0" if codes[position] == "1751-7" else "80.00"
        else:
            position = 0
            obx[0][5] = "2500000.00"
        return Target(kind, "hl7", 0, "OBX-5", sub_index=position)
    if kind == "negative_lab":
        obx[0][5] = "-" + obx[0][5]
        return Target(kind, "hl7", 0, "OBX-5", sub_index=0)
    if kind == "unknown_unit":
        obx[0][6] = rng.choice(("单位", "mg/L?"))
        return Target(kind, "hl7", 0, "OBX-6", sub_index=0)
    if kind == "unknown_local_code":
        obx[0][3] = "ZZZ9^未知项目^L"
        return Target(kind, "hl7", 0, "OBX-3", sub_index=0)
    if kind == "blank_mandatory":
        obx[0][5] = ""
        return Target(kind, "hl7", 0, "OBX-5", sub_index=0)
    if kind == "duplicate_row":
        obx.insert(1, list(obx[0]))
        return Target(kind, "hl7", 0, "", sub_index=1)
    raise ValueError(f"unknown defect kind {kind!r}")


def render_adt_update(rng: random.Random, mrn: str, person: Person, control: int) -> str:
    """ADT^A08: the patient moved and changed phone after the HIS export."""
    stamp = f"{FEED_FIRST_DAY:%Y%m%d}09{control:02d}"
    pid = build_segment(
        "PID",
        {
            1: "1",
            3: f"{mrn}^^^SOUTH_GENERAL^MR",
            5: f"{person.name[0]}^{person.name[1:]}",
            7: f"{person.birth_date:%Y%m%d}",
            8: "M" if person.male else "F",
            11: f"{make_address(rng, '广东省广州市越秀区')}^^^^^CHN",
            13: make_phone(rng),
        },
    )
    return "\r".join(
        [
            build_msh(stamp, "ADT^A08^ADT_A01", f"ADT{control:06d}", "HIS"),
            f"EVN|A08|{stamp}",
            "|".join(pid),
            "PV1|1|O",
        ]
    )


class SouthGeneralWriter:
    """Streams patients into the HIS tables and the HL7 feed, logging defects by position."""

    def __init__(self, conn: Any, folder: Path, defects: DefectLog, persons: PersonLog) -> None:
        self.tables = {t.name: TableWriter(conn, t) for t in TABLES}
        self.keys = {
            "diag_record": "diag_id",
            "drug_order": "order_id",
            "surgery": "op_id",
            "visit": "visit_id",
        }
        self.next_key = dict.fromkeys(self.keys, 1)
        self.feed = Hl7Feed(folder / "hl7", FEED_FIRST_DAY)
        self.defects = defects
        self.persons = persons
        self.obx = 0
        self.pending_tombstones = ["diag_record", "drug_order"]

    def consume_tombstone(self, out: Rendered) -> None:
        """Burn one key of a row the HIS later deleted, leaving a gap and a tombstone."""
        table = self.pending_tombstones[0]
        if not out.rows.get(table):
            return
        key = self.next_key[table]
        self.next_key[table] += 1
        self.tables["deleted_rows"].add(
            {"table_name": table, "row_key": str(key), "deleted_at": TOMBSTONE_AT}
        )
        self.pending_tombstones.pop(0)

    def write(self, out: Rendered, target: Target | None) -> None:
        for table, rows in out.rows.items():
            for position, row in enumerate(rows):
                if table in self.keys:
                    row = {self.keys[table]: self.next_key[table], **row}
                    self.next_key[table] += 1
                number = self.tables[table].add(row)
                if target is not None and (target.table, target.index) == (table, position):
                    key = row[self.keys.get(table, "pat_id")]
                    self.defects.record(
                        target.kind,
                        HOSPITAL,
                        CANONICAL[table],
                        table,
                        number,
                        target.column,
                        source_key=str(key),
                    )
        for position, message in enumerate(out.messages):
            name, number = self.feed.add(render_message(message.head, message.obx))
            self.obx += len(message.obx)
            if target is not None and target.table == "hl7" and target.index == position:
                self.defects.record(
                    target.kind,
                    HOSPITAL,
                    "lab",
                    name,
                    f"{number}.{(target.sub_index or 0) + 1}",
                    target.column,
                )

    def close(self) -> None:
        for writer in self.tables.values():
            writer.flush()
        self.feed.flush()


def open_engine(folder: Path, db_url: str | None) -> Engine:
    """The target database with freshly created tables (SQLite file unless db_url is given)."""
    if db_url is None:
        path = folder / SQLITE_FILE
        path.unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
    engine = create_engine(db_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    return engine


def write_south_general(
    out_dir: Path,
    patients: int,
    seed: int,
    defects: DefectLog,
    persons: PersonLog,
    db_url: str | None = None,
) -> dict[str, int]:
    """Write the HIS tables and out_dir/south_general/hl7/; returns rows per table and feed."""
    folder = out_dir / HOSPITAL
    (folder / "hl7").mkdir(parents=True, exist_ok=True)
    plans = {
        HOSPITAL: plan_defects(
            random.Random(f"{seed}:{HOSPITAL}:defects"), patients, DEFECT_VARIANTS
        ),
        "east_liver": plan_east_liver_defects(seed, patients),
        "north_chest": plan_north_chest_defects(seed, patients),
    }
    engine = open_engine(folder, db_url)
    adt: list[tuple[str, Person]] = []
    linked = 0
    with engine.begin() as conn:
        writer = SouthGeneralWriter(conn, folder, defects, persons)
        for index in range(patients):
            identity = resolve_identity(seed, index, patients, plans)
            mrn = mrn_of(index)
            rng = random.Random(f"{seed}:{HOSPITAL}:{index}:render")
            out = render_patient(rng, mrn, identity)
            defect = plans[HOSPITAL].get(index)
            target = inject_defect(rng, defect, out) if defect else None
            clean = defect is None and identity.linked_from is None
            if clean and writer.pending_tombstones:
                writer.consume_tombstone(out)
            elif clean and len(adt) < 3:
                adt.append((mrn, identity.person))
            writer.write(out, target)
            linked += identity.linked_from is not None
            master = out.rows["pat_master"][0]
            persons.record(
                identity.person_index,
                HOSPITAL,
                mrn,
                master["id_card_no"],
                identity.person.name,
                master["birth_dt"],
                identity.person.male,
            )
        writer.close()
    engine.dispose()
    adt_rng = random.Random(f"{seed}:{HOSPITAL}:adt")
    adt_feed = Hl7Feed(folder / "hl7", FEED_FIRST_DAY, prefix="adt", per_file=len(adt) or 1)
    for control, (mrn, person) in enumerate(adt, start=1):
        adt_feed.add(render_adt_update(adt_rng, mrn, person, control))
    adt_feed.flush()
    log.info(
        "south_general: %s patients written, %s shared with a specialist centre", patients, linked
    )
    counts = {name: w.rows for name, w in writer.tables.items()}
    counts.update(
        hl7_files=writer.feed.files,
        hl7_messages=writer.feed.messages,
        hl7_obx=writer.obx,
        adt_messages=adt_feed.messages,
        linked_patients=linked,
    )
    return counts
