"""Deterministic FHIR resource ids from pseudonymous natural keys."""

from __future__ import annotations

import hashlib

# Unit separator: cannot occur in codes, dates or pseudonyms, so ("a", "bc") != ("ab", "c").
_SEPARATOR = "\x1f"


def fhir_id(resource_type: str, *parts: str) -> str:
    """Id for the resource of `resource_type` identified by the natural key `parts`.

    The first 32 hex chars of sha256 over the type and the key: a valid FHIR id
    (`[A-Za-z0-9\\-\\.]{1,64}`) that is the same on every rerun, so loads can upsert by id.
    Inputs are pseudonyms and codes, never direct identifiers.
    """
    text = _SEPARATOR.join((resource_type, *(str(part) for part in parts)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
