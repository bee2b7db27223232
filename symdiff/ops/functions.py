"""Elementwise functions: exp, log, the trigonometric and hyperbolic functions, sigmoid,
softplus, sqrt, abs, sign, relu, maximum and minimum.

Each is declared by its partial derivative ``d(out, x)``: the elementwise kind derives
the reverse rule (``g * d``), the forward rule (``t * d``) and the public function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symdiff.graph import Node
from symdiff.ops.arithmetic import add, divide, multiply, negative, square, subtract
from symdiff.ops.core import broadcast_shapes, common_dtype, define_op, derive_function, same_shape

ArrayLike = Any


def vectorize(fn: Callable) -> Callable:
    """Lift a sympy function of scalars to numpy object arrays of sympy expressions."""

    def lifted(*arrays, **_):
        return np.vectorize(fn, otypes=[object])(*arrays)

    return lifted


def _function(name: str, partial, sympy_fn, doc: str, *, numpy: str | None = None, forward=None, scalar=None, **extra):
    """A differentiable elementwise function, declared by its partial derivative ``partial(out, x)``."""
    return define_op(
        name,
        forward,
        same_shape,
        numpy=numpy if numpy is not None or forward is not None else name,
        kind="elementwise",
        partials=(partial,),
        sympy=vectorize(sympy_fn),
        # sympy functions such as sympy.sin are classes: from_sympy maps them back by name
        sympy_name=sympy_fn.__name__ if isinstance(sympy_fn, type) else None,
        doc=doc,
        scalar=scalar or f"_math.{name}({{0}})",
        **extra,
    )


def _stable_sigmoid(xp, x):
    # exp(-log(1 + exp(-x))) neither overflows nor loses precision for large |x|.
    return xp.exp(-xp.logaddexp(0.0, -x))


def _softplus(xp, x):
    return xp.logaddexp(0.0, x)


EXP = _function("exp", lambda out, x: out, sympy.exp, "d exp x = exp x dx", latex=r"\exp", properties=("positive",))
LOG = define_op(
    "log",
    numpy="log",
    shape=same_shape,
    kind="elementwise",
    vjp=(lambda g, out, x: divide(g, x),),
    sympy=vectorize(sympy.log),
    sympy_name="log",
    latex=r"\log",
    doc="d log x = dx / x",
    scalar="_math.log({0})",
)
SIN = _function("sin", lambda out, x: cos(x), sympy.sin, "d sin x = cos x dx", latex=r"\sin")
COS = _function("cos", lambda out, x: negative(sin(x)), sympy.cos, "d cos x = -sin x dx", latex=r"\cos")
TAN = _function("tan", lambda out, x: add(1.0, square(out)), sympy.tan, "d tan x = (1 + tan² x) dx", latex=r"\tan")
TANH = _function(
    "tanh", lambda out, x: subtract(1.0, square(out)), sympy.tanh, "d tanh x = (1 - tanh² x) dx", latex=r"\tanh"
)
SIGMOID = _function(
    "sigmoid",
    lambda out, x: multiply(out, subtract(1.0, out)),
    lambda x: 1 / (1 + sympy.exp(-x)),
    "d σ(x) = σ(x)(1 - σ(x)) dx",
    forward=_stable_sigmoid,
    scalar="(1.0 / (1.0 + _math.exp(-{0})))",
    latex=r"\sigma",
    properties=("positive",),
)
SQRT = _function(
    "sqrt",
    lambda out, x: divide(0.5, out),
    sympy.sqrt,
    "d sqrt x = dx / (2 sqrt x); inf at 0",
    latex=lambda node, args, wrap: (rf"\sqrt{{{args[0][0]}}}", 100),
)
LOG1P = _function("log1p", lambda out, x: divide(1.0, add(1.0, x)), lambda x: sympy.log(1 + x), "d log(1+x) = dx/(1+x)")
EXPM1 = _function("expm1", lambda out, x: exp(x), lambda x: sympy.exp(x) - 1, "d (exp x - 1) = exp x dx")
SOFTPLUS = _function(
    "softplus",
    lambda out, x: sigmoid(x),
    lambda x: sympy.log(1 + sympy.exp(x)),
    "d log(1+exp x) = σ(x) dx",
    forward=_softplus,
    scalar="(max({0}, 0.0) + _math.log1p(_math.exp(-abs({0}))))",
    properties=("positive",),
)
# sign has derivative 0 everywhere (including the kink at 0): no gradient flows through it.
SIGN = define_op(
    "sign",
    numpy="sign",
    shape=same_shape,
    kind="elementwise",
    dtype=common_dtype,
    vjp=(None,),
    sympy=vectorize(sympy.sign),
    sympy_name="sign",
    doc="d sign x = 0",
)
# abs'(0) = 0 (the subgradient API.md fixes): sign(0) = 0.
ABS = define_op(
    "abs",
    numpy="abs",
    shape=same_shape,
    kind="elementwise",
    dtype=common_dtype,
    partials=(lambda out, x: sign(x),),
    sympy=vectorize(sympy.Abs),
    sympy_name="Abs",
    latex=lambda node, args, wrap: (rf"\left|{args[0][0]}\right|", 100),
    doc="d |x| = sign(x) dx; 0 at x = 0",
    scalar="abs({0})",
)
# relu'(0) = 0: the gradient flows only where x > 0.
RELU = define_op(
    "relu",
    lambda xp, x: xp.maximum(x, 0),
    same_shape,
    kind="elementwise",
    dtype=common_dtype,
    vjp=(lambda g, out, x: where(greater(x, 0), g, 0.0),),
    sympy=vectorize(lambda x: sympy.Max(0, x)),
    doc="d relu x = [x > 0] dx; 0 at x = 0",
    scalar="max({0}, 0.0)",
)

_EXAMPLE = """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.{call})
    {result}"""


def _example(call: str, result: str) -> str:
    return _EXAMPLE.format(call=call, result=result)


exp = derive_function(EXP, "Elementwise ``e**x``.", _example("grad(sd.exp(2 * x), x)", "2*exp(2*x)"), floats=True)
log = derive_function(
    LOG,
    "Natural logarithm (``log 0 = -inf``, ``log`` of a negative is nan).",
    _example("grad(sd.log(x), x)", "1/x"),
    floats=True,
)
sin = derive_function(SIN, "Elementwise sine.", _example("grad(sd.sin(x), x)", "cos(x)"), floats=True)
cos = derive_function(COS, "Elementwise cosine.", _example("grad(sd.cos(x), x)", "-sin(x)"), floats=True)
tan = derive_function(TAN, "Elementwise tangent.", _example("grad(sd.tan(x), x)", "1 + tan(x)**2"), floats=True)
tanh = derive_function(
    TANH, "Elementwise hyperbolic tangent.", _example("grad(sd.tanh(x), x)", "1 - tanh(x)**2"), floats=True
)
sigmoid = derive_function(
    SIGMOID,
    "Logistic function ``1 / (1 + exp(-x))``, computed without overflow.",
    _example("grad(sd.sigmoid(x), x)", "sigmoid(x)*(1 - sigmoid(x))"),
    floats=True,
)
sqrt = derive_function(
    SQRT,
    "Elementwise square root; its derivative is inf at 0 (IEEE).",
    _example("grad(sd.sqrt(x), x)", "0.5/sqrt(x)"),
    floats=True,
)
log1p = derive_function(
    LOG1P, "``log(1 + x)``, accurate for small x.", _example("evaluate(sd.log1p(x), {x: 1e-20})", "1e-20"), floats=True
)
expm1 = derive_function(
    EXPM1, "``exp(x) - 1``, accurate for small x.", _example("evaluate(sd.expm1(x), {x: 1e-20})", "1e-20"), floats=True
)
softplus = derive_function(
    SOFTPLUS,
    "``log(1 + exp(x))`` without overflow.",
    _example("evaluate(sd.softplus(x), {x: 1000.0})", "1000.0"),
    floats=True,
)
sign = derive_function(
    SIGN,
    "Elementwise sign (-1, 0 or 1). No gradient flows through it.",
    _example("evaluate(sd.sign(x), {x: -3.0})", "-1.0"),
)
abs = derive_function(  # noqa: A001 (numpy's name)
    ABS,
    "Elementwise absolute value; the subgradient at 0 is 0.",
    _example("evaluate(sd.grad(sd.abs(x), x), {x: 0.0})", "0.0"),
)
relu = derive_function(
    RELU,
    "``maximum(x, 0)``; its derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0).",
    _example("evaluate(sd.grad(sd.relu(x), x), {x: 0.0})", "0.0"),
)


# -- maximum, minimum ------------------------------------------------------------------
def share_mask(condition: Node, like: np.dtype, tie: Node | None = None, share: float = 0.5) -> Node:
    """1 where ``condition``, ``share`` where ``tie``, else 0, in the float dtype ``like`` (so a
    float32 graph's derivatives stay float32)."""

    def c(v: float) -> Node:
        return condition.graph.constant(np.asarray(v, dtype=like))

    return where(condition, c(1.0), c(0.0) if tie is None else where(tie, c(share), c(0.0)))


def _tie_mask(x: Node, y: Node, first_wins) -> Node:
    # The share of the gradient input x gets: 1 where it wins, 0.5 at a tie, 0 where it loses.
    return share_mask(first_wins(x, y), np.result_type(x.dtype, y.dtype), tie=equal(x, y))


def _extremum(name, wins, sympy_fn, doc):
    return define_op(
        name,
        numpy=name,
        shape=broadcast_shapes,
        kind="elementwise",
        dtype=common_dtype,
        partials=(lambda out, x, y: _tie_mask(x, y, wins), lambda out, x, y: _tie_mask(y, x, wins)),
        properties=("commutative",),
        sympy=vectorize(sympy_fn),
        sympy_name=sympy_fn.__name__,
        doc=doc,
    )


MAXIMUM = _extremum("maximum", lambda x, y: greater(x, y), sympy.Max, "d max(x, y): to the larger; halves at a tie")
MINIMUM = _extremum("minimum", lambda x, y: less(x, y), sympy.Min, "d min(x, y): to the smaller; halves at a tie")


maximum = derive_function(
    MAXIMUM,
    "Elementwise maximum. The gradient goes to the larger input; at a tie each gets half.",
    _example("evaluate(sd.grad(sd.maximum(x, 1.0), x), {x: 1.0})", "0.5"),
)
minimum = derive_function(
    MINIMUM,
    "Elementwise minimum. The gradient goes to the smaller input; at a tie each gets half.",
    _example("evaluate(sd.grad(sd.minimum(x, 1.0), x), {x: 3.0})", "0.0"),
)

__test__ = {
    f.__name__: f
    for f in (exp, log, sin, cos, tan, tanh, sigmoid, sqrt, log1p, expm1, softplus, sign, abs, relu, maximum, minimum)
}


from symdiff.ops.logic import equal, greater, less, where  # noqa: E402 (rules need them; they need these)
