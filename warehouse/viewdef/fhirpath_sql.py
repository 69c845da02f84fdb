"""Compile a FHIRPath AST into a DuckDB SQL expression over JSON resources (set-based, no UDFs).

A compiled expression is an `Expr`: SQL text plus what it holds. Collections are DuckDB LISTs;
singletons are plain values where NULL means "empty". Member chains whose cardinality the
R4 schema knows stay as pending JSONPath segments, so `code.coding.code` becomes one native
`json_extract(r, '$.code.coding[*].code')` call.

DuckDB parses the JSON text again on every json_* call, so paths read off the root resource
are gathered in `RootPaths` and read by one multi-path call per kind; wildcard paths and casts
use those lists where that gives the same result (see `_root_first`, `_root_read`,
`_root_number`).
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
WILDCARD = "[*]"
JSON_LIST = "_pj"
TEXT_LIST = "_ps"
# Text of JSON numbers that DuckDB casts exactly as it casts the JSON value (BIGINT: int64 range).
_NUMBER_TEXT = {
    "DOUBLE": r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    "BIGINT": r"-?(0|[1-9][0-9]{0,17})",
}


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
    first: bool = False  # the first item of the collection `segs` selects (root paths only)


@dataclass
class RootPaths:
    """Wildcard-free JSONPaths read off the root resource, gathered into one call per kind.

    DuckDB parses the JSON text on every json_* call, so `json_extract_string(r, [p1, p2, ...])`
    reads every text path with one parse. Paths whose JSON value is needed go to a second,
    `json_extract` list; views reading only text (all core views) never create it. The compiled
    view selects the lists next to `r`.
    """

    json: dict[str, int] = field(default_factory=dict)
    text: dict[str, int] = field(default_factory=dict)

    def json_at(self, path: str) -> str:
        """SQL equal to json_extract(root, path)."""
        return f"{JSON_LIST}[{self.json.setdefault(path, len(self.json) + 1)}]"

    def text_at(self, path: str) -> str:
        """SQL equal to json_extract_string(root, path)."""
        return f"{TEXT_LIST}[{self.text.setdefault(path, len(self.text) + 1)}]"

    def columns(self, root: str) -> list[str]:
        """Select-list items computing the gathered lists from the `root` column."""
        items = []
        for function, name, paths in (
            ("json_extract", JSON_LIST, self.json),
            ("json_extract_string", TEXT_LIST, self.text),
        ):
            if paths:
                listed = ", ".join(sql_string(path) for path in paths)
                items.append(f"{function}({root}, [{listed}]) AS {name}")
        return items


@dataclass
class Scope:
    """What a FHIRPath expression is evaluated against: focus, resource, constants, %rowIndex."""

    focus: Expr
    resource: Expr
    constants: dict[str, Expr]
    row_index: str
    label: str
    names: Iterator[int] = field(default_factory=itertools.count)
    paths: RootPaths | None = field(default_factory=RootPaths)

    def with_focus(self, focus: Expr, row_index: str | None = None) -> Scope:
        return Scope(
            focus,
            self.resource,
            self.constants,
            self.row_index if row_index is None else row_index,
            self.label,
            self.names,
            self.paths,
        )

    def without_paths(self) -> Scope:
        """This scope reading the root with one call per path (no gathered path lists)."""
        return replace(self, paths=None)

    def is_root(self, expr: Expr) -> bool:
        """Whether `expr` is the root resource and its paths go to the gathered lists."""
        return self.paths is not None and expr.sql == self.resource.sql and expr.kind == JSON

    @property
    def root_paths(self) -> RootPaths:
        """The gathered path lists; only asked for where is_root() holds."""
        if self.paths is None:
            raise AssertionError("root paths are read only after is_root()")
        return self.paths

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


def _path_text(segs: tuple[str, ...]) -> str:
    return "$" + "".join(segs)


def _json_path(segs: tuple[str, ...]) -> str:
    return sql_string(_path_text(segs))


def _container(segs: tuple[str, ...]) -> str:
    """Path of the array the first wildcard walks."""
    return _path_text(segs[: segs.index(WILDCARD)])


def _first_paths(segs: tuple[str, ...]) -> tuple[str, list[str]]:
    """Path of the first item a wildcard path selects, and per wildcard the path of its 2nd item.

    `[*]` walks arrays in order (non-arrays give nothing), so the first item is the one under
    `[0]` at every wildcard when that exists; otherwise it can only come from a later array item,
    which exists only if some wildcard's array (reached through `[0]`s) has an item `[1]`.
    """
    zeroed = tuple("[0]" if seg == WILDCARD else seg for seg in segs)
    seconds = [_path_text(zeroed[:i] + ("[1]",)) for i, seg in enumerate(segs) if seg == WILDCARD]
    return _path_text(zeroed), seconds


def _root_first(expr: Expr, scope: Scope, as_text: bool) -> str:
    """First item of a root wildcard path, from the gathered lists where they settle it.

    The item under `[0]` at every wildcard, when present, is the first. Otherwise the full
    wildcard path is evaluated, unless nothing can follow: as text, when the first wildcard's
    array is missing or null (so the text list alone serves text columns); as JSON, when no
    wildcard's array has a second item.
    """
    first, seconds = _first_paths(expr.segs)
    paths = scope.root_paths
    slow = f"(json_extract({expr.sql}, {_json_path(expr.segs)}))[1]"
    if as_text:
        value, slow = paths.text_at(first), f"({slow} ->> '$')"
        later = f"{paths.text_at(_container(expr.segs))} IS NOT NULL"
    else:
        value = paths.json_at(first)
        later = " OR ".join(f"{paths.json_at(path)} IS NOT NULL" for path in seconds)
    return f"(CASE WHEN {value} IS NOT NULL THEN {value} WHEN {later} THEN {slow} END)"


def _root_read(expr: Expr, scope: Scope, as_text: bool) -> str:
    """json_extract(_string) of the root along `expr.segs`, through the gathered path lists.

    A wildcard path is evaluated in full only where the array its first wildcard walks is
    present: a missing or null array gives the empty list, as the full path would.
    """
    if WILDCARD not in expr.segs:
        path = _path_text(expr.segs)
        return scope.root_paths.text_at(path) if as_text else scope.root_paths.json_at(path)
    array = scope.root_paths.text_at(_container(expr.segs))
    function, kind = ("json_extract_string", "VARCHAR") if as_text else ("json_extract", JSON)
    exact = f"{function}({expr.sql}, {_json_path(expr.segs)})"
    return f"(CASE WHEN {array} IS NULL THEN []::{kind}[] ELSE {exact} END)"


def _root_number(expr: Expr, target: str, scope: Scope) -> str:
    """CAST(json_extract(root, path) AS target), read from the path's text in the text list.

    Both casts agree on text in JSON number form (a JSON number, or a string holding one);
    other text (true, an object, ' 1.5', ...) takes the JSON cast.
    """
    path = _path_text(expr.segs)
    text = scope.root_paths.text_at(path)
    exact = f"CAST(json_extract({expr.sql}, {sql_string(path)}) AS {target})"
    return (
        f"(CASE WHEN {text} IS NULL THEN NULL "
        f"WHEN regexp_full_match({text}, {sql_string(_NUMBER_TEXT[target])}) "
        f"THEN CAST({text} AS {target}) ELSE {exact} END)"
    )


def materialize(expr: Expr, scope: Scope) -> Expr:
    """Apply pending JSONPath segments, giving a JSON value or JSON[] list."""
    if not expr.segs:
        return expr
    if expr.first:
        return Expr(_root_first(expr, scope, as_text=False), JSON, False, expr.fhir_type)
    many = WILDCARD in expr.segs
    if scope.is_root(expr):
        return Expr(_root_read(expr, scope, as_text=False), JSON, many, expr.fhir_type)
    sql = f"json_extract({expr.sql}, {_json_path(expr.segs)})"
    return Expr(sql, JSON, many, expr.fhir_type)


def as_list(expr: Expr, scope: Scope) -> str:
    """SQL of a LIST holding the collection (NULL singletons become an empty list)."""
    expr = materialize(expr, scope)
    if expr.many:
        return expr.sql
    var = scope.new_var()
    return f"list_filter([{expr.sql}], lambda {var}: {var} IS NOT NULL)"


def as_one(expr: Expr, scope: Scope, what: str) -> Expr:
    """A singleton (NULL when empty); raises at run time when the collection holds several."""
    expr = materialize(expr, scope)
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
        if expr.first:
            return Expr(_root_first(expr, scope, as_text=True), target, False, expr.fhir_type)
        if expr.segs:
            many = WILDCARD in expr.segs
            if scope.is_root(expr):
                sql = _root_read(expr, scope, as_text=True)
            else:
                sql = f"json_extract_string({expr.sql}, {_json_path(expr.segs)})"
            return Expr(sql, target, many, expr.fhir_type)
        if expr.many:
            var = scope.new_var()
            return Expr(
                f"list_transform({expr.sql}, lambda {var}: {var} ->> '$')",
                target,
                True,
                expr.fhir_type,
            )
        return Expr(f"({expr.sql} ->> '$')", target, False, expr.fhir_type)
    if (
        target in _NUMBER_TEXT
        and expr.segs
        and not expr.first
        and WILDCARD not in expr.segs
        and scope.is_root(expr)
    ):
        return Expr(_root_number(expr, target, scope), target, False, expr.fhir_type)
    expr = materialize(expr, scope)
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
    if expr.first:
        expr = materialize(expr, scope)
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
    expr = materialize(expr, scope)
    if not expr.many:
        return Expr(_dynamic_child(expr.sql, name), JSON, True, None)
    var = scope.new_var()
    sql = f"flatten(list_transform({expr.sql}, lambda {var}: {_dynamic_child(var, name)}))"
    return Expr(sql, JSON, True, None)


def _choice_member(expr: Expr, keys: tuple[str, ...], scope: Scope) -> Expr:
    """A choice element read without ofType(): whichever value[x] key is present."""
    expr = materialize(expr, scope)
    var = scope.new_var() if expr.many else expr.sql
    if scope.is_root(expr):
        picks = ", ".join(scope.root_paths.json_at(f"$.{key}") for key in keys)
    else:
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
    if isinstance(literal, int) and expr.segs and not expr.first:
        if expr.segs.count(WILDCARD) == 1 and expr.segs[-1] == WILDCARD:
            return replace(expr, segs=expr.segs[:-1] + (f"[{literal}]",), many=False)
        if literal == 0 and WILDCARD in expr.segs and scope.is_root(expr):
            return replace(expr, many=False, first=True)
    position = (
        str(literal + 1)
        if isinstance(literal, int)
        else f"(CAST({as_one(index, scope, 'indexer').sql} AS BIGINT) + 1)"
    )
    items = as_list(expr, scope)
    return Expr(f"({items})[{position}]", expr.kind, False, expr.fhir_type)


def map_items(expr: Expr, scope: Scope, fn: Callable[[str], str], kind: str) -> Expr:
    """Apply `fn` (SQL of one item -> SQL) to each item, dropping NULL results."""
    expr = materialize(expr, scope)
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
