"""Walk a FHIRPath AST and build its DuckDB SQL `Expr` (operators and the functions SoF needs)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from warehouse.viewdef.errors import ViewDefinitionError
from warehouse.viewdef.fhirpath_parser import Node, parse_fhirpath
from warehouse.viewdef.fhirpath_sql import (
    JSON,
    NUMERIC,
    Expr,
    Scope,
    as_list,
    as_one,
    convert,
    index_item,
    map_items,
    materialize,
    member,
    natural_type,
    sql_string,
    to_bool,
)

_LITERAL_SQL = {"BIGINT": "CAST({} AS BIGINT)", "DOUBLE": "CAST({} AS DOUBLE)"}
_EQUALITY = {"=", "!=", "~", "!~"}
_ORDERING = {"<", ">", "<=", ">="}
_LOGIC = {"and", "or", "xor", "implies"}
_ARITHMETIC = {"+", "-", "*", "/", "div", "mod", "&"}
# Type names the reference-key string cut handles: letters and digits, never `_history`.
_PLAIN_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
# A column, lambda variable or list item: cheap to repeat in generated SQL.
_SIMPLE_SQL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])?$")


def compile_path(path: object, scope: Scope) -> Expr:
    """Parse and compile one FHIRPath string against `scope`."""
    if not isinstance(path, str):
        raise scope.fail(f"FHIRPath must be a string, got {type(path).__name__}")
    try:
        node = parse_fhirpath(path)
    except ViewDefinitionError as exc:
        raise scope.fail(str(exc)) from None
    return compile_node(node, scope)


def literal_expr(value: object, kind: str) -> Expr:
    """An Expr for a literal or constant value of SQL type `kind`."""
    if value is None or kind == "EMPTY":
        return Expr("[]::JSON[]", JSON, True)
    if kind == "BOOLEAN":
        return Expr("true" if value else "false", "BOOLEAN")
    if kind in _LITERAL_SQL:
        number = int(value) if kind == "BIGINT" else float(value)  # type: ignore[arg-type]
        return Expr(_LITERAL_SQL[kind].format(repr(number)), kind, literal=number)
    return Expr(sql_string(str(value)), "VARCHAR")


def compile_node(node: Node, scope: Scope) -> Expr:
    """Compile one AST node."""
    kind = node[0]
    if kind == "lit":
        return literal_expr(node[1], node[2])
    if kind == "this":
        return scope.focus
    if kind == "const":
        return _constant(node[1], scope)
    if kind == "member":
        base = scope.focus if node[1] is None else compile_node(node[1], scope)
        name = node[2]
        if node[1] is None and name[:1].isupper() and name == scope.focus.fhir_type:
            return scope.focus
        return member(base, name, scope)
    if kind == "index":
        return index_item(compile_node(node[1], scope), compile_node(node[2], scope), scope)
    if kind == "neg":
        operand = as_one(compile_node(node[1], scope), scope, "unary minus")
        target = natural_type(operand)
        target = target if target in NUMERIC else "DOUBLE"
        return Expr(f"(-{convert(operand, target, scope).sql})", target)
    if kind == "binop":
        return _binop(node[1], node[2], node[3], scope)
    if kind == "call":
        return _call(node, scope)
    raise scope.fail(f"unsupported FHIRPath node {kind}")


def _constant(name: str, scope: Scope) -> Expr:
    if name == "rowIndex":
        return Expr(scope.row_index, "BIGINT")
    if name in ("resource", "rootResource"):
        return scope.resource
    if name not in scope.constants:
        raise scope.fail(f"undefined constant %{name}")
    return scope.constants[name]


def _common_type(left: Expr, right: Expr) -> str:
    a, b = natural_type(left), natural_type(right)
    if a in NUMERIC and b in NUMERIC:
        return "BIGINT" if a == b == "BIGINT" else "DOUBLE"
    if a == JSON and b == JSON:
        return "VARCHAR"
    if a == JSON or b == JSON:
        return b if a == JSON else a
    return a if a == b else "VARCHAR"


def _binop(op: str, left_node: Node, right_node: Node, scope: Scope) -> Expr:
    left, right = compile_node(left_node, scope), compile_node(right_node, scope)
    if op in _LOGIC:
        a, b = (
            to_bool(left, scope, what=f"'{op}' operand"),
            to_bool(right, scope, what=f"'{op}' operand"),
        )
        sql = {
            "and": f"({a} AND {b})",
            "or": f"({a} OR {b})",
            "xor": f"({a} <> {b})",
            "implies": f"((NOT {a}) OR {b})",
        }[op]
        return Expr(sql, "BOOLEAN")
    if op in _EQUALITY:
        return _equality(op, left, right, scope)
    if op in _ORDERING:
        target = _common_type(left, right)
        a = convert(as_one(left, scope, f"'{op}' operand"), target, scope)
        b = convert(as_one(right, scope, f"'{op}' operand"), target, scope)
        return Expr(f"({a.sql} {op} {b.sql})", "BOOLEAN")
    if op in _ARITHMETIC:
        return _arithmetic(op, left, right, scope)
    if op == "|":
        target = _common_type(left, right)
        a = as_list(convert(left, target, scope), scope)
        b = as_list(convert(right, target, scope), scope)
        return Expr(f"list_distinct(list_concat({a}, {b}))", target, True)
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        target = _common_type(item, coll)
        one = convert(as_one(item, scope, f"'{op}' operand"), target, scope)
        items = as_list(convert(coll, target, scope), scope)
        return Expr(
            f"(CASE WHEN {one.sql} IS NULL THEN NULL ELSE list_contains({items}, {one.sql}) END)",
            "BOOLEAN",
        )
    raise scope.fail(f"unsupported operator {op!r}")


def _equality(op: str, left: Expr, right: Expr, scope: Scope) -> Expr:
    target = _common_type(left, right)
    a, b = convert(left, target, scope), convert(right, target, scope)
    a_one, b_one = materialize(a, scope), materialize(b, scope)
    if not a_one.many and not b_one.many:
        if target == "VARCHAR" and op in ("~", "!~"):
            sql = f"(lower({a_one.sql}) = lower({b_one.sql}))"
        else:
            sql = f"({a_one.sql} = {b_one.sql})"
    else:
        la, lb = as_list(a_one, scope), as_list(b_one, scope)
        sql = f"(CASE WHEN len({la}) = 0 OR len({lb}) = 0 THEN NULL ELSE {la} = {lb} END)"
    if op in ("!=", "!~"):
        sql = f"(NOT {sql})"
    return Expr(sql, "BOOLEAN")


def _arithmetic(op: str, left: Expr, right: Expr, scope: Scope) -> Expr:
    a = as_one(left, scope, f"'{op}' operand")
    b = as_one(right, scope, f"'{op}' operand")
    if op == "&":
        a, b = convert(a, "VARCHAR", scope), convert(b, "VARCHAR", scope)
        return Expr(f"(coalesce({a.sql}, '') || coalesce({b.sql}, ''))", "VARCHAR")
    target = _common_type(a, b)
    if op == "+" and target == "VARCHAR":
        a, b = convert(a, "VARCHAR", scope), convert(b, "VARCHAR", scope)
        return Expr(f"({a.sql} || {b.sql})", "VARCHAR")
    if target not in NUMERIC:
        target = "DOUBLE"
    if op == "/":
        target = "DOUBLE"
    x, y = convert(a, target, scope).sql, convert(b, target, scope).sql
    sql = {
        "+": f"({x} + {y})",
        "-": f"({x} - {y})",
        "*": f"({x} * {y})",
        "/": f"({x} / NULLIF({y}, 0))",
        "div": f"CAST(trunc({x} / NULLIF({y}, 0)) AS BIGINT)",
        "mod": f"({x} % NULLIF({y}, 0))",
    }[op]
    return Expr(sql, "BIGINT" if op == "div" else target)


def _type_arg(args: list[Node], scope: Scope, fn: str) -> str:
    if len(args) != 1 or args[0][0] != "member":
        raise scope.fail(f"{fn}() needs one type name")
    name = args[0][2]
    return name.split(".")[-1]


def _call(node: Node, scope: Scope) -> Expr:
    _, base_node, name, args = node
    if name in ("ofType", "as") and base_node is not None and base_node[0] == "member":
        type_name = _type_arg(args, scope, name)
        renamed = base_node[2] + type_name[:1].upper() + type_name[1:]
        return compile_node(("member", base_node[1], renamed), scope)
    if name == "extension":
        if len(args) != 1:
            raise scope.fail("extension() needs one url argument")
        url_test = ("binop", "=", ("member", None, "url"), args[0])
        return compile_node(
            ("call", ("member", base_node, "extension"), "where", [url_test]), scope
        )
    base = scope.focus if base_node is None else compile_node(base_node, scope)
    handler = _FUNCTIONS.get(name)
    if handler is None:
        raise scope.fail(f"unsupported FHIRPath function {name}()")
    return handler(base, args, scope)


def _fn_where(base: Expr, args: list[Node], scope: Scope) -> Expr:
    if len(args) != 1:
        raise scope.fail("where() needs one criteria argument")
    items = as_list(base, scope)
    var = scope.new_var("w")
    element = Expr(var, base.kind, False, base.fhir_type)
    cond = to_bool(compile_node(args[0], scope.with_focus(element)), scope, what="where()")
    return Expr(f"list_filter({items}, lambda {var}: {cond})", base.kind, True, base.fhir_type)


def _fn_exists(base: Expr, args: list[Node], scope: Scope) -> Expr:
    if args:
        base = _fn_where(base, args, scope)
    value = materialize(base, scope)
    if value.many:
        return Expr(f"(len({value.sql}) > 0)", "BOOLEAN")
    return Expr(f"({value.sql} IS NOT NULL)", "BOOLEAN")


def _fn_empty(base: Expr, args: list[Node], scope: Scope) -> Expr:
    return Expr(f"(NOT {_fn_exists(base, [], scope).sql})", "BOOLEAN")


def _fn_first(base: Expr, args: list[Node], scope: Scope) -> Expr:
    return index_item(base, Expr("0", "BIGINT", literal=0), scope)


def _fn_last(base: Expr, args: list[Node], scope: Scope) -> Expr:
    items = as_list(base, scope)
    return Expr(f"({items})[-1]", base.kind, False, base.fhir_type)


def _fn_count(base: Expr, args: list[Node], scope: Scope) -> Expr:
    return Expr(f"CAST(len({as_list(base, scope)}) AS BIGINT)", "BIGINT")


def _fn_not(base: Expr, args: list[Node], scope: Scope) -> Expr:
    return Expr(f"(NOT {to_bool(base, scope, what='not()')})", "BOOLEAN")


def _fn_join(base: Expr, args: list[Node], scope: Scope) -> Expr:
    separator = "''"
    if args:
        sep = as_one(compile_node(args[0], scope), scope, "join() separator")
        separator = convert(sep, "VARCHAR", scope).sql
    items = as_list(convert(base, "VARCHAR", scope), scope)
    return Expr(f"array_to_string({items}, {separator})", "VARCHAR")


def _fn_resource_key(base: Expr, args: list[Node], scope: Scope) -> Expr:
    if scope.is_root(base) and not base.segs:
        return Expr(scope.root_paths.text_at("$.id"), "VARCHAR")
    return map_items(base, scope, lambda item: f"json_extract_string({item}, '$.id')", "VARCHAR")


def _reference_key_sql(ref: str, type_name: str | None) -> str:
    """SQL of the id in reference `ref`, the regular expression's first capture (or NULL).

    With a plain type name, the common `Type/<id>` form is cut with string functions, several
    times faster than the regular expression; it captures the same `<id>` there.
    """
    prefix = re.escape(type_name) if type_name else "[A-Za-z]+"
    pattern = sql_string(f"(?:^|/){prefix}/([^/]+)(?:/_history/[^/]+)?$")
    general = f"NULLIF(regexp_extract({ref}, {pattern}, 1), '')"
    if type_name is None or not _PLAIN_TYPE.match(type_name):
        return general
    head = sql_string(f"{type_name}/")
    rest = f"substr({ref}, {len(type_name) + 2})"
    return (
        f"(CASE WHEN starts_with({ref}, {head}) AND NOT contains({rest}, '/') "
        f"THEN NULLIF({rest}, '') ELSE {general} END)"
    )


def _fn_reference_key(base: Expr, args: list[Node], scope: Scope) -> Expr:
    """The id part of Reference.reference (`Patient/123` -> `123`), optionally type-checked."""
    type_name = _type_arg(args, scope, "getReferenceKey") if args else None
    references = convert(member(base, "reference", scope), "VARCHAR", scope)

    def key(ref: str) -> str:
        if _SIMPLE_SQL.match(ref) or not _PLAIN_TYPE.match(type_name or ""):
            return _reference_key_sql(ref, type_name)
        var = scope.new_var("k")  # the string cut repeats `ref`: evaluate a computed one once
        return f"list_transform([{ref}], lambda {var}: {_reference_key_sql(var, type_name)})[1]"

    return map_items(references, scope, key, "VARCHAR")


def _fn_of_type(base: Expr, args: list[Node], scope: Scope) -> Expr:
    type_name = _type_arg(args, scope, "ofType")
    if base.fhir_type is None:
        raise scope.fail(f"ofType({type_name}) needs a choice element or a known type")
    if base.fhir_type == type_name:
        return base
    return Expr("[]::JSON[]", JSON, True)


def _date_bound(text: str, high: bool) -> str:
    """Pad a partial FHIR date (YYYY or YYYY-MM) to its first or last day."""
    if high:
        month_end = f"strftime(last_day(CAST({text} || '-01' AS DATE)), '%Y-%m-%d')"
        return (
            f"(CASE length({text}) WHEN 4 THEN {text} || '-12-31' "
            f"WHEN 7 THEN {month_end} ELSE {text} END)"
        )
    return (
        f"(CASE length({text}) WHEN 4 THEN {text} || '-01-01' "
        f"WHEN 7 THEN {text} || '-01' ELSE {text} END)"
    )


def _time_bound(text: str, high: bool) -> str:
    """Pad a partial time (hh, hh:mm, hh:mm:ss[.fff]) to millisecond precision."""
    fill = ("59", "9") if high else ("00", "0")
    return (
        f"(CASE length({text}) WHEN 2 THEN {text} || ':{fill[0]}:{fill[0]}.{fill[1] * 3}' "
        f"WHEN 5 THEN {text} || ':{fill[0]}.{fill[1] * 3}' "
        f"WHEN 8 THEN {text} || '.{fill[1] * 3}' "
        f"ELSE rpad({text}, 12, '{fill[1]}') END)"
    )


def _boundary_sql(item: str, fhir_type: str, high: bool) -> str:
    """lowBoundary()/highBoundary() of one value, by its FHIR type (experimental in SoF)."""
    text = f"({item} ->> '$')"
    if fhir_type == "decimal":
        raw = f"CAST({item} AS VARCHAR)"
        digits = f"length(regexp_extract({raw}, '\\.([0-9]+)', 1))"
        sign = "+" if high else "-"
        return (
            f"round(CAST({raw} AS DOUBLE) {sign} 0.5 * pow(10, -{digits}), "
            f"CAST({digits} + 1 AS INTEGER))"
        )
    if fhir_type == "date":
        return _date_bound(text, high)
    if fhir_type == "time":
        return _time_bound(text, high)
    date = f"regexp_extract({text}, '^[0-9-]+')"
    clock = f"regexp_extract({text}, 'T([0-9:.]+)', 1)"
    zone = f"NULLIF(regexp_extract({text}, '(Z|[+-][0-9]{{2}}:[0-9]{{2}})$', 1), '')"
    default_zone = "'-12:00'" if high else "'+14:00'"
    whole_day = "'T23:59:59.999'" if high else "'T00:00:00.000'"
    return (
        f"(CASE WHEN {clock} = '' THEN {_date_bound(date, high)} || {whole_day} "
        f"|| {default_zone} ELSE {date} || 'T' || {_time_bound(clock, high)} "
        f"|| coalesce({zone}, {default_zone}) END)"
    )


def _boundary(high: bool) -> Callable[[Expr, list[Node], Scope], Expr]:
    def handler(base: Expr, args: list[Node], scope: Scope) -> Expr:
        fhir_type = base.fhir_type
        if fhir_type not in ("decimal", "date", "dateTime", "instant", "time"):
            name = "highBoundary" if high else "lowBoundary"
            raise scope.fail(
                f"{name}() needs a decimal, date, dateTime or time, "
                f"not {fhir_type or 'an unknown type'}"
            )
        kind = "DOUBLE" if fhir_type == "decimal" else "VARCHAR"
        result = map_items(base, scope, lambda item: _boundary_sql(item, fhir_type, high), kind)
        return replace(result, fhir_type=fhir_type)

    return handler


_FUNCTIONS = {
    "where": _fn_where,
    "exists": _fn_exists,
    "hasValue": _fn_exists,
    "empty": _fn_empty,
    "first": _fn_first,
    "last": _fn_last,
    "count": _fn_count,
    "not": _fn_not,
    "join": _fn_join,
    "getResourceKey": _fn_resource_key,
    "getReferenceKey": _fn_reference_key,
    "ofType": _fn_of_type,
    "as": _fn_of_type,
    "lowBoundary": _boundary(high=False),
    "highBoundary": _boundary(high=True),
}
