"""Node's operators and numpy-style methods, defined by the op table and installed on
:class:`symdiff.graph.Node` (which sits below the op table and imports none of it).

``x + y`` is ``sd.add(x, y)``, ``x[i]`` ``sd.getitem``, ``x.T`` ``sd.transpose``, ``x.sum()``
``sd.sum``, ``np.sum(x)`` ``sd.sum`` (``__array_function__``): each calls the public function
of the same op, which leaves the graph unchanged when it fails. ``symdiff.ops`` installs them
when it is imported, after wrapping its public functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import symdiff.ops as ops
from symdiff.errors import ShapeError
from symdiff.graph import Node, format_shape, install


class NodeMethods:
    """The namespace of the methods ``install_node_methods`` puts on Node (never instantiated)."""

    def __array_function__(self, func, types, args, kwargs):
        """``np.sum(node)``, ``np.transpose(node)``...: numpy functions that symdiff has as ops
        (same name, same semantics) build that op; any other raises a TypeError saying so."""
        name = func.__name__
        fn = getattr(ops, name) if name in ops.__all__ else None
        if fn is None or kwargs.get("out") is not None:
            hint = f"use sd.{name}(...), which builds a node" if fn else "docs/ops.md lists symdiff's ops"
            raise TypeError(f"numpy.{name} cannot compute on symdiff nodes, which are symbolic; {hint}")
        kwargs = {k: v for k, v in kwargs.items() if k != "out"}
        return fn(*args, **kwargs)

    @property
    def T(self) -> Node:  # noqa: N802 (numpy's name)
        return ops.transpose(self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    # -- numpy-style methods (and the operators and reductions, from the tables below) ---------
    def reshape(self, *shape) -> Node:
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return ops.reshape(self, shape)

    def transpose(self, *axes) -> Node:
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return ops.transpose(self, axes or None)

    def astype(self, dtype: Any) -> Node:
        """This node converted to ``dtype``, as ``ndarray.astype`` (``sd.astype``).

        >>> g = sd.Graph(); i = g.variable("i", dtype="int32")
        >>> i.astype("float32").dtype
        dtype('float32')
        """
        return ops.astype(self, dtype)

    def dot(self, other: Any) -> Node:
        """The matrix product ``self @ other``, as ``ndarray.dot`` for vectors and matrices.

        >>> g = sd.Graph(); A = g.variable("A", shape=(2, 3)); v = g.variable("v", shape=(3,))
        >>> A.dot(v).shape
        (2,)
        """
        other_shape = other.shape if isinstance(other, Node) else np.shape(other)
        if self.ndim > 2 or len(other_shape) > 2:
            raise ShapeError(
                "dot: for arrays of more than 2 dimensions numpy's dot is not matmul; use sd.matmul "
                f"(shapes {format_shape(self.shape)} and {format_shape(other_shape)})"
            )
        if self.ndim == 0 or len(other_shape) == 0:
            return ops.multiply(self, other)  # numpy's dot of a scalar is the product
        return ops.matmul(self, other)


# The operators and reductions, each a call of one public function of symdiff.ops, by method
# name: the function is looked up when called, as in every method here.
_OPERATORS = dict(add="add", sub="subtract", mul="multiply", truediv="divide", pow="power", matmul="matmul")
_COMPARISONS = dict(lt="less", le="less_equal", gt="greater", ge="greater_equal")  # 2 < x is x > 2
_UNARY = dict(neg="negative", abs="abs")
_REDUCTIONS = ("sum", "mean", "max", "min")


def _operator(function: str, reflected: bool = False) -> Callable[..., Node]:
    """``sd.<function>(self, other)``, or ``(other, self)`` for a reflected operator."""
    if reflected:

        def method(self, other):
            return getattr(ops, function)(other, self)

    else:

        def method(self, other):
            return getattr(ops, function)(self, other)

    method.__doc__ = f"``sd.{function}({'other, self' if reflected else 'self, other'})``."
    return method


def _unary(function: str) -> Callable[..., Node]:
    def method(self):
        return getattr(ops, function)(self)

    method.__doc__ = f"``sd.{function}(self)``."
    return method


def _reduction(function: str) -> Callable[..., Node]:
    def method(self, axis=None, keepdims: bool = False) -> Node:
        return getattr(ops, function)(self, axis=axis, keepdims=keepdims)

    method.__doc__ = f"``sd.{function}(self, axis, keepdims)``, as ``ndarray.{function}``."
    return method


_GENERATED = {
    **{f"__{name}__": _operator(fn) for name, fn in {**_OPERATORS, **_COMPARISONS}.items()},
    **{f"__r{name}__": _operator(fn, reflected=True) for name, fn in _OPERATORS.items()},  # 2 - x
    **{f"__{name}__": _unary(fn) for name, fn in _UNARY.items()},
    **{name: _reduction(name) for name in _REDUCTIONS},
}
for _name, _method in _GENERATED.items():
    _method.__name__ = _name
    setattr(NodeMethods, _name, _method)
del _name, _method


def install_node_methods() -> None:
    """Put NodeMethods' methods on Node (``symdiff.ops`` does, once its functions are wrapped)."""
    install(Node, {k: v for k, v in vars(NodeMethods).items() if callable(v) or isinstance(v, property)})
