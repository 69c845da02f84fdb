"""Structural checks of a ViewDefinition (keys, names, unionAll shape) before compiling."""

from __future__ import annotations

import re
from collections.abc import Mapping

from warehouse.viewdef.errors import ViewDefinitionError

# https://sql-on-fhir.org/ig/latest/StructureDefinition-ViewDefinition.html
VIEW_KEYS = {
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "url",
    "identifier",
    "name",
    "title",
    "version",
    "experimental",
    "status",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "copyright",
    "resource",
    "resourceVersion",
    "fhirVersion",
    "profile",
    "constant",
    "select",
    "where",
}
SELECT_KEYS = {
    "id",
    "extension",
    "modifierExtension",
    "column",
    "select",
    "forEach",
    "forEachOrNull",
    "repeat",
    "unionAll",
}
COLUMN_KEYS = {
    "id",
    "extension",
    "modifierExtension",
    "name",
    "path",
    "description",
    "collection",
    "type",
    "tag",
}
CONSTANT_KEYS = {"id", "extension", "modifierExtension", "name"}
WHERE_KEYS = {"id", "extension", "modifierExtension", "path", "description"}
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ITERATORS = ("forEach", "forEachOrNull", "repeat")


def view_label(view: object) -> str:
    """A short name for error messages: the view's name, else its resource type."""
    if isinstance(view, Mapping):
        return str(view.get("name") or view.get("resource") or "<unnamed>")
    return "<not an object>"


def _check_keys(obj: object, allowed: set[str], where: str, label: str) -> Mapping:
    if not isinstance(obj, Mapping):
        raise ViewDefinitionError(f"view {label}: {where} must be an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ViewDefinitionError(f"view {label}: unknown key(s) {unknown} in {where}")
    return obj


def _check_list(value: object, where: str, label: str, required: bool = False) -> list:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ViewDefinitionError(f"view {label}: {where} must be a non-empty list")
    return value


def check_view(view: object) -> list[str]:
    """Validate `view`; return its output column names in declared order."""
    label = view_label(view)
    view = _check_keys(view, VIEW_KEYS, "ViewDefinition", label)
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ViewDefinitionError(f"view {label}: 'resource' (a FHIR resource type) is required")
    for i, constant in enumerate(_check_list(view.get("constant"), "constant", label)):
        where = f"constant[{i}]"
        if not isinstance(constant, Mapping):
            raise ViewDefinitionError(f"view {label}: {where} must be an object")
        values = [k for k in constant if k.startswith("value")]
        _check_keys(
            {k: v for k, v in constant.items() if k not in values}, CONSTANT_KEYS, where, label
        )
        if not NAME_PATTERN.match(str(constant.get("name", ""))):
            raise ViewDefinitionError(f"view {label}: {where} needs a valid 'name'")
        if len(values) != 1:
            raise ViewDefinitionError(f"view {label}: {where} needs exactly one value[x]")
    for i, clause in enumerate(_check_list(view.get("where"), "where", label)):
        clause = _check_keys(clause, WHERE_KEYS, f"where[{i}]", label)
        if not isinstance(clause.get("path"), str):
            raise ViewDefinitionError(f"view {label}: where[{i}].path must be a string")
    selects = _check_list(view.get("select"), "select", label, required=True)
    columns: list[str] = []
    for i, select in enumerate(selects):
        columns += select_columns(select, f"select[{i}]", label)
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ViewDefinitionError(f"view {label}: duplicate column name(s) {duplicates}")
    return columns


def select_columns(select: object, where: str, label: str) -> list[str]:
    """Validate one select node; return the columns it produces, in order."""
    select = _check_keys(select, SELECT_KEYS, where, label)
    iterators = [k for k in ITERATORS if k in select]
    if len(iterators) > 1:
        raise ViewDefinitionError(f"view {label}: {where} has more than one of {iterators}")
    for key in iterators:
        value = select[key]
        ok = (
            isinstance(value, str)
            if key != "repeat"
            else (isinstance(value, list) and value and all(isinstance(p, str) for p in value))
        )
        if not ok:
            raise ViewDefinitionError(f"view {label}: {where}.{key} has the wrong type")
    names: list[str] = []
    for i, column in enumerate(_check_list(select.get("column"), f"{where}.column", label)):
        column = _check_keys(column, COLUMN_KEYS, f"{where}.column[{i}]", label)
        name = column.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ViewDefinitionError(
                f"view {label}: {where}.column[{i}] name must match {NAME_PATTERN.pattern}"
            )
        if not isinstance(column.get("path"), str):
            raise ViewDefinitionError(f"view {label}: {where}.column[{i}].path must be a string")
        if "collection" in column and not isinstance(column["collection"], bool):
            raise ViewDefinitionError(f"view {label}: {where}.column[{i}].collection not bool")
        names.append(name)
    for i, child in enumerate(_check_list(select.get("select"), f"{where}.select", label)):
        names += select_columns(child, f"{where}.select[{i}]", label)
    branches = _check_list(select.get("unionAll"), f"{where}.unionAll", label)
    if branches:
        shapes = [
            select_columns(b, f"{where}.unionAll[{i}]", label) for i, b in enumerate(branches)
        ]
        if any(shape != shapes[0] for shape in shapes):
            raise ViewDefinitionError(
                f"view {label}: {where}.unionAll branches must have the same columns in the "
                f"same order, got {shapes}"
            )
        names += shapes[0]
    return names
