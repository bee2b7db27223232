"""What a family of ops declares alike, for the families whose members live in several modules
(``structure.moving_op`` serves the ops that move elements; each op is still one call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from symdiff.graph import Shape
from symdiff.ops.core import Op, broadcast_shapes, common_dtype, define_op, same_shape


def elementwise_op(
    name: str, forward: Callable[..., Any] | None = None, shape: Callable[..., Shape] | None = None, **declaration: Any
) -> Op:
    """An elementwise op (add, sin, where): its inputs broadcast against each other, so unless
    ``shape`` is given its shape rule is numpy's broadcasting, and an op of one input (as its
    rules or ``arity`` count them) keeps that input's shape. The rest as for ``define_op``.

    >>> from symdiff.ops.core import REGISTRY
    >>> REGISTRY["add"].shape((3,), (2, 1)), REGISTRY["sin"].shape((None, 3))
    ((2, 3), (None, 3))
    """
    if shape is None:
        rules = declaration.get("partials", declaration.get("vjp", declaration.get("transpose")))
        inputs = declaration.get("arity") or (len(rules) if isinstance(rules, (tuple, list)) else None)
        shape = same_shape if inputs == 1 else broadcast_shapes
    return define_op(name, forward, shape, kind="elementwise", **declaration)


def product_op(name: str, shape: Callable[..., Shape], **declaration: Any) -> Op:
    """A product of two arrays that is numpy's function ``name`` (matmul, tensordot, outer,
    kron): linear algebra, and of numpy's result type of the two (int @ int stays int, as in
    numpy). The rest as for ``define_op``: each product writes its derivative rules.

    >>> from symdiff.ops.core import REGISTRY
    >>> REGISTRY["kron"].dtype(np.dtype("int64"), np.dtype("int32"))
    dtype('int64')
    """
    return define_op(name, numpy=name, shape=shape, kind="linalg", dtype=common_dtype, **declaration)
