"""core.patient_link: one person across hospitals, by ID pseudonym or by Splink on name keys.

Grain: one row per warehouse patient (patient per hospital). Every patient gets a cluster;
`cluster_id` is the smallest patient_id of the cluster, so reruns give the same ids.

- `person_key` (HMAC of the resident ID) equal -> the same person, exactly (`person_key`).
- A patient without a valid resident ID is compared by Splink (DuckDB backend) with every
  patient sharing its birth date or its name key: keyed name encodings from staging
  (`name_key`, `name_bigrams` set overlap, `surname_key`), birth date, sex. m is trained by EM,
  u by sampling; pairs at or above `MATCH_THRESHOLD` are linked (`probabilistic`).
- Two patients with different person_keys are never linked, even through a third record: the
  resident ID is more reliable than any name match.

The name encodings live only in the pseudonymised staging layer (they are not FHIR): they are
read from the staging Parquet of the applied batches and never copied into the warehouse.

Training is not repeated when nothing it depends on changed: the table's comment holds a hash
of the linkage records (every column above, per patient), this module's code and the Splink and
DuckDB versions, and a build whose hash matches keeps core.patient_link as it is. Any change,
even one new patient, retrains and rescores everything: EM and the seeded u sampling see the
whole population, so reusing parameters would give links a full rebuild might not reproduce.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from pipeline.settings import Settings, load_settings
from transforms.fhir.common import patient_id

log = logging.getLogger(__name__)

# 0.9 keeps false links rare: on the synthetic sites, true pairs without an ID score >0.999
# (same name pinyin and birth date) and the best-scoring non-pairs stay far below 0.5.
MATCH_THRESHOLD = 0.9
# Probability that two random records are the same person, replaced by an estimate when the
# deterministic rule below finds pairs; 1e-4 is ~18 shared people among 600 records.
DEFAULT_PRIOR = 1e-4
DETERMINISTIC_RULE = "l.name_key = r.name_key AND l.birth_date = r.birth_date"
DETERMINISTIC_RECALL = 0.9  # homophone typos keep the pinyin, so few true pairs miss it
U_MAX_PAIRS = 1.5e6  # all pairs of up to ~1,700 records; seeded sampling beyond
U_SEED = 5
# Below this, sampled "non-matches" include too many true pairs to estimate u (2 records give
# one pair, u = 1), so the starting m/u values in the comparison levels are used as they are.
MIN_TRAINING_RECORDS = 200
NAME_KEY_COLUMNS = ("name_key", "surname_key", "name_bigrams")
BLOOM_BITS = 128
_LOW_MASK = (1 << 64) - 1
LINK_COLUMNS = ("patient_id", "hospital", "cluster_id", "match_probability", "match_method")
INPUTS_COMMENT = "linkage inputs sha256 "


def build_patient_links(
    con: duckdb.DuckDBPyConnection,
    settings: Settings | None = None,
    score: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> dict[str, int]:
    """(Re)create core.patient_link from core.patient and the staged name keys, unless the
    existing table was computed from the same inputs (see `inputs_fingerprint`).

    `score` is `score_pairs` or its equal in another process (the build's `pair_scorer`).

    Returns row counts: `core.patient_link` and the number of multi-patient clusters.
    """
    started = time.monotonic()
    records = linkage_records(con, settings or load_settings())
    inputs = inputs_fingerprint(records)
    if _stored_fingerprint(con) == inputs:
        log.info("patient links: inputs unchanged since they were computed; kept as they are")
        return _link_counts(con)
    exact = exact_pairs(records)
    scored = (score or score_pairs)(records)
    links = cluster_patients(records, exact, scored)
    con.register("_patient_link", links)
    try:
        con.execute(
            "CREATE OR REPLACE TABLE core.patient_link AS "
            "SELECT * FROM _patient_link ORDER BY cluster_id, patient_id"
        )
    finally:
        con.unregister("_patient_link")
    con.execute(f"COMMENT ON TABLE core.patient_link IS '{INPUTS_COMMENT}{inputs}'")
    sizes = links["cluster_id"].value_counts()
    linked = int((sizes > 1).sum())
    log.info(
        "patient links: %d patient(s), %d exact pair(s), %d scored pair(s) >= %.2f, "
        "%d multi-patient cluster(s) in %.2f s",
        len(links),
        len(exact),
        int((scored["match_probability"] >= MATCH_THRESHOLD).sum()) if len(scored) else 0,
        MATCH_THRESHOLD,
        linked,
        time.monotonic() - started,
    )
    return {"core.patient_link": len(links), "linked_clusters": linked}


def inputs_fingerprint(records: pd.DataFrame) -> str:
    """Hash of everything core.patient_link depends on: the records (in their patient_id
    order), this module's code, and the Splink and DuckDB versions that train and score."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"splink {version('splink')} duckdb {duckdb.__version__}".encode())
    digest.update("\0".join(f"{c}:{t}" for c, t in records.dtypes.items()).encode())
    digest.update(pd.util.hash_pandas_object(records, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The inputs hash of the existing core.patient_link, None if absent or not recorded."""
    rows = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'core' AND table_name = 'patient_link'"
    ).fetchall()
    comment = str(rows[0][0] or "") if rows else ""
    return comment.removeprefix(INPUTS_COMMENT) if comment.startswith(INPUTS_COMMENT) else None


def _link_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows, linked = con.execute(
        """SELECT (SELECT count(*) FROM core.patient_link),
                  (SELECT count(*) FROM (SELECT cluster_id FROM core.patient_link
                                         GROUP BY cluster_id HAVING count(*) > 1))"""
    ).fetchone()
    return {"core.patient_link": rows, "linked_clusters": linked}


def linkage_records(con: duckdb.DuckDBPyConnection, settings: Settings) -> pd.DataFrame:
    """One row per core.patient: ids, person_key, sex, birth date and staged name keys."""
    patients = con.execute(
        """SELECT patient_id, hospital, person_key,
                  nullif(gender, 'unknown') AS sex, TRY_CAST(birth_date AS DATE) AS birth_date
        FROM core.patient ORDER BY patient_id"""
    ).df()
    keys = staged_name_keys(con, settings)
    records = patients.merge(keys, on="patient_id", how="left")
    for column in NAME_KEY_COLUMNS:
        records[column] = records[column].astype("string") if column in records else pd.NA
    return records


NAME_KEYS = "_name_keys.parquet"  # per hospital, beside its staging tables (batch_cache)


def staged_name_keys(con: duckdb.DuckDBPyConnection, settings: Settings) -> pd.DataFrame:
    """patient_id -> name keys from the patient staging Parquet of applied batches (newest wins).

    Per hospital from a cache (`pipeline.batch_cache`) extended by the batches applied since:
    reading every batch's file again cost ~1 s per hospital and build after a year.
    """
    from pipeline.batch_cache import newest_per_key

    batches = con.execute(
        "SELECT hospital, batch_id FROM gov.applied_batch ORDER BY batch_id, hospital"
    ).fetchall()
    frames = []
    for hospital in sorted({hospital for hospital, _ in batches}):
        folder = settings.staging / hospital
        staged = [
            batch_id
            for h, batch_id in batches
            if h == hospital and (folder / "patient" / f"{batch_id}.parquet").is_file()
        ]
        read = partial(_read_keys, folder / "patient", hospital)
        columns = ["patient_key", *NAME_KEY_COLUMNS, "hospital"]
        frames.append(newest_per_key(folder / NAME_KEYS, staged, read, "patient_key", columns))
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=["patient_id", *NAME_KEY_COLUMNS])
    staged = pd.concat(frames, ignore_index=True)  # one row per (hospital, patient_key)
    staged["patient_id"] = [
        patient_id(h, k) for h, k in zip(staged["hospital"], staged["patient_key"], strict=True)
    ]
    return staged[["patient_id", *NAME_KEY_COLUMNS]]


def _read_keys(folder: Path, hospital: str, batch_id: str) -> pd.DataFrame:
    """The patient_key and name key columns of a batch's patient staging file in `folder`
    (null if staged before them)."""
    path = folder / f"{batch_id}.parquet"
    present = set(pq.read_schema(path).names)
    columns = [c for c in ("patient_key", *NAME_KEY_COLUMNS) if c in present]
    frame = pq.read_table(path, columns=columns).to_pandas()
    for column in ("patient_key", *NAME_KEY_COLUMNS):
        if column not in frame:
            frame[column] = pd.NA
    frame["hospital"] = hospital
    return frame


def exact_pairs(records: pd.DataFrame) -> pd.DataFrame:
    """(patient_id_l, patient_id_r) chaining every group of patients sharing a person_key."""
    keyed = records.dropna(subset=["person_key"]).sort_values(["person_key", "patient_id"])
    first = keyed.groupby("person_key")["patient_id"].transform("first")
    chained = keyed[keyed["patient_id"] != first]
    return pd.DataFrame(
        {"patient_id_l": first[chained.index].to_numpy(), "patient_id_r": chained["patient_id"]}
    ).reset_index(drop=True)


def score_pairs(records: pd.DataFrame) -> pd.DataFrame:
    """Splink match probability of candidate pairs where at least one side has no person_key.

    Columns patient_id_l, patient_id_r, match_probability; empty when nothing needs scoring.
    """
    empty = pd.DataFrame(columns=["patient_id_l", "patient_id_r", "match_probability"])
    named = records.dropna(subset=["name_key"])
    if named.empty or named["person_key"].notna().all() or len(named) < 2:
        return empty
    frame = pd.DataFrame(
        {
            "unique_id": named["patient_id"].astype(str),
            "person_key": _objects(named["person_key"]),
            "name_key": named["name_key"].astype(str),
            "surname_key": _objects(named["surname_key"]),
            **bigram_blooms(named["name_bigrams"]),
            "birth_date": pd.to_datetime(named["birth_date"]).dt.date,
            "sex": _objects(named["sex"]),
        }
    ).reset_index(drop=True)
    predictions = _splink_predict(frame)
    pairs = predictions.rename(
        columns={"unique_id_l": "patient_id_l", "unique_id_r": "patient_id_r"}
    )[["patient_id_l", "patient_id_r", "match_probability"]]
    return pairs.sort_values(["patient_id_l", "patient_id_r"]).reset_index(drop=True)


def _splink_predict(frame: pd.DataFrame) -> pd.DataFrame:
    """Score candidate pairs; the model is trained unless the records are too few to sample."""
    from splink import DuckDBAPI, Linker  # lazily: splink import takes ~1 s

    db_api = DuckDBAPI()
    table = db_api.register(frame, table_name="linkage_records")
    splink_log = logging.getLogger("splink")
    if splink_log.level == logging.NOTSET:  # unless the app chose a level: no per-step chatter
        splink_log.setLevel(logging.WARNING)
    linker = Linker(table, splink_settings(), log_level=None)  # None: keep the app's handlers
    if len(frame) >= MIN_TRAINING_RECORDS:
        _train(linker)
    else:
        log.info("linkage: %d record(s), too few to train; starting m/u kept", len(frame))
    predictions = linker.inference.predict()
    try:
        return predictions.as_pandas_dataframe()
    finally:
        db_api.delete_tables_created_by_splink_from_db()


def _train(linker: Any) -> None:
    """Prior from a strict rule, u from (seeded) pair sampling, m by EM on two blocks."""
    from splink import block_on

    try:
        linker.training.estimate_probability_two_random_records_match(
            [DETERMINISTIC_RULE], recall=DETERMINISTIC_RECALL
        )
    except Exception as exc:  # noqa: BLE001 - no deterministic pairs: keep DEFAULT_PRIOR
        log.info("linkage prior kept at %s (%s)", DEFAULT_PRIOR, type(exc).__name__)
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=U_SEED)
    for rule in (block_on("birth_date"), block_on("name_key")):
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except Exception as exc:  # noqa: BLE001 - too few pairs to train: keep starting m
            log.info("linkage EM block skipped (%s)", type(exc).__name__)


def _objects(values: pd.Series) -> pd.Series:
    """Plain Python values with None for missing: what Splink and set logic expect."""
    return values.astype(object).where(values.notna(), None)


_ONE_SIDE_UNKEYED = "(l.person_key IS NULL OR r.person_key IS NULL)"
# Jaccard of the two 128-bit bigram filters: bitwise, ~100x faster in DuckDB than list_intersect.
_JACCARD = (
    "(bit_count(name_lo_l & name_lo_r) + bit_count(name_hi_l & name_hi_r)) / "
    "greatest(bit_count(name_lo_l | name_lo_r) + bit_count(name_hi_l | name_hi_r), 1)"
)


def bigram_blooms(name_bigrams: pd.Series) -> dict[str, pd.Series]:
    """`name_lo`/`name_hi`: a 128-bit Bloom filter (one bit per keyed bigram token) as 2 uint64.

    The tokens are already keyed HMACs, so the filter reveals nothing more than they do; it only
    turns set overlap into bit counts.
    """
    low, high = [], []
    for tokens in name_bigrams.fillna("").astype(str):
        bits = 0
        for token in tokens.split():
            bits |= 1 << (int(token, 16) % BLOOM_BITS)
        low.append(bits & _LOW_MASK)
        high.append(bits >> 64)
    index = name_bigrams.index
    return {
        "name_lo": pd.Series(low, index=index, dtype="uint64"),
        "name_hi": pd.Series(high, index=index, dtype="uint64"),
    }


def splink_settings() -> dict[str, Any]:
    """Splink model: dedupe, blocking on birth date or name key, four comparisons."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": DEFAULT_PRIOR,
        "blocking_rules_to_generate_predictions": [
            f"l.birth_date = r.birth_date AND {_ONE_SIDE_UNKEYED}",
            f"l.name_key = r.name_key AND {_ONE_SIDE_UNKEYED}",
        ],
        "comparisons": [_name_comparison(), _birth_comparison(), _sex_comparison()],
        "retain_intermediate_calculation_columns": False,
        "retain_matching_columns": False,
    }


def _level(sql: str, label: str, m: float, u: float) -> dict[str, Any]:
    """One comparison level; m and u are starting values, replaced where training has data."""
    return {"sql_condition": sql, "label_for_charts": label, "m_probability": m, "u_probability": u}


def _null_level(sql: str) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": "null", "is_null_level": True}


def _name_comparison() -> dict[str, Any]:
    """Name pinyin keys: exact, then bigram Jaccard, then surname only."""
    return {
        "output_column_name": "name",
        "comparison_levels": [
            _null_level("name_key_l IS NULL OR name_key_r IS NULL"),
            _level("name_key_l = name_key_r", "exact pinyin", 0.9, 0.0005),
            _level(f"{_JACCARD} >= 0.7", "bigram jaccard >= 0.7", 0.05, 0.002),
            _level(f"{_JACCARD} >= 0.4", "bigram jaccard >= 0.4", 0.02, 0.02),
            _level("surname_key_l = surname_key_r", "surname", 0.01, 0.03),
            _level("ELSE", "else", 0.02, 0.9475),
        ],
    }


def _birth_comparison() -> dict[str, Any]:
    return {
        "output_column_name": "birth_date",
        "comparison_levels": [
            _null_level("birth_date_l IS NULL OR birth_date_r IS NULL"),
            _level("birth_date_l = birth_date_r", "exact", 0.9, 0.0001),
            _level(
                "abs(date_diff('day', birth_date_l, birth_date_r)) <= 365",
                "within 1 year",
                0.07,
                0.04,
            ),
            _level("ELSE", "else", 0.03, 0.9599),
        ],
    }


def _sex_comparison() -> dict[str, Any]:
    return {
        "output_column_name": "sex",
        "comparison_levels": [
            _null_level("sex_l IS NULL OR sex_r IS NULL"),
            _level("sex_l = sex_r", "exact", 0.97, 0.5),
            _level("ELSE", "else", 0.03, 0.5),
        ],
    }


def cluster_patients(
    records: pd.DataFrame, exact: pd.DataFrame, scored: pd.DataFrame
) -> pd.DataFrame:
    """Union exact pairs, then accepted scored pairs best first, never joining two person_keys.

    Returns LINK_COLUMNS per patient; match_probability is 1.0 for a person_key link, the best
    accepted pair's probability for a probabilistic one, null for a singleton.
    """
    ids = records["patient_id"].tolist()
    parent = {pid: pid for pid in ids}
    person = dict(zip(ids, _objects(records["person_key"])))
    keys = {pid: ({person[pid]} if person[pid] is not None else set()) for pid in ids}
    method: dict[str, str] = {}
    best: dict[str, float] = {}

    def find(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    def union(a: str, b: str) -> bool:
        ra, rb = find(a), find(b)
        if ra == rb:
            return True
        if keys[ra] and keys[rb] and keys[ra] != keys[rb]:
            return False
        root, child = min(ra, rb), max(ra, rb)
        parent[child] = root
        keys[root] |= keys.pop(child)
        return True

    for left, right in exact.itertuples(index=False):
        union(left, right)
        for pid in (left, right):
            method[pid], best[pid] = "person_key", 1.0
    accepted = scored[scored["match_probability"] >= MATCH_THRESHOLD]
    accepted = accepted.sort_values(
        ["match_probability", "patient_id_l", "patient_id_r"], ascending=[False, True, True]
    )
    for left, right, probability in accepted.itertuples(index=False):
        if left not in parent or right not in parent or not union(left, right):
            continue
        for pid in (left, right):
            method.setdefault(pid, "probabilistic")
            best[pid] = max(best.get(pid, 0.0), float(probability))
    cluster = pd.Series([find(pid) for pid in ids])  # a root is its cluster's smallest id
    return pd.DataFrame(
        {
            "patient_id": pd.Series(ids, dtype="string"),
            "hospital": records["hospital"].astype("string").to_numpy(),
            "cluster_id": cluster.astype("string").to_numpy(),
            "match_probability": pd.array([best.get(p) for p in ids], dtype="Float64"),
            "match_method": pd.Series([method.get(p, "singleton") for p in ids], dtype="string"),
        }
    )
