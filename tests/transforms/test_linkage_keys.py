"""Keyed name encodings: homophone typos keep them, other keys change them, no name leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from transforms.canonical import TABLES
from transforms.linkage_keys import NAME_KEY_COLUMNS, encode_names, name_pinyin
from transforms.mapping import load_site_mapping
from transforms.standardize import standardize_table
from transforms.units import load_unit_table

ROOT = Path(__file__).resolve().parents[2]
KEY = b"test-key-" * 4
OTHER_KEY = b"other-key-" * 4


def _encode(*names: str | None, key: bytes = KEY) -> pd.DataFrame:
    return encode_names(pd.Series(list(names), dtype="string"), key)


def _jaccard(left: str, right: str) -> float:
    a, b = set(left.split()), set(right.split())
    return len(a & b) / len(a | b)


@pytest.mark.parametrize(
    ("name", "pinyin"),
    [
        ("张三", "zhangsan"),
        ("Zhang San", "zhangsan"),
        ("ＺＨＡＮＧ　ｓａｎ", "zhangsan"),  # full-width letters and space
        ("张 三", "zhangsan"),
        ("吕德华", "lvdehua"),  # ü written v, tones dropped
        ("欧阳娜", "ouyangna"),  # compound surname
        ("曾敏", "zengmin"),  # surname reading, not the everyday céng
        ("单芳", "shanfang"),
        ("阿依古丽·买买提", "ayigulimaimaiti"),  # middle dot of minority names dropped
    ],
)
def test_name_pinyin_is_toneless_letters(name: str, pinyin: str) -> None:
    assert name_pinyin(name) == pinyin


def test_homophone_typo_keeps_every_encoding() -> None:
    frame = _encode("王伟", "王炜", "李静", "李婧")
    assert frame.loc[0].tolist() == frame.loc[1].tolist()
    assert frame.loc[2].tolist() == frame.loc[3].tolist()
    assert frame.loc[0, "name_key"] != frame.loc[2, "name_key"]


def test_romanised_and_chinese_spellings_agree() -> None:
    frame = _encode("张三", "Zhang San", "zhang-san")
    assert frame["name_key"].nunique() == 1
    assert frame["surname_key"].nunique() == 1


def test_different_sounding_character_changes_only_some_bigrams() -> None:
    frame = _encode("王伟明", "王伟东", "陈国")
    assert frame.loc[0, "name_key"] != frame.loc[1, "name_key"]
    assert frame.loc[0, "surname_key"] == frame.loc[1, "surname_key"]
    typo = _jaccard(frame.loc[0, "name_bigrams"], frame.loc[1, "name_bigrams"])
    assert 0.5 <= typo < 1.0  # wangweiming / wangweidong share 6 of 12 bigrams
    assert _jaccard(frame.loc[0, "name_bigrams"], frame.loc[2, "name_bigrams"]) < 0.2


def test_bigrams_are_sorted_unique_16_hex_tokens() -> None:
    bigrams = _encode("张三").loc[0, "name_bigrams"]
    tokens = bigrams.split(" ")
    # zhangsan -> zh ha an ng gs sa an: 6 distinct bigrams
    assert len(tokens) == 6
    assert tokens == sorted(set(tokens))
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in tokens)
    assert re.fullmatch(r"[0-9a-f]{64}", _encode("张三").loc[0, "name_key"])


def test_another_key_gives_other_encodings() -> None:
    mine, theirs = _encode("张三"), _encode("张三", key=OTHER_KEY)
    for column in NAME_KEY_COLUMNS:
        assert mine.loc[0, column] != theirs.loc[0, column]
    assert not set(mine.loc[0, "name_bigrams"].split()) & set(theirs.loc[0, "name_bigrams"].split())


def test_no_name_text_in_the_output() -> None:
    names = ["张三", "Zhang San", "欧阳娜", "吕德华"]
    text = " ".join(map(str, _encode(*names).to_numpy().ravel()))
    for leak in [*names, "zhang", "san", "ouyang", "lvdehua", "张", "zh"]:
        assert leak not in text


def test_blank_names_give_nulls_and_the_index_is_kept() -> None:
    names = pd.Series(["张三", None, "  ", "", "王伟"], index=[10, 11, 12, 13, 14], dtype="string")
    frame = encode_names(names, KEY)
    assert frame.index.tolist() == [10, 11, 12, 13, 14]
    assert list(frame.columns) == list(NAME_KEY_COLUMNS)
    assert frame.loc[[11, 12, 13]].isna().all().all()
    assert frame.loc[[10, 14]].notna().all().all()


def test_canonical_patient_declares_the_encodings() -> None:
    columns = {c.name: c for c in TABLES["patient"]}
    for name in NAME_KEY_COLUMNS:
        assert columns[name].dtype == "string"
        assert "not a name" in columns[name].description


def test_standardize_stages_encodings_and_never_the_name() -> None:
    mapping = load_site_mapping(ROOT / "mappings" / "east_liver")
    name_column = next(c for c, s in mapping.tables["patient"].columns.items() if s.to == "name")
    raw = pd.DataFrame(
        {
            column: ["EL1", "EL2"] if spec.to == "mrn" else ["", ""]
            for column, spec in mapping.tables["patient"].columns.items()
        },
        dtype=object,
    )
    raw[name_column] = ["王伟", "王炜"]
    raw["_source_row"] = [1, 2]
    staged = standardize_table(
        raw,
        "patient",
        mapping,
        key=KEY,
        batch_id="b1",
        source_file="patient.csv",
        units=load_unit_table(),
    ).frame
    assert staged["name_key"].nunique() == 1 and staged["name_key"].notna().all()
    assert staged["name_key"].iloc[0] == _encode("王伟").loc[0, "name_key"]
    cells = " ".join(map(str, staged.to_numpy().ravel()))
    assert "王" not in cells and "wang" not in cells
