"""Parse a math expression string into graph nodes, without ``eval``.

The grammar is arithmetic on scalar variables and numbers: ``+ - * / **`` (``^`` is
also a power), unary minus, parentheses, and calls of the op table's elementwise
functions (``sin``, ``exp``, ``maximum`` or ``max``, ...: ``FUNCTIONS``). Anything else (attribute access, strings,
subscripts, unknown functions) is rejected with the position of the offence.
Parsing is iterative (shunting-yard), so deep nesting cannot exhaust the stack.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable

from symdiff import ops
from symdiff.errors import SymdiffError
from symdiff.graph import Graph, Node
from symdiff.ops import REGISTRY


def _scalar_functions() -> dict[str, tuple[int, Callable[..., Node]]]:
    """Every elementwise function of the op table that takes values only, by its name.

    Taken from the registry, so a new elementwise op is parsed as soon as it is declared:
    an op qualifies when it has no infix symbol, its public function takes exactly its
    inputs, and none of its inputs is a condition or a shape reference (an input with no
    derivative rule beside one that has one, as in ``where`` and ``broadcast_like``).
    """
    out: dict[str, tuple[int, Callable[..., Node]]] = {}
    for name, op in REGISTRY.items():
        fn = getattr(ops, name, None) if name in ops.__all__ else None
        if fn is None or not op.elementwise or op.symbol or op.arity is None:
            continue
        params = inspect.signature(fn).parameters.values()
        if sum(p.default is inspect.Parameter.empty for p in params) != op.arity or len(params) != op.arity:
            continue
        rules = [op.vjp_rule(i) for i in range(op.arity)]
        if any(r is None for r in rules) and any(r is not None for r in rules):
            continue
        out[name] = (op.arity, fn)
    out["max"], out["min"] = out["maximum"], out["minimum"]  # the names people write
    return out


FUNCTIONS = _scalar_functions()
CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH = 100_000

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))"
)
# binding strength, right-associative?
_BINARY = {"+": (1, False), "-": (1, False), "*": (2, False), "/": (2, False), "**": (4, True), "^": (4, True)}
_UNARY_MINUS = (3, True)


def _infix() -> dict[str, Callable[..., Node]]:
    """The public function of each infix symbol the grammar has, from the op table."""
    out = {}
    for op in REGISTRY.values():
        if op.symbol in _BINARY and op.arity == 2:
            out[op.symbol] = getattr(ops, op.notation.function or op.name)
    out["^"] = out["**"]
    return out


_APPLY = _infix()


class ParseError(SymdiffError, ValueError):
    """An expression string that is not arithmetic symdiff understands."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            bad = text[pos:].lstrip()[0]
            where = len(text) - len(text[pos:].lstrip())
            raise ParseError(f"unexpected character {bad!r} at position {where} in {text!r}")
        kind = match.lastgroup
        value = match.group(kind)
        out.append((kind, value, match.start(kind)))
        pos = match.end()
    return out


def parse(text: str, graph: Graph) -> Node:
    """Build the expression ``text`` in ``graph``; names become scalar variables.

    Names that are already variables of the graph are used as they are; new ones
    are created as scalar float64 variables.

    >>> g = sd.Graph()
    >>> from symdiff.parse import parse
    >>> print(parse("x**2*sin(y) - 3", g))
    x**2*sin(y) - 3
    """
    if not isinstance(text, str):
        raise ParseError(f"expected an expression string, got {type(text).__name__}")
    with graph._transaction():  # a failed parse leaves no variables behind
        return _parse(text, graph)


