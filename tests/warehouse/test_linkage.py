"""core.patient_link: exact links on person_key, Splink on keyed names, scored against the truth."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.settings import Settings, hospitals, load_settings
from transforms.fhir.common import patient_id
from transforms.identity import DEMO_PSEUDONYM_KEY, pseudonymise
from transforms.linkage_keys import encode_names
from warehouse import linkage
from warehouse.linkage import (
    build_patient_links,
    cluster_patients,
    exact_pairs,
    linkage_records,
    score_pairs,
)

KEY = b"test-key-" * 4
LINK_COLUMNS = ["patient_id", "hospital", "cluster_id", "match_probability", "match_method"]


def _records(rows: list[tuple]) -> pd.DataFrame:
    """Records as linkage_records returns them, from (id, hospital, person_key, name, sex, born)."""
    frame = pd.DataFrame(
        rows, columns=["patient_id", "hospital", "person_key", "name", "sex", "birth_date"]
    )
    frame["person_key"] = frame["person_key"].astype("string")
    frame["birth_date"] = pd.to_datetime(frame["birth_date"])
    names = encode_names(frame.pop("name").astype("string"), KEY)
    return pd.concat([frame, names], axis=1)


def _cross_site_pairs(frame: pd.DataFrame, by: str) -> set[tuple[str, str]]:
    pairs = set()
    for _, group in frame.groupby(by):
        rows = sorted(group[["patient_id", "hospital"]].itertuples(index=False))
        pairs |= {(a.patient_id, b.patient_id) for a, b in itertools.combinations(rows, 2)}
        pairs -= {
            (a.patient_id, b.patient_id)
            for a, b in itertools.combinations(rows, 2)
            if a.hospital == b.hospital
        }
    return pairs


def _precision_recall(links: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float, int]:
    """Cross-site pair precision and recall of links against person_index, and the true pairs."""
    scored = links.merge(truth[["patient_id", "person_index"]], on="patient_id", how="inner")
    predicted = _cross_site_pairs(scored, "cluster_id")
    true = _cross_site_pairs(scored, "person_index")
    hits = len(predicted & true)
    return hits / max(len(predicted), 1), hits / max(len(true), 1), len(true)


def test_exact_links_and_guard_against_joining_two_ids() -> None:
    records = _records(
        [
            ("p1", "a", "K1", "张三", "male", "1960-01-01"),
            ("p2", "b", "K1", "张三", "male", "1960-01-01"),
            ("p3", "c", None, "张三", "male", "1960-01-01"),
            ("p4", "c", "K2", "张三", "male", "1960-01-01"),
            ("p5", "b", None, "李四", "female", "1970-05-05"),
        ]
    )
    exact = exact_pairs(records)
    assert exact.values.tolist() == [["p1", "p2"]]
    scored = pd.DataFrame(
        {
            "patient_id_l": ["p1", "p3"],
            "patient_id_r": ["p3", "p4"],
            "match_probability": [0.99, 0.98],
        }
    )
    links = cluster_patients(records, exact, scored).set_index("patient_id")
    assert links["cluster_id"].to_dict() == {
        "p1": "p1",
        "p2": "p1",
        "p3": "p1",  # the better-scoring pair wins; p3-p4 would join K1 and K2
        "p4": "p4",
        "p5": "p5",
    }
    assert links["match_method"].to_dict() == {
        "p1": "person_key",
        "p2": "person_key",
        "p3": "probabilistic",
        "p4": "singleton",
        "p5": "singleton",
    }
    assert links.loc["p3", "match_probability"] == pytest.approx(0.99)
    assert links.loc["p1", "match_probability"] == 1.0
    assert pd.isna(links.loc["p5", "match_probability"])


def _invented_sites(people: int = 300, shared: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Site `a` with resident IDs; site `b` holds `shared` of them with a homophone typo and no
    ID, plus strangers. Returns (records, truth with person_index)."""
    from synthetic.people import make_person, misspell_name

    rng = random.Random(3)
    persons = [make_person(rng) for _ in range(people)]
    rows, truth = [], []
    for i, p in enumerate(persons):
        sex = "male" if p.male else "female"
        rows.append((f"a{i:04d}", "a", f"K{i}", p.name, sex, p.birth_date))
        truth.append((f"a{i:04d}", i))
    for i, p in enumerate(persons[:shared]):
        typo = misspell_name(p, rng)
        rows.append(
            (f"b{i:04d}", "b", None, typo.name, "male" if p.male else "female", p.birth_date)
        )
        truth.append((f"b{i:04d}", i))
    for j, p in enumerate(make_person(rng) for _ in range(people - shared)):
        sex = "male" if p.male else "female"
        rows.append((f"b{shared + j:04d}", "b", None, p.name, sex, p.birth_date))
        truth.append((f"b{shared + j:04d}", people + j))
    return _records(rows), pd.DataFrame(truth, columns=["patient_id", "person_index"])


