"""Canonical staging tables: the contract between hospital mappings and everything downstream.

Every hospital's sources are renamed, typed and pseudonymised into these tables. Suites in
`expectations/`, FHIR mappers in `transforms/fhir/` and the warehouse read only these columns.
Direct identifiers (names, phones, addresses, raw resident IDs, raw MRNs) never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # one of: string, date, timestamp, float, int, bool
    description: str
    required: bool = False


LINEAGE_COLUMNS: tuple[Column, ...] = (
    Column("_hospital", "string", "Hospital id (folder name under mappings/).", True),
    Column("_batch_id", "string", "Sync batch that landed the source file.", True),
    Column("_source_file", "string", "Landed file name (the manifest gives its sha256).", True),
    Column(
        "_source_row", "int", "1-based data row number in the source file (header excluded).", True
    ),
    Column(
        "_source_key",
        "string",
        "Keyed hash of the source system's primary key (database sources); null for files.",
    ),
    Column(
        "_row_hash",
        "string",
        "Keyed hash of the raw source row; identifies the row in quarantine.",
        True,
    ),
)

STATUS_COLUMNS: tuple[Column, ...] = (
    Column(
        "_unparsed",
        "string",
        "Comma-separated canonical columns whose non-blank source value could not be parsed "
        "(bad date, non-numeric result); null when every value parsed.",
    ),
)

TABLES: dict[str, tuple[Column, ...]] = {
    # grain: one row per patient per hospital
    "patient": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column(
            "person_key",
            "string",
            "Pseudonym of the normalised resident ID; null if absent or invalid.",
        ),
        Column(
            "resident_id_valid", "bool", "Resident ID passes ISO 7064 MOD 11-2; null if absent."
        ),
        Column("sex", "string", "FHIR administrative gender: male, female, other, unknown.", True),
        Column("birth_date", "date", "Date of birth (local calendar date).", True),
        Column("death_date", "date", "Date of death if recorded in the patient master."),
        Column("hbsag", "string", "Hepatitis B surface antigen: positive, negative or null."),
        Column("hcv_ab", "string", "Hepatitis C antibody: positive, negative or null."),
        Column(
            "name_key",
            "string",
            "Keyed encoding, not a name: HMAC of the name's tone-less pinyin (exact linkage "
            "blocking); null if the source has no name.",
        ),
        Column(
            "surname_key",
            "string",
            "Keyed encoding, not a name: HMAC of the surname's tone-less pinyin.",
        ),
        Column(
            "name_bigrams",
            "string",
            "Keyed encoding, not a name: space-joined sorted unique truncated HMACs of the "
            "name pinyin's letter bigrams (typo-tolerant linkage by set overlap).",
        ),
    ),
    # grain: one row per recorded diagnosis of a patient
    "diagnosis": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column("diagnosis_date", "date", "Date of diagnosis (local calendar date).", True),
        Column("local_code", "string", "Hospital's own diagnosis code.", True),
        Column("icd10_code", "string", "ICD-10 code mapped from the local code; null if unmapped."),
        Column("icd10_display", "string", "ICD-10 display text."),
        Column("morphology_code", "string", "ICD-O-3 morphology/behaviour, e.g. 8170/3."),
        Column("bclc_stage", "string", "Barcelona Clinic Liver Cancer stage: 0, A, B, C, D."),
        Column(
            "cnlc_stage", "string", "China liver cancer stage: Ia, Ib, IIa, IIb, IIIa, IIIb, IV."
        ),
        Column(
            "child_pugh_class", "string", "Child-Pugh class recorded by the clinician: A, B, C."
        ),
        Column("ascites", "string", "Ascites: none, mild, moderate-severe."),
        Column("encephalopathy", "string", "Hepatic encephalopathy: none, grade1-2, grade3-4."),
        Column("tnm_t", "string", "AJCC 8th T category, e.g. T2a."),
        Column("tnm_n", "string", "AJCC 8th N category, e.g. N1."),
        Column("tnm_m", "string", "AJCC 8th M category, e.g. M1b."),
        Column("stage_group", "string", "AJCC 8th stage group, e.g. IIIB."),
        Column("ecog", "int", "ECOG performance status 0-5 at diagnosis."),
    ),
    # grain: one row per lab result
    "lab": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column("collected_at", "timestamp", "Specimen time in UTC.", True),
        Column("collected_date", "date", "Specimen date in the hospital's local calendar.", True),
        Column("local_code", "string", "Hospital's own lab test code.", True),
        Column("loinc_code", "string", "LOINC code mapped from the local code; null if unmapped."),
        Column("loinc_display", "string", "LOINC display text."),
        Column("value", "float", "Result converted to the canonical UCUM unit.", True),
        Column("unit", "string", "Canonical UCUM unit of value.", True),
        Column("source_value", "float", "Result as reported."),
        Column("source_unit", "string", "Unit as reported."),
    ),
    # grain: one row per treatment event (procedure or drug exposure)
    "treatment": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column(
            "treatment_date", "date", "Start date of the treatment (local calendar date).", True
        ),
        Column("end_date", "date", "End date for drug exposures; null for one-off procedures."),
        Column("local_code", "string", "Hospital's own treatment code.", True),
        Column("category", "string", "procedure or medication.", True),
        Column("code_system", "string", "Standard system URI of code (SNOMED CT, ATC...)."),
        Column("code", "string", "Standard code mapped from the local code; null if unmapped."),
        Column("display", "string", "Standard display text."),
    ),
    # grain: one row per biomarker test result (lung pathology: EGFR, ALK, ROS1, KRAS, PD-L1)
    "biomarker": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column("test_date", "date", "Date the specimen was tested (local calendar date).", True),
        Column("local_code", "string", "Hospital's own test code, e.g. EGFR.", True),
        Column("loinc_code", "string", "LOINC code mapped from the local code; null if unmapped."),
        Column("loinc_display", "string", "LOINC display text."),
        Column(
            "result",
            "string",
            "Normalised result: exon19del, L858R, T790M, G12C, positive, negative; "
            "null for PD-L1, whose result is tps_percent.",
        ),
        Column("tps_percent", "float", "PD-L1 tumour proportion score, 0-100 %."),
    ),
    # grain: one row per follow-up contact
    "followup": (
        Column("patient_key", "string", "Pseudonym of hospital + medical record number.", True),
        Column(
            "contact_date", "date", "Date of the follow-up contact (local calendar date).", True
        ),
        Column("vital_status", "string", "alive or dead at contact.", True),
        Column("death_date", "date", "Date of death when vital_status is dead."),
    ),
}


def columns_of(table: str) -> tuple[Column, ...]:
    """All columns of a canonical staging table: its own, then status and lineage columns."""
    return TABLES[table] + STATUS_COLUMNS + LINEAGE_COLUMNS


def arrow_schema(table: str) -> pyarrow.Schema:
    """The Parquet schema of a staging table: dates as date32, timestamps in UTC."""
    import pyarrow as pa  # lazily: DAG files import this module and must parse fast

    types = {
        "string": pa.string(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "float": pa.float64(),
        "int": pa.int64(),
        "bool": pa.bool_(),
    }
    return pa.schema([pa.field(c.name, types[c.dtype]) for c in columns_of(table)])
