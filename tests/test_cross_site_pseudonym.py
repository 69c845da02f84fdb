"""A person treated at two hospitals gets one person_key and a patient_key per hospital.

The synthetic generator sends about 10 % of south_general's patients from east_liver or
north_chest (`_truth/persons.csv` rows sharing person_index), some with the same resident ID.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.settings import load_settings
from pipeline.sync import land_sources, stage_batch
from transforms.identity import load_pseudonym_key, pseudonymise

HOSPITALS = ("east_liver", "north_chest", "south_general")


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from synthetic.generate import generate_all

    home = tmp_path_factory.mktemp("walnut_home")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=80, seed=5)
    frames = {}
    for hospital in HOSPITALS:
        batch = land_sources(hospital, settings)
        stage_batch(hospital, batch, settings)
        paths = sorted((settings.staging / hospital / "patient").glob("*.parquet"))
        frames[hospital] = pq.read_table(paths[0]).to_pandas()
    return {"settings": settings, "frames": frames}


def _shared_people(sources: Path) -> list[tuple[pd.Series, pd.Series]]:
    """Pairs of hospital records of one person that carry the same resident ID."""
    persons = pd.read_csv(sources / "_truth" / "persons.csv", dtype=str).fillna("")
    pairs = []
    for _, records in persons[persons["resident_id"] != ""].groupby("person_index"):
        if records["hospital"].nunique() == 2 and records["resident_id"].nunique() == 1:
            pairs.append((records.iloc[0], records.iloc[1]))
    return pairs


def _row(frame: pd.DataFrame, hospital: str, mrn: str, key: bytes) -> pd.Series:
    patient_key = pseudonymise(pd.Series([mrn]), key, f"mrn:{hospital}").iloc[0]
    rows = frame[frame["patient_key"] == patient_key]
    assert len(rows) >= 1
    return rows.iloc[0]


def test_same_person_same_person_key_different_patient_keys(staged: dict) -> None:
    people = _shared_people(staged["settings"].sources)
    assert len(people) >= 2, "the generator should put some people in two hospitals"
    key = load_pseudonym_key(allow_demo=True)
    frames = staged["frames"]
    linked = 0
    for first, second in people:
        a = _row(frames[first["hospital"]], first["hospital"], first["mrn"], key)
        b = _row(frames[second["hospital"]], second["hospital"], second["mrn"], key)
        assert a["patient_key"] != b["patient_key"]
        if a["resident_id_valid"] and b["resident_id_valid"]:
            assert pd.notna(a["person_key"])
            assert a["person_key"] == b["person_key"]
            linked += 1
    assert linked >= 2
    east = set(frames["east_liver"]["person_key"].dropna())
    north = set(frames["north_chest"]["person_key"].dropna())
    assert len(east) > 40 and not east & north  # nobody is shared between those two