def test_splink_links_typo_names_without_ids() -> None:
    records, truth = _invented_sites()
    scored = score_pairs(records)
    assert len(scored) > 0
    ids = set(records.loc[records["person_key"].notna(), "patient_id"])
    both_keyed = scored["patient_id_l"].isin(ids) & scored["patient_id_r"].isin(ids)
    assert not both_keyed.any()  # pairs with two resident IDs are never scored
    links = cluster_patients(records, exact_pairs(records), scored)
    precision, recall, true_pairs = _precision_recall(links, truth)
    print(f"invented sites: precision {precision:.3f} recall {recall:.3f} ({true_pairs} pairs)")
    assert true_pairs == 30
    assert precision >= 0.95 and recall >= 0.95
    again = cluster_patients(records, exact_pairs(records), score_pairs(records))
    assert again.equals(links)  # deterministic, cluster ids included


def _write_staging(settings: Settings, hospital: str, batch: str, frame: pd.DataFrame) -> None:
    folder = settings.staging / hospital / "patient"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / f"{batch}.parquet", index=False)


def _linkage_home(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Settings, dict, pd.DataFrame]:
    """Two patients at two hospitals, one without a person_key, with staged name keys."""
    settings = load_settings({"WALNUT_HOME": str(tmp_path)})
    ids = {k: patient_id(h, k) for h, k in [("a", "ka"), ("b", "kb")]}
    names = encode_names(pd.Series(["王伟", "王炜", "陈国"], dtype="string"), KEY)
    # batch 1 of `a` was staged before the name keys existed; batch 2 has them
    _write_staging(settings, "a", "b1", pd.DataFrame({"patient_key": ["ka"]}))
    _write_staging(settings, "a", "b2", pd.DataFrame({"patient_key": ["ka"]}).join(names.iloc[[0]]))
    _write_staging(
        settings,
        "b",
        "b3",
        pd.DataFrame({"patient_key": ["kb"]}).join(names.iloc[[1]].reset_index(drop=True)),
    )
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core; CREATE SCHEMA gov")
    con.execute(
        "CREATE TABLE gov.applied_batch AS SELECT * FROM (VALUES ('a', 'b1'), ('a', 'b2'), "
        "('b', 'b3')) t(hospital, batch_id)"
    )
    con.execute(
        "CREATE TABLE core.patient (patient_id VARCHAR, hospital VARCHAR, person_key VARCHAR, "
        "gender VARCHAR, birth_date VARCHAR)"
    )
    con.executemany(
        "INSERT INTO core.patient VALUES (?, ?, ?, 'male', '1960-02-03')",
        [[ids["ka"], "a", "K1"], [ids["kb"], "b", None]],
    )
    return con, settings, ids, names


def test_build_patient_links_reads_newest_staged_keys(tmp_path: Path) -> None:
    con, settings, ids, names = _linkage_home(tmp_path)
    records = linkage_records(con, settings).set_index("patient_id")
    assert records.loc[ids["ka"], "name_key"] == names.loc[0, "name_key"]
    assert records.loc[ids["kb"], "name_key"] == names.loc[0, "name_key"]  # homophone typo
    counts = build_patient_links(con, settings)
    assert counts["core.patient_link"] == 2
    rows = con.execute(f"SELECT {', '.join(LINK_COLUMNS)} FROM core.patient_link").fetchall()
    assert {r[2] for r in rows} == {min(ids.values())}
    assert {r[4] for r in rows} == {"probabilistic"}


