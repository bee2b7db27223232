"""Arithmetic with numpy broadcasting: add, sub, mul, div, neg, pow, and dtype conversion.

What can be simpler while building (``x + 0``, ``2*(3*x)``, ``--x``) is in the rule
table (``symdiff.rules``), not here: these functions only turn their arguments into
nodes and apply the op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symdiff.graph import Node
from symdiff.ops.core import apply, as_nodes, common_dtype, define_op, derive_function
from symdiff.ops.families import elementwise_op

ArrayLike = Any


ADD = elementwise_op(
    "add",
    numpy="add",
    dtype=common_dtype,
    transpose=(lambda ct, x, y: ct, lambda ct, x, y: ct),  # shaped like the output: the driver unbroadcasts
    properties=("commutative",),
    symbol="+",
    precedence=10,
    latex=lambda node, args, wrap: (f"{wrap(0, 10)} + {wrap(1, 10)}", 10),
    sympy=lambda x, y: x + y,
    sympy_name="Add",
    doc="d(x + y) = dx + dy",
    scalar=lambda x, y: x + y,
)
SUB = elementwise_op(
    "sub",
    numpy="subtract",
    dtype=common_dtype,
    transpose=(lambda ct, x, y: ct, lambda ct, x, y: negative(ct)),
    symbol="-",
    precedence=10,
    strict_right=True,
    latex=lambda node, args, wrap: (f"{wrap(0, 10)} - {wrap(1, 11)}", 10),
    function="subtract",
    sympy=lambda x, y: x - y,
    doc="d(x - y) = dx - dy",
    scalar=lambda x, y: x - y,
)
MUL = elementwise_op(
    "mul",
    numpy="multiply",
    dtype=common_dtype,
    # x*g, not g*x, for the second input: derivatives print in the order a reader writes them
    vjp=(lambda g, out, x, y: multiply(g, y), lambda g, out, x, y: multiply(x, g)),
    properties=("commutative",),
    symbol="*",
    precedence=20,
    latex=lambda node, args, wrap: _product_latex(node, wrap),
    function="multiply",
    sympy=lambda x, y: x * y,
    sympy_name="Mul",
    doc="d(x y) = y dx + x dy",
    scalar=lambda x, y: x * y,
)
DIV = elementwise_op(
    "div",
    numpy="true_divide",
    vjp=(lambda g, out, x, y: divide(g, y), lambda g, out, x, y: negative(divide(multiply(g, out), y))),
    symbol="/",
    precedence=20,
    strict_right=True,
    latex=lambda node, args, wrap: (rf"\frac{{{args[0][0]}}}{{{args[1][0]}}}", 100),
    function="divide",
    sympy=lambda x, y: x / y,
    doc="d(x / y) = dx / y - (x / y) dy / y",
    scalar=lambda x, y: x / y,
)
NEG = elementwise_op(
    "neg",
    numpy="negative",
    dtype=common_dtype,
    transpose=lambda ct, x: negative(ct),
    precedence=30,
    text=lambda node, args, wrap: _negated(wrap(0, 20)),  # -x*y reads (and computes) as -(x*y)
    latex=lambda node, args, wrap: _negated(wrap(0, 20)),
    label="neg",
    function="negative",
    sympy=lambda x: -x,
    doc="d(-x) = -dx",
    scalar=lambda x: -x,
)


def _negated(text: str) -> tuple[str, int]:
    # -(-2*x), not --2*x
    return ("-(" + text + ")" if text.startswith("-") else "-" + text), 30


def _scalar_like(node: Node) -> bool:
    """A factor that is one number: a scalar, a (1, 1)-shaped value, a scalar's broadcast."""
    if all(d == 1 for d in node.shape):
        return True
    return node.op == "broadcast_like" and _scalar_like(node.inputs[0])


def _product_latex(node: Node, wrap) -> tuple[str, int]:
    if _scalar_like(node.inputs[1]) and not _scalar_like(node.inputs[0]):  # a scalar factor goes first
        return f"{wrap(1, 20)} {wrap(0, 21)}", 20
    if _scalar_like(node.inputs[0]):
        return f"{wrap(0, 20)} {wrap(1, 21)}", 20
    return rf"{wrap(0, 20)} \odot {wrap(1, 21)}", 20


def _power_latex(node: Node, args, wrap) -> tuple[str, int]:
    base = wrap(0, 41)
    if base.startswith(r"\frac"):  # (a/b)^2, not \frac{a}{b}^{2}, which reads as a/b^2
        base = rf"\left({base}\right)"
    return f"{base}^{{{args[1][0]}}}", 40


def _nonzero_constant(y: Node) -> bool:
    return y.op == "constant" and bool(np.all(np.asarray(y.value) != 0))


