"""The fast path in front of fhir_core's null check must answer exactly as the check does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from transforms.fhir import null_check
from transforms.fhir.mapper import RESOURCE_TYPES
from transforms.fhir.validate import complex_fields, import_models

ROOT = Path(__file__).resolve().parents[3]
CODING = {"system": "http://loinc.org", "code": "718-7"}


def _outcome(check: Any, cls: type, data: Any) -> tuple[str, Any]:
    try:
        returned = check(cls, data)
    except ValidationError as exc:
        return "error", exc.errors(include_url=False)
    return "returned", returned is data


def _original() -> Any:
    assert null_check.install()
    return null_check.check_function().__defaults__[0]


def _fast() -> Any:
    return null_check.check_function()


def _elements(cls: type, data: dict[str, Any]) -> Iterator[tuple[type, dict[str, Any]]]:
    """`data` and every nested complex element, each with its model class."""
    yield cls, data
    fields = complex_fields(cls)
    for key, value in data.items():
        child = fields.get(key)
        if child is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                yield from _elements(child, item)


def _with_nulls(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Copies of `data` with a None added to one of its lists (complex or primitive)."""
    for key, value in data.items():
        if isinstance(value, list):
            yield {**data, key: [*value, None]}
            yield {**data, key: [None]}


def _assert_same(cls: type, data: dict[str, Any]) -> None:
    assert _outcome(_fast(), cls, data) == _outcome(_original(), cls, data), cls.__name__


def test_installed_on_the_locked_version() -> None:
    assert version("fhir-core") in null_check.VERIFIED
    assert null_check.install() is True
    assert null_check.install() is True  # once per process: a second call changes nothing
    original = _original()
    assert original.__code__ is not _fast().__code__
    assert original.__defaults__ is None


def test_same_answers_for_walnut_shaped_elements_with_and_without_nulls() -> None:
    cls = get_fhir_model_class("Observation")
    lab = {
        "resourceType": "Observation",
        "id": "a1",
        "meta": {"source": "urn:walnut:east_liver:b1:h1", "profile": ["http://x/y"]},
        "status": "final",
        "category": [{"coding": [CODING]}],
        "code": {"coding": [CODING], "text": "Hb"},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 12.5, "unit": "g/dL"},
        "interpretation": [],
    }
    cases = 0
    for klass, element in _elements(cls, lab):
        for data in (element, *_with_nulls(element)):
            _assert_same(klass, data)
            cases += 1
    assert cases >= 18
    # a None in a complex list is the library's error; in a primitive list it stays allowed
    assert _outcome(_fast(), cls, {**lab, "category": [None]})[0] == "error"
    meta = get_fhir_model_class("Meta")
    assert _outcome(_fast(), meta, {"profile": ["http://x/y", None]}) == ("returned", True)
    # not a dict (a validated instance, a string): handed on untouched, as before
    assert _outcome(_fast(), cls, "text") == _outcome(_original(), cls, "text")


def test_every_model_class_answers_the_same_for_a_null_in_each_list_field() -> None:
    checked = 0
    for cls in sorted(import_models(RESOURCE_TYPES), key=lambda c: c.__name__):
        for name, info in cls.model_fields.items():
            for key in {name, info.alias or name}:
                _assert_same(cls, {key: [None]})
                _assert_same(cls, {key: [{}, None]})
                _assert_same(cls, {key: None})
                checked += 1
    assert checked > 500


def test_same_answers_on_synthea_resources(shared_data: Path) -> None:
    folder = shared_data / "synthea" / "bulk-10-patients"
    checked = 0
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_bytes().splitlines()[:200]:
            resource = orjson.loads(line)
            try:
                cls = get_fhir_model_class(resource["resourceType"])
            except (KeyError, ValueError):
                continue
            for klass, element in _elements(cls, resource):
                _assert_same(klass, element)
                for data in _with_nulls(element):
                    _assert_same(klass, data)
                checked += 1
    assert checked > 5000


BROKEN = [
    {"resourceType": "Observation", "status": "final", "code": {"coding": [None]}},
    {"resourceType": "Observation", "status": "final", "code": {}, "category": [None, None]},
    {"resourceType": "Patient", "name": [{"given": ["A", None]}], "telecom": [None]},
    {"resourceType": "Patient", "name": [{"given": ["A", None]}]},
    {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "stage": [None]},
]


ERRORS_OF = """
import json, sys
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

out = []
for resource in json.loads(sys.argv[1]):
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError as exc:
        out.append(exc.errors(include_url=False, include_input=False, include_context=False))
    else:
        out.append(None)
print(json.dumps(out, default=str))
"""


def _errors_of(resources: list[dict[str, Any]], *, fast: bool) -> list[Any]:
    """Each resource's validation errors (None: valid), in a fresh interpreter."""
    script = ("import transforms.fhir.validate\n" if fast else "") + ERRORS_OF
    done = subprocess.run(  # noqa: S603 - our interpreter, a fixed script
        [sys.executable, "-c", script, json.dumps(resources)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_models_report_the_same_errors_as_without_the_fast_path() -> None:
    """Whole validation, with the fast path (installed by importing the validator) and without."""
    ours = _errors_of(BROKEN, fast=True)
    assert ours == _errors_of(BROKEN, fast=False)
    assert ours[3] is None  # a null in a primitive list is allowed
    assert all(errors for i, errors in enumerate(ours) if i != 3)


def test_an_unverified_version_runs_as_shipped() -> None:
    script = (
        "import transforms.fhir.null_check as n\n"
        "n.version = lambda name: '0.0.1'\n"
        "code = n.check_function().__code__\n"
        "assert n.install() is False\n"
        "assert n.check_function().__code__ is code\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)  # noqa: S603
