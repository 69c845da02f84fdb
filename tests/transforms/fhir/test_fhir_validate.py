"""The element cache must accept and reject exactly what plain R4B `model_validate` does."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from transforms.fhir import mapper
from transforms.fhir.common import RowError
from transforms.fhir.validate import PROBE, ElementCache, complex_fields, import_models


def _lab(**changes: object) -> dict:
    resource = {
        "resourceType": "Observation",
        "id": "a1",
        "meta": {"source": "urn:walnut:east_liver:b1:h1"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1834-1"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:00:00+00:00",
        "valueQuantity": {
            "value": 12.5,
            "unit": "ng/mL",
            "system": "http://unitsofmeasure.org",
            "code": "ng/mL",
        },
    }
    resource.update(changes)
    return resource


BROKEN = {
    "bad id": _lab(id="has space"),
    "bad child code": _lab(code={"coding": [{"system": "not a uri", "code": " x"}]}),
    "null in a complex list": _lab(category=[None]),
    "unknown child field": _lab(subject={"reference": "Patient/p1", "colour": "red"}),
    "text value in a quantity": _lab(valueQuantity={"value": "twelve"}),
    "two value[x]": _lab(valueString="12"),
    "missing status": {k: v for k, v in _lab().items() if k != "status"},
    "child not an object": _lab(code="1834-1"),
    "bad date": _lab(effectiveDateTime="2024-13-45"),
}


def _plain_error(resource: dict) -> str | None:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return "invalid"
    return None


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_resources_fail_with_the_plain_models_error(case: str) -> None:
    cache = ElementCache()
    cache.validate(_lab())  # warm: every valid child of the good resource is cached
    assert _plain_error(BROKEN[case]) == "invalid"
    with pytest.raises(RowError) as cached:
        cache.validate(copy.deepcopy(BROKEN[case]))
    with pytest.raises(RowError) as cold:
        ElementCache().validate(copy.deepcopy(BROKEN[case]))
    assert str(cached.value) == str(cold.value)
    assert str(cached.value).startswith("Observation")


def test_error_names_the_element_not_the_value() -> None:
    with pytest.raises(RowError) as error:
        ElementCache().validate(_lab(valueQuantity={"value": "twelve"}))
    assert str(error.value) == "Observation.valueQuantity.value: value_error"
    assert "twelve" not in str(error.value)


def test_identical_children_are_validated_once() -> None:
    cache = ElementCache()
    cache.validate(_lab())
    first = len(cache)
    for n in range(50):
        cache.validate(_lab(id=f"a{n}", meta={"source": f"urn:walnut:east_liver:b2:h{n}"}))
    # only the 50 new meta elements are new; code, category, subject, quantity are reused
    assert len(cache) == first + 50


def test_elements_that_never_repeat_stop_being_cached() -> None:
    """Every resource's meta names its own source row: after PROBE lookups without hits Meta
    is no longer cached (its entries are dropped), while the repeating children stay cached,
    and broken resources still fail with the plain model's error."""
    cache = ElementCache()
    for n in range(PROBE + 10):
        cache.validate(_lab(id=f"a{n}", meta={"source": f"urn:walnut:east_liver:b2:h{n}"}))
    # code, its coding, category, its coding, subject, quantity: one entry each, no Meta
    assert len(cache) == 6
    with pytest.raises(RowError) as caught:
        cache.validate(_lab(meta={"source": "not a uri at all ", "versionId": " "}))
    assert caught.value.args[0].startswith("Observation.meta")
    for case in sorted(BROKEN):
        with pytest.raises(RowError) as cached:
            cache.validate(copy.deepcopy(BROKEN[case]))
        with pytest.raises(RowError) as fresh:
            ElementCache().validate(copy.deepcopy(BROKEN[case]))
        assert str(cached.value) == str(fresh.value)


def test_cache_stays_bounded() -> None:
    cache = ElementCache(max_elements=5)
    for n in range(40):
        cache.validate(_lab(valueQuantity={"value": n}, meta={"source": f"urn:x:{n}"}))
    assert len(cache) <= 5


def test_a_valid_resource_passes_and_an_unknown_type_is_a_row_error() -> None:
    ElementCache().validate(_lab())
    with pytest.raises(RowError, match="unknown resource type"):
        ElementCache().validate({"resourceType": "NoSuchThing", "id": "x"})


def test_contained_resources_are_not_cached_as_abstract_resources() -> None:
    fields = complex_fields(get_fhir_model_class("Observation"))
    assert "contained" not in fields
    assert fields["code"].__name__ == "CodeableConcept"
    assert fields["valueQuantity"].__name__ == "Quantity"


def test_import_models_holds_every_element_class_a_resource_can_carry() -> None:
    models = import_models(["Observation"])
    names = {model.__resource_type__ for model in models}
    assert {"Observation", "CodeableConcept", "Coding", "Quantity", "Reference", "Meta"} <= names
    assert all(set(complex_fields(model).values()) <= models for model in models)


def test_resource_types_name_every_type_the_builders_create() -> None:
    """The sync imports the models of RESOURCE_TYPES before forking; a builder's new type
    missing there would only cost time, so this keeps the list complete."""
    sources = Path(mapper.__file__).parent.glob("*.py")
    created = {
        match
        for path in sources
        for match in re.findall(r'new_resource\(\s*"(\w+)"', path.read_text(encoding="utf-8"))
    }
    assert created == set(mapper.RESOURCE_TYPES)