def _parse(text: str, graph: Graph) -> Node:
    tokens = _tokens(text)
    if not tokens:
        raise ParseError("empty expression")
    values: list[Node | float] = []
    # operator stack entries: ("op", symbol, pos) | ("neg", "-", pos) | ("(", name or None, pos, argcount)
    stack: list[tuple] = []
    expect_operand = True

    def reduce_top() -> None:
        entry = stack.pop()
        kind, symbol, pos = entry[0], entry[1], entry[2]
        if kind == "neg":
            if not values:
                raise ParseError(f"'-' at position {pos} has no operand")
            values.append(ops.negative(_node(values.pop(), graph)))
            return
        if len(values) < 2:
            raise ParseError(f"{symbol!r} at position {pos} is missing an operand")
        right, left = values.pop(), values.pop()
        values.append(_APPLY[symbol](_node(left, graph), _node(right, graph)))

    def strength(entry: tuple) -> int:
        return _UNARY_MINUS[0] if entry[0] == "neg" else _BINARY[entry[1]][0]

    for kind, value, pos in tokens:
        if kind == "number":
            if not expect_operand:
                raise ParseError(f"number {value!r} at position {pos} follows an operand (missing operator?)")
            values.append(float(value))
            expect_operand = False
        elif kind == "name":
            if not expect_operand:
                raise ParseError(f"name {value!r} at position {pos} follows an operand (missing operator?)")
            if value.startswith("__"):
                raise ParseError(f"name {value!r} at position {pos} is not allowed")
            stack.append(("name", value, pos))  # resolved by what follows: a call or a variable
            expect_operand = False
        elif value == "(":
            if stack and stack[-1][0] == "name" and not expect_operand:
                _, name, npos = stack.pop()
                if name not in FUNCTIONS:
                    known = ", ".join(sorted(FUNCTIONS))
                    raise ParseError(f"unknown function {name!r} at position {npos} (functions: {known})")
                stack.append(("(", name, pos, 1))
            elif expect_operand:
                stack.append(("(", None, pos, 1))
            else:
                raise ParseError(f"'(' at position {pos} follows an operand (missing operator?)")
            expect_operand = True
        else:
            _resolve_name(stack, values, graph)
            if value in (")", ","):
                if expect_operand:
                    raise ParseError(f"{value!r} at position {pos} is missing an operand before it")
                while stack and stack[-1][0] != "(":
                    reduce_top()
                if not stack:
                    raise ParseError(f"{value!r} at position {pos} has no matching '('")
                if value == ",":
                    if stack[-1][1] is None:
                        raise ParseError(f"',' at position {pos} outside a function call")
                    stack[-1] = stack[-1][:3] + (stack[-1][3] + 1,)
                    expect_operand = True
                    continue
                _, name, opos, count = stack.pop()
                if name is not None:
                    arity, fn = FUNCTIONS[name]
                    if count != arity:
                        raise ParseError(f"{name}() at position {opos} takes {arity} argument(s), got {count}")
                    args = [_node(v, graph) for v in values[-arity:]]
                    del values[-arity:]
                    values.append(fn(*args))
                expect_operand = False
            elif expect_operand:
                if value == "-":
                    stack.append(("neg", "-", pos))
                elif value != "+":
                    raise ParseError(f"{value!r} at position {pos} is missing an operand before it")
            else:
                prec, right = _BINARY[value]
                while (
                    stack
                    and stack[-1][0] in ("op", "neg")
                    and (strength(stack[-1]) > prec or (strength(stack[-1]) == prec and not right))
                ):
                    reduce_top()
                stack.append(("op", value, pos))
                expect_operand = True
    if expect_operand:
        raise ParseError(f"expression {text!r} ends without an operand")
    _resolve_name(stack, values, graph)
    while stack:
        if stack[-1][0] == "(":
            raise ParseError(f"'(' at position {stack[-1][2]} is never closed")
        reduce_top()
    if len(values) != 1:
        raise ParseError(f"could not read {text!r} as one expression")
    return _node(values[0], graph)


def _resolve_name(stack: list[tuple], values: list, graph: Graph) -> None:
    """A name not followed by '(' is a constant (pi, e) or a variable."""
    if stack and stack[-1][0] == "name":
        _, name, pos = stack.pop()
        if name in FUNCTIONS:
            raise ParseError(f"function {name!r} at position {pos} is not called")
        if name in CONSTANTS:
            values.append(CONSTANTS[name])
        else:
            existing = graph._variables.get(name)
            values.append(existing if existing is not None else graph.variable(name))


def _node(value: Node | float, graph: Graph) -> Node:
    return value if isinstance(value, Node) else graph.constant(value)
