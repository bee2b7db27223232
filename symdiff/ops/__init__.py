"""The op table: one module per family, each op declared once (see ``core``).

arithmetic (add ... pow, astype), functions (exp, sin, ..., maximum), logic (comparisons,
where), structure (axes, broadcasting, reshape, transpose, triangles), indexing (getitem,
take), creation (zeros_like, eye_like, stop_gradient), reduce (sum ... softmax), linalg
(matmul, solve, inv, det, cholesky). The rewrite rules that apply while building are in
``symdiff.rules``, the one rule table.
"""

from symdiff.ops.arithmetic import add, astype, divide, multiply, negative, power, square, subtract
from symdiff.ops.core import REGISTRY, Op, apply, atomic, define_op, not_differentiable
from symdiff.ops.creation import eye_like, match_shape, ones_like, stop_gradient, zeros_like
from symdiff.ops.functions import (
    abs,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    ceil,
    clip,
    cos,
    cosh,
    exp,
    expm1,
    floor,
    hypot,
    log,
    log1p,
    log_sigmoid,
    logaddexp,
    maximum,
    minimum,
    relu,
    round,
    sigmoid,
    sign,
    sin,
    sinh,
    softplus,
    sqrt,
    tan,
    tanh,
)
from symdiff.ops.indexing import getitem, take
from symdiff.ops.linalg import cholesky, det, inv, matmul, solve
from symdiff.ops.logic import equal, greater, greater_equal, less, less_equal, not_equal, where
from symdiff.ops.reduce import count, log_softmax, logsumexp, max, mean, min, softmax, sum
from symdiff.ops.structure import (
    broadcast_like,
    broadcast_to,
    expand_dims,
    matrix_transpose,
    reshape,
    reshape_like,
    squeeze,
    transpose,
    tril,
    triu,
)

__all__ = [
    "Op",
    "REGISTRY",
    "abs",
    "add",
    "apply",
    "arccos",
    "arccosh",
    "arcsin",
    "arcsinh",
    "arctan",
    "arctan2",
    "arctanh",
    "astype",
    "broadcast_like",
    "broadcast_to",
    "ceil",
    "cholesky",
    "clip",
    "cos",
    "cosh",
    "count",
    "define_op",
    "det",
    "divide",
    "equal",
    "exp",
    "expand_dims",
    "expm1",
    "eye_like",
    "floor",
    "getitem",
    "greater",
    "greater_equal",
    "hypot",
    "inv",
    "less",
    "less_equal",
    "log",
    "log1p",
    "log_sigmoid",
    "log_softmax",
    "logaddexp",
    "logsumexp",
    "match_shape",
    "matmul",
    "matrix_transpose",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "multiply",
    "negative",
    "not_differentiable",
    "not_equal",
    "ones_like",
    "power",
    "relu",
    "reshape",
    "reshape_like",
    "round",
    "sigmoid",
    "sign",
    "sin",
    "sinh",
    "softmax",
    "softplus",
    "solve",
    "sqrt",
    "square",
    "squeeze",
    "stop_gradient",
    "subtract",
    "sum",
    "take",
    "tan",
    "tanh",
    "transpose",
    "tril",
    "triu",
    "where",
    "zeros_like",
]

# What users call (sd.add, and the Node operators) leaves the graph unchanged when it fails;
# derivative rules call the module functions directly.
for _name in __all__:
    if _name not in ("REGISTRY", "Op", "define_op", "not_differentiable"):
        globals()[_name] = atomic(globals()[_name])
del _name

# The build-time rewrites (x + 0 -> x) are part of apply from here on.
from symdiff import rules as _rules  # noqa: E402, F401
