"""mappings/README.md stays true: its example loads, and it lists every canonical column."""

from __future__ import annotations

import re
from pathlib import Path

from transforms.canonical import LINEAGE_COLUMNS, STATUS_COLUMNS, TABLES
from transforms.mapping import load_site_mapping

README = Path(__file__).resolve().parents[1] / "mappings" / "README.md"


def _block(text: str, heading: str, language: str) -> str:
    section = text.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_readme_lists_every_canonical_column() -> None:
    text = README.read_text(encoding="utf-8")
    for table, columns in TABLES.items():
        section = text.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
        missing = [c.name for c in columns if f"| `{c.name}` |" not in section]
        assert not missing, (table, missing)
    for column in STATUS_COLUMNS + LINEAGE_COLUMNS:
        assert f"| `{column.name}` |" in text


def test_readme_example_is_a_valid_mapping(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    folder = tmp_path / "west_clinic"
    (folder / "codes").mkdir(parents=True)
    (folder / "source.yaml").write_text(_block(text, "### `source.yaml`", "yaml"), "utf-8")
    (folder / "columns.yaml").write_text(_block(text, "### `columns.yaml`", "yaml"), "utf-8")
    codes = _block(text, "### `codes/<name>.csv`", "csv")
    for name in ("diagnosis", "treatment", "lab"):
        (folder / "codes" / f"{name}.csv").write_text(codes, "utf-8")
    mapping = load_site_mapping(folder)
    assert {s.kind for s in mapping.sources} == {"csv", "excel", "sql", "hl7v2", "fhir"}
    assert mapping.constants["drug"] == {"category": "medication"}
    assert mapping.tables["patient"].columns["chusheng_riqi"].formats == ["%d/%m/%Y"]
    assert mapping.code_maps["lab"]["WC-AFP"][0].code == "1834-1"
