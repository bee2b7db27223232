"""Reductions (sum, mean, max, min, logsumexp) and the softmax family.

Axes are stored as sorted negative ints, so every rule also works on cotangents
with extra leading batch axes (vectorised Jacobians and Hessians).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape
from symdiff.ops.arithmetic import add, astype, divide, multiply, subtract
from symdiff.ops.core import Op, apply, as_nodes, define_op, first_dtype, op_axes, to_float
from symdiff.ops.functions import abs as absolute
from symdiff.ops.functions import exp, log, maximum, share_mask, sqrt
from symdiff.ops.logic import equal, less, where
from symdiff.ops.structure import broadcast_like, expand_dims, flip, reshape, squeeze

ArrayLike = Any


def _reduced_shape(shape: Shape, *, axis: tuple[int, ...], keepdims: bool) -> Shape:
    n = len(shape)
    if keepdims:
        return tuple(1 if i - n in axis else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i - n not in axis)


def reduction(op: Op, x: ArrayLike, axis: Any, keepdims: bool, *, floats: bool = False) -> Node:
    """A reduction over ``axis`` (all axes when None), numpy's way: ``x`` itself when that is no
    axis at all; with ``floats``, an integer x is cast to float first (mean, logsumexp)."""
    (x,) = as_nodes(op.name, x)
    if floats:
        x = to_float(x)
    axes = op_axes(op.name, x, axis)
    if not axes:
        return x
    return apply(op, x, axis=axes, keepdims=bool(keepdims))


def _keep(g: Node, axis: tuple[int, ...], keepdims: bool) -> Node:
    """A reduced value with its reduced axes restored as length 1 (broadcasts against x)."""
    return g if keepdims else expand_dims(g, axis)


def _reduction_rules(partial) -> dict[str, tuple]:
    """The rules of a reduction whose output moves by sum(partial * dx) along its axes, with
    ``partial(out, x, axis, keepdims, **attrs)`` shaped like x: the cotangent broadcast back
    times it, and the tangent times it summed."""

    def vjp(g, out, x, axis, keepdims, **attrs):
        return multiply(_keep(g, axis, keepdims), partial(out, x, axis, keepdims, **attrs))

    def jvp(t, out, x, axis, keepdims, **attrs):
        return sum(multiply(t, partial(out, x, axis, keepdims, **attrs)), axis, keepdims)

    return {"vjp": (vjp,), "jvp": (jvp,)}


def _sympy_sum(x, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims)


def _whole(node: Node, symbol: str, wrap) -> tuple[str, int] | None:
    """``\\sum x`` for a reduction over every axis (LaTeX); None for the usual form otherwise."""
    if node.attrs["axis"] != tuple(range(-node.inputs[0].ndim, 0)):
        return None
    need = 40 if symbol == r"\sum" else 100  # a power binds tighter than a sum: \sum x^{2}, \sum \left(2 x\right)
    return rf"{symbol} {wrap(0, need)}", 15


def accumulates(fn: Any) -> Any:
    """The dtype rule of numpy's sum-like function ``fn`` (np.sum, np.prod, np.cumsum): the dtype
    it returns for an input of ``dtype``, its accumulator's. Booleans count and small integers
    accumulate in the platform integer (int64; uint16 in uint64); floats keep their dtype."""

    def rule(dtype: np.dtype, **_: Any) -> np.dtype:
        return fn(np.zeros(0, dtype)).dtype

    return rule


def _accumulator(name: str, x: Any) -> np.dtype:
    dtype = getattr(x, "dtype", None)  # compiled code may pass a Python number
    return getattr(np, name)(np.zeros(0, np.result_type(x) if dtype is None else dtype)).dtype


# module-level functions (no closures): to_source copies an op's forward into the module it writes
def _cumsum_forward(xp, x, **attrs):
    return xp.cumsum(x, dtype=_accumulator("cumsum", x), **attrs)


def _cumprod_forward(xp, x, **attrs):
    return xp.cumprod(x, dtype=_accumulator("cumprod", x), **attrs)


def _prod_forward(xp, x, **attrs):
    return xp.prod(x, dtype=_accumulator("prod", x), **attrs)


_ACCUMULATED = {"cumsum": _cumsum_forward, "cumprod": _cumprod_forward, "prod": _prod_forward}


def accumulated(name: str) -> Any:
    """The forward of numpy's sum-like function ``name`` asked for numpy's accumulator dtype, so
    every backend gives the declared one (jax's cumsum and prod keep int32, bool as int32)."""
    return _ACCUMULATED[name]


SUM = define_op(
    "sum",
    numpy="sum",
    shape=_reduced_shape,
    kind="reduction",
    # numpy's accumulator: booleans count (int64), small integers sum in the platform integer
    dtype=accumulates(np.sum),
    transpose=lambda ct, x, axis, keepdims: broadcast_like(_keep(ct, axis, keepdims), x),
    latex=lambda node, args, wrap: _whole(node, r"\sum", wrap),
    sympy=_sympy_sum,
    doc="d sum x = sum dx; the gradient is broadcast back over the summed axes",
)


def sum(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001 (numpy's name)
    """Sum over ``axis`` (all axes when None), as ``numpy.sum``.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.sum(w ** 2), {w: [1.0, 2.0, 3.0]}))
    14.0
    """
    return reduction(SUM, x, axis, keepdims)


def _lower_count(x: Node, axis: tuple[int, ...], dtype_to: str) -> Node:
    """The known sizes multiplied, times the number of elements of a block of ones shaped by the
    unknown ones alone: a border of ones padded onto x emptied along every other axis (so that
    no empty axis elsewhere hides them), summed in int64 and cast once, as the forward's product."""
    from symdiff.ops.indexing import getitem  # here: indexing and join import this module
    from symdiff.ops.join import pad

    known = int(np.prod([x.shape[a] for a in axis if x.shape[a] is not None], dtype=np.int64))
    unknown = {x.ndim + a for a in axis if x.shape[a] is None}
    if not unknown or known == 0:
        return x.graph.constant(np.asarray(known, dtype=dtype_to))
    lifted = expand_dims(x, 0)  # an axis to empty when every axis is counted
    kept = [j - 1 in unknown for j in range(lifted.ndim)]
    emptied = getitem(lifted, tuple(slice(None) if k else slice(0, 0) for k in kept))
    ones = pad(astype(emptied, np.int64), [(0, 0) if k else (0, 1) for k in kept], constant_values=1)
    return astype(sum(ones) if known == 1 else multiply(sum(ones), known), dtype_to)


COUNT = define_op(
    "count",
    lambda xp, x, axis, dtype_to: xp.asarray(np.prod([np.shape(x)[a] for a in axis]), dtype=dtype_to),
    lambda shape, axis, dtype_to: (),
    kind="reduction",
    sympy="forward",
    dtype=lambda x, axis, dtype_to: np.dtype(dtype_to),
    vjp=(None,),
    jvp=(None,),
    fold=False,
    doc="the number of elements of x along axis (a value, not a function of x's elements)",
    lower=_lower_count,
    sparsity="none",
)


def accumulator(dtype: np.dtype) -> np.dtype:
    """The dtype a reduction of ``dtype`` accumulates in: float32 for float16 (as numpy's mean:
    a float16 sum of more than 65,504 ones, or a count past it, is inf), else ``dtype``."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _upcast(xp, x):
    # half precision computes in float32; the forwards below cast their result back
    # (np's dtypes: dask.array has no float16 attribute; compiled code may pass a Python float)
    return x.astype(np.float32) if getattr(x, "dtype", None) == np.float16 else x


def _downcast(value, x):
    dtype = getattr(x, "dtype", None)
    return value.astype(dtype) if dtype is not None and value.dtype != dtype else value


def count(x: Node, axis: Any = None) -> Node:
    """The number of elements along ``axis`` as a float scalar (a constant when known): in x's
    float dtype, float32 for a float16 x (float16 holds no integer past 65,504), float64 for
    integers.

    >>> g = sd.Graph(); X = g.variable("X", shape=(None, 3))
    >>> print(sd.evaluate(sd.count(X), {X: np.ones((4, 3))}))
    12.0
    """
    (x,) = as_nodes("count", x)
    dt = accumulator(x.dtype) if x.dtype.kind == "f" else np.dtype(np.float64)
    return apply(COUNT, x, axis=op_axes("count", x, axis), dtype_to=dt.str)


def _per_element(g: Node, x: Node, axis) -> Node:
    """``g / n`` for n the count of x along axis, divided in the count's dtype and cast back to
    g's (a float16 gradient of a mean over 70,000 elements is 1/70000, not 1/inf = 0)."""
    return astype(divide(g, count(x, axis)), g.dtype)


def _lower_mean(x: Node, axis: tuple[int, ...], keepdims: bool) -> Node:
    # numpy's mean: the sum (in float32 for float16) divided by the count, cast back
    total = sum(astype(x, accumulator(x.dtype)), axis, keepdims)
    return astype(divide(total, count(x, axis)), x.dtype)


MEAN = define_op(
    "mean",
    numpy="mean",
    shape=_reduced_shape,
    kind="reduction",
    transpose=lambda ct, x, axis, keepdims: broadcast_like(_per_element(_keep(ct, axis, keepdims), x, axis), x),
    latex=lambda node, args, wrap: _whole(node, r"\operatorname{mean}", wrap),
    lower=_lower_mean,
    sympy=lambda x, axis, keepdims: (
        np.sum(x, axis=axis, keepdims=keepdims) / sympy.Integer(int(np.prod([np.shape(x)[a] for a in axis])))
    ),
    doc="d mean x = mean dx",
)


def mean(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:
    """Arithmetic mean over ``axis`` (all axes when None), as ``numpy.mean``.

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,))
    >>> print(sd.evaluate(sd.grad(sd.mean(w), w), {w: np.zeros(4)}))
    [0.25 0.25 0.25 0.25]
    """
    return reduction(MEAN, x, axis, keepdims, floats=True)


def _extremum_share(x: Node, out: Node, axis, keepdims) -> Node:
    # Ties share the gradient equally: mask / (number of maximal elements). The mask is
    # built with where, whose condition carries no gradient: its derivative is 0.
    # Counted in the accumulator's dtype (70,000 float16 ties share 1/70000 each, not 1/inf).
    mask = share_mask(equal(x, _keep(out, axis, keepdims)), accumulator(x.dtype))
    return astype(divide(mask, sum(mask, axis, keepdims=True)), x.dtype)


def _sympy_extremum(fn):
    def reduce(x, axis, keepdims):
        moved = np.moveaxis(x, axis, tuple(range(-len(axis), 0)))  # reduced axes last
        flat = moved.reshape(moved.shape[: moved.ndim - len(axis)] + (-1,))
        out = np.empty(flat.shape[:-1], dtype=object)
        for i in np.ndindex(out.shape):
            out[i] = fn(*flat[i])
        return np.expand_dims(out, axis) if keepdims else out

    return reduce


def _extremum(name, sympy_fn, doc):
    return define_op(
        name,
        numpy=name,
        shape=_reduced_shape,
        kind="reduction",
        dtype=first_dtype,
        **_reduction_rules(lambda out, x, axis, keepdims: _extremum_share(x, out, axis, keepdims)),
        sympy=_sympy_extremum(sympy_fn),
        doc=doc,
    )


MAX = _extremum("max", sympy.Max, "the largest element; the gradient goes to it (shared equally among ties)")
MIN = _extremum("min", sympy.Min, "the smallest element; the gradient goes to it (shared equally among ties)")


def max(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001 (numpy's name)
    """Largest element over ``axis``, as ``numpy.max``. Tied maxima share the gradient equally.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.grad(sd.max(w), w), {w: [1.0, 5.0, 5.0]}))
    [0.  0.5 0.5]
    """
    return reduction(MAX, x, axis, keepdims)


def min(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001 (numpy's name)
    """Smallest element over ``axis``, as ``numpy.min``. Tied minima share the gradient equally.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.min(w), {w: [4.0, -1.0, 2.0]}))
    -1.0
    """
    return reduction(MIN, x, axis, keepdims)


# -- variance, standard deviation --------------------------------------------------------
def _centered_share(x: Node, axis, ddof: int) -> Node:
    """(x - mean x) / (n - ddof): half the derivative of the variance by each element."""
    centered = subtract(x, mean(x, axis, keepdims=True))
    return astype(divide(centered, subtract(count(x, axis), float(ddof))), x.dtype)


def _var_shape(shape: Shape, *, axis: tuple[int, ...], keepdims: bool, ddof: int) -> Shape:
    return _reduced_shape(shape, axis=axis, keepdims=keepdims)


def _sympy_var(x, axis, keepdims, ddof):
    n = sympy.Integer(int(np.prod([np.shape(x)[a] for a in axis])))
    centered = x - np.sum(x, axis=axis, keepdims=True) / n
    return np.sum(centered * centered, axis=axis, keepdims=keepdims) / (n - ddof)


def _vectorized_sqrt(values):
    return np.vectorize(sympy.sqrt, otypes=[object])(values)


def _std_share(out: Node, x: Node, axis, keepdims, ddof) -> Node:
    # d std = (x - mean) / ((n - ddof) std) dx; 0 where std is 0 (all equal: a subgradient, no nan)
    spread = _keep(out, axis, keepdims)
    return divide(_centered_share(x, axis, ddof), where(equal(spread, 0), 1.0, spread))


def _var(xp, x, axis, keepdims, ddof):
    # numpy's own var of float16 keeps its intermediate sum in float16 (70,000 ones: inf)
    return _downcast(xp.var(_upcast(xp, x), axis=axis, keepdims=keepdims, ddof=ddof), x)


def _std(xp, x, axis, keepdims, ddof):
    return _downcast(xp.std(_upcast(xp, x), axis=axis, keepdims=keepdims, ddof=ddof), x)


def _lower_spread(x: Node, axis: tuple[int, ...], keepdims: bool, ddof: int, root: bool = False) -> Node:
    """numpy's var (std: its square root) step by step: the mean subtracted, squared, summed and
    divided by max(n - ddof, 0), in float32 for float16."""
    y = astype(x, accumulator(x.dtype))
    n = count(x, axis)
    centered = subtract(y, divide(sum(y, axis, keepdims=True), n))
    out = divide(sum(multiply(centered, centered), axis, keepdims), maximum(subtract(n, float(ddof)), 0.0))
    return astype(sqrt(out) if root else out, x.dtype)


VAR = define_op(
    "var",
    _var,
    numpy="var",
    shape=_var_shape,
    kind="reduction",
    **_reduction_rules(lambda out, x, axis, keepdims, ddof: multiply(2.0, _centered_share(x, axis, ddof))),
    sympy=_sympy_var,
    doc="mean squared deviation (divided by n - ddof); d = 2 sum((x - mean) dx) / (n - ddof)",
    lower=_lower_spread,
)
STD = define_op(
    "std",
    _std,
    numpy="std",
    shape=_var_shape,
    kind="reduction",
    **_reduction_rules(_std_share),
    sympy=lambda x, axis, keepdims, ddof: _vectorized_sqrt(_sympy_var(x, axis, keepdims, ddof)),
    doc="sqrt(var x); d = sum((x - mean) dx) / ((n - ddof) std); 0 where std is 0",
    lower=lambda x, axis, keepdims, ddof: _lower_spread(x, axis, keepdims, ddof, root=True),
)


def _spread(op, name: str, x: ArrayLike, axis: Any, ddof: int, keepdims: bool) -> Node:
    (x,) = as_nodes(name, x)
    if not isinstance(ddof, (int, np.integer)) or isinstance(ddof, bool) or ddof < 0:
        raise ValueError(f"{name}: ddof must be a non-negative int, got {ddof!r}")
    x = to_float(x)
    return apply(op, x, axis=op_axes(name, x, axis), keepdims=bool(keepdims), ddof=int(ddof))


def var(x: ArrayLike, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Node:
    """Variance over ``axis`` (all axes when None), as ``numpy.var`` (``ddof=1``: the sample variance).

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,))
    >>> print(sd.evaluate(sd.var(w), {w: [1.0, 2.0, 3.0, 4.0]}))
    1.25
    """
    return _spread(VAR, "var", x, axis, ddof, keepdims)


def std(x: ArrayLike, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Node:
    """Standard deviation over ``axis``, as ``numpy.std``. Where it is 0 (all elements equal) its
    derivative is taken as 0 (a subgradient), not nan.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.grad(sd.std(w), w), {w: [2.0, 2.0, 2.0]}))
    [0. 0. 0.]
    """
    return _spread(STD, "std", x, axis, ddof, keepdims)


# -- cumulative sums ----------------------------------------------------------------------
def running_op(name: str, doc: str, **rules: Any) -> Op:
    """A running (cumulative) op along one axis, numpy's function ``name``: shaped as its input,
    in numpy's accumulator dtype (a running sum of booleans counts in int64), each output
    element depending on its lane up to it."""
    return define_op(
        name,
        accumulated(name),
        numpy=name,
        shape=lambda shape, axis: shape,
        kind="reduction",
        dtype=accumulates(getattr(np, name)),
        doc=doc,
        sparsity="lane",
        **rules,
    )


CUMSUM = running_op(
    "cumsum",
    "running sum along axis; d = cumsum dx; the gradient is the reversed running sum of g",
    # the adjoint of a running sum is the running sum from the other end
    transpose=lambda ct, x, axis: flip(cumsum(flip(ct, axis), axis), axis),
    sympy="forward",
)


def cumsum(x: ArrayLike, axis: int | None = None) -> Node:
    """Running sum along ``axis`` (over the flattened array when None), as ``numpy.cumsum``.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.cumsum(w), {w: [1.0, 2.0, 3.0]}))
    [1. 3. 6.]
    """
    return running(CUMSUM, x, axis)


def running(op, x: ArrayLike, axis: int | None) -> Node:
    """A running (cumulative) op along one axis, numpy's way: over the flattened array when None."""
    (x,) = as_nodes(op.name, x)
    if axis is None:
        x, axis = (reshape(x, (-1,)) if x.ndim != 1 else x), 0
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"{op.name}: axis must be an int or None, got {axis!r}")
    (a,) = op_axes(op.name, x, axis)
    return apply(op, x, axis=a)


# -- logsumexp and the softmax family -------------------------------------------------
# Each is computed from x - max(x), never from x and a logsumexp of it: x - logsumexp(x) at
# x = 1e15 keeps 3 bits of the answer. float16 computes in float32: a sum of 70,000 terms
# near 1 is past float16's largest number.
def _shifted(xp, x, axis):
    """``x - max(x)`` along axis, in the accumulator's dtype, and the max (by 0 where the max is
    not finite: a slice of all -inf, or an inf, would give inf - inf = nan)."""
    x = _upcast(xp, x)
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    return x - m, m


def _logsumexp(xp, x, axis, keepdims):
    shifted, m = _shifted(xp, x, axis)
    out = xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True)) + m
    return _downcast(out if keepdims else xp.squeeze(out, axis=axis), x)


def _softmax(xp, x, axis):
    e = xp.exp(_shifted(xp, x, axis)[0])
    return _downcast(e / xp.sum(e, axis=axis, keepdims=True), x)


def _log_softmax(xp, x, axis):
    shifted = _shifted(xp, x, axis)[0]
    return _downcast(shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True)), x)


def _sympy_reduce_exp(x, axis, keepdims):
    return np.vectorize(sympy.log, otypes=[object])(
        np.sum(np.vectorize(sympy.exp, otypes=[object])(x), axis=axis, keepdims=keepdims)
    )


def _sympy_softmax(x, axis):
    e = np.vectorize(sympy.exp, otypes=[object])(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def _lower_shifted(x: Node, axis: tuple[int, ...]) -> tuple[Node, Node]:
    """_shifted written as ops: |m| < inf is isfinite(m)."""
    x = astype(x, accumulator(x.dtype))
    m = max(x, axis, keepdims=True)
    m = where(less(absolute(m), np.inf), m, 0.0)
    return subtract(x, m), m


def _lower_logsumexp(x: Node, axis: tuple[int, ...], keepdims: bool) -> Node:
    shifted, m = _lower_shifted(x, axis)
    out = add(log(sum(exp(shifted), axis, keepdims=True)), m)
    return astype(out if keepdims else squeeze(out, axis), x.dtype)


def _lower_softmax(x: Node, axis: tuple[int, ...]) -> Node:
    e = exp(_lower_shifted(x, axis)[0])
    return astype(divide(e, sum(e, axis, keepdims=True)), x.dtype)


def _lower_log_softmax(x: Node, axis: tuple[int, ...]) -> Node:
    shifted = _lower_shifted(x, axis)[0]
    return astype(subtract(shifted, log(sum(exp(shifted), axis, keepdims=True))), x.dtype)


LOGSUMEXP = define_op(
    "logsumexp",
    _logsumexp,
    _reduced_shape,
    kind="reduction",
    # softmax(x), not exp(x - out): out carries the rounding of max(x) (at x = 1e15, 0.125),
    # which the difference would keep and the exponential magnify
    **_reduction_rules(lambda out, x, axis, keepdims: softmax(x, axis)),
    sympy=_sympy_reduce_exp,
    doc="log sum exp x, without overflow; d = sum softmax(x) dx",
    lower=_lower_logsumexp,
)
SOFTMAX = define_op(
    "softmax",
    _softmax,
    lambda shape, axis: shape,
    # The Jacobian diag(s) - s s^T is symmetric: the same formula serves both modes.
    vjp=(lambda g, out, x, axis: multiply(out, subtract(g, sum(multiply(g, out), axis, keepdims=True))),),
    jvp=(lambda t, out, x, axis: multiply(out, subtract(t, sum(multiply(t, out), axis, keepdims=True))),),
    sympy=_sympy_softmax,
    doc="exp x / sum exp x along axis, without overflow; d s = s (dx - sum(s dx))",
    lower=_lower_softmax,
    sparsity="lane",
)


def _total(g: Node, axis) -> Node:
    """sum(g) along axis, kept, in the accumulator's dtype (the sum of 70,000 float16 ones is 70000)."""
    return sum(astype(g, accumulator(g.dtype)), axis, keepdims=True)


LOG_SOFTMAX = define_op(
    "log_softmax",
    _log_softmax,
    lambda shape, axis: shape,
    # softmax(x), not exp(out): out = x - max - log(sum) carries an absolute rounding of |out| ulps,
    # which the exponential turns into a relative error of |out| ulps (30 at out = -64)
    vjp=(lambda g, out, x, axis: subtract(g, astype(multiply(softmax(x, axis), _total(g, axis)), g.dtype)),),
    jvp=(lambda t, out, x, axis: subtract(t, sum(multiply(t, softmax(x, axis)), axis, keepdims=True)),),
    sympy=lambda x, axis: np.vectorize(sympy.log, otypes=[object])(_sympy_softmax(x, axis)),
    doc="x - logsumexp(x) along axis; d = dx - sum(softmax(x) dx)",
    lower=_lower_log_softmax,
    sparsity="lane",
)


def logsumexp(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:
    """``log(sum(exp(x)))`` over ``axis``, computed without overflow (as scipy's ``logsumexp``).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.logsumexp(w), {w: [1000.0, 1000.0]}))
    1000.6931471805599
    """
    return reduction(LOGSUMEXP, x, axis, keepdims, floats=True)


def softmax(x: ArrayLike, axis: Any = -1) -> Node:
    """``exp(x) / sum(exp(x))`` along ``axis`` (the last by default), without overflow.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.softmax(w), {w: [0.0, 0.0]}))
    [0.5 0.5]
    """
    (x,) = as_nodes("softmax", x)
    x = to_float(x)
    return apply(SOFTMAX, x, axis=op_axes("softmax", x, axis))


def log_softmax(x: ArrayLike, axis: Any = -1) -> Node:
    """``x - logsumexp(x)`` along ``axis``: the log of softmax, finite for large inputs.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.log_softmax(w), {w: [0.0, 2000.0]}))
    [-2000.     0.]
    """
    (x,) = as_nodes("log_softmax", x)
    x = to_float(x)
    return apply(LOG_SOFTMAX, x, axis=op_axes("log_softmax", x, axis))
