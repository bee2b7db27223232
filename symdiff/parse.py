"""Parse a math expression string into graph nodes, without ``eval``.

The grammar is Python's expression syntax for arrays, and reads back everything
``print(node)`` writes:

- numbers, ``pi``, ``e``, ``inf``, ``nan``, ``True``, ``False``; names (variables of the
  graph, or new scalar variables);
- ``+ - * / ** @`` (``^`` is also a power), unary minus, comparisons ``> >= < <= == !=``
  (not chained), with Python's binding strengths (those of the op table's notation); ``&``,
  ``|`` and ``~`` of booleans (``(x >= 0) & (x <= 1)``: a ``where`` of booleans, as printed);
- calls: the elementwise functions people write (``sin``, ``maximum`` or ``max``, ...:
  ``FUNCTIONS``), and any op of the table by its name with its attributes as keywords
  (``sum(x, axis=-1, keepdims=True)``, ``reshape(x, shape_to=(2, 3))``); ``full``, ``ones``, ``eye``,
  ``einsum("ij,jk->ik", A, B)``;
- ``x.T``, ``x[1:, None, i]``, ``zeros_like(x).at[i].add(g)``, ``[a, b, c]`` (a vector of
  scalars, or a constant array of numbers), tuples as attribute values;
- numbered lines ``t1 = ...`` before the expression (how a large graph prints);
- an op's output by name, ``eigh(A).eigenvalues``, ``t1.logabsdet`` (``t1 = slogdet(A)``), and
  a body's by position, ``f(x)[0]``;
- definitions ``f(x, c) = c*tanh(x/c)`` (or ``f(x, c) =`` and an indented block of lines, the
  last the result; a tuple ``(a, b)`` for several outputs) before the lines that call them: each
  is a composite op (``sd.composite``), in whose body only its parameters, its own lines, the
  definitions before it and the graph's variables (captured) are in scope. A definition of an
  op's name calls the definition from the lines after it;
- loops, as JAX writes them, running definitions: ``scan(body, init, xs, *captured)`` (one
  init or xs item bare, several as a tuple, ``None`` for no xs; keywords ``length=``,
  ``reverse=True``, ``checkpoint=("every", k)``, ``steps=n`` for a trip count known at
  evaluation) and ``while_loop(cond, body, init, *captured, max_steps=)`` (the captured
  arguments are the condition's, then the body's); their outputs by name, ``t1.carry``,
  ``t1.ys``, ``t1.carry[0]`` for one of several, ``t1.stored``, ``t1.steps``.

Anything else (other attributes, strings outside calls, unknown functions, assignments to
variables) is rejected with the position of the offence. Parsing is iterative
(shunting-yard), so deep nesting cannot exhaust the stack.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from symdiff import ops
from symdiff.composite import Composite, composite
from symdiff.errors import SymdiffError
from symdiff.graph import Graph, Node, Region
from symdiff.loops import check_carry, make_scan, make_while
from symdiff.ops import REGISTRY, apply
from symdiff.ops.core import outputs_of
from symdiff.printing import AND_STRENGTH, OR_STRENGTH


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
CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}
_LITERALS = {"True": True, "False": False, "None": None}
MAX_LENGTH = 100_000

_TOKEN = re.compile(
    r"[ \t\r]*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r'|(?P<string>"[A-Za-z0-9_,.\->]*")|(?P<attr>\.[A-Za-z_][A-Za-z0-9_]*)|(?P<newline>\n)'
    r"|(?P<op>\*\*|==|!=|>=|<=|[-+*/^@<>(),\[\]:=&|~]))"
)
_COMPARISONS = (">", ">=", "<", "<=", "==", "!=")


def _binary() -> dict[str, tuple[int, bool, Callable[..., Node]]]:
    """Each infix symbol of the op table: its binding strength, whether it is
    right-associative (``**``), and its public function."""
    out = {}
    for op in REGISTRY.values():
        if op.symbol and op.arity == 2:
            out[op.symbol] = (op.precedence, op.symbol == "**", getattr(ops, op.notation.function or op.name))
    out["^"] = out["**"]
    out["&"] = (AND_STRENGTH, False, _logical_and)
    out["|"] = (OR_STRENGTH, False, _logical_or)
    return out


def _booleans(symbol: str, *nodes: Any) -> None:
    for node in nodes:
        if not isinstance(node, Node) or node.dtype != np.bool_:
            what = f"a {node.dtype} node" if isinstance(node, Node) else f"the number {node!r}"
            raise ParseError(f"{symbol!r} takes booleans (comparisons, masks), not {what}")


def _logical_and(a: Any, b: Any) -> Node:
    """``a & b`` of booleans: ``where(a, b, False)``, as symdiff.scalar's logical_and is built."""
    _booleans("&", a, b)
    return ops.where(a, b, False)


def _logical_or(a: Any, b: Any) -> Node:
    _booleans("|", a, b)
    return ops.where(a, True, b)


def _logical_not(a: Any) -> Node:
    _booleans("~", a)
    return ops.where(a, False, True)


_BINARY = _binary()
_UNARY_MINUS = REGISTRY["neg"].precedence


