"""Scalar expressions as data: what an elementwise op computes on one element.

An op declares its element as a small tree over its inputs' elements, built with Python's
operators and the functions of this module (``import symdiff.scalar as sx``)::

    scalar=lambda x: sx.maximum(x, 0.0) + sx.log1p(sx.exp(-abs(x)))   # softplus

A tree is immutable and hashable: arguments (``arg(i)``, input i's element), constants (a
float or a bool) and calls of a fixed vocabulary of scalar functions (``FUNCTIONS``). From
it come

- its text in each target language, one printer per language, each a function of the tree,
  the arguments' texts and the dtype it computes in: :func:`to_python` (the ``math`` module:
  the interpreter's scalar steps and the numpy backend's code), :func:`to_numba`, :func:`to_c`
  (C99 ``<math.h>``, with :data:`C_PRELUDE`) and :func:`to_jnp` (``jax.numpy``);
- its derivatives: :func:`partial` differentiates a tree by one argument (the chain rule over
  the vocabulary), which ``define_op`` turns into an op's partials when it declares none.

The vocabulary's meaning is numpy's (``maximum`` propagates nan, ``floor`` is a float); each
printer spells that in its language. One exception, kept because the scalar steps have always
computed so: the Python printer writes ``maximum(x, y)`` as Python's ``max(x, y)``, which is x
unless y > x (nan in x propagates; a nan y, or -0.0 against 0.0, gives x), and ``floor`` and
``ceil`` through ``math``'s ints (a zero result is +0.0; inf and nan raise, and the evaluator
computes numpy's). The numba printer writes numpy's own functions there (numba's ``math.floor``
returns an int64, which wraps for nan, inf and 1e300). Nothing
here knows about graphs or ops.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symdiff.errors import GraphError, NonDifferentiableError

# name -> number of arguments. Comparisons and the logical functions give booleans; select
# is numpy's where; floor and ceil give floats (as numpy's).
FUNCTIONS: dict[str, int] = {
    **dict.fromkeys(("add", "sub", "mul", "div", "pow", "maximum", "minimum", "arctan2", "hypot"), 2),
    **dict.fromkeys(("neg", "abs", "sign", "floor", "ceil", "sqrt", "exp", "expm1", "log", "log1p"), 1),
    **dict.fromkeys(("sin", "cos", "tan", "arcsin", "arccos", "arctan", "erf", "erfc"), 1),
    **dict.fromkeys(("sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh"), 1),
    **dict.fromkeys(("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"), 2),
    **dict.fromkeys(("logical_and", "logical_or"), 2),
    "logical_not": 1,
    "select": 3,
}
COMPARISONS = {"greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "equal": "==", "not_equal": "!="}
BOOLEAN = frozenset((*COMPARISONS, "logical_and", "logical_or", "logical_not"))
_ARITHMETIC = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


class Expr:
    """One node of a scalar expression: ``op`` is ``"arg"`` (``value``: the argument's position),
    ``"const"`` (``value``: a float or bool) or a name of ``FUNCTIONS`` applied to ``args``.

    Immutable and hashable; equal trees are equal (``==`` compares structure: the scalar
    comparison is :func:`equal`). Python's operators build calls (``x + 1.0``, ``-x``,
    ``x ** 2``, ``x > y``, ``a & b``, ``abs(x)``); a tree has no truth value.

    >>> x = arg(0)
    >>> x * 2.0 + sin(x)
    add(mul(x0, 2.0), sin(x0))
    """

    __slots__ = ("op", "args", "value", "_hash")

    def __init__(self, op: str, args: tuple[Expr, ...] = (), value: Any = None):
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_hash", hash((op, args, _value_key(value))))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a scalar expression is immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Expr) or self._hash != other._hash:
            return False
        return self.op == other.op and self.args == other.args and _value_key(self.value) == _value_key(other.value)

    def __bool__(self) -> bool:
        raise TypeError("a scalar expression has no truth value: choose with sx.select(condition, a, b)")

    def __repr__(self) -> str:
        if self.op == "arg":
            return f"x{self.value}"
        if self.op == "const":
            return repr(self.value)
        return f"{self.op}({', '.join(map(repr, self.args))})"

    def __add__(self, other: Any) -> Expr:
        return call("add", self, other)

    def __radd__(self, other: Any) -> Expr:
        return call("add", other, self)

    def __sub__(self, other: Any) -> Expr:
        return call("sub", self, other)

    def __rsub__(self, other: Any) -> Expr:
        return call("sub", other, self)

    def __mul__(self, other: Any) -> Expr:
        return call("mul", self, other)

    def __rmul__(self, other: Any) -> Expr:
        return call("mul", other, self)

    def __truediv__(self, other: Any) -> Expr:
        return call("div", self, other)

    def __rtruediv__(self, other: Any) -> Expr:
        return call("div", other, self)

    def __pow__(self, other: Any) -> Expr:
        return call("pow", self, other)

    def __rpow__(self, other: Any) -> Expr:
        return call("pow", other, self)

    def __neg__(self) -> Expr:
        return call("neg", self)

    def __abs__(self) -> Expr:
        return call("abs", self)

    def __gt__(self, other: Any) -> Expr:
        return call("greater", self, other)

    def __ge__(self, other: Any) -> Expr:
        return call("greater_equal", self, other)

    def __lt__(self, other: Any) -> Expr:
        return call("less", self, other)

    def __le__(self, other: Any) -> Expr:
        return call("less_equal", self, other)

    def __and__(self, other: Any) -> Expr:
        return call("logical_and", self, other)

    def __rand__(self, other: Any) -> Expr:
        return call("logical_and", other, self)

    def __or__(self, other: Any) -> Expr:
        return call("logical_or", self, other)

    def __ror__(self, other: Any) -> Expr:
        return call("logical_or", other, self)

    def __invert__(self) -> Expr:
        return call("logical_not", self)


def _value_key(value: Any) -> Any:
    # 1.0 and True differ, and a nan constant equals itself
    return None if value is None else (type(value).__name__, repr(value))


def arg(i: int) -> Expr:
    """Argument ``i``: the element of the op's input ``i``.

    >>> arg(1)
    x1
    """
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
        raise GraphError(f"a scalar expression's argument is numbered 0, 1, ...; got {i!r}")
    return Expr("arg", value=int(i))


def const(value: Any) -> Expr:
    """A constant: a bool stays a bool, any other real number becomes a float.

    >>> const(2), const(True)
    (2.0, True)
    """
    if isinstance(value, Expr):
        return value
    if isinstance(value, (bool, np.bool_)):
        return Expr("const", value=bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return Expr("const", value=float(value))
    raise GraphError(f"a scalar expression holds numbers and other expressions, not {type(value).__name__}")


def call(name: str, *args: Any) -> Expr:
    """``name(*args)`` for a function of ``FUNCTIONS``; numbers among ``args`` become constants.

    >>> call("hypot", arg(0), 1.0)
    hypot(x0, 1.0)
    """
    if name not in FUNCTIONS:
        raise GraphError(f"{name!r} is not a scalar function; the vocabulary: {', '.join(FUNCTIONS)}")
    if len(args) != FUNCTIONS[name]:
        raise GraphError(f"scalar function {name} takes {FUNCTIONS[name]} argument(s), got {len(args)}")
    return Expr(name, tuple(const(a) for a in args))


def _unary(name: str, doc: str) -> Callable[[Any], Expr]:
    def fn(x: Any) -> Expr:
        return call(name, x)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _binary(name: str, doc: str) -> Callable[[Any, Any], Expr]:
    def fn(x: Any, y: Any) -> Expr:
        return call(name, x, y)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


exp = _unary("exp", "``e**x``.")
expm1 = _unary("expm1", "``e**x - 1``, accurate near 0.")
log = _unary("log", "Natural logarithm.")
log1p = _unary("log1p", "``log(1 + x)``, accurate near 0.")
sqrt = _unary("sqrt", "Square root.")
sin = _unary("sin", "Sine.")
cos = _unary("cos", "Cosine.")
tan = _unary("tan", "Tangent.")
arcsin = _unary("arcsin", "Inverse sine.")
arccos = _unary("arccos", "Inverse cosine.")
arctan = _unary("arctan", "Inverse tangent.")
sinh = _unary("sinh", "Hyperbolic sine.")
cosh = _unary("cosh", "Hyperbolic cosine.")
tanh = _unary("tanh", "Hyperbolic tangent.")
arcsinh = _unary("arcsinh", "Inverse hyperbolic sine.")
arccosh = _unary("arccosh", "Inverse hyperbolic cosine.")
arctanh = _unary("arctanh", "Inverse hyperbolic tangent.")
erf = _unary("erf", "The error function.")
erfc = _unary("erfc", "``1 - erf(x)``, accurate where erf is near 1.")
abs = _unary("abs", "Absolute value (also Python's ``abs(x)``).")  # noqa: A001 (numpy's name)
sign = _unary("sign", "-1.0, 0.0 or 1.0 (nan for nan), as numpy's.")
floor = _unary("floor", "The largest integer not above x, as a float.")
ceil = _unary("ceil", "The smallest integer not below x, as a float.")
logical_not = _unary("logical_not", "``not x`` (also ``~x``).")
power = _binary("pow", "``x**y`` (also Python's ``x ** y``).")
maximum = _binary("maximum", "The larger of x and y; nan if either is nan (numpy's ``maximum``).")
minimum = _binary("minimum", "The smaller of x and y; nan if either is nan (numpy's ``minimum``).")
arctan2 = _binary("arctan2", "The angle of the point (x, y) = (second, first argument), as numpy's.")
hypot = _binary("hypot", "``sqrt(x**2 + y**2)`` without overflow.")
greater = _binary("greater", "``x > y`` (also Python's ``>``).")
greater_equal = _binary("greater_equal", "``x >= y`` (also Python's ``>=``).")
less = _binary("less", "``x < y`` (also Python's ``<``).")
less_equal = _binary("less_equal", "``x <= y`` (also Python's ``<=``).")
equal = _binary("equal", "``x == y`` (``==`` on trees compares them as trees).")
not_equal = _binary("not_equal", "``x != y``.")
logical_and = _binary("logical_and", "``x and y`` (also ``x & y``).")
logical_or = _binary("logical_or", "``x or y`` (also ``x | y``).")


def select(condition: Any, x: Any, y: Any) -> Expr:
    """``x`` where ``condition`` holds, else ``y`` (numpy's ``where``, element by element).

    >>> select(arg(0) > 0.0, arg(0), 0.0)
    select(greater(x0, 0.0), x0, 0.0)
    """
    return call("select", condition, x, y)


def from_function(fn: Callable[..., Any] | Expr, arity: int | None = None) -> Expr:
    """The tree ``fn`` builds from arguments ``arg(0) .. arg(arity - 1)`` (``arity``: by default
    the number of ``fn``'s parameters); a tree is returned as it is.

    >>> from_function(lambda x, y: x * y + 1.0)
    add(mul(x0, x1), 1.0)
    """
    if isinstance(fn, Expr):
        return fn
    if not callable(fn):
        raise GraphError(f"a scalar expression is a tree or a function building one, not {type(fn).__name__}")
    return const(fn(*(arg(k) for k in range(parameters(fn) if arity is None else arity))))


def parameters(fn: Callable[..., Any]) -> int:
    """How many positional parameters ``fn`` takes: the arity of the tree it builds.

    >>> parameters(lambda c, x, y: select(c, x, y))
    3
    """
    params = inspect.signature(fn).parameters.values()
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def walk(tree: Expr) -> list[Expr]:
    """Every distinct node of ``tree``, each after its arguments."""
    seen: dict[Expr, None] = {}
    stack: list[tuple[Expr, bool]] = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        if node in seen:
            continue
        if ready or not node.args:
            seen[node] = None
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args) if a not in seen)
    return list(seen)


def arity(tree: Expr) -> int:
    """One more than the highest argument the tree reads (0 for a constant tree).

    >>> arity(arg(0) + arg(2))
    3
    """
    return max((n.value + 1 for n in walk(tree) if n.op == "arg"), default=0)


@functools.cache
def uses(tree: Expr, i: int) -> int:
    """How many times argument ``i`` occurs in the tree (shared subtrees counted each time they
    occur): how many times its text appears in any printer's text.

    >>> uses(arg(0) * arg(0) + arg(1), 0)
    2
    """
    counts: dict[Expr, int] = {}
    for node in walk(tree):
        if node.op == "arg":
            counts[node] = int(node.value == i)
        else:
            counts[node] = sum(counts[a] for a in node.args)
    return counts[tree]


def boolean(tree: Expr) -> bool:
    """Whether the tree's value is a bool (a comparison, a logical function, a bool constant)."""
    if tree.op == "const":
        return isinstance(tree.value, bool)
    if tree.op == "select":
        return boolean(tree.args[1]) and boolean(tree.args[2])
    return tree.op in BOOLEAN


def differentiable(tree: Expr) -> bool:
    """Whether :func:`partial` differentiates the tree: whether its value is a number (a boolean
    result, as a comparison's, has no derivative)."""
    return not boolean(tree)


# -- derivatives ---------------------------------------------------------------------------
_ZERO, _ONE, _HALF = Expr("const", value=0.0), Expr("const", value=1.0), Expr("const", value=0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _is(tree: Expr, value: float) -> bool:
    return tree.op == "const" and not isinstance(tree.value, bool) and tree.value == value


# Derivatives are built with these, which drop the zero terms and unit factors of the chain
# rule (the usual symbolic 0 * x = 0: a term whose inner derivative is structurally zero).
def _add(a: Expr, b: Expr) -> Expr:
    return b if _is(a, 0.0) else a if _is(b, 0.0) else a + b


def _mul(a: Expr, b: Expr) -> Expr:
    if _is(a, 0.0) or _is(b, 0.0):
        return _ZERO
    return b if _is(a, 1.0) else a if _is(b, 1.0) else a * b


def _neg(a: Expr) -> Expr:
    if a.op == "const" and not isinstance(a.value, bool):
        return const(-a.value)
    return a.args[0] if a.op == "neg" else -a


def _reciprocal(a: Expr) -> Expr:
    return 1.0 / a


def _tie_share(wins: Expr, x: Expr, y: Expr) -> Expr:
    # the extremum's partial by x: 1 where x wins, half at a tie, 0 where it loses (as the op's)
    return select(wins, 1.0, select(equal(x, y), 0.5, 0.0))


# name -> (args, out) -> the partial derivatives of name(*args) by each argument (None: none
# flows, as by a condition); out is the call itself, which a derivative may reuse
_RULES: dict[str, Callable[[tuple[Expr, ...], Expr], tuple[Expr | None, ...]]] = {
    "add": lambda a, out: (_ONE, _ONE),
    "sub": lambda a, out: (_ONE, const(-1.0)),
    "mul": lambda a, out: (a[1], a[0]),
    "div": lambda a, out: (_reciprocal(a[1]), -(out / a[1])),
    "neg": lambda a, out: (const(-1.0),),
    "pow": lambda a, out: (a[1] * a[0] ** (a[1] - 1.0), log(a[0]) * out),
    "exp": lambda a, out: (out,),
    "expm1": lambda a, out: (exp(a[0]),),
    "log": lambda a, out: (_reciprocal(a[0]),),
    "log1p": lambda a, out: (_reciprocal(1.0 + a[0]),),
    "sqrt": lambda a, out: (0.5 / out,),
    "sin": lambda a, out: (cos(a[0]),),
    "cos": lambda a, out: (-sin(a[0]),),
    "tan": lambda a, out: (1.0 + out * out,),
    "tanh": lambda a, out: (1.0 - out * out,),
    "arcsin": lambda a, out: (_reciprocal(sqrt(1.0 - a[0] * a[0])),),
    "arccos": lambda a, out: (-_reciprocal(sqrt(1.0 - a[0] * a[0])),),
    "arctan": lambda a, out: (_reciprocal(1.0 + a[0] * a[0]),),
    "sinh": lambda a, out: (cosh(a[0]),),
    "cosh": lambda a, out: (sinh(a[0]),),
    "arcsinh": lambda a, out: (_reciprocal(sqrt(a[0] * a[0] + 1.0)),),
    "arccosh": lambda a, out: (_reciprocal(sqrt(a[0] * a[0] - 1.0)),),
    "arctanh": lambda a, out: (_reciprocal(1.0 - a[0] * a[0]),),
    "erf": lambda a, out: (_TWO_OVER_SQRT_PI * exp(-(a[0] * a[0])),),
    "erfc": lambda a, out: (-_TWO_OVER_SQRT_PI * exp(-(a[0] * a[0])),),
    "abs": lambda a, out: (sign(a[0]),),  # 0 at 0
    "sign": lambda a, out: (_ZERO,),  # piecewise constant: 0, the jumps included
    "floor": lambda a, out: (_ZERO,),
    "ceil": lambda a, out: (_ZERO,),
    "maximum": lambda a, out: (_tie_share(a[0] > a[1], a[0], a[1]), _tie_share(a[1] > a[0], a[1], a[0])),
    "minimum": lambda a, out: (_tie_share(a[0] < a[1], a[0], a[1]), _tie_share(a[1] < a[0], a[1], a[0])),
    # nan at the origin, where the angle has no derivative
    "arctan2": lambda a, out: (a[1] / (a[1] * a[1] + a[0] * a[0]), -(a[0] / (a[1] * a[1] + a[0] * a[0]))),
    # x / out, 0 at the origin (the subgradient of |(x, y)|)
    "hypot": lambda a, out: tuple(a[k] / select(equal(out, 0.0), 1.0, out) for k in range(2)),
}


def partial(tree: Expr, i: int) -> Expr:
    """The derivative of ``tree`` by argument ``i``, as a tree (the chain rule over the
    vocabulary; a ``select`` differentiates each branch where it is taken, so an untaken
    branch's inf never reaches the result). Booleans have derivative 0 inside a tree; a tree
    whose value is a boolean raises :class:`~symdiff.NonDifferentiableError`.

    >>> x = arg(0)
    >>> partial(sin(x) * x, 0)
    add(mul(x0, cos(x0)), sin(x0))
    >>> partial(select(x > 0.0, x, 0.0), 0)
    select(greater(x0, 0.0), 1.0, 0.0)
    """
    if not differentiable(tree):
        raise NonDifferentiableError(f"the scalar expression {tree!r} is a boolean: it has no derivative")
    done: dict[Expr, Expr] = {}
    for node in walk(tree):
        if node.op == "arg":
            done[node] = _ONE if node.value == i else _ZERO
        elif node.op == "const" or node.op in BOOLEAN:
            done[node] = _ZERO
        elif node.op == "select":
            c, x, y = node.args
            dx, dy = done[x], done[y]
            done[node] = _ZERO if _is(dx, 0.0) and _is(dy, 0.0) else select(c, dx, dy)
        else:
            total = _ZERO
            inner = [done[a] for a in node.args]
            if all(_is(d, 0.0) for d in inner):
                done[node] = _ZERO
                continue
            for outer, d in zip(_RULES[node.op](node.args, node), inner):
                if outer is not None and not _is(d, 0.0):
                    total = _add(total, _mul(outer, d))
            done[node] = total
    return done[tree]


# -- printers ------------------------------------------------------------------------------
Table = dict[str, Callable[..., str]]


# language -> (its table of calls, its constants' text); filled below, one entry per printer
_LANGUAGES: dict[str, tuple[Table, Callable[[Any], str]]] = {}


@functools.cache
def _template(language: str, tree: Expr) -> tuple[str, int]:
    """The tree's text in ``language`` with ``{k}`` for argument k (a format string), and its arity."""
    table, constant = _LANGUAGES[language]
    texts: dict[Expr, str] = {}
    for node in walk(tree):
        if node.op == "arg":
            texts[node] = f"{{{node.value}}}"
        elif node.op == "const":
            texts[node] = constant(node.value).replace("{", "{{").replace("}", "}}")
        else:
            texts[node] = table[node.op](*(texts[a] for a in node.args))
    return texts[tree], arity(tree)


def _render(language: str, tree: Expr, args: Sequence[str]) -> str:
    """The tree's text in ``language``: each argument's text from ``args``, each call's from the
    language's table (printed once per tree, then filled in)."""
    template, n = _template(language, tree)
    if len(args) < n:
        raise GraphError(f"the scalar expression {tree!r} reads {n} argument(s); {len(args)} given")
    return template.format(*args)


def _infix(symbol: str) -> Callable[[str, str], str]:
    return lambda a, b: f"({a} {symbol} {b})"


def _called(name: str) -> Callable[..., str]:
    return lambda *a: f"{name}({', '.join(a)})"


_PY_MATH = {
    **{f: f for f in ("exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh")},
    **{f: f for f in ("erf", "erfc", "hypot")},
    **{f: f.replace("arc", "a", 1) for f in ("arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh")},
    "arctan2": "atan2",
    "pow": "pow",
}
_PYTHON: Table = {
    **{name: _infix(symbol) for name, symbol in {**_ARITHMETIC, **COMPARISONS}.items()},
    **{name: _called(f"_math.{fn}") for name, fn in _PY_MATH.items()},
    "neg": lambda a: f"(-{a})",
    "abs": _called("abs"),
    "maximum": _called("max"),  # max(x, 0.0): x where it is nan, as numpy's (relu's argument order)
    "minimum": _called("min"),
    "floor": lambda a: f"float(_math.floor({a}))",
    "ceil": lambda a: f"float(_math.ceil({a}))",
    # the argument's text once (uses() counts the texts a printer writes)
    "sign": lambda a: f"(lambda v: 0.0 if v == 0 else _math.copysign(1.0, v) if v == v else v)({a})",
    "select": lambda c, a, b: f"({a} if {c} else {b})",
    "logical_and": _infix("and"),
    "logical_or": _infix("or"),
    "logical_not": lambda a: f"(not {a})",
}


def _finite_or(value: Any, inf: str, nan: str, finite: Callable[[float], str] = repr) -> str:
    """A constant's text: a bool's repr, ``nan``, ``inf`` or ``finite(value)``, a negative one
    bracketed (``(-1.0)``), as any operand may be printed after an operator."""
    if isinstance(value, bool):
        return repr(value)
    if math.isnan(value):
        return nan
    text = inf if math.isinf(value) else finite(value)
    return f"(-{text.lstrip('-')})" if value < 0 or (value == 0 and math.copysign(1.0, value) < 0) else text


def to_python(tree: Expr, args: Sequence[str], dtype: Any = np.float64) -> str:
    """The tree as a Python expression on floats, over the ``math`` module named ``_math``
    (the interpreter's scalar steps and the numpy backend's code; ``dtype`` is float64's).
    Each argument's text appears :func:`uses` times.

    >>> to_python(maximum(arg(0), 0.0) + log1p(exp(-abs(arg(0)))), ["x"])
    '(max(x, 0.0) + _math.log1p(_math.exp((-abs(x)))))'
    """
    return _render("python", tree, args)


# numba compiles no lambda inside a function; its math.floor and math.ceil return an int64 (nan,
# inf and 1e300 wrap): numpy's functions, as numba compiles them on scalars, where a zero's sign
# is numpy's only so: its maximum and minimum give the first of two equal (numpy's the second),
# its sign(-0.0) is -0.0 (numpy's 0.0)
_NUMBA: Table = {
    **_PYTHON,
    "floor": _called("np.floor"),
    "ceil": _called("np.ceil"),
    "maximum": lambda a, b: f"np.maximum({b}, {a})",
    "minimum": lambda a, b: f"np.minimum({b}, {a})",
    "sign": lambda a: f"(np.sign({a}) + 0.0)",
}


def _integral(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def to_numba(tree: Expr, args: Sequence[str], dtype: Any = np.float64) -> str:
    """The tree as an expression in a numba ``njit`` function of a module that imports
    ``math as _math`` and ``numpy as np``: as :func:`to_python`, numba's scalar math (the
    numba backend's looped and fused elementwise code casts the result to ``dtype``).

    >>> to_numba(sign(arg(0)) * arg(1), ["a", "b"])
    '((np.sign(a) + 0.0) * b)'
    """
    return _render("numba_int" if np.dtype(dtype).kind in "iu" else "numba", tree, args)


_C_MATH = {
    **{f: f for f in ("exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh")},
    **{f: f for f in ("erf", "erfc", "hypot", "floor", "ceil", "pow")},
    **{f: f.replace("arc", "a", 1) for f in ("arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh")},
    "arctan2": "atan2",
    "abs": "fabs",
    # numpy's meaning (nan propagates; sign(0) = 0), which fmax, fmin and copysign do not have
    "maximum": "symdiff_maximum",
    "minimum": "symdiff_minimum",
    "sign": "symdiff_sign",
}

C_PRELUDE = """#include <math.h>

static inline double symdiff_maximum(double a, double b) { return (a > b || a != a) ? a : b; }
static inline double symdiff_minimum(double a, double b) { return (a < b || a != a) ? a : b; }
static inline double symdiff_sign(double a) { return a > 0 ? 1.0 : a < 0 ? -1.0 : a == 0 ? 0.0 : a; }
static inline float symdiff_maximumf(float a, float b) { return (a > b || a != a) ? a : b; }
static inline float symdiff_minimumf(float a, float b) { return (a < b || a != a) ? a : b; }
static inline float symdiff_signf(float a) { return a > 0 ? 1.0f : a < 0 ? -1.0f : a == 0 ? 0.0f : a; }
"""


def _c_table(single: bool) -> Table:
    suffix = "f" if single else ""
    return {
        **{name: _infix(symbol) for name, symbol in {**_ARITHMETIC, **COMPARISONS}.items()},
        **{name: _called(fn + suffix) for name, fn in _C_MATH.items()},
        "neg": lambda a: f"(-{a})",
        "select": lambda c, a, b: f"({c} ? {a} : {b})",
        "logical_and": _infix("&&"),
        "logical_or": _infix("||"),
        "logical_not": lambda a: f"(!{a})",
    }


def _c_constant(value: Any, single: bool) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if not single:
        return _finite_or(value, "INFINITY", "NAN")
    with np.errstate(over="ignore"):  # 1e300 is inf in float, as numpy's float32
        value = float(np.float32(value))
    return _finite_or(value, "INFINITY", "NAN", _float_literal)


def _float_literal(value: float) -> str:
    # the shortest text that reads back as the same float32 (0.001f, 1e-05f), with a point or an
    # exponent before the suffix, as C's floating constants need
    text = str(np.float32(value))
    return (text if "." in text or "e" in text else text + ".0") + "f"


def to_c(tree: Expr, args: Sequence[str], dtype: Any = np.float64) -> str:
    """The tree as a C99 expression over ``<math.h>`` and the helpers of :data:`C_PRELUDE`,
    computing in ``float`` for a float32 ``dtype`` (``sinf``, ``1.0f``), else in ``double``.

    >>> to_c(select(arg(0) > 0.0, sin(arg(0)), 0.5), ["x"], np.float32)
    '((x > 0.0f) ? sinf(x) : 0.5f)'
    """
    return _render("c32" if np.dtype(dtype) == np.float32 else "c64", tree, args)


_JNP: Table = {
    **{name: _infix(symbol) for name, symbol in {**_ARITHMETIC, **COMPARISONS}.items()},
    **{name: _called(f"jnp.{name}") for name in ("exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tan")},
    **{name: _called(f"jnp.{name}") for name in ("arcsin", "arccos", "arctan", "sinh", "cosh", "tanh")},
    **{name: _called(f"jnp.{name}") for name in ("arcsinh", "arccosh", "arctanh", "abs", "sign", "floor", "ceil")},
    **{name: _called(f"jnp.{name}") for name in ("maximum", "minimum", "arctan2", "hypot")},
    **{name: _called(f"jnp.{name}") for name in ("logical_and", "logical_or", "logical_not")},
    "erf": _called("jax.scipy.special.erf"),
    "erfc": _called("jax.scipy.special.erfc"),
    "pow": _called("jnp.power"),
    "neg": lambda a: f"(-{a})",
    "select": _called("jnp.where"),
}


def to_jnp(tree: Expr, args: Sequence[str], dtype: Any = np.float64) -> str:
    """The tree as a ``jax.numpy`` expression on arrays (names ``jnp`` and ``jax``, with
    ``jax.scipy.special`` imported); Python float constants are weak, so the arrays' dtype holds.

    >>> to_jnp(select(arg(0) > 0.0, arg(0), 0.0), ["x"])
    'jnp.where((x > 0.0), x, 0.0)'
    """
    return _render("jnp", tree, args)


@functools.cache
def python_function(tree: Expr, n: int | None = None) -> Callable[..., Any]:
    """The tree as a Python function of ``n`` floats (by default the tree's :func:`arity`), computing
    by :func:`to_python`'s text; ``math`` raises where numpy gives inf or nan (``log(0.0)``).

    >>> python_function(arg(0) * 2.0 + 1.0)(3.0)
    7.0
    """
    n = arity(tree) if n is None else n
    names = [f"a{k}" for k in range(n)]
    return eval(f"lambda {', '.join(names)}: {to_python(tree, names)}", {"_math": math})  # our own printed text


_LANGUAGES.update(
    python=(_PYTHON, lambda v: _finite_or(v, "_math.inf", "_math.nan")),
    numba=(_NUMBA, lambda v: _finite_or(v, "_math.inf", "_math.nan")),
    # an integer result (relu, clip of integers): integral constants as ints, so numba's maximum
    # of an int64 and 0 stays an int64 (through a float, 2**63 - 1 came back as -2**63)
    numba_int=(_NUMBA, lambda v: _finite_or(v, "_math.inf", "_math.nan", _integral)),
    c64=(_c_table(False), lambda v: _c_constant(v, False)),
    c32=(_c_table(True), lambda v: _c_constant(v, True)),
    jnp=(_JNP, lambda v: _finite_or(v, "jnp.inf", "jnp.nan")),
)
