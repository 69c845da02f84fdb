"""Parse the FHIRPath subset used by SQL-on-FHIR ViewDefinitions into a small tuple AST.

AST nodes (tuples, first item is the node kind):
  ("lit", value, kind)          kind: VARCHAR | BOOLEAN | BIGINT | DOUBLE | EMPTY
  ("this",) / ("const", name)   `$this` / `%name`
  ("member", base | None, name) base None means "relative to the focus"
  ("call", base | None, name, [args])
  ("index", base, expr)
  ("binop", op, left, right) / ("neg", expr)
"""

from __future__ import annotations

import re
from functools import lru_cache

from warehouse.viewdef.errors import ViewDefinitionError

Node = tuple

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>@[0-9T:.\-+Z]+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<delimited>`(?:\\.|[^`\\])*`)
  | (?P<special>\$this|\$index|\$total)
  | (?P<const>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:\\.|[^`\\])*`|'(?:\\.|[^'\\])*'))
  | (?P<op><=|>=|!=|!~|[.\[\](),=~<>+\-*/&|{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "f": "\f",
}

# Binding powers, FHIRPath operator precedence (higher binds tighter).
_INFIX = {
    "implies": 10,
    "or": 20,
    "xor": 20,
    "and": 30,
    "in": 40,
    "contains": 40,
    "=": 50,
    "~": 50,
    "!=": 50,
    "!~": 50,
    "<": 60,
    ">": 60,
    "<=": 60,
    ">=": 60,
    "|": 70,
    "is": 80,
    "as": 80,
    "+": 90,
    "-": 90,
    "&": 90,
    "*": 100,
    "/": 100,
    "div": 100,
    "mod": 100,
}
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


def _unescape(body: str) -> str:
    """Resolve FHIRPath string escapes (\\', \\n, \\uXXXX...)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Split an expression into (kind, text) tokens; raise on any unknown character."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ViewDefinitionError(f"FHIRPath syntax error at offset {pos} in {text!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, match.group()))
    tokens.append(("end", ""))
    return tokens


class _Parser:
    """Pratt parser over the token list."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        kind, text = self.take()
        if text != value or kind not in ("op",):
            raise ViewDefinitionError(f"FHIRPath: expected {value!r} in {self.text!r}")

    def fail(self, what: str) -> ViewDefinitionError:
        return ViewDefinitionError(f"FHIRPath syntax error ({what}) in {self.text!r}")

    def parse(self) -> Node:
        node = self.expression(0)
        if self.peek()[0] != "end":
            raise self.fail(f"unexpected {self.peek()[1]!r}")
        return node

    def expression(self, min_bp: int) -> Node:
        left = self.unary()
        while True:
            kind, text = self.peek()
            is_op = (kind == "op" and text in _INFIX) or (kind == "ident" and text in _WORD_OPS)
            if not is_op or _INFIX[text] <= min_bp:
                return left
            self.take()
            if text in ("is", "as"):
                left = ("call", left, "ofType" if text == "as" else "is", [self.type_name()])
                continue
            right = self.expression(_INFIX[text])
            left = ("binop", text, left, right)

    def type_name(self) -> Node:
        kind, text = self.take()
        if kind not in ("ident", "delimited"):
            raise self.fail("type name expected")
        name = text.strip("`")
        while self.peek() == ("op", "."):
            self.take()
            name = self.take()[1].strip("`")
        return ("member", None, name)

    def unary(self) -> Node:
        kind, text = self.peek()
        if kind == "op" and text in ("-", "+"):
            self.take()
            operand = self.unary()
            return ("neg", operand) if text == "-" else operand
        return self.postfix(self.term())

    def term(self) -> Node:
        kind, text = self.take()
        if kind == "string":
            return ("lit", _unescape(text[1:-1]), "VARCHAR")
        if kind == "datetime":
            return ("lit", text[1:], "VARCHAR")
        if kind == "number":
            return ("lit", text, "DOUBLE" if "." in text else "BIGINT")
        if kind == "special":
            if text != "$this":
                raise self.fail(f"{text} is not supported")
            return ("this",)
        if kind == "const":
            body = text[1:]
            return ("const", _unescape(body[1:-1]) if body[:1] in "`'" else body)
        if kind == "op" and text == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if kind == "op" and text == "{":
            self.expect("}")
            return ("lit", None, "EMPTY")
        if kind in ("ident", "delimited"):
            if kind == "ident" and text in ("true", "false"):
                return ("lit", text == "true", "BOOLEAN")
            return self.invocation(None, kind, text)
        raise self.fail(f"unexpected {text!r}")

    def invocation(self, base: Node | None, kind: str, text: str) -> Node:
        name = _unescape(text[1:-1]) if kind == "delimited" else text
        if kind == "ident" and self.peek() == ("op", "("):
            self.take()
            args: list[Node] = []
            if self.peek() != ("op", ")"):
                args.append(self.expression(0))
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.expression(0))
            self.expect(")")
            return ("call", base, name, args)
        return ("member", base, name)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token == ("op", "."):
                self.take()
                kind, text = self.take()
                if kind not in ("ident", "delimited"):
                    raise self.fail("name expected after '.'")
                node = self.invocation(node, kind, text)
            elif token == ("op", "["):
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node


@lru_cache(maxsize=4096)
def parse_fhirpath(text: str) -> Node:
    """Parse `text` into the tuple AST; raise ViewDefinitionError on syntax errors."""
    if not isinstance(text, str) or not text.strip():
        raise ViewDefinitionError(f"FHIRPath expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()