class ParseError(SymdiffError, ValueError):
    """An expression string that is not arithmetic symdiff understands."""


class _Empty:
    """An empty place in brackets: ``x[:2]``, ``(2,)``, ``f()``."""


_EMPTY = _Empty()


class _Multi:
    """The outputs of one node with several (``eigh(A)``, a body's call), waiting for one of
    them to be picked by name (``.eigenvalues``) or position (``[0]``)."""

    def __init__(self, outputs: tuple[Node, ...], names: tuple[str, ...] | None, what: str):
        self.outputs, self.names, self.what = outputs, names, what

    def pick(self, key: str | int, pos: int) -> Node | _Multi:
        if isinstance(key, str) and self.names and key in self.names:
            return self.outputs[self.names.index(key)]
        group = [k for k, n in enumerate(self.names or ()) if isinstance(key, str) and n.startswith(f"{key}[")]
        if group:  # a loop's several carries, t1.carry[0]: picked by position next
            return _Multi(tuple(self.outputs[k] for k in group), None, f"{self.what}.{key}")
        if isinstance(key, int) and not isinstance(key, bool) and self.names is None and 0 <= key < len(self.outputs):
            return self.outputs[key]
        known = ", ".join(f".{n}" for n in self.names) if self.names else f"[0] to [{len(self.outputs) - 1}]"
        raise ParseError(f"{self.what} at position {pos} has no output {key!r} (its outputs: {known})")


class _At:
    """``ref.at[index]``, waiting for its ``.add(g)``."""

    def __init__(self, ref: Node, index: tuple, pos: int):
        self.ref, self.index, self.pos = ref, index, pos


class _Frame:
    """An open bracket: a group or tuple ``(``, a call ``f(``, a list ``[``, a subscript
    ``x[``, ``x.at[``, or ``.add(``. Its items are the values above ``height``."""

    def __init__(self, kind: str, pos: int, height: int, name: str | None = None, subject: Any = None):
        self.kind, self.pos, self.height, self.name, self.subject = kind, pos, height, name, subject
        self.items: list[Any] = []
        self.kwargs: dict[str, Any] = {}
        self.key: str | None = None  # the keyword of the item being read
        self.pieces: list[Any] = []  # a slice's parts before the item being read
        self.commas = 0

    @property
    def close(self) -> str:
        return "]" if self.kind in ("list", "index", "at") else ")"


