"""Values made from another node's shape (zeros_like, ones_like, eye_like) and the identity-like
ops (stop_gradient, match_shape)."""

from __future__ import annotations

from typing import Any

import numpy as np

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape
from symdiff.ops.arithmetic import astype
from symdiff.ops.core import (
    apply,
    as_nodes,
    define_op,
    first_dtype,
)
from symdiff.ops.indexing import iota
from symdiff.ops.logic import equal, where

ArrayLike = Any


# -- identity-like ------------------------------------------------------------------------
def _match_shape_forward(xp, x, ref):
    if np.shape(x) != np.shape(ref):
        raise ShapeError(
            f"a gradient has shape {np.shape(x)} but its variable has shape {np.shape(ref)}: the bound values "
            "broadcast a dimension declared None (a None dimension never broadcasts; declare it as 1 to broadcast)"
        )
    return x


MATCH_SHAPE = define_op(
    "match_shape",
    _match_shape_forward,
    lambda x, ref: x,
    kind="structural",
    dtype=first_dtype,
    vjp=(lambda g, out, x, ref: g, None),
    jvp=(lambda t, out, x, ref: t, None),
    transparent=True,  # a check: printed as the value
    doc="x, checked at evaluation to have ref's shape (prints as x)",
)


def match_shape(x: Node, ref: Node) -> Node:
    """``x``, with a check at evaluation that its shape equals ``ref``'s (for unknown dimensions).

    >>> g = sd.Graph(); a = g.variable("a", shape=(None,)); b = g.variable("b", shape=(None,))
    >>> print(sd.match_shape(a * 2, b))
    a*2
    """
    return apply(MATCH_SHAPE, *as_nodes("match_shape", x, ref))


STOP_GRADIENT = define_op(
    "stop_gradient",
    lambda xp, x: x,
    lambda shape: shape,
    kind="structural",
    dtype=first_dtype,
    vjp=(None,),
    jvp=(None,),
    doc="x in the forward pass; no gradient flows through it",
    scalar=lambda x: x,
    sparsity="none",
)


def stop_gradient(x: ArrayLike) -> Node:
    """``x`` in the forward pass; passes no gradient (a constant to the derivative).

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.grad(x * sd.stop_gradient(x), x))
    stop_gradient(x)
    """
    return apply(STOP_GRADIENT, *as_nodes("stop_gradient", x))


def _filled_like(name: str, what: str):
    # no gradient flows: the value depends on x's shape, not on its elements
    return define_op(
        name,
        numpy=name,
        shape=lambda shape: shape,
        kind="structural",
        dtype=first_dtype,
        vjp=(None,),
        jvp=(None,),
        doc=f"{what} shaped like x",
        sparsity="none",
    )


ZEROS_LIKE = _filled_like("zeros_like", "zeros")
ONES_LIKE = _filled_like("ones_like", "ones")


def zeros_like(x: ArrayLike) -> Node:
    """Zeros with ``x``'s shape and dtype (a constant when the shape is static).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> sd.zeros_like(w).op
    'constant'
    """
    return apply(ZEROS_LIKE, *as_nodes("zeros_like", x))


def ones_like(x: ArrayLike) -> Node:
    """Ones with ``x``'s shape and dtype (a constant when the shape is static).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.ones_like(w).value)
    [1. 1.]
    """
    return apply(ONES_LIKE, *as_nodes("ones_like", x))


def _eye_like_forward(xp, ref, dtype_to):
    shape = np.shape(ref)
    return xp.reshape(xp.eye(int(np.prod(shape, dtype=np.int64)), dtype=dtype_to), shape + shape)


def eye_value(shape: Shape, dtype: np.dtype) -> np.ndarray:
    """The identity on the elements of an array shaped ``shape``, as a numpy array."""
    return _eye_like_forward(np, np.empty(shape, dtype=bool), dtype)


def _lower_eye_like(ref: Node, dtype_to: str) -> Node:
    """1 where the row's index equals the column's along every axis of ref: an iota of each axis
    compared with itself across, the comparisons joined."""
    if ref.ndim == 0:
        return ref.graph.constant(np.ones((), dtype=dtype_to))
    n = ref.ndim
    same = equal(iota(ref, 0, 2 * n, 0), iota(ref, 0, 2 * n, n))
    for k in range(1, n):
        same = where(same, equal(iota(ref, k, 2 * n, k), iota(ref, k, 2 * n, n + k)), False)
    return astype(same, dtype_to)


EYE_LIKE = define_op(
    "eye_like",
    _eye_like_forward,
    lambda shape, dtype_to: tuple(shape) + tuple(shape),
    kind="structural",
    dtype=lambda ref, dtype_to: np.dtype(dtype_to),
    vjp=(None,),
    jvp=(None,),
    lower=_lower_eye_like,
    doc="the identity on ref's elements, shaped ref.shape + ref.shape (the seed of a Jacobian)",
    sparsity="none",
)


def eye_like(ref: Node, dtype: Any = None) -> Node:
    """The identity map on ``ref``'s elements, shaped ``ref.shape + ref.shape``.

    A constant when ref's shape is static; otherwise computed at evaluation (the seed
    of a Jacobian whose sizes are known only then).

    >>> g = sd.Graph(); w = g.variable("w", shape=(None,))
    >>> print(sd.evaluate(sd.eye_like(w), {w: [5.0, 6.0]}))
    [[1. 0.]
     [0. 1.]]
    """
    (ref,) = as_nodes("eye_like", ref)
    dt = np.dtype(dtype) if dtype is not None else (ref.dtype if ref.dtype.kind == "f" else np.dtype(np.float64))
    return apply(EYE_LIKE, ref, dtype_to=dt.str)