def _pow_dx(out: Node, x: Node, y: Node) -> Node:
    # y x**(y-1) is 0 * inf = nan at x = 0 where y = 0 (and, at higher orders, where y is an
    # integer below the order); the function is constant there (x**0 = 1), so the partial is 0.
    # The base is swapped for 1 at those points rather than the product masked after the fact,
    # so no inf is ever formed there and every higher derivative of this rule is nan-free too
    # (the where's cotangent is 0 there, the power's partial finite). A constant nonzero
    # exponent (x**2) needs no mask: its rule stays y*x**(y - 1).
    if _nonzero_constant(y):
        return multiply(y, power(x, subtract(y, 1)))
    at_zero = where(equal(x, 0), equal(y, 0), False)
    return multiply(y, power(where(at_zero, 1.0, x), subtract(y, 1)))


def _pow_dy(out: Node, x: Node, y: Node) -> Node:
    # At x = 0 and y > 0, log(x) x**y -> 0 (x**y is 0 for every y > 0): take 0, not -inf * 0 =
    # nan. The log's argument is made 1 there (not the log masked), so the log's own derivative
    # is never 1/0 either. At x = 0, y <= 0 the function jumps (1 at y = 0, inf below): -inf.
    return multiply(log(where(where(equal(x, 0), greater(y, 0), False), 1.0, x)), out)


POW = elementwise_op(
    "pow",
    numpy="power",
    partials=(_pow_dx, _pow_dy),
    symbol="**",
    precedence=40,
    # right-associative; a negative number as exponent reads as Python writes it (x**-2)
    text=lambda node, args, wrap: (wrap(0, 41) + "**" + wrap(1, 30 if node.inputs[1].op == "constant" else 40), 40),
    latex=_power_latex,
    function="power",
    sympy=lambda x, y: x**y,
    sympy_name="Pow",
    doc="d(x**y) = y x**(y-1) dx + log(x) x**y dy; at x = 0: 0 dx where y = 0, 0 dy where y > 0",
    scalar=lambda x, y: x**y,
)

add = derive_function(
    ADD,
    "Elementwise ``x + y`` with broadcasting.",
    """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.add(x, 2.0))
    x + 2""",
)
subtract = derive_function(
    SUB,
    "Elementwise ``x - y`` with broadcasting.",
    """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.subtract(1.0, x))
    1 - x""",
    name="subtract",
)
multiply = derive_function(
    MUL,
    "Elementwise ``x * y`` with broadcasting. ``0 * x`` folds to 0, even where x is inf.",
    """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.multiply(3.0, x))
    3*x""",
    name="multiply",
)
divide = derive_function(
    DIV,
    "Elementwise true division ``x / y`` with broadcasting (x / 0 gives numpy's inf or nan).",
    """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.divide(x, 2.0))
    x/2""",
    name="divide",
)
negative = derive_function(
    NEG,
    "Elementwise ``-x``; ``-(-x)`` is ``x``.",
    """    >>> g = sd.Graph(); x = g.variable("x")
    >>> sd.negative(sd.negative(x)) is x
    True""",
    name="negative",
)


def power(x: ArrayLike, y: ArrayLike) -> Node:
    """Elementwise ``x ** y``; integer bases are computed in float64.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.grad(x ** 3, x))
    3*x**2
    """
    x, y = as_nodes("pow", x, y)
    if x.dtype.kind != "f" and y.dtype.kind != "f":
        x = astype(x, np.float64)
    return apply(POW, x, y)


def square(x: ArrayLike) -> Node:
    """``x ** 2``.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.square(x))
    x**2
    """
    return power(x, 2)


# -- dtype conversion ---------------------------------------------------------------
def _astype_dtype(dtype: np.dtype, *, dtype_to: str) -> np.dtype:
    return np.dtype(dtype_to)


ASTYPE = define_op(
    "astype",
    lambda xp, x, dtype_to: xp.asarray(x).astype(dtype_to),
    lambda shape, **_: shape,
    kind="elementwise",
    dtype=_astype_dtype,
    # Gradients flow between float dtypes; an integer or boolean source gets none (the driver knows).
    vjp=(lambda g, out, x, dtype_to: astype(g, x.dtype) if g.dtype.kind == "f" else g,),
    jvp=(lambda t, out, x, dtype_to: astype(t, dtype_to),),
    sympy=lambda x, dtype_to: x,
    doc="x as another dtype; d = the cast of dx",
)


def astype(x: ArrayLike, dtype: Any) -> Node:
    """``x`` converted to ``dtype`` (numpy's ``astype``); a no-op if it already has it.

    >>> g = sd.Graph(); i = g.variable("i", dtype="int64")
    >>> sd.astype(i, "float64").dtype
    dtype('float64')
    """
    from symdiff.graph import check_dtype

    (x,) = as_nodes("astype", x)
    dt = check_dtype(dtype, "astype")
    if x.dtype == dt:
        return x
    return apply(ASTYPE, x, dtype_to=dt.str)


__test__ = {f.__name__: f for f in (add, subtract, multiply, divide, negative)}

from symdiff.ops.functions import log  # noqa: E402 (the derivative of pow needs them; they need multiply)
from symdiff.ops.logic import equal, greater, where  # noqa: E402
