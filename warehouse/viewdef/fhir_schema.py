"""FHIR R4 element cardinality and types, read from fhir.resources.R4B models, for path compiling.

Knowing whether `name` is an array lets a path like `name.family` compile to one native DuckDB
JSONPath (`$.name[*].family`) instead of a per-element type check. Unknown types or elements
return None and the compiler falls back to a dynamic (slower, schema-free) step.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from functools import cache

log = logging.getLogger(__name__)

_PRIMITIVE_PY = {bool: "boolean", int: "integer", str: "string", float: "decimal"}


@dataclass(frozen=True)
class Element:
    """One element of a FHIR type: JSON key, whether it is an array, and its FHIR type name."""

    is_list: bool
    fhir_type: str | None


def _type_name(annotation: object) -> tuple[bool, str | None]:
    """Unwrap Optional/List/Annotated into (is_list, FHIR type name)."""
    is_list = False
    current = annotation
    for _ in range(6):
        origin = typing.get_origin(current)
        args = [a for a in typing.get_args(current) if a is not type(None)]
        if origin is typing.Annotated:
            meta = current.__metadata__[0]  # type: ignore[attr-defined]
            name = type(meta).__name__
            return is_list, name[:1].lower() + name[1:]
        if origin in (list, typing.List):  # noqa: UP006
            is_list = True
            current = args[0]
            continue
        if origin is not None and args:
            current = args[0]
            continue
        break
    if current in _PRIMITIVE_PY:
        return is_list, _PRIMITIVE_PY[current]  # type: ignore[index]
    name = getattr(current, "__name__", "")
    if name.endswith("Type") and name != "ResourceType":
        return is_list, name[: -len("Type")]
    return is_list, None


@cache
def _model_elements(fhir_type: str) -> dict[str, Element] | None:
    """Map JSON key -> Element for a FHIR complex type or resource, or None if unknown."""
    if not fhir_type or not fhir_type[0].isupper():
        return None
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(fhir_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        log.debug("no R4B model for type %s", fhir_type)
        return None
    elements: dict[str, Element] = {}
    for field in model.model_fields.values():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("element_property"):
            continue
        is_list, name = _type_name(field.annotation)
        elements[field.alias or ""] = Element(is_list=is_list, fhir_type=name)
    return elements


@cache
def _choice_keys(fhir_type: str, base: str) -> tuple[str, ...]:
    """JSON keys of a choice element (`value` -> valueQuantity, valueString, ...)."""
    from fhir.resources.R4B import get_fhir_model_class

    model = get_fhir_model_class(fhir_type)
    keys = []
    for field in model.model_fields.values():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("one_of_many") == base:
            keys.append(field.alias or "")
    return tuple(keys)


def find_element(fhir_type: str | None, key: str) -> Element | None:
    """Return the element `key` of `fhir_type`, or None when the type or element is unknown."""
    if fhir_type is None:
        return None
    elements = _model_elements(fhir_type)
    if elements is None:
        return None
    return elements.get(key)


def find_choice_keys(fhir_type: str | None, base: str) -> tuple[str, ...]:
    """Return the JSON keys of choice element `base` (empty when not a choice or type unknown)."""
    if fhir_type is None or _model_elements(fhir_type) is None:
        return ()
    return _choice_keys(fhir_type, base)
