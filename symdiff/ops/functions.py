"""Elementwise functions: exp, log, the trigonometric and hyperbolic functions and their
inverses, sigmoid, softplus, log_sigmoid, sqrt, abs, sign, relu, rounding, maximum, minimum,
clip, erf, erfc, arctan2, logaddexp and hypot.

Each is declared by its partial derivative ``d(out, x)``: the elementwise kind derives
the reverse rule (``g * d``), the forward rule (``t * d``) and the public function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

import symdiff.scalar as sx
from symdiff.graph import Node
from symdiff.ops.arithmetic import add, divide, multiply, negative, square, subtract
from symdiff.ops.core import Op, apply, as_nodes, common_dtype, derive_function, float_dtype, special_function
from symdiff.ops.families import elementwise_op

ArrayLike = Any


def vectorize(fn: Callable) -> Callable:
    """Lift a sympy function of scalars to numpy object arrays of sympy expressions."""

    def lifted(*arrays, **_):
        return np.vectorize(fn, otypes=[object])(*arrays)

    return lifted


def _function(name: str, partials, sympy_fn, doc: str, *, numpy: str | None = None, forward=None, scalar=None, **extra):
    """A differentiable elementwise function, declared by its partial derivatives: ``partials``
    is ``partial(out, x)`` for a function of one input, a tuple ``(d/dx, d/dy)`` of two (which
    broadcast). numpy's function ``name`` computes it unless ``forward`` is given; a function
    of one input is the scalar function of the same name on elements (``sx.arcsin``)."""
    unary = not isinstance(partials, tuple)
    if unary and scalar is None:
        scalar = getattr(sx, name)
    return elementwise_op(
        name,
        forward,
        numpy=numpy if numpy is not None or forward is not None else name,
        partials=(partials,) if unary else partials,
        sympy=vectorize(sympy_fn),
        # sympy functions such as sympy.sin are classes: from_sympy maps them back by name
        sympy_name=sympy_fn.__name__ if isinstance(sympy_fn, type) else None,
        doc=doc,
        scalar=scalar,
        **extra,
    )


def _flat(name: str, sympy_fn, doc: str, *, scalar=None, shape=None, **extra):
    """A piecewise-constant function (sign, floor): its derivative is 0 wherever it exists, and
    taken as 0 at the jumps too, so no gradient flows through it; integers stay integers."""
    return elementwise_op(
        name,
        numpy=name,
        shape=shape,
        dtype=common_dtype,
        vjp=(None,),
        sympy=None if sympy_fn is None else vectorize(sympy_fn),
        sympy_name=None if sympy_fn is None else sympy_fn.__name__,
        doc=doc,
        scalar=scalar,
        **extra,
    )


def _stable_sigmoid(xp, x):
    # exp(-log(1 + exp(-x))) neither overflows nor loses precision for large |x|.
    return xp.exp(-xp.logaddexp(0.0, -x))


def _softplus(xp, x):
    return xp.logaddexp(0.0, x)


EXP = _function("exp", lambda out, x: out, sympy.exp, "d exp x = exp x dx", latex=r"\exp", properties=("positive",))
LOG = elementwise_op(
    "log",
    numpy="log",
    vjp=(lambda g, out, x: divide(g, x),),
    sympy=vectorize(sympy.log),
    sympy_name="log",
    latex=r"\log",
    doc="d log x = dx / x",
    scalar=sx.log,
)
SIN = _function("sin", lambda out, x: cos(x), sympy.sin, "d sin x = cos x dx", latex=r"\sin")
COS = _function("cos", lambda out, x: negative(sin(x)), sympy.cos, "d cos x = -sin x dx", latex=r"\cos")
TAN = _function("tan", lambda out, x: add(1.0, square(out)), sympy.tan, "d tan x = (1 + tan² x) dx", latex=r"\tan")
TANH = _function(
    "tanh", lambda out, x: subtract(1.0, square(out)), sympy.tanh, "d tanh x = (1 - tanh² x) dx", latex=r"\tanh"
)
SIGMOID = _function(
    "sigmoid",
    # σ(x)σ(-x), not σ(x)(1 - σ(x)): 1 - σ(x) cancels where σ(x) is near 1 (all bits lost past x = 37)
    lambda out, x: multiply(out, sigmoid(negative(x))),
    lambda x: 1 / (1 + sympy.exp(-x)),
    "d σ(x) = σ(x)σ(-x) dx = σ(x)(1 - σ(x)) dx",
    forward=_stable_sigmoid,
    scalar=lambda x: 1.0 / (1.0 + sx.exp(-x)),
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
    scalar=lambda x: sx.maximum(x, 0.0) + sx.log1p(sx.exp(-sx.abs(x))),
    properties=("positive",),
)
# sign has derivative 0 everywhere (including the kink at 0): no gradient flows through it.
SIGN = _flat("sign", sympy.sign, "d sign x = 0")
# abs'(0) = 0 (the subgradient API.md fixes): sign(0) = 0.
ABS = _function(
    "abs",
    lambda out, x: sign(x),
    sympy.Abs,
    "d |x| = sign(x) dx; 0 at x = 0",
    dtype=common_dtype,
    latex=lambda node, args, wrap: (rf"\left|{args[0][0]}\right|", 100),
)
# relu'(0) = 0: the gradient flows only where x > 0.
RELU = elementwise_op(
    "relu",
    lambda xp, x: xp.maximum(x, 0),
    dtype=common_dtype,
    vjp=(lambda g, out, x: where(greater(x, 0), g, 0.0),),
    sympy=vectorize(lambda x: sympy.Max(0, x)),
    doc="d relu x = [x > 0] dx; 0 at x = 0",
    scalar=lambda x: sx.maximum(x, 0.0),
)

# inverse trigonometric and hyperbolic functions; at the ends of their domains the
# derivative is numpy's IEEE result (arcsin'(1) = 1/sqrt(0) = inf), never an exception
ARCSIN = _function(
    "arcsin",
    lambda out, x: divide(1.0, sqrt(subtract(1.0, square(x)))),
    sympy.asin,
    "d arcsin x = dx / sqrt(1 - x²); inf at ±1",
    latex=r"\arcsin",
)
ARCCOS = _function(
    "arccos",
    lambda out, x: negative(divide(1.0, sqrt(subtract(1.0, square(x))))),
    sympy.acos,
    "d arccos x = -dx / sqrt(1 - x²); -inf at ±1",
    latex=r"\arccos",
)
ARCTAN = _function(
    "arctan",
    lambda out, x: divide(1.0, add(1.0, square(x))),
    sympy.atan,
    "d arctan x = dx / (1 + x²)",
    latex=r"\arctan",
)
SINH = _function("sinh", lambda out, x: cosh(x), sympy.sinh, "d sinh x = cosh x dx", latex=r"\sinh")
COSH = _function("cosh", lambda out, x: sinh(x), sympy.cosh, "d cosh x = sinh x dx", latex=r"\cosh")
ARCSINH = _function(
    "arcsinh",
    lambda out, x: divide(1.0, sqrt(add(square(x), 1.0))),
    sympy.asinh,
    "d arcsinh x = dx / sqrt(x² + 1)",
)
ARCCOSH = _function(
    "arccosh",
    lambda out, x: divide(1.0, sqrt(subtract(square(x), 1.0))),
    sympy.acosh,
    "d arccosh x = dx / sqrt(x² - 1); inf at 1",
)
ARCTANH = _function(
    "arctanh",
    lambda out, x: divide(1.0, subtract(1.0, square(x))),
    sympy.atanh,
    "d arctanh x = dx / (1 - x²); inf at ±1",
)


def _log_sigmoid(xp, x):
    return -xp.logaddexp(0.0, -x)


LOG_SIGMOID = _function(
    "log_sigmoid",
    lambda out, x: sigmoid(negative(x)),
    lambda x: -sympy.log(1 + sympy.exp(-x)),
    "d log σ(x) = σ(-x) dx",
    forward=_log_sigmoid,
    scalar=lambda x: -(sx.maximum(-x, 0.0) + sx.log1p(sx.exp(-sx.abs(x)))),
)

# d erf x = 2/sqrt(pi) exp(-x²) dx; numpy has no erf: scipy.special's (math.erf for scalars)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)  # a Python float: float32 stays float32
ERF = _function(
    "erf",
    lambda out, x: multiply(_TWO_OVER_SQRT_PI, exp(negative(square(x)))),
    sympy.erf,
    "d erf x = 2/√π exp(-x²) dx",
    forward=lambda xp, x: special_function(xp, "erf")(x),
    latex=r"\operatorname{erf}",
)
ERFC = _function(
    "erfc",
    lambda out, x: multiply(-_TWO_OVER_SQRT_PI, exp(negative(square(x)))),
    sympy.erfc,
    "d erfc x = -2/√π exp(-x²) dx (1 - erf x, accurate where erf x is near 1)",
    forward=lambda xp, x: special_function(xp, "erfc")(x),
    latex=r"\operatorname{erfc}",
)


FLOOR = _flat("floor", sympy.floor, "d floor x = 0 (the jumps at integers included)", scalar=sx.floor)
CEIL = _flat("ceil", sympy.ceiling, "d ceil x = 0 (the jumps at integers included)", scalar=sx.ceil)
ROUND = _flat(
    "round",
    None,
    "d round x = 0 (to nearest, ties to even, as numpy; the jumps included)",
    shape=lambda shape, decimals: shape,
    unsupported={"sympy": "sympy has no rounding to nearest with ties to even"},
)


# -- binary functions -------------------------------------------------------------------
def _sum_of_squares(x: Node, y: Node) -> Node:
    return add(square(x), square(y))


ARCTAN2 = _function(
    "arctan2",
    # the origin is a branch point: both partials are 0/0 = nan there, as the angle has no derivative
    (lambda out, y, x: divide(x, _sum_of_squares(x, y)), lambda out, y, x: negative(divide(y, _sum_of_squares(x, y)))),
    sympy.atan2,
    "d atan2(y, x) = (x dy - y dx) / (x² + y²); nan at the origin",
    scalar=sx.arctan2,
)
LOGADDEXP = _function(
    "logaddexp",
    # exp(x - out) = sigmoid(x - y), from the difference of the inputs: x - out cancels when x
    # is large (at x = y = 1e50, out rounds to x and each partial comes out 1, not 1/2)
    (lambda out, x, y: sigmoid(subtract(x, y)), lambda out, x, y: sigmoid(subtract(y, x))),
    lambda x, y: sympy.log(sympy.exp(x) + sympy.exp(y)),
    "d log(exp x + exp y) = σ(x - y) dx + σ(y - x) dy, without overflow or cancellation",
    properties=("commutative",),
)


def _hypot_share(out: Node, x: Node) -> Node:
    # x / out, and 0 at the origin (where hypot has no derivative: the subgradient of |(x, y)|)
    return divide(x, where(equal(out, 0), 1.0, out))


HYPOT = _function(
    "hypot",
    (lambda out, x, y: _hypot_share(out, x), lambda out, x, y: _hypot_share(out, y)),
    lambda x, y: sympy.sqrt(x**2 + y**2),
    "d sqrt(x² + y²) = (x dx + y dy) / out; 0 at the origin",
    properties=("commutative",),
    scalar=sx.hypot,
)


_EXAMPLE = """    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.{call})
    {result}"""


def _public(op: Op, summary: str, call: str, result: str) -> Callable[..., Node]:
    """The public function of ``op`` (see ``derive_function``), its example ``print(sd.<call>)``
    printing ``result``. A float function (an op whose dtype rule is ``float_dtype``) casts
    integer inputs to float first; the others (sign, floor, maximum) keep integers integers."""
    example = _EXAMPLE.format(call=call, result=result)
    return derive_function(op, summary, example, floats=op.dtype is float_dtype)


exp = _public(EXP, "Elementwise ``e**x``.", "grad(sd.exp(2 * x), x)", "2*exp(2*x)")
log = _public(LOG, "Natural logarithm (``log 0 = -inf``, ``log`` of a negative is nan).", "grad(sd.log(x), x)", "1/x")
sin = _public(SIN, "Elementwise sine.", "grad(sd.sin(x), x)", "cos(x)")
cos = _public(COS, "Elementwise cosine.", "grad(sd.cos(x), x)", "-sin(x)")
tan = _public(TAN, "Elementwise tangent.", "grad(sd.tan(x), x)", "1 + tan(x)**2")
tanh = _public(TANH, "Elementwise hyperbolic tangent.", "grad(sd.tanh(x), x)", "1 - tanh(x)**2")
log1p = _public(LOG1P, "``log(1 + x)``, accurate for small x.", "evaluate(sd.log1p(x), {x: 1e-20})", "1e-20")
expm1 = _public(EXPM1, "``exp(x) - 1``, accurate for small x.", "evaluate(sd.expm1(x), {x: 1e-20})", "1e-20")
softplus = _public(SOFTPLUS, "``log(1 + exp(x))`` without overflow.", "evaluate(sd.softplus(x), {x: 1000.0})", "1000.0")
arcsin = _public(ARCSIN, "Elementwise inverse sine (nan outside [-1, 1]).", "grad(sd.arcsin(x), x)", "1/sqrt(1 - x**2)")
arccos = _public(ARCCOS, "Elementwise inverse cosine (nan outside [-1, 1]).", "evaluate(sd.arccos(x), {x: 1.0})", "0.0")
arctan = _public(ARCTAN, "Elementwise inverse tangent.", "grad(sd.arctan(x), x)", "1/(1 + x**2)")
sinh = _public(SINH, "Elementwise hyperbolic sine.", "grad(sd.sinh(x), x)", "cosh(x)")
cosh = _public(COSH, "Elementwise hyperbolic cosine.", "grad(sd.cosh(x), x)", "sinh(x)")
arcsinh = _public(ARCSINH, "Elementwise inverse hyperbolic sine.", "evaluate(sd.arcsinh(x), {x: 0.0})", "0.0")
floor = _public(FLOOR, "Elementwise floor, as ``numpy.floor``.", "evaluate(sd.floor(x), {x: -1.5})", "-2.0")
ceil = _public(CEIL, "Elementwise ceiling, as ``numpy.ceil``.", "evaluate(sd.ceil(x), {x: -1.5})", "-1.0")
sigmoid = _public(
    SIGMOID,
    "Logistic function ``1 / (1 + exp(-x))``, computed without overflow.",
    "grad(sd.sigmoid(x), x)",
    "sigmoid(x)*sigmoid(-x)",
)
sqrt = _public(
    SQRT, "Elementwise square root; its derivative is inf at 0 (IEEE).", "grad(sd.sqrt(x), x)", "0.5/sqrt(x)"
)
arccosh = _public(
    ARCCOSH, "Elementwise inverse hyperbolic cosine (nan below 1).", "evaluate(sd.arccosh(x), {x: 1.0})", "0.0"
)
arctanh = _public(
    ARCTANH, "Elementwise inverse hyperbolic tangent (nan outside [-1, 1]).", "grad(sd.arctanh(x), x)", "1/(1 - x**2)"
)
log_sigmoid = _public(
    LOG_SIGMOID,
    "``log(sigmoid(x)) = -softplus(-x)``, finite for large negative x.",
    "evaluate(sd.log_sigmoid(x), {x: -1000.0})",
    "-1000.0",
)
erf = _public(
    ERF, "The error function, as ``scipy.special.erf``.", "grad(sd.erf(x), x)", "1.1283791670955126*exp(-x**2)"
)
erfc = _public(
    ERFC,
    "The complementary error function ``1 - erf(x)``, as ``scipy.special.erfc``.",
    "evaluate(sd.erfc(x), {x: 10.0})",
    "2.088487583762545e-45",
)
arctan2 = derive_function(
    ARCTAN2,
    "The angle of the point ``(x, y)``, as ``numpy.arctan2(y, x)`` (the first argument is y).",
    """    >>> g = sd.Graph(); y, x = g.variable("y"), g.variable("x")
    >>> print(sd.evaluate(sd.arctan2(y, x), {y: 1.0, x: 1.0}))
    0.7853981633974483""",
    floats=True,
)
logaddexp = _public(
    LOGADDEXP,
    "``log(exp(x) + exp(y))`` without overflow.",
    "evaluate(sd.logaddexp(x, x), {x: 1000.0})",
    "1000.6931471805599",
)
hypot = _public(
    HYPOT, "``sqrt(x**2 + y**2)`` without overflow.", "evaluate(sd.grad(sd.hypot(x, 0.0), x), {x: 0.0})", "0.0"
)


def round(x: ArrayLike, decimals: int = 0) -> Node:  # noqa: A001 (numpy's name)
    """Round to ``decimals`` places, ties to even, as ``numpy.round``. Its derivative is 0.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.evaluate(sd.round(x), {x: 2.5}))
    2.0
    """
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise TypeError(f"round: decimals must be an int, got {decimals!r}")
    return apply(ROUND, *as_nodes("round", x), decimals=int(decimals))


def clip(x: ArrayLike, a_min: ArrayLike | None, a_max: ArrayLike | None) -> Node:
    """``x`` limited to ``[a_min, a_max]``, as ``numpy.clip`` (either bound may be None).

    It is ``minimum(maximum(x, a_min), a_max)``, and differentiates as that without
    the halving at ties: the gradient goes to x where ``a_min <= x <= a_max`` (bounds
    included), to ``a_min`` where x is below it, to ``a_max`` where x is above it.

    >>> g = sd.Graph(); x = g.variable("x", shape=(3,))
    >>> print(sd.evaluate(sd.grad(sd.sum(sd.clip(x, 0.0, 1.0)), x), {x: [-1.0, 1.0, 2.0]}))
    [0. 1. 0.]
    """
    if a_min is None and a_max is None:
        raise ValueError("clip: a_min and a_max cannot both be None (as numpy)")
    if a_max is None:
        return apply(CLIP_BELOW, *as_nodes("clip", x, a_min))
    if a_min is None:
        return apply(CLIP_ABOVE, *as_nodes("clip", x, a_max))
    return apply(CLIP, *as_nodes("clip", x, a_min, a_max))


sign = _public(
    SIGN, "Elementwise sign (-1, 0 or 1). No gradient flows through it.", "evaluate(sd.sign(x), {x: -3.0})", "-1.0"
)
abs = _public(  # noqa: A001 (numpy's name)
    ABS, "Elementwise absolute value; the subgradient at 0 is 0.", "evaluate(sd.grad(sd.abs(x), x), {x: 0.0})", "0.0"
)
relu = _public(
    RELU,
    "``maximum(x, 0)``; its derivative is 1 where x > 0 and 0 elsewhere (0 at x = 0).",
    "evaluate(sd.grad(sd.relu(x), x), {x: 0.0})",
    "0.0",
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
    partials = (lambda out, x, y: _tie_mask(x, y, wins), lambda out, x, y: _tie_mask(y, x, wins))
    return _function(name, partials, sympy_fn, doc, dtype=common_dtype, properties=("commutative",))


MAXIMUM = _extremum("maximum", lambda x, y: greater(x, y), sympy.Max, "d max(x, y): to the larger; halves at a tie")
MINIMUM = _extremum("minimum", lambda x, y: less(x, y), sympy.Min, "d min(x, y): to the smaller; halves at a tie")


def _mask(condition: Node, like: Node) -> Node:
    return share_mask(condition, np.result_type(like.dtype))


def _inside(x: Node, lo: Node, hi: Node) -> Node:
    return where(greater_equal(x, lo), less_equal(x, hi), False)


CLIP = elementwise_op(
    "clip",
    numpy="clip",
    dtype=common_dtype,
    partials=(
        lambda out, x, lo, hi: _mask(_inside(x, lo, hi), out),
        lambda out, x, lo, hi: _mask(where(less(x, lo), less_equal(lo, hi), False), out),
        lambda out, x, lo, hi: _mask(greater(maximum(x, lo), hi), out),
    ),
    sympy=vectorize(lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi)),
    doc="min(max(x, lo), hi); d = dx where lo <= x <= hi, dlo below, dhi above",
)


def _clip_lower(xp, x, b):
    return xp.clip(x, b, None)


def _clip_upper(xp, x, b):
    return xp.clip(x, None, b)


def _clip_side(name: str, below: bool, doc: str):
    """clip with one bound b, a lower one (``below``: max(x, b)) or an upper one (min(x, b)): the
    gradient goes to x where x is within the bound (b included), to b beyond it."""

    def within(x: Node, b: Node) -> Node:
        return greater_equal(x, b) if below else less_equal(x, b)

    def beyond(x: Node, b: Node) -> Node:
        return less(x, b) if below else greater(x, b)

    return elementwise_op(
        name,
        _clip_lower if below else _clip_upper,
        dtype=common_dtype,
        partials=(lambda out, x, b: _mask(within(x, b), out), lambda out, x, b: _mask(beyond(x, b), out)),
        sympy=vectorize(sympy.Max if below else sympy.Min),
        doc=doc,
    )


CLIP_BELOW = _clip_side("clip_below", True, "clip(x, lo, None): max(x, lo); d = dx where x >= lo, else dlo")
CLIP_ABOVE = _clip_side("clip_above", False, "clip(x, None, hi): min(x, hi); d = dx where x <= hi, else dhi")


maximum = _public(
    MAXIMUM,
    "Elementwise maximum. The gradient goes to the larger input; at a tie each gets half.",
    "evaluate(sd.grad(sd.maximum(x, 1.0), x), {x: 1.0})",
    "0.5",
)
minimum = _public(
    MINIMUM,
    "Elementwise minimum. The gradient goes to the smaller input; at a tie each gets half.",
    "evaluate(sd.grad(sd.minimum(x, 1.0), x), {x: 3.0})",
    "0.0",
)

__test__ = {
    f.__name__: f
    for f in (exp, log, sin, cos, tan, tanh, sigmoid, sqrt, log1p, expm1, softplus, sign, abs, relu, maximum, minimum)
    + (arcsin, arccos, arctan, sinh, cosh, arcsinh, arccosh, arctanh, log_sigmoid, floor, ceil)
    + (arctan2, logaddexp, hypot, erf, erfc)
}


from symdiff.ops.logic import equal, greater, greater_equal, less, less_equal, where  # noqa: E402 (rules need them; they need these)