def test_patient_links_are_kept_while_their_inputs_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, settings, _, _ = _linkage_home(tmp_path)
    scored = []

    def counting_score_pairs(records: pd.DataFrame) -> pd.DataFrame:
        scored.append(len(records))
        return score_pairs(records)

    monkeypatch.setattr(linkage, "score_pairs", counting_score_pairs)
    first = build_patient_links(con, settings)
    links = con.execute("SELECT * FROM core.patient_link ORDER BY ALL").fetchall()
    assert first == {"core.patient_link": 2, "linked_clusters": 1} and scored == [2]
    # Nothing the links depend on changed: the table stays, nothing is scored again.
    assert build_patient_links(con, settings) == first and scored == [2]
    assert con.execute("SELECT * FROM core.patient_link ORDER BY ALL").fetchall() == links
    # Any change to a linkage record (here the sex of one patient) recomputes the links.
    con.execute("UPDATE core.patient SET gender = 'female' WHERE hospital = 'b'")
    build_patient_links(con, settings)
    assert scored == [2, 2]
    # So does a table that lost its inputs hash (built by an older version).
    con.execute("COMMENT ON TABLE core.patient_link IS NULL")
    build_patient_links(con, settings)
    assert scored == [2, 2, 2]


@pytest.mark.slow
def test_cross_site_linkage_precision_and_recall(tmp_path: Path) -> None:
    """Synthetic hospitals synced and built: cross-site pairs against _truth/persons.csv."""
    from pipeline.sync import sync_hospital
    from synthetic.generate import generate_all
    from warehouse.build import build_warehouse

    settings = load_settings({"WALNUT_HOME": str(tmp_path / "home"), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=200)
    synced = [h for h in ("east_liver", "north_chest", "south_general") if h in hospitals()]
    assert "south_general" in synced
    for hospital in synced:
        assert sync_hospital(hospital, settings)["status"] == "success"
    build_warehouse(settings)

    truth = pd.read_csv(settings.sources / "_truth" / "persons.csv", dtype=str)
    truth = truth[truth["hospital"].isin(synced)]
    truth["patient_id"] = [
        patient_id(h, pseudonymise(pd.Series([m]), DEMO_PSEUDONYM_KEY, f"mrn:{h}").iloc[0])
        for h, m in zip(truth["hospital"], truth["mrn"])
    ]
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        links = con.execute("SELECT * FROM core.patient_link").df()
        patients = con.execute("SELECT count(*) FROM core.patient").fetchone()[0]
        records = linkage_records(con, settings)
    finally:
        con.close()
    assert list(links.columns) == LINK_COLUMNS
    assert len(links) == patients and links["patient_id"].is_unique
    # The snapshot adds the links after the other tables (written before linkage): same rows.
    exported = pd.read_parquet(settings.warehouse / "parquet" / "core.patient_link")
    key = ["hospital", "patient_id"]
    assert exported[LINK_COLUMNS].sort_values(key).astype(str).values.tolist() == (
        links.sort_values(key).astype(str).values.tolist()
    )
    assert set(links["patient_id"]) <= set(truth["patient_id"])
    precision, recall, true_pairs = _precision_recall(links, truth)
    print(f"warehouse links: precision {precision:.3f} recall {recall:.3f} ({true_pairs} pairs)")
    assert true_pairs >= 10
    assert precision >= 0.95 and recall >= 0.95
    assert (links["match_method"] == "probabilistic").any()

    # Without any resident ID, Splink alone must find the same people.
    blind = records.assign(person_key=pd.Series(pd.NA, index=records.index, dtype="string"))
    alone = cluster_patients(blind, exact_pairs(blind), score_pairs(blind))
    precision, recall, _ = _precision_recall(alone, truth)
    print(f"names, birth date and sex only: precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95

    # Rebuilding the links (dropped first, else unchanged inputs keep them) gives the same table.
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(settings.warehouse_db, copy)
    con = duckdb.connect(str(copy))
    try:
        con.execute("DROP TABLE core.patient_link")
        build_patient_links(con, settings)
        rebuilt = con.execute("SELECT * FROM core.patient_link").df()
    finally:
        con.close()
    assert rebuilt.equals(links)
