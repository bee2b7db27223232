"""Products along axes: prod and cumprod, with derivatives that hold where elements are zero.

The textbook gradient of a product, ``prod(x) / x_i``, divides by zero where an element
is zero. The rules here multiply the *other* elements instead (exclusive running
products), so the derivative is the true one at zeros, at every order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symdiff.graph import Node
from symdiff.ops.arithmetic import multiply
from symdiff.ops.core import apply, define_op
from symdiff.ops.creation import eye_like, ones_like
from symdiff.ops.indexing import getitem
from symdiff.ops.join import PAD, _along
from symdiff.ops.logic import equal, where
from symdiff.ops.reduce import (
    _reduced_shape,
    _reduction_rules,
    accumulated,
    accumulates,
    reduction,
    running,
    running_op,
)
from symdiff.ops.reduce import sum as sum_over
from symdiff.ops.structure import expand_dims, flip, transpose, triu

ArrayLike = Any


# -- cumprod ------------------------------------------------------------------------
def _to_last(x: Node, axis: int) -> Node:
    """x with its (negative) ``axis`` moved last."""
    a = x.ndim + axis
    return transpose(x, tuple(k for k in range(x.ndim) if k != a) + (a,))


def _from_last(x: Node, axis: int) -> Node:
    a = x.ndim + axis
    perm = list(range(x.ndim - 1))
    perm.insert(a, x.ndim - 1)
    return transpose(x, tuple(perm))


def _partial_products(x: Node, axis: int) -> Node:
    """W[..., i, k] = d cumprod(x)[k] / d x[i] = prod of x[j] for j <= k, j != i (0 for k < i),
    with ``axis`` moved last: O(n²) along the axis, and exact where elements are zero."""
    xl = _to_last(x, axis)
    v = getitem(xl, (0,) * (xl.ndim - 1)) if xl.ndim > 1 else xl
    eye = eye_like(v)  # (n, n), n known at evaluation if not before
    without_i = where(equal(eye, 1.0), 1.0, expand_dims(xl, -2))  # row i: x with x[i] -> 1
    return multiply(triu(ones_like(eye)), cumprod(without_i, -1))


def _cumprod_vjp(g: Node, out: Node, x: Node, axis: int) -> Node:
    w = _partial_products(x, axis)
    return _from_last(sum_over(multiply(w, expand_dims(_to_last(g, axis), -2)), -1), axis)


def _cumprod_jvp(t: Node, out: Node, x: Node, axis: int) -> Node:
    w = _partial_products(x, axis)
    return _from_last(sum_over(multiply(w, expand_dims(_to_last(t, axis), -1)), -2), axis)


CUMPROD = running_op(
    "cumprod",
    "running product along axis; d out[k] = sum over i <= k of (prod of x[j], j <= k, j != i) dx[i]: "
    "exact at zeros, O(n²) along the axis",
    vjp=(_cumprod_vjp,),
    jvp=(_cumprod_jvp,),
    sympy=lambda x, axis: np.cumprod(x, axis=axis),
)


def cumprod(x: ArrayLike, axis: int | None = None) -> Node:
    """Running product along ``axis`` (over the flattened array when None), as ``numpy.cumprod``.

    Its derivative multiplies the other elements (no division), so it is exact where
    elements are zero; it costs O(n²) along the axis.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.grad(sd.sum(sd.cumprod(w)), w), {w: [2.0, 0.0, 3.0]}))
    [1. 8. 0.]
    """
    return running(CUMPROD, x, axis)


# -- prod ---------------------------------------------------------------------------
def _shifted_products(x: Node, axis: int, before: bool) -> Node:
    """The product of the elements before (or after) each one along ``axis``; 1 at the edge."""
    edge = ((1, 0) if before else (0, 1),) + ((0, 0),) * (-axis - 1)
    if before:
        head = getitem(x, _along(axis, slice(None, -1)))
        return cumprod(apply(PAD, head, widths=edge, value=1.0), axis)
    tail = getitem(x, _along(axis, slice(1, None)))
    return flip(cumprod(flip(apply(PAD, tail, widths=edge, value=1.0), axis), axis), axis)


def _others(x: Node, axes: tuple[int, ...]) -> Node:
    """For each element, the product of all the other elements over ``axes`` (no division)."""
    last, rest = axes[-1], axes[:-1]
    along = multiply(_shifted_products(x, last, True), _shifted_products(x, last, False))
    if not rest:
        return along
    # the others in this element's line along `last`, times the whole lines elsewhere
    return multiply(along, _others(prod(x, last, keepdims=True), rest))


PROD = define_op(
    "prod",
    accumulated("prod"),
    numpy="prod",
    shape=_reduced_shape,
    kind="reduction",
    dtype=accumulates(np.prod),
    **_reduction_rules(lambda out, x, axis, keepdims: _others(x, axis)),
    sympy=lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
    doc="product over axis; d = sum((product of the other elements) dx): exact at zeros",
)


def prod(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> Node:
    """Product over ``axis`` (all axes when None), as ``numpy.prod``.

    The gradient multiplies the other elements rather than dividing the product, so it
    is the true derivative where elements are zero.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.grad(sd.prod(w), w), {w: [2.0, 0.0, 3.0]}))
    [0. 6. 0.]
    """
    return reduction(PROD, x, axis, keepdims)


__test__ = {f.__name__: f for f in (cumprod, prod)}
