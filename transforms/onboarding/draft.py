"""Draft a columns.yaml entry from profiled headers: guessed canonical targets, the rest `drop`.

Guesses come from header names in Chinese, English and pinyin. Everything unsure is written
as `drop` with a TODO comment, so the draft is a safe allowlist until someone edits it.
Comments carry inferred types and null rates, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transforms.canonical import TABLES
from transforms.dates import DEFAULT_DATE_FORMATS

# Normalised header (lower case, no spaces, `-`, `_` or `.`) -> canonical column or role.
HEADER_GUESSES: dict[str, str] = {
    **dict.fromkeys(
        (
            "住院号 病案号 病历号 门诊号 患者编号 患者id 登记号 mrn patid patientid patientno "
            "hospitalno recordno medicalrecordno zhuyuanhao binganhao bingliha pid31"
        ).split(),
        "mrn",
    ),
    **dict.fromkeys(
        "姓名 患者姓名 病人姓名 name patname patientname fullname xingming".split(), "name"
    ),
    **dict.fromkeys(
        (
            "身份证号 身份证 身份证号码 证件号码 idcard idcardno idno residentid nationalid "
            "shenfenzheng shenfenzhenghao sfzh"
        ).split(),
        "resident_id",
    ),
    **dict.fromkeys("性别 sex gender sexcode xingbie".split(), "sex"),
    **dict.fromkeys(
        "出生日期 生日 birthdate dob dateofbirth birthdt birthday chushengriqi csrq".split(),
        "birth_date",
    ),
    **dict.fromkeys("死亡日期 deathdate dateofdeath deathdt siwangriqi".split(), "death_date"),
    **dict.fromkeys(
        "诊断日期 确诊日期 diagdate diagdt diagnosisdate zhenduanriqi".split(), "diagnosis_date"
    ),
    **dict.fromkeys(
        (
            "诊断编码 诊断代码 icd icdcode icd10 diagcode diagnosiscode 项目代码 检验代码 "
            "检验项目代码 testcode labcode itemcode 治疗代码 治疗编码 药品代码 手术编码 drugcode "
            "opcode proccode procedurecode treatmentcode 检测项目 markercode"
        ).split(),
        "local_code",
    ),
    **dict.fromkeys(
        "检验时间 采样时间 采集时间 collectedat collecttime sampletime collectiontime".split(),
        "collected_at",
    ),
    **dict.fromkeys("结果 检验结果 result value resultvalue jieguo".split(), "source_value"),
    **dict.fromkeys("单位 unit units resultunit danwei".split(), "source_unit"),
    **dict.fromkeys(
        "开始日期 治疗日期 startdate startdt treatmentdate opdate opdt".split(), "treatment_date"
    ),
    **dict.fromkeys("结束日期 enddate stopdate stopdt".split(), "end_date"),
    **dict.fromkeys("治疗类别 category treatmentcategory".split(), "category"),
    **dict.fromkeys("随访日期 visitdate visitdt contactdate followupdate".split(), "contact_date"),
    **dict.fromkeys("生存状态 vitalstatus outcome survivalstatus".split(), "vital_status"),
    **dict.fromkeys("检测日期 testdate".split(), "test_date"),
    **dict.fromkeys("乙肝表面抗原 hbsag".split(), "hbsag"),
    **dict.fromkeys("丙肝抗体 hcvab antihcv".split(), "hcv_ab"),
    **dict.fromkeys(
        "病理形态 形态学编码 morphology morphologycode icdo3".split(), "morphology_code"
    ),
    **dict.fromkeys("bclc分期 bclc bclcstage".split(), "bclc_stage"),
    **dict.fromkeys("cnlc分期 cnlc cnlcstage".split(), "cnlc_stage"),
    **dict.fromkeys("childpugh分级 childpugh childpughclass".split(), "child_pugh_class"),
    **dict.fromkeys("t分期 tnmt".split(), "tnm_t"),
    **dict.fromkeys("n分期 tnmn".split(), "tnm_n"),
    **dict.fromkeys("m分期 tnmm".split(), "tnm_m"),
    **dict.fromkeys("临床分期 stagegroup stage".split(), "stage_group"),
    **dict.fromkeys("ecog ecogps".split(), "ecog"),
}
# Direct identifiers nobody should map: dropped on purpose, said so in the draft.
IDENTIFIER_HEADERS = frozenset(
    (
        "联系电话 电话 手机 手机号 phone telephone mobile tel 家庭住址 联系地址 住址 地址 address "
        "homeaddress email 邮箱 联系人 contact"
    ).split()
)
VALUE_MAPPED = {"sex", "vital_status", "hbsag", "hcv_ab", "category"}
CANONICAL = {c.name for cols in TABLES.values() for c in cols}


@dataclass(frozen=True)
class ColumnHint:
    """What the draft needs of one profiled column: its header, type and null share."""

    name: str
    kind: str
    formats: tuple[str, ...] = ()
    null_rate: float = 0.0


def normalise_header(header: str) -> str:
    return re.sub(r"[\s_\-.]+", "", header).lower()


def guess_target(header: str) -> str | None:
    """Canonical column or identity role a header most likely holds, or None."""
    key = normalise_header(header)
    if header in CANONICAL:
        return header
    return HEADER_GUESSES.get(key)


def _quote(name: str) -> str:
    plain = re.fullmatch(r"[\w\u4e00-\u9fff][\w\u4e00-\u9fff\- ]*", name) and ":" not in name
    return name if plain else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _spec(target: str, hint: ColumnHint) -> str:
    parts = [f"to: {target}"]
    if target in VALUE_MAPPED:
        parts.append(f"values: {target}")
    if target == "local_code":
        parts.append("codes: TODO")
    dated = {"birth_date", "death_date", "collected_at", "end_date"}
    custom = set(hint.formats) - set(DEFAULT_DATE_FORMATS)  # defaults need no `formats:`
    if hint.kind == "date" and (target.endswith("_date") or target in dated) and custom:
        parts.append("formats: [" + ", ".join(f'"{f}"' for f in hint.formats) + "]")
    return target if len(parts) == 1 else "{" + ", ".join(parts) + "}"


def draft_columns_yaml(sources: Mapping[str, Sequence[ColumnHint]]) -> str:
    """A columns.yaml draft: one entry per source, guessed targets, `drop` + TODO for the rest."""
    lines: list[str] = []
    needs_values: set[str] = set()
    for entry, hints in sources.items():
        lines += _draft_entry(entry, hints, needs_values)
    if needs_values:
        lines.append("value_maps:  # TODO: list every source spelling (profile patterns help)")
        lines += [f"  {name}: {{}}" for name in sorted(needs_values)]
    return "\n".join(lines) + "\n"


def _draft_entry(entry: str, hints: Sequence[ColumnHint], needs_values: set[str]) -> list[str]:
    lines = [
        f"# {entry}: review every line; the key must name a source in source.yaml.",
        f"{_quote(entry)}:",
    ]
    used: set[str] = set()
    empty = [h for h in hints if h.kind == "empty"]
    if empty:
        lines.append(f"  # {len(empty)} always-blank column(s) left out (dropped anyway)")
    for hint in (h for h in hints if h.kind != "empty"):
        about = f"{hint.kind}, {hint.null_rate:.0%} blank"
        target = guess_target(hint.name)
        if normalise_header(hint.name) in IDENTIFIER_HEADERS:
            lines.append(f"  {_quote(hint.name)}: drop  # direct identifier ({about})")
        elif target is None:
            lines.append(f"  {_quote(hint.name)}: drop  # TODO: map or keep dropped ({about})")
        elif target in used:
            lines.append(f"  {_quote(hint.name)}: drop  # TODO: also looks like {target} ({about})")
        else:
            used.add(target)
            if target in VALUE_MAPPED:
                needs_values.add(target)
            lines.append(f"  {_quote(hint.name)}: {_spec(target, hint)}  # guessed ({about})")
    if "mrn" not in used:
        lines.append("  # TODO: no column looks like the record number; one must map to mrn")
    return lines