def _tokens(text: str) -> list[tuple[str, str, int]]:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].lstrip(" \t\r")
            where = len(text) - len(rest)
            raise ParseError(f"unexpected character {rest[0]!r} at position {where} in {text!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return out


def parse(text: str, graph: Graph) -> Node:
    """Build the expression ``text`` in ``graph``; names become scalar variables.

    Names that are already variables of the graph are used as they are; new ones
    are created as scalar float64 variables. Reads what ``str(node)`` prints, numbered
    lines and the definitions of the bodies it calls included, as the same value.

    >>> g = sd.Graph()
    >>> from symdiff.parse import parse
    >>> print(parse("x**2*sin(y) - 3", g))
    x**2*sin(y) - 3
    >>> print(parse("softclip(x, c) = c*tanh(x/c)\\nsoftclip(x, 2)", g))
    softclip(x, c) = c*tanh(x/c)
    softclip(x, 2)
    """
    if not isinstance(text, str):
        raise ParseError(f"expected an expression string, got {type(text).__name__}")
    if "\n" not in text:  # one line: its leading spaces are not an indented block (" -x^2")
        text = text.strip()
    with graph._transaction():  # a failed parse leaves no variables behind
        statements = _statements(text)
        if not statements:
            raise ParseError("empty expression")
        functions: dict[str, Composite] = {}
        names: dict[str, Any] = {}
        k = 0
        while k < len(statements):
            statement, indented = statements[k]
            where = statement[0][2]
            if indented:
                raise ParseError(f"indented line at position {where} outside a definition 'f(x) ='")
            header = _definition(statement)
            if header is None:
                break
            name, params, rest = header
            body = [rest] if rest else []
            k += 1
            while not rest and k < len(statements) and statements[k][1]:
                body.append(statements[k][0])
                k += 1
            if not body:
                raise ParseError(f"definition {name!r} at position {where} has no body (its lines are indented)")
            functions[name] = _define(name, params, body, functions, graph, where)
        if k == len(statements):
            raise ParseError("the text ends without an expression after its definitions")
        lines = statements[k:]
        for statement, indented in lines:
            if indented or _definition(statement) is not None:
                raise ParseError(f"line at position {statement[0][2]}: definitions and indented lines come first")
        return _run_lines([s for s, _ in lines], graph, names, functions, body=False)


def _statements(text: str) -> list[tuple[list[tuple[str, str, int]], bool]]:
    """The text's lines as token lists, each with whether it is indented."""
    statements: list[list[tuple[str, str, int]]] = [[]]
    for token in _tokens(text):
        if token[0] == "newline":
            statements.append([])
        else:
            statements[-1].append(token)
    return [(s, s[0][2] > text.rfind("\n", 0, s[0][2]) + 1) for s in statements if s]


def _definition(statement: list[tuple[str, str, int]]) -> tuple[str, list[str], list] | None:
    """``f(x, c) = ...``: the name, the parameters and the tokens after ``=``; None for another line."""
    if len(statement) < 4 or statement[0][0] != "name" or statement[1][1] != "(":
        return None
    params, k = [], 2
    while k < len(statement) and statement[k][1] != ")":
        kind, value, pos = statement[k]
        if kind != "name" or (params and statement[k - 1][1] != ","):
            return None
        params.append(value)
        k += 1
        if k < len(statement) and statement[k][1] == ",":
            k += 1
    if k + 1 >= len(statement) or statement[k + 1][1] != "=":
        return None
    name, pos = statement[0][1], statement[0][2]
    if name.startswith("__") or name in _BUILDERS or name in _LITERALS or name in CONSTANTS:
        raise ParseError(f"definition at position {pos}: {name!r} cannot be defined")
    if not params or len(set(params)) != len(params) or any(p.startswith("__") or p in _LITERALS for p in params):
        raise ParseError(f"definition {name!r} at position {pos}: its parameters must be distinct names (at least one)")
    return name, params, statement[k + 2 :]


def _define(name: str, params: list[str], body: list, functions: dict, graph: Graph, where: int) -> Composite:
    """A composite op whose body is the definition's lines, read when it is traced."""
    if name in functions or name in graph._variables:
        raise ParseError(f"definition at position {where}: {name!r} is defined already")
    scope = dict(functions)  # a body calls the definitions before it

    def fn(*args: Node) -> Any:
        return _run_lines(body, args[0].graph, dict(zip(params, args)), scope, body=True)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    fn.__signature__ = inspect.Signature([inspect.Parameter(p, kind) for p in params])  # type: ignore[attr-defined]
    return composite(fn, name=name)


def _run_lines(statements: list, graph: Graph, names: dict[str, Any], functions: dict, body: bool) -> Any:
    """Numbered lines ``t1 = ...`` then the result: a node (a body's may also be a tuple)."""
    for statement in statements[:-1]:
        if len(statement) < 3 or statement[0][0] != "name" or statement[1][1] != "=":
            where = statement[0][2]
            raise ParseError(f"line at position {where} is not 'name = expression' (only the last is the result)")
        target = statement[0][1]
        if target.startswith("__") or target in graph._variables or target in _LITERALS:
            raise ParseError(f"cannot assign to {target!r} at position {statement[0][2]}")
        names[target] = _Parser(statement[2:], graph, names, functions, body).value()
    parser = _Parser(statements[-1], graph, names, functions, body)
    if not body:
        return parser.run()
    value = parser.value()
    if isinstance(value, _Multi):
        return value.outputs
    if isinstance(value, tuple):
        return tuple(parser._operand(v, statements[-1][0][2]) for v in value)
    return parser._operand(value, statements[-1][0][2])


class _Parser:
    """One expression (one line), by shunting-yard: ``values`` holds operands (nodes, numbers,
    lists, tuples, strings), ``stack`` pending operators and open brackets."""

    def __init__(
        self, tokens: list[tuple[str, str, int]], graph: Graph, names: dict[str, Any], functions=None, body=False
    ):
        self.tokens, self.graph, self.names = tokens, graph, names
        self.functions: dict[str, Composite] = functions or {}
        self.body = body  # a definition's line: no new variables (a name not in scope is an error)
        self.values: list[Any] = []
        self.stack: list[Any] = []  # ("op", symbol, pos) | ("neg", "-", pos) | _Frame

    def run(self) -> Node:
        """The line's value as a node."""
        value = self._operand(self.value(), self.tokens[0][2])
        return value if isinstance(value, Node) else self.graph.constant(float(value))

    def value(self) -> Any:
        """The line's value: a node, a number, a list, a tuple, or the outputs of an op."""
        tokens, k = self.tokens, 0
        expect_operand = True
        while k < len(tokens):
            kind, value, pos = tokens[k]
            following = tokens[k + 1] if k + 1 < len(tokens) else (None, None, None)
            k += 1
            if expect_operand:
                if kind == "number":
                    self.values.append(int(value) if value.isdigit() else float(value))
                elif kind == "string":
                    self.values.append(value[1:-1])
                elif kind == "name":
                    if value.startswith("__"):
                        raise ParseError(f"name {value!r} at position {pos} is not allowed")
                    frame = self._frame()
                    if following[1] == "(":
                        self._check_function(value, pos)
                        self.stack.append(_Frame("call", pos, len(self.values), name=value))
                        k += 1
                        continue
                    at_start = frame is not None and len(self.values) == frame.height and not self._pending()
                    if following[1] == "=" and at_start and frame.kind == "call" and frame.key is None:
                        frame.key = value
                        k += 1
                        continue
                    self.values.append(self._name(value, pos))
                elif value == "(":
                    self.stack.append(_Frame("group", pos, len(self.values)))
                    continue
                elif value == "[":
                    self.stack.append(_Frame("list", pos, len(self.values)))
                    continue
                elif value in ("-", "~"):
                    self.stack.append(("neg" if value == "-" else "not", value, pos))
                    continue
                elif value == "+":
                    continue
                elif value in (")", "]", ",", ":") and self._may_be_empty(value):
                    self.values.append(_EMPTY)
                    expect_operand = False
                    k -= 1  # read the closer again, now after an (empty) operand
                    continue
                else:
                    raise ParseError(f"{value!r} at position {pos} is missing an operand before it")
                expect_operand = False
                continue
            # after an operand
            if kind in ("number", "name", "string"):
                raise ParseError(f"{kind} {value!r} at position {pos} follows an operand (missing operator?)")
            if kind == "attr":
                opens = not isinstance(self.values[-1], _Multi) and value in (".at", ".add")
                k = self._attribute(value, pos, following, k)
                expect_operand = opens  # .at[ and .add( open a bracket
            elif value == "[":
                subject = self.values.pop()
                self.stack.append(_Frame("index", pos, len(self.values), subject=subject))
                expect_operand = True
            elif value in (")", "]", ",", ":"):
                expect_operand = self._separator(value, pos)
            elif value == "(":
                raise ParseError(f"'(' at position {pos} follows an operand (missing operator?)")
            elif value == "=":
                raise ParseError(f"'=' at position {pos}: only 'name = expression' lines and keywords take one")
            else:
                self._binary(value, pos)
                expect_operand = True
        if expect_operand:
            raise ParseError(f"expression ends without an operand (position {tokens[-1][2]})")
        while self.stack:
            if isinstance(self.stack[-1], _Frame):
                frame = self.stack[-1]
                raise ParseError(f"{'(' if frame.close == ')' else '['!r} at position {frame.pos} is never closed")
            self._reduce()
        if len(self.values) != 1:
            raise ParseError("could not read the text as one expression")
        return self.values[0]

    # -- operators -----------------------------------------------------------------------
    def _frame(self) -> _Frame | None:
        for entry in reversed(self.stack):
            if isinstance(entry, _Frame):
                return entry
        return None

    def _strength(self, entry: tuple) -> int:
        return _UNARY_MINUS if entry[0] in ("neg", "not") else _BINARY[entry[1]][0]

    def _binary(self, symbol: str, pos: int) -> None:
        prec, right, _ = _BINARY[symbol]
        if symbol in _COMPARISONS and any(e[1] in _COMPARISONS for e in self._pending()):
            raise ParseError(f"chained comparison at position {pos}: Python reads a < b < c as (a < b) and (b < c)")
        while self.stack and not isinstance(self.stack[-1], _Frame):
            top = self.stack[-1]
            if self._strength(top) > prec or (self._strength(top) == prec and not right):
                self._reduce()
            else:
                break
        self.stack.append(("op", symbol, pos))

    def _pending(self) -> list:
        """The operators above the innermost open bracket."""
        out = []
        for entry in reversed(self.stack):
            if isinstance(entry, _Frame):
                break
            out.append(entry)
        return out

    def _reduce(self) -> None:
        kind, symbol, pos = self.stack.pop()
        if kind == "neg":
            operand = self._operand(self.values.pop(), pos)
            self.values.append(-operand if _is_number(operand) else ops.negative(operand))
            return
        if kind == "not":
            operand = self._operand(self.values.pop(), pos)
            self.values.append(_call(_logical_not, f"'~' at position {pos}", operand))
            return
        right, left = self.values.pop(), self.values.pop()
        left, right = self._operand(left, pos), self._operand(right, pos)
        if _is_number(left) and _is_number(right):
            left = self.graph.constant(float(left))
        fn = _BINARY[symbol][2]
        self.values.append(_call(fn, f"{symbol!r} at position {pos}", left, right))

    def _operand(self, value: Any, pos: int) -> Node | int | float:
        """A value an operator takes: a node, or a number (weak, as Python's in numpy 2)."""
        if isinstance(value, Node) or _is_number(value):
            return value
        if isinstance(value, list):
            return self._array(value, pos)
        if isinstance(value, _Multi):
            known = ", ".join(f".{n}" for n in value.names) if value.names else "[0], [1], ..."
            raise ParseError(f"{value.what} before position {pos} has several outputs: pick one ({known})")
        what = "a string" if isinstance(value, str) else "a tuple" if isinstance(value, tuple) else "nothing"
        raise ParseError(f"operand at position {pos} is {what}, not a value")

    def _array(self, items: list, pos: int) -> Node:
        """``[a, b, c]``: a constant array when it holds only numbers, else a vector of scalars."""
        flat, stack = [], [items]
        while stack:
            for item in stack.pop():
                (stack.append(item) if isinstance(item, list) else flat.append(item))
        if all(_is_number(v) for v in flat):
            try:
                return self.graph.constant(np.array(items))
            except ValueError as error:
                raise ParseError(f"list at position {pos} is not a rectangular array: {error}") from None
        if any(isinstance(v, list) for v in items):
            raise ParseError(f"list at position {pos}: a nested list holds numbers only")
        return _call(ops.stack, f"list at position {pos}", [self._operand(v, pos) for v in items], axis=-1)

    # -- names, attributes, brackets -------------------------------------------------------
    def _name(self, name: str, pos: int) -> Any:
        if name in self.names:
            return self.names[name]
        existing = self.graph._variables.get(name)
        if existing is not None:
            return existing
        if name in _LITERALS:
            return _LITERALS[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        frame = self._frame()
        if name in self.functions and frame is not None and frame.kind == "call" and frame.name in _LOOPS:
            return self.functions[name]  # a loop's body (or condition), run by the loop
        if name in FUNCTIONS or name in REGISTRY or name in self.functions:
            raise ParseError(f"function {name!r} at position {pos} is not called")
        if self.body:  # a variable of a graph around the body: captured, as tracing a function does
            outer = self.graph.parent
            while outer is not None and name not in outer._variables:
                outer = outer.parent
            if outer is None:
                raise ParseError(f"name {name!r} at position {pos} is neither a parameter nor a variable")
            return self.graph.capture(outer._variables[name])
        return self.graph.variable(name)

    def _check_function(self, name: str, pos: int) -> None:
        if name not in FUNCTIONS and name not in REGISTRY and name not in _BUILDERS and name not in self.functions:
            known = ", ".join(sorted(FUNCTIONS))
            raise ParseError(f"unknown function {name!r} at position {pos} (functions: {known}; and the op table's)")

    def _attribute(self, attr: str, pos: int, following: tuple, k: int) -> int:
        subject = self.values[-1]
        if isinstance(subject, _Multi):
            self.values[-1] = subject.pick(attr[1:], pos)
            return k
        if attr == ".T":
            node = self._operand(subject, pos)
            if not isinstance(node, Node):
                raise ParseError(f"'.T' at position {pos} follows a number")
            self.values[-1] = _call(ops.transpose, f"'.T' at position {pos}", node)
            return k
        if attr == ".at" and following[1] == "[" and isinstance(subject, Node):
            self.values.pop()
            self.stack.append(_Frame("at", pos, len(self.values), subject=subject))
            return k + 1
        if attr == ".add" and following[1] == "(" and isinstance(subject, _At):
            self.values.pop()
            self.stack.append(_Frame("add", pos, len(self.values), subject=subject))
            return k + 1
        raise ParseError(
            f"unexpected character '.' at position {pos} ({attr!r}: only x.T, x.at[index].add(g) and an op's "
            "outputs, eigh(A).eigenvalues, follow a dot)"
        )

    def _may_be_empty(self, closer: str) -> bool:
        """An empty place before ``closer``: a slice's part, ``(2,)``, ``f()``, ``[]``."""
        frame = self._frame()
        if frame is None or self._pending() or len(self.values) != frame.height:
            return False
        if frame.kind in ("index", "at"):
            return closer in (":", ",", "]")
        if closer == frame.close and frame.key is None:
            return frame.kind in ("call", "list", "add") or frame.commas > 0 or not frame.items
        return False

    def _separator(self, sep: str, pos: int) -> bool:
        """A ``,``, ``:`` or closing bracket after an operand; returns expect_operand."""
        while self.stack and not isinstance(self.stack[-1], _Frame):
            self._reduce()
        if not self.stack:
            raise ParseError(f"{sep!r} at position {pos} has no matching bracket")
        frame: _Frame = self.stack[-1]
        if len(self.values) != frame.height + 1:
            raise ParseError(f"{sep!r} at position {pos} follows two operands (missing operator?)")
        item = self.values.pop()
        if sep == ":":
            if frame.kind not in ("index", "at") or len(frame.pieces) == 2:
                raise ParseError(f"':' at position {pos} outside a subscript's slice")
            frame.pieces.append(item)
            return True
        if sep in (")", "]") and sep != frame.close:
            raise ParseError(f"{sep!r} at position {pos} closes the {frame.close!r}-bracket at position {frame.pos}")
        if frame.pieces:
            item = self._slice(frame.pieces + [item], pos)
            frame.pieces = []
        if frame.key is not None:
            counted = frame.name == "scan" and frame.key == "steps"  # a loop's trip count: a node
            if item is _EMPTY or (isinstance(item, (Node, list)) and not counted):
                raise ParseError(f"keyword {frame.key!r} before position {pos} needs a literal value")
            frame.kwargs[frame.key] = item
            frame.key = None
        elif item is not _EMPTY or sep == ",":
            if frame.kwargs:
                raise ParseError(f"an argument at position {pos} follows a keyword argument")
            frame.items.append(item)
        if sep == ",":
            frame.commas += 1
            return True
        self.stack.pop()
        if frame.items and frame.items[-1] is _EMPTY:
            frame.items.pop()  # a trailing comma
        if any(v is _EMPTY for v in frame.items):
            raise ParseError(f"an empty argument before position {pos}")
        self.values.append(self._close(frame, pos))
        return False

    @staticmethod
    def _slice(pieces: list, pos: int) -> slice:
        bounds = [None if p is _EMPTY else p for p in pieces]
        if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
            raise ParseError(f"slice before position {pos} has a bound that is not an integer")
        return slice(*bounds)

    def _close(self, frame: _Frame, pos: int) -> Any:
        if frame.kind == "group":  # (x), or a tuple: (), (2,), (1, 2)
            return frame.items[0] if frame.commas == 0 and frame.items else tuple(frame.items)
        if frame.kind == "list":
            return list(frame.items)
        if frame.kind == "index" and isinstance(frame.subject, _Multi):
            if len(frame.items) != 1 or frame.commas:
                raise ParseError(f"{frame.subject.what} at position {frame.pos}: pick one output, [k]")
            return frame.subject.pick(frame.items[0], frame.pos)
        if frame.kind in ("index", "at"):
            index = tuple(self._index_entry(v, pos) for v in frame.items)
            if frame.kind == "at":
                return _At(frame.subject, index, frame.pos)
            subject = self._operand(frame.subject, frame.pos)
            if not isinstance(subject, Node):
                raise ParseError(f"subscript at position {frame.pos} of a number")
            return _call(ops.getitem, f"subscript at position {frame.pos}", subject, index)
        if frame.kind == "add":
            if len(frame.items) != 1 or frame.kwargs:
                raise ParseError(f".add() at position {frame.pos} takes one argument")
            at: _At = frame.subject
            g = self._operand(frame.items[0], frame.pos)
            return _call(_unindex, f".at[].add() at position {at.pos}", g, at.ref, at.index)
        return self._function(frame)

    def _index_entry(self, value: Any, pos: int) -> Any:
        if value is None or isinstance(value, (slice, Node, list)) or (_is_number(value) and isinstance(value, int)):
            return np.array(value) if isinstance(value, list) else value
        raise ParseError(f"subscript entry {value!r} before position {pos} is not an int, slice, None or index")

    def _function(self, frame: _Frame) -> Node:
        name, args, kwargs, where = frame.name, frame.items, frame.kwargs, f"{frame.name}() at position {frame.pos}"
        if name in self.functions:
            if kwargs:
                raise ParseError(f"{where}: a definition takes no keywords")
            nodes = [self._operand(a, frame.pos) for a in args]
            if nodes and not any(isinstance(a, Node) for a in nodes):
                nodes[0] = self.graph.constant(float(nodes[0]))
            out = _call(self.functions[name], where, *nodes)
            return _Multi(tuple(out), None, f"{name}()") if isinstance(out, tuple) else out
        if name in _BUILDERS:
            return _BUILDERS[name](self, where, args, kwargs)
        nodes = [a if isinstance(a, (str, tuple)) else self._operand(a, frame.pos) for a in args]
        if any(isinstance(a, (str, tuple)) for a in nodes):
            raise ParseError(f"{where}: a string or tuple is an attribute: pass it by keyword")
        if name in FUNCTIONS and not kwargs and (name not in REGISTRY or len(nodes) == FUNCTIONS[name][0]):
            arity, fn = FUNCTIONS[name]
            if len(nodes) != arity:
                raise ParseError(f"{where} takes {arity} argument(s), got {len(nodes)}")
            if not any(isinstance(a, Node) for a in nodes):
                nodes[0] = self.graph.constant(float(nodes[0]))
            return _call(fn, where, *nodes)
        op = REGISTRY[name]
        if op.arity is not None and len(nodes) != op.arity:
            raise ParseError(f"{where} takes {op.arity} input(s), got {len(nodes)}")
        if not nodes:
            raise ParseError(f"{where} takes at least one input")
        if not any(isinstance(a, Node) for a in nodes):
            nodes[0] = self.graph.constant(float(nodes[0]) if isinstance(nodes[0], (int, float)) else nodes[0])
        out = _call(lambda *xs: apply(op, *xs, **implied_attrs(op, xs, kwargs)), where, *nodes)
        return _Multi(tuple(out), op.outputs, f"{name}()") if isinstance(out, tuple) else out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) and not isinstance(value, Node)


def _call(fn: Callable[..., Any], where: str, *args: Any, **kwargs: Any) -> Node:
    """``fn(*args)``, its complaints about the arguments as a ParseError naming ``where``."""
    try:
        return fn(*args, **kwargs)
    except SymdiffError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as error:
        raise ParseError(f"{where}: {error}") from None


@functools.cache
def _attr_names(op_name: str) -> frozenset[str]:
    """The attribute names an op's rules take (from their signatures)."""
    op = REGISTRY[op_name]
    names: set[str] = set()
    for fn in (op.shape, op.forward, op.dtype):
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return frozenset(names)


def implied_attrs(op: Any, inputs: tuple, attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes of ``op(*inputs)`` written as printed: what printing leaves out put
    back (keepdims=False, a reduction's axis over every axis, a float64 dtype_to), a dtype
    by name as numpy writes it, and ``axis=-1`` as ``(-1,)`` for an op that takes tuples."""
    attrs = dict(attrs)
    names = _attr_names(op.name)
    first = next(x for x in inputs if isinstance(x, Node)) if inputs else None
    if "keepdims" in names or (op.kind == "reduction" and "axis" in names):
        if "keepdims" in names:
            attrs.setdefault("keepdims", False)
        if "axis" not in attrs and first is not None:
            attrs["axis"] = tuple(range(-inputs[0].ndim, 0)) if isinstance(inputs[0], Node) else ()
    if "dtype_to" in names:
        try:
            attrs["dtype_to"] = np.dtype(attrs.get("dtype_to", "float64")).str
        except TypeError:
            raise ParseError(f"{op.name}(): dtype_to={attrs['dtype_to']!r} is not a dtype") from None
    if isinstance(attrs.get("axis"), int) and not isinstance(attrs["axis"], bool):
        if op.name not in _TUPLE_AXIS:
            _TUPLE_AXIS[op.name] = _takes_tuple_axis(op, [x for x in inputs if isinstance(x, Node)], attrs)
        if _TUPLE_AXIS[op.name]:
            attrs["axis"] = (attrs["axis"],)
    return attrs


_TUPLE_AXIS: dict[str, bool] = {}


def _takes_tuple_axis(op: Any, inputs: list[Node], attrs: dict[str, Any]) -> bool:
    """Whether ``op``'s axis attribute is a tuple (sum, flip, count) rather than an int
    (concatenate, cumsum): its shape rule or forward, given an int, cannot iterate it."""
    try:
        op.shape(*(x.shape for x in inputs), **attrs)
        arrays = [np.zeros(tuple(2 if d is None else d for d in x.shape), dtype=x.dtype) for x in inputs]
        with np.errstate(all="ignore"):
            op.forward(np, *arrays, **attrs)
    except TypeError:
        return True
    except Exception:  # a complaint about the values: the int was taken
        return False
    return False


def _unindex(g: Node, ref: Node, index: tuple) -> Node:
    """``zeros_like(ref).at[index].add(g)``: the adjoint of ``ref[index]``."""
    from symdiff.ops.indexing import UNINDEX, _make_index

    nodes: list[Node] = []
    made = _make_index(index, ref.shape, nodes)
    return apply(UNINDEX, g, ref, *nodes, index=made)


def _full(parser: _Parser, where: str, args: list, kwargs: dict) -> Node:
    if len(args) != 2 or not isinstance(args[0], (tuple, int)) or not _is_number(args[1]) or set(kwargs) - {"dtype"}:
        raise ParseError(f"{where}: full(shape, number, dtype=...) with a literal shape and number")
    return _call(lambda: parser.graph.constant(np.full(args[0], args[1], dtype=kwargs.get("dtype", "float64"))), where)


def _ones(parser: _Parser, where: str, args: list, kwargs: dict) -> Node:
    """``ones(5)``, ``ones((3, 4), dtype="float32")``: how a constant of ones prints."""
    if len(args) != 1 or not isinstance(args[0], (tuple, int)) or set(kwargs) - {"dtype"}:
        raise ParseError(f"{where}: ones(shape, dtype=...) with a literal shape")
    return _full(parser, where, [args[0], 1], kwargs)


def _eye(parser: _Parser, where: str, args: list, kwargs: dict) -> Node:
    if len(args) != 1 or not isinstance(args[0], int) or set(kwargs) - {"dtype"}:
        raise ParseError(f"{where}: eye(n, dtype=...) with a literal n")
    return _call(lambda: parser.graph.constant(np.eye(args[0], dtype=kwargs.get("dtype", "float64"))), where)


def _einsum(parser: _Parser, where: str, args: list, kwargs: dict) -> Node:
    """``einsum("ij,jk->ik", A, B)``; with an arrow, the op's terms and output as written."""
    if not args or not isinstance(args[0], str) or kwargs:
        raise ParseError(f'{where}: einsum("subscripts", operands...)')
    operands = [parser._operand(a, 0) for a in args[1:]]
    if "->" not in args[0]:
        return _call(ops.einsum, where, args[0], *operands)
    terms, out = args[0].split("->", 1)
    return _call(apply, where, REGISTRY["einsum"], *operands, terms=tuple(terms.split(",")), out=out)


def _const(parser: _Parser, where: str, args: list, kwargs: dict) -> Node:
    raise ParseError(f"{where}: a constant array printed by its shape; its values are not in the text")


# -- loops: scan(body, init, xs, *captured, ...) and while_loop(cond, body, init, *captured, ...) -------
class _Typed:
    """What tracing a body needs of an argument: its shape and dtype (an item of a sequence)."""

    def __init__(self, shape: tuple, dtype: np.dtype):
        self.shape, self.dtype = shape, dtype


def _loop_items(parser: _Parser, value: Any, where: str) -> list[Node]:
    """A loop's init, xs or captured nodes as written: one value, a tuple of them, or None (no xs)."""
    items = [] if value is None else list(value) if isinstance(value, tuple) else [value]
    out = []
    for v in items:
        if _is_number(v):  # its dtype as written: 0 an int64 carry, 0.0 a float64 one
            out.append(parser.graph.constant(np.asarray(v)))
        elif isinstance(v, (Node, list)):
            out.append(parser._operand(v, 0))
        else:
            raise ParseError(f"{where}: an argument is {type(v).__name__}, not a value")
    return out


def _loop_body(fn: Any, types: list, graph: Graph, several: bool, what: str, where: str) -> tuple[Region, tuple]:
    """A definition traced as a loop's body on arguments of ``types``: its region and the outer
    nodes it captured (beyond its parameters)."""
    if not isinstance(fn, Composite):
        raise ParseError(f"{where}: the {what} must be the name of a definition before it (f(x) = ...)")
    if len(fn.params) != len(types):
        raise ParseError(
            f"{where}: the {what} {fn.name}({', '.join(fn.params)}) takes {len(fn.params)} parameter(s), the loop "
            f"gives it {len(types)}"
        )
    region, captured = fn._trace(graph, tuple(types))
    return Region(region.graph, region.params, region.outputs, region.name, several), captured


def _scan(parser: _Parser, where: str, args: list, kwargs: dict) -> _Multi:
    """``scan(body, init, xs, *captured, length=, reverse=, checkpoint=, steps=)``: a scan node
    running the definition ``body`` (JAX's argument order; a tuple for several init or xs items,
    None for no xs)."""
    if len(args) < 3 or set(kwargs) - {"length", "reverse", "checkpoint", "steps"}:
        raise ParseError(f"{where}: scan(body, init, xs, *captured, length=, reverse=, checkpoint=, steps=)")
    init, xs = _loop_items(parser, args[1], where), _loop_items(parser, args[2], where)
    caps = _loop_items(parser, tuple(args[3:]), where)
    length = kwargs.get("length", xs[0].shape[0] if xs else None)
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ParseError(f"{where}: give length=, a non-negative integer (the number of steps)")
    if any(len(x.shape) == 0 or x.shape[0] not in (None, length) for x in xs):
        raise ParseError(f"{where}: the xs are not sequences of length {length} (axis 0)")
    checkpoint = kwargs.get("checkpoint")
    if checkpoint is not None and not (
        isinstance(checkpoint, tuple)
        and len(checkpoint) == 2
        and checkpoint[0] in ("every", "revolve")
        and isinstance(checkpoint[1], int)
        and checkpoint[1] > 0
    ):
        raise ParseError(f'{where}: checkpoint=("every", k) or ("revolve", snapshots)')
    steps = kwargs.get("steps")
    if steps is not None:
        steps = steps if isinstance(steps, Node) else parser.graph.constant(np.int64(steps))
    types = [_Typed(x.shape, x.dtype) for x in init] + [_Typed(x.shape[1:], x.dtype) for x in xs] + caps
    region, captured = _loop_body(args[0], types, parser.graph, True, "body", where)
    outs = region.outputs
    if len(outs) < len(init):
        raise ParseError(f"{where}: the body returns {len(outs)} value(s) for {len(init)} carry item(s)")
    check_carry(region.name, list(outs[: len(init)]), list(region.params[: len(init)]), len(init) > 1)
    attrs = {
        "name": region.name,
        "length": length,
        "carries": len(init),
        "xs": len(xs),
        "ys": len(outs) - len(init),
        "reverse": bool(kwargs.get("reverse", False)),
        "counted": steps is not None,
        "checkpoint": checkpoint,
    }
    inputs = init + xs + caps + list(captured) + ([steps] if steps is not None else [])
    node = _call(make_scan, where, region, inputs, attrs)
    return _Multi(outputs_of(node), tuple(REGISTRY["scan"].notation.outputs(node)), "scan()")


def _while(parser: _Parser, where: str, args: list, kwargs: dict) -> _Multi:
    """``while_loop(cond, body, init, *captured, max_steps=)``: a while_loop node; the captured
    arguments are the condition's, then the body's (as many as their definitions take)."""
    if len(args) < 3 or set(kwargs) - {"max_steps"}:
        raise ParseError(f"{where}: while_loop(cond, body, init, *captured, max_steps=)")
    init, caps = _loop_items(parser, args[2], where), _loop_items(parser, tuple(args[3:]), where)
    max_steps = kwargs.get("max_steps")
    if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0):
        raise ParseError(f"{where}: max_steps must be a non-negative integer")
    nc = len(init)
    ncond = len(args[0].params) - nc if isinstance(args[0], Composite) else 0
    if not 0 <= ncond <= len(caps):
        raise ParseError(f"{where}: the condition takes the carry ({nc} item(s)) and captured nodes")
    carry = [_Typed(x.shape, x.dtype) for x in init]
    cond, cond_captured = _loop_body(args[0], carry + caps[:ncond], parser.graph, False, "condition", where)
    body, body_captured = _loop_body(args[1], carry + caps[ncond:], parser.graph, True, "body", where)
    check_carry(body.name, list(body.outputs), list(body.params[:nc]), nc > 1)
    flag = cond.outputs[0]
    if len(cond.outputs) != 1 or flag.shape != () or flag.dtype != np.bool_:
        raise ParseError(f"{where}: the condition {cond.name} must give one boolean scalar")
    ccaps, bcaps = caps[:ncond] + list(cond_captured), caps[ncond:] + list(body_captured)
    attrs = {"name": body.name, "carries": nc, "conds": len(ccaps), "max_steps": max_steps}
    node = _call(make_while, where, cond, body, init, ccaps, bcaps, attrs)
    return _Multi(outputs_of(node), tuple(REGISTRY["while_loop"].notation.outputs(node)), "while_loop()")


_LOOPS = ("scan", "while_loop")
_BUILDERS: dict[str, Callable[..., Any]] = {
    "full": _full,
    "ones": _ones,
    "eye": _eye,
    "einsum": _einsum,
    "const": _const,
    "scan": _scan,
    "while_loop": _while,
}
