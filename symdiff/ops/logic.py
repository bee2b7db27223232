"""Comparisons (boolean, not differentiable) and ``where``, the elementwise selection."""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

import symdiff.scalar as sx
from symdiff.graph import Node
from symdiff.ops.core import apply, as_nodes, bool_dtype, derive_function
from symdiff.ops.families import elementwise_op

ArrayLike = Any


def _comparison(name: str, symbol: str, relation, *, commutative: bool = False) -> Any:
    return elementwise_op(
        name,
        numpy=name,
        dtype=bool_dtype,
        arity=2,
        properties=("commutative",) if commutative else (),
        symbol=symbol,
        precedence=5,
        # a > b > c is a chain in Python (a > b and b > c): a comparison of a comparison is bracketed
        text=lambda node, args, wrap: (f"{wrap(0, 6)} {symbol} {wrap(1, 6)}", 5),
        sympy=lambda x, y: np.vectorize(relation, otypes=[object])(x, y),
        sympy_name=relation.__name__,  # StrictGreaterThan: what sympy.Gt builds
        doc=f"x {symbol} y; not differentiable",
        scalar=getattr(sx, name),
    )


GREATER = _comparison("greater", ">", sympy.Gt)
GREATER_EQUAL = _comparison("greater_equal", ">=", sympy.Ge)
LESS = _comparison("less", "<", sympy.Lt)
LESS_EQUAL = _comparison("less_equal", "<=", sympy.Le)
EQUAL = _comparison("equal", "==", sympy.Eq, commutative=True)
NOT_EQUAL = _comparison("not_equal", "!=", sympy.Ne, commutative=True)

_EXAMPLE = """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.evaluate({expr}, {{x: 2.0}}))
    {result}"""


def _public(op, expr: str, result: str, note: str = "") -> Any:
    """The comparison's public function; its example prints ``expr`` at x = 2 (``result``)."""
    summary = f"Elementwise ``x {op.symbol} y`` (boolean; not differentiable).{note}"
    return derive_function(op, summary, _EXAMPLE.format(expr=expr, result=result))


greater = _public(GREATER, "x > 0", "True", " Also ``x > y`` on nodes.")
greater_equal = _public(GREATER_EQUAL, "x >= 2", "True")
less = _public(LESS, "x < 0", "False")
less_equal = _public(LESS_EQUAL, "x <= 2", "True")
equal = _public(EQUAL, "sd.equal(x, 2)", "True", " ``==`` on nodes stays identity.")
not_equal = _public(NOT_EQUAL, "sd.not_equal(x, 2)", "False")


def _sympy_where(c, x, y):
    return np.vectorize(lambda c, x, y: sympy.Piecewise((x, c), (y, True)), otypes=[object])(c, x, y)


WHERE = elementwise_op(
    "where",
    numpy="where",
    dtype=lambda c, x, y: np.result_type(x, y),
    # The condition carries no gradient; the branch not taken gets zero.
    vjp=(None, lambda g, out, c, x, y: where(c, g, 0.0), lambda g, out, c, x, y: where(c, 0.0, g)),
    sympy=_sympy_where,
    sympy_name="Piecewise",
    doc="where(c, x, y): x where c else y; d = where(c, dx, dy)",
    scalar=sx.select,
)


def where(condition: ArrayLike, x: ArrayLike, y: ArrayLike) -> Node:
    """Elementwise ``x`` where ``condition`` holds, else ``y`` (numpy's ``where``).

    The condition carries no gradient; each branch's gradient is zero where it
    is not chosen, so ``grad(sum(where(x > 0, x, 0)), x)`` is ``x > 0`` as 0/1.

    >>> g = sd.Graph(); x = g.variable("x", shape=(3,))
    >>> print(sd.evaluate(sd.where(x > 0, x, 0.0), {x: [-1.0, 0.0, 2.0]}))
    [0. 0. 2.]
    """
    return apply(WHERE, *as_nodes("where", condition, x, y))


__test__ = {f.__name__: f for f in (greater, greater_equal, less, less_equal, equal, not_equal)}
