"""Validate resources with their fhir.resources R4B models, each distinct element only once.

Validation by the R4B models is a pure function of an element's type and content, and a
night's resources repeat most of their elements: the same LOINC `code`, the same `category`,
the same patient `subject` on hundreds of labs. `ElementCache` validates every complex element
the first time its exact content is seen and hands the validated model instance to pydantic
afterwards, which accepts an instance of the field's model class as already valid. Each
resource is still validated by its model (its own fields, choice types, required elements and
list rules run every time); only an identical child element is not validated twice.

On any failure the whole resource is validated again without the cache, so the error (and the
quarantine reason built from it) is exactly what plain `model_validate` reports.
"""

from __future__ import annotations

import typing
from collections import Counter
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from transforms.fhir import null_check
from transforms.fhir.common import RowError

# Distinct elements kept per process; the cache is emptied when full, so memory stays flat.
# An element costs ~6 KB (key and validated instances): 10k of them ~60 MB per mapping worker,
# which lives for a whole batch. The elements that repeat return after a flush. At ~1M rows
# 20k held the workers' peak at 411 instead of 366-377 MB, mapping no faster (103.5 CPU-s
# against 101.8-105.1).
MAX_ELEMENTS = 10_000
# Lookups of one element class before it is judged worth caching (see ElementCache).
PROBE = 1_000
_ABSTRACT = {"Resource", "DomainResource"}

null_check.install()


@cache
def model_of(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


@cache
def complex_fields(model: type) -> dict[str, type]:
    """JSON key -> model class of every field of `model` that holds a complex FHIR element.

    Abstract `Resource` fields (`contained`) are left out: their content decides the class.
    """
    fields: dict[str, type] = {}
    for name, info in model.model_fields.items():
        klass = _element_class(info.annotation)
        if klass is not None and klass.__resource_type__ not in _ABSTRACT:
            fields[info.alias or name] = klass
    return fields


def import_models(resource_types: Iterable[str]) -> set[type]:
    """The model classes of these resource types and of every complex element they can hold,
    imported now: fhir.resources creates each class on first use, which cost every freshly
    forked sync process ~0.2 s for Walnut's 66 classes (0.12 s once, before forking)."""
    models: set[type] = set()
    stack = [model_of(resource_type) for resource_type in resource_types]
    while stack:
        model = stack.pop()
        if model not in models:
            models.add(model)
            stack.extend(complex_fields(model).values())
    return models


def _element_class(annotation: Any) -> type | None:
    """The FHIR model class behind a field annotation such as `Optional[List[CodingType]]`."""
    stack = [annotation]
    while stack:
        candidate = stack.pop()
        get_klass = getattr(candidate, "get_model_klass", None)
        if isinstance(candidate, type) and get_klass is not None:
            return get_klass()
        stack.extend(typing.get_args(candidate))
    return None


class ElementCache:
    """Validated element instances keyed by (model class, canonical JSON of the content).

    A class whose elements do not repeat is not cached: after `PROBE` lookups with fewer than
    one hit in ten (every resource's `meta` is its own: it names the source row), its elements
    are left inside the dict for the parent's validation, as plain validation does. Caching
    them would only fill the cache (and memory) and flush the elements that do repeat.
    """

    def __init__(self, max_elements: int = MAX_ELEMENTS) -> None:
        self.max_elements = max_elements
        self._elements: dict[tuple[type, bytes], Any] = {}
        self._lookups: Counter[type] = Counter()
        self._hits: Counter[type] = Counter()
        self._uncached: set[type] = set()

    def __len__(self) -> int:
        return len(self._elements)

    def validate(self, resource: dict[str, Any]) -> None:
        """Validate one resource; RowError names the first failing element, never a value."""
        resource_type = resource.get("resourceType")
        try:
            model = model_of(resource_type)
        except (KeyError, ValueError, TypeError):
            raise RowError(f"{resource_type}: unknown resource type") from None
        try:
            model.model_validate(self._with_validated_children(model, resource))
        except (ValidationError, TypeError, ValueError):
            _validate_uncached(model, resource)

    def _element(self, klass: type, content: dict[str, Any]) -> Any:
        key = (klass, orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
        self._lookups[klass] += 1
        element = self._elements.get(key)
        if element is not None:
            self._hits[klass] += 1
            return element
        element = klass.model_validate(self._with_validated_children(klass, content))
        if self._lookups[klass] >= PROBE and self._hits[klass] * 10 < self._lookups[klass]:
            self._uncached.add(klass)
            self._elements = {k: v for k, v in self._elements.items() if k[0] is not klass}
            return element
        if len(self._elements) >= self.max_elements:
            self._elements.clear()
        self._elements[key] = element
        return element

    def _with_validated_children(self, klass: type, content: dict[str, Any]) -> dict[str, Any]:
        """`content` with each complex child (or list of them) replaced by a validated instance."""
        fields = complex_fields(klass)
        replaced: dict[str, Any] | None = None
        for key, value in content.items():
            child = fields.get(key)
            if child is None or child in self._uncached:
                continue
            if isinstance(value, dict):
                new: Any = self._element(child, value)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                new = [self._element(child, v) for v in value]
            else:
                continue  # not an element: the parent's validation reports it as before
            if replaced is None:
                replaced = dict(content)
            replaced[key] = new
        return content if replaced is None else replaced


def _validate_uncached(model: Any, resource: dict[str, Any]) -> None:
    """Plain model validation; pydantic messages can quote input, so only location and type."""
    resource_type = resource["resourceType"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        raise RowError(f"{resource_type}.{_element_path(first['loc'])}: {first['type']}") from None
    except (TypeError, ValueError) as exc:
        raise RowError(f"{resource_type}: invalid ({type(exc).__name__})") from None


def _element_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(resource)"
