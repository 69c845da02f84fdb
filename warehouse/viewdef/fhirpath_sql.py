"""Compile a FHIRPath AST into a DuckDB SQL expression over JSON resources (set-based, no UDFs).

A compiled expression is an `Expr`: SQL text plus what it holds. Collections are DuckDB LISTs;
singletons are plain values where NULL means "empty". Member chains whose cardinality the
R4 schema knows stay as pending JSONPath segments, so `code.coding.code` becomes one native
`json_extract(r, '$.code.coding[*].code')` call.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from warehouse.viewdef.errors import ViewDefinitionError
from warehouse.viewdef.fhir_schema import find_choice_keys, find_element

JSON = "JSON"
NUMERIC = ("BIGINT", "DOUBLE")
_STRINGY = {
    "string",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
    "markdown",
    "base64Binary",
    "date",
    "dateTime",
    "instant",
    "time",
    "xhtml",
}
_FHIR_TO_SQL = {
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "positiveInt": "BIGINT",
    "unsignedInt": "BIGINT",
    "integer64": "BIGINT",
    "decimal": "DOUBLE",
}
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sql_string(text: str) -> str:
    """Quote `text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Expr:
    """A compiled FHIRPath value: SQL, element kind (JSON or a DuckDB type) and cardinality."""

    sql: str
    kind: str = JSON
    many: bool = False
    fhir_type: str | None = None
    segs: tuple[str, ...] = ()
    literal: object = None


@dataclass
class Scope:
    """What a FHIRPath expression is evaluated against: focus, resource, constants, %rowIndex."""

    focus: Expr
    resource: Expr
    constants: dict[str, Expr]
    row_index: str
    label: str
    names: Iterator[int] = field(default_factory=itertools.count)

    def with_focus(self, focus: Expr, row_index: str | None = None) -> Scope:
        return Scope(
            focus,
            self.resource,
            self.constants,
            self.row_index if row_index is None else row_index,
            self.label,
            self.names,
        )

    def new_var(self, prefix: str = "q") -> str:
        return f"_{prefix}{next(self.names)}"

    def error_sql(self, message: str) -> str:
        return f"error({sql_string(f'ViewDefinitionError: view {self.label}: {message}')})"

    def fail(self, message: str) -> ViewDefinitionError:
        return ViewDefinitionError(f"view {self.label}: {message}")


def natural_type(expr: Expr) -> str:
    """The DuckDB type a value naturally maps to (JSON when the FHIR type is complex/unknown)."""
    if expr.kind != JSON:
        return expr.kind
    if expr.fhir_type in _FHIR_TO_SQL:
        return _FHIR_TO_SQL[expr.fhir_type]
    if expr.fhir_type in _STRINGY:
        return "VARCHAR"
    return JSON


def _json_path(segs: tuple[str, ...]) -> str:
    return sql_string("$" + "".join(segs))


def materialize(expr: Expr) -> Expr:
    """Apply pending JSONPath segments, giving a JSON value or JSON[] list."""
    if not expr.segs:
        return expr
    sql = f"json_extract({expr.sql}, {_json_path(expr.segs)})"
    return Expr(sql, JSON, "[*]" in expr.segs, expr.fhir_type)


def as_list(expr: Expr, scope: Scope) -> str:
    """SQL of a LIST holding the collection (NULL singletons become an empty list)."""
    expr = materialize(expr)
    if expr.many:
        return expr.sql
    var = scope.new_var()
    return f"list_filter([{expr.sql}], lambda {var}: {var} IS NOT NULL)"


def as_one(expr: Expr, scope: Scope, what: str) -> Expr:
    """A singleton (NULL when empty); raises at run time when the collection holds several."""
    expr = materialize(expr)
    if not expr.many:
        return expr
    sql = (
        f"(CASE WHEN len({expr.sql}) > 1 THEN "
        f"{scope.error_sql(f'{what} returned more than one value')} ELSE {expr.sql}[1] END)"
    )
    return Expr(sql, expr.kind, False, expr.fhir_type)


def convert(expr: Expr, target: str, scope: Scope) -> Expr:
    """Cast a value or list to DuckDB type `target`, keeping its cardinality."""
    if expr.kind == target:
        return expr
    if target == JSON:
        if expr.many:
            var = scope.new_var()
            sql = f"list_transform({expr.sql}, lambda {var}: to_json({var}))"
        else:
            sql = f"to_json({expr.sql})"
        return Expr(sql, JSON, expr.many, expr.fhir_type)
    if expr.kind == JSON and target == "VARCHAR":
        if expr.segs:
            sql = f"json_extract_string({expr.sql}, {_json_path(expr.segs)})"
            return Expr(sql, target, "[*]" in expr.segs, expr.fhir_type)
        if expr.many:
            var = scope.new_var()
            return Expr(
                f"list_transform({expr.sql}, lambda {var}: {var} ->> '$')",
                target,
                True,
                expr.fhir_type,
            )
        return Expr(f"({expr.sql} ->> '$')", target, False, expr.fhir_type)
    expr = materialize(expr)
    suffix = "[]" if expr.many else ""
    return Expr(f"CAST({expr.sql} AS {target}{suffix})", target, expr.many, expr.fhir_type)


def _dynamic_child(value_sql: str, key: str) -> str:
    """Schema-free member step on one JSON value: array -> its items, scalar -> [value]."""
    path = sql_string(f"$.{_key(key)}")
    items = sql_string(f"$.{_key(key)}[*]")
    kind = f"coalesce(json_type({value_sql}, {path}), 'NULL')"
    return (
        f"(CASE {kind} WHEN 'ARRAY' THEN json_extract({value_sql}, {items}) "
        f"WHEN 'NULL' THEN []::JSON[] ELSE [json_extract({value_sql}, {path})] END)"
    )


def _key(name: str) -> str:
    return name if _SIMPLE_KEY.match(name) else '"' + name.replace('"', '\\"') + '"'


def member(expr: Expr, name: str, scope: Scope) -> Expr:
    """FHIRPath member access (`expr.name`), flattening arrays as FHIRPath does."""
    if expr.kind != JSON:
        raise scope.fail(f"cannot read member {name!r} of a {expr.kind} value")
    element = find_element(expr.fhir_type, name)
    if element is None:
        choices = find_choice_keys(expr.fhir_type, name)
        if choices:
            return _choice_member(expr, choices, scope)
        return _dynamic_member(expr, name, scope)
    step = (f".{_key(name)}",) + (("[*]",) if element.is_list else ())
    if expr.segs or not expr.many:
        segs = expr.segs + step
        return Expr(expr.sql, JSON, "[*]" in segs, element.fhir_type, segs)
    var = scope.new_var()
    inner = f"json_extract({var}, {_json_path(step)})"
    if element.is_list:
        sql = f"flatten(list_transform({expr.sql}, lambda {var}: {inner}))"
    else:
        out = scope.new_var()
        sql = (
            f"list_filter(list_transform({expr.sql}, lambda {var}: {inner}), "
            f"lambda {out}: {out} IS NOT NULL)"
        )
    return Expr(sql, JSON, True, element.fhir_type)


def _dynamic_member(expr: Expr, name: str, scope: Scope) -> Expr:
    expr = materialize(expr)
    if not expr.many:
        return Expr(_dynamic_child(expr.sql, name), JSON, True, None)
    var = scope.new_var()
    sql = f"flatten(list_transform({expr.sql}, lambda {var}: {_dynamic_child(var, name)}))"
    return Expr(sql, JSON, True, None)


def _choice_member(expr: Expr, keys: tuple[str, ...], scope: Scope) -> Expr:
    """A choice element read without ofType(): whichever value[x] key is present."""
    expr = materialize(expr)
    var = scope.new_var() if expr.many else expr.sql
    picks = ", ".join(f"json_extract({var}, {sql_string('$.' + key)})" for key in keys)
    one = f"coalesce({picks})"
    if not expr.many:
        return Expr(one, JSON, False, None)
    out = scope.new_var()
    sql = (
        f"list_filter(list_transform({expr.sql}, lambda {var}: {one}), "
        f"lambda {out}: {out} IS NOT NULL)"
    )
    return Expr(sql, JSON, True, None)


def index_item(expr: Expr, index: Expr, scope: Scope) -> Expr:
    """FHIRPath indexer `expr[i]` (0-based); out of range is empty."""
    literal = index.literal
    if (
        isinstance(literal, int)
        and expr.segs
        and expr.segs.count("[*]") == 1
        and expr.segs[-1] == "[*]"
    ):
        return replace(expr, segs=expr.segs[:-1] + (f"[{literal}]",), many=False)
    position = (
        str(literal + 1)
        if isinstance(literal, int)
        else f"(CAST({as_one(index, scope, 'indexer').sql} AS BIGINT) + 1)"
    )
    items = as_list(expr, scope)
    return Expr(f"({items})[{position}]", expr.kind, False, expr.fhir_type)


def map_items(expr: Expr, scope: Scope, fn: Callable[[str], str], kind: str) -> Expr:
    """Apply `fn` (SQL of one item -> SQL) to each item, dropping NULL results."""
    expr = materialize(expr)
    if not expr.many:
        return Expr(fn(expr.sql), kind, False)
    var, out = scope.new_var(), scope.new_var()
    sql = (
        f"list_filter(list_transform({expr.sql}, lambda {var}: {fn(var)}), "
        f"lambda {out}: {out} IS NOT NULL)"
    )
    return Expr(sql, kind, True)


def to_bool(expr: Expr, scope: Scope, strict: bool = False, what: str = "expression") -> str:
    """SQL BOOLEAN of a FHIRPath value in boolean context; strict demands real booleans."""
    one = as_one(expr, scope, what)
    kind = natural_type(one)
    if kind == "BOOLEAN":
        return convert(one, "BOOLEAN", scope).sql
    if strict and (kind != JSON or one.fhir_type is not None):
        raise scope.fail(f"{what} must be boolean, not {one.fhir_type or kind}")
    if kind != JSON:
        return f"(CASE WHEN {one.sql} IS NULL THEN NULL ELSE true END)"
    other = scope.error_sql(f"{what} is not boolean") if strict else "true"
    return (
        f"(CASE WHEN {one.sql} IS NULL THEN NULL WHEN json_type({one.sql}) = 'BOOLEAN' "
        f"THEN CAST({one.sql} AS BOOLEAN) ELSE {other} END)"
    )
