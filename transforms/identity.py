"""Resident ID checks, keyed pseudonyms and row hashes: the only place identifiers are handled."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping
from datetime import date

import numpy as np
import pandas as pd

from transforms.encoding import normalise_nfkc
from transforms.errors import PseudonymKeyMissing

log = logging.getLogger(__name__)

PSEUDONYM_KEY_ENV = "WALNUT_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 32
# Public by design: written here so `make demo` runs on synthetic data without setup. Anything
# hashed with it can be re-identified by anyone with this repository, so never use it on real data.
DEMO_PSEUDONYM_KEY = b"walnut-demo-pseudonym-key-PUBLIC-synthetic-data-only"

NAMESPACE_SEPARATOR = "\x1f"
RESIDENT_ID_LENGTH = 18
# GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits.
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK_CHARS = np.frombuffer(b"10X98765432", dtype=np.uint8)
_ID_PATTERN = r"^[0-9]{17}[0-9X]$"  # not \d: Python's \d also matches non-ASCII digits
_EARLIEST_BIRTH = np.datetime64("1900-01-01", "D")

# Row hash fields: backslash and the separator are escaped, so a field never contains a bare
# separator and `\N` (missing) cannot be produced by escaping a real value.
_FIELD_SEPARATOR = "\x1f"
_MISSING_FIELD = "\\N"


def normalise_resident_id(values: pd.Series) -> pd.Series:
    """NFKC-fold (full-width to ASCII), drop whitespace, upper-case; blank becomes <NA>."""
    # NFKC turns full-width and no-break spaces into " ", so a literal replace is enough inside.
    text = normalise_nfkc(values).str.strip()
    text = text.str.replace(" ", "", regex=False).str.upper()
    return text.mask(text.eq(""))


def resident_id_valid(values: pd.Series) -> pd.Series:
    """Nullable boolean per row: True when the resident ID is well formed; <NA> when blank.

    Well formed: 18 characters, 17 digits then a digit or X, the ISO 7064 MOD 11-2 check
    character matches, and the embedded birth date (characters 7-14, YYYYMMDD) is a real date
    between 1900-01-01 and today. Values are normalised first (full-width digits, lower-case x).
    """
    ids = normalise_resident_id(values)
    blank = ids.isna().to_numpy()
    valid = np.zeros(len(ids), dtype=bool)
    shaped = ids.str.fullmatch(_ID_PATTERN).fillna(False).to_numpy(dtype=bool)
    if shaped.any():
        # The well-formed IDs are pure ASCII, so one joined buffer is an (n, 18) byte matrix.
        raw = "".join(ids[shaped].tolist()).encode("ascii")
        chars = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RESIDENT_ID_LENGTH)
        digits = chars[:, :17].astype(np.int64) - ord("0")
        check_ok = _ID_CHECK_CHARS[(digits @ _ID_WEIGHTS) % 11] == chars[:, 17]
        valid[shaped] = check_ok & _birth_date_plausible(digits)
    flags = pd.arrays.BooleanArray(valid, blank)
    return pd.Series(flags, index=values.index, name=values.name)


def _birth_date_plausible(digits: np.ndarray) -> np.ndarray:
    """Digits 7-14 (YYYYMMDD) form a real date between 1900-01-01 and today, per ID row."""
    year = digits[:, 6:10] @ np.array([1000, 100, 10, 1])
    month = digits[:, 10:12] @ np.array([10, 1])
    day = digits[:, 12:14] @ np.array([10, 1])
    month_ok = (month >= 1) & (month <= 12)
    first = ((year - 1970) * 12 + np.where(month_ok, month, 1) - 1).astype("datetime64[M]")
    month_days = ((first + 1).astype("datetime64[D]") - first.astype("datetime64[D]")).astype(int)
    day_ok = (day >= 1) & (day <= month_days)
    born = first.astype("datetime64[D]") + np.where(day_ok, day, 1) - 1
    in_range = (born >= _EARLIEST_BIRTH) & (born <= np.datetime64(date.today(), "D"))
    return month_ok & day_ok & in_range


def pseudonymise(values: pd.Series, key: bytes, namespace: str) -> pd.Series:
    """HMAC-SHA256(key, namespace + US + value) as hex, per row; <NA> stays <NA>.

    Deterministic for a given key and namespace, so reruns and sites agree. Namespaces:
    `person` for the normalised resident ID (site independent), `mrn:<hospital>` for MRNs.
    Each distinct value is hashed once.
    """
    _check_key(key)
    if not namespace:
        raise ValueError("pseudonymise needs a namespace such as 'person' or 'mrn:<hospital>'")
    codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
    hash_hex = _keyed_hasher(key, namespace + NAMESPACE_SEPARATOR)
    digests = [hash_hex(value) for value in uniques]
    lookup = np.array([*digests, pd.NA], dtype=object)
    return pd.Series(lookup[codes], index=values.index, dtype="string", name=values.name)


def row_hashes(frame: pd.DataFrame, key: bytes, salt: str) -> pd.Series:
    """Keyed hash (HMAC-SHA256 hex) of each row's raw values, in column order.

    Fields are escaped and joined with a separator so different rows never share an input;
    missing and empty values hash differently. `salt` (e.g. hospital and table) is prefixed so
    equal rows in different tables do not collide. The same raw row always gives the same hash.
    """
    _check_key(key)
    fields = [_field_texts(frame.iloc[:, i]) for i in range(len(frame.columns))]
    if fields:
        joined = [_FIELD_SEPARATOR.join(row) for row in zip(*fields, strict=True)]
    else:
        joined = [""] * len(frame)
    hash_hex = _keyed_hasher(key, salt + _FIELD_SEPARATOR)
    digests: dict[str, str] = {}
    for row in joined:
        if row not in digests:
            digests[row] = hash_hex(row)
    return pd.Series([digests[row] for row in joined], index=frame.index, dtype="string")


def _field_texts(column: pd.Series) -> list[str]:
    """`_escape_field` as a list, in one Python pass when the column holds only text or nulls.

    Raw frames are text, and pandas string methods cost more per value than this loop; any
    other value type takes the pandas path, so a value always gives the same text.
    """
    values = column.tolist()
    out: list[str] = []
    append = out.append
    for value in values:
        if type(value) is str:
            if "\\" in value:
                value = value.replace("\\", "\\\\")
            if _FIELD_SEPARATOR in value:
                value = value.replace(_FIELD_SEPARATOR, "\\x1f")
            append(value)
        elif value is None or value is pd.NA or (type(value) is float and value != value):
            append(_MISSING_FIELD)
        else:
            return _escape_field(column).tolist()
    return out


def load_pseudonym_key(
    environ: Mapping[str, str] = os.environ, *, allow_demo: bool = False
) -> bytes:
    """The pseudonymisation key from WALNUT_PSEUDONYM_KEY (at least 32 characters).

    With allow_demo (only `make demo`), a missing key falls back to the public
    DEMO_PSEUDONYM_KEY. A set but too short key is always an error, never silently replaced.
    """
    raw = environ.get(PSEUDONYM_KEY_ENV)
    if raw is None or raw == "":
        if allow_demo:
            log.warning(
                "%s is not set: using the public demo key (synthetic data only)", PSEUDONYM_KEY_ENV
            )
            return DEMO_PSEUDONYM_KEY
        raise PseudonymKeyMissing(
            f"{PSEUDONYM_KEY_ENV} is not set. Set it to a secret of at least {MIN_KEY_LENGTH} "
            'characters shared by all sites (e.g. `python -c "import secrets; '
            'print(secrets.token_hex(32))"`), from a secret store or Airflow connection, '
            "never from the repository."
        )
    if len(raw) < MIN_KEY_LENGTH:
        raise PseudonymKeyMissing(
            f"{PSEUDONYM_KEY_ENV} is set but has {len(raw)} characters; it needs at least "
            f"{MIN_KEY_LENGTH}. Replace it with a longer secret (changing the key changes "
            "every pseudonym)."
        )
    return raw.encode("utf-8")


def _check_key(key: bytes) -> None:
    """Refuse an empty or non-bytes key: it would give guessable pseudonyms."""
    if not isinstance(key, bytes) or not key:
        raise PseudonymKeyMissing(
            "pseudonymisation key is empty or not bytes; pass load_pseudonym_key()"
        )


def _keyed_hasher(key: bytes, prefix: str) -> Callable[[str], str]:
    """A function giving HMAC-SHA256(key, prefix + message) as hex.

    The stdlib HMAC is keyed and fed the prefix once, then copied per message (cheaper than
    re-keying per value). Lone surrogates (undecodable source bytes) are encoded as-is so
    those rows still get a stable hash.
    """
    keyed = hmac.new(key, prefix.encode("utf-8", errors="surrogatepass"), hashlib.sha256)

    def hash_hex(message: str) -> str:
        state = keyed.copy()
        state.update(message.encode("utf-8", errors="surrogatepass"))
        return state.hexdigest()

    return hash_hex


def _escape_field(column: pd.Series) -> pd.Series:
    """Column as escaped text, with missing values as the `\\N` marker.

    Python-backed strings, because Arrow strings reject the lone surrogates that undecodable
    bytes become (decode_lines_report), and exactly those rows need a hash for quarantine.
    """
    text = column.astype(pd.StringDtype("python"))
    # Escaping is rarely needed; checking first skips two passes over every value.
    if text.str.contains("\\", regex=False).any():
        text = text.str.replace("\\", "\\\\", regex=False)
    if text.str.contains(_FIELD_SEPARATOR, regex=False).any():
        text = text.str.replace(_FIELD_SEPARATOR, "\\x1f", regex=False)
    return text.fillna(_MISSING_FIELD)
