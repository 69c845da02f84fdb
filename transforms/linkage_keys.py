"""Keyed encodings of patient names for cross-site linkage: HMACs of pinyin, never the names.

A name is reduced to tone-less pinyin letters (`张三`, `Zhang San` and `zhang-san` all give
`zhangsan`), so a clerk's homophone typo (`伟` for `炜`) keeps every encoding, while a
different-sounding character changes only a few bigrams. The pinyin itself is never returned:
only HMAC-SHA256 digests under the site-independent pseudonym key, so equal names agree across
hospitals yet cannot be read or brute-forced without the key.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import pandas as pd

from transforms.encoding import normalise_nfkc
from transforms.identity import pseudonymise

NAME_KEY_COLUMNS = ("name_key", "surname_key", "name_bigrams")
BIGRAM_HEX_CHARS = 16  # 64 bits per bigram token: collisions are negligible for a few hundred
# Surnames read differently from the character's everyday reading (pypinyin has no name mode).
# Consistency matters more than correctness, but the right reading keeps keys stable if a site
# ever exports names in pinyin.
SURNAME_READINGS = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "区": "ou",
    "查": "zha",
    "仇": "qiu",
    "朴": "piao",
    "覃": "qin",
    "盖": "ge",
    "乐": "yue",
    "翟": "zhai",
    "缪": "miao",
    "种": "chong",
    "繁": "po",
    "召": "shao",
    "员": "yun",
    "秘": "bi",
}
COMPOUND_SURNAMES = frozenset(
    ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙")
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_NOT_LETTER = re.compile(r"[^a-z]+")


def encode_names(names: pd.Series, key: bytes) -> pd.DataFrame:
    """The three keyed name encodings per row (`NAME_KEY_COLUMNS`); blank names give <NA>.

    - `name_key`: HMAC of the full tone-less pinyin (`zhangsan`), for exact blocking;
    - `surname_key`: HMAC of the surname's pinyin (`zhang`);
    - `name_bigrams`: space-joined, sorted, unique 16-hex-char HMACs of the pinyin's letter
      bigrams (`zh ha an ng gs sa`), compared by set overlap for typo tolerance.
    Pinyin is computed once per distinct name, so the cost follows the number of people.
    """
    text = normalise_nfkc(names.astype("string")).str.strip()
    codes, uniques = pd.factorize(text.mask(text.eq("")), use_na_sentinel=True)
    parts = [_name_pinyin(str(name)) for name in uniques]
    full = pd.Series([p[0] for p in parts], dtype="string").replace("", pd.NA)
    surname = pd.Series([p[1] for p in parts], dtype="string").replace("", pd.NA)
    bigrams = pd.Series([_bigrams(p[0]) for p in parts], dtype="object")
    encoded = pd.DataFrame(
        {
            "name_key": pseudonymise(full, key, "name"),
            "surname_key": pseudonymise(surname, key, "surname"),
            "name_bigrams": _encode_bigrams(bigrams, key),
        }
    )
    missing = pd.DataFrame({c: [pd.NA] for c in NAME_KEY_COLUMNS}, dtype="string")
    table = pd.concat([encoded, missing], ignore_index=True).astype("string")
    rows = table.iloc[codes].set_index(names.index)  # code -1 (blank) picks the last, NA row
    return rows


def name_pinyin(name: str) -> str:
    """Tone-less pinyin letters of a name, e.g. `张 三` -> `zhangsan`; only for tests/debugging.

    Never store or log the result: it is as identifying as the name.
    """
    return _name_pinyin(normalise_nfkc(pd.Series([name], dtype="string")).iloc[0].strip())[0]


def _name_pinyin(name: str) -> tuple[str, str]:
    """(full pinyin letters, surname pinyin letters) of one NFKC-normalised name."""
    if not _CJK.search(name):
        # Romanised name: letters only; the surname is taken as the first word.
        words = [w for w in _NOT_LETTER.split(name.lower()) if w]
        return "".join(words), words[0] if words else ""
    chars = [c for c in name if _CJK.match(c)]
    head = 2 if "".join(chars[:2]) in COMPOUND_SURNAMES else 1
    surname = "".join(SURNAME_READINGS.get(c, _char_pinyin(c)) for c in chars[:head])
    given = "".join(_char_pinyin(c) for c in chars[head:])
    return surname + given, surname


@lru_cache(maxsize=65536)
def _char_pinyin(char: str) -> str:
    """One character's default reading, without context, so a typo elsewhere cannot change it.

    pypinyin's phrase dictionary (0.4 s to load, pypinyin's documented PYPINYIN_NO_PHRASES
    switch skips it) only segments runs of characters: it has no one-character entries, and
    all 41,923 characters read the same with or without it.
    """
    os.environ.setdefault("PYPINYIN_NO_PHRASES", "1")
    from pypinyin import Style, lazy_pinyin  # lazily: read only when names are staged

    readings = lazy_pinyin(char, style=Style.NORMAL, errors="ignore", v_to_u=False)
    return _letters(readings[0]) if readings else ""


def _letters(text: str) -> str:
    return _NOT_LETTER.sub("", text.lower())


def _bigrams(pinyin: str) -> tuple[str, ...]:
    """Unique letter bigrams of the pinyin, sorted; a one-letter name is its own token."""
    if not pinyin:
        return ()
    if len(pinyin) == 1:
        return (pinyin,)
    return tuple(sorted({pinyin[i : i + 2] for i in range(len(pinyin) - 1)}))


def _encode_bigrams(bigrams: pd.Series, key: bytes) -> pd.Series:
    """Per row: the sorted unique truncated HMACs of its bigrams, space-joined (<NA> if none)."""
    tokens = bigrams.explode()
    hashed = pseudonymise(tokens.astype("string"), key, "name-bigram").str[:BIGRAM_HEX_CHARS]
    joined = hashed.dropna().groupby(level=0).agg(lambda h: " ".join(sorted(set(h))))
    return joined.reindex(bigrams.index).astype("string")
