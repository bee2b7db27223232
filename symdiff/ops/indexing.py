"""Indexing: ``x[index]`` (basic and integer-array), ``take`` by an integer node, and their
adjoints, which scatter a gradient back into zeros."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from symdiff.errors import GraphError, ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.core import (
    apply,
    as_nodes,
    broadcast_shapes,
    define_op,
    first_dtype,
    not_differentiable,
)
from symdiff.ops.structure import transpose

ArrayLike = Any


# -- indexing -------------------------------------------------------------------------
class Index:
    """A static numpy index (ints, slices, None, Ellipsis, integer arrays), hashable.

    Stored as the ``index`` attribute of getitem nodes; ``numpy`` gives the tuple
    numpy indexes with. Ellipsis is expanded and missing trailing axes filled, so
    ``with_batch(nb)`` can put ``nb`` leading full slices in front for batched rules.
    """

    __slots__ = ("key", "__dict__")

    def __init__(self, key: tuple):
        self.key = key

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Index) and self.key == other.key

    @cached_property
    def numpy(self) -> tuple:
        out = []
        for kind, *rest in self.key:
            if kind == "i":
                out.append(rest[0])
            elif kind == "s":
                out.append(slice(*rest))
            elif kind == "n":
                out.append(None)
            else:
                flat, shape = rest
                out.append(np.array(flat, dtype=np.intp).reshape(shape))
        return tuple(out)

    @cached_property
    def advanced(self) -> bool:
        return any(k[0] == "a" for k in self.key)

    def with_batch(self, nb: int) -> Index:
        if nb == 0:
            return self
        cache = self.__dict__.setdefault("_batched", {})
        if nb not in cache:
            cache[nb] = Index((("s", None, None, None),) * nb + self.key)
        return cache[nb]

    def result_ndim(self, ndim: int) -> int:
        """How many axes x[index] has for an x with ``ndim`` axes."""
        cache = self.__dict__.setdefault("_ndim", {})
        if ndim not in cache:
            cache[ndim] = len(_getitem_shape((None,) * ndim, index=self))
        return cache[ndim]

    def __repr__(self) -> str:
        parts = []
        for kind, *rest in self.key:
            if kind == "i":
                parts.append(str(rest[0]))
            elif kind == "s":
                start, stop, step = rest
                text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
                parts.append(text + ("" if step is None else f":{step}"))
            elif kind == "n":
                parts.append("None")
            else:
                parts.append(str(np.array(rest[0]).reshape(rest[1]).tolist()))
        while len(parts) > 1 and parts[-1] == ":":
            parts.pop()
        return ", ".join(parts)


def _make_index(index: Any, shape: Shape) -> Index:
    entries = index if isinstance(index, tuple) else (index,)
    if sum(1 for e in entries if e is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis (...)")
    consumed = sum(1 for e in entries if e is not None and e is not Ellipsis)
    bool_dims = sum(
        np.ndim(e) - 1 for e in entries if isinstance(e, (list, np.ndarray)) and np.asarray(e).dtype == bool
    )
    consumed += bool_dims
    if consumed > len(shape):
        raise ShapeError(f"too many indices ({consumed}) for a node of shape {format_shape(shape)}")
    key: list[tuple] = []
    for e in entries:
        if e is Ellipsis:
            key.extend([("s", None, None, None)] * (len(shape) - consumed))
        elif e is None:
            key.append(("n",))
        elif isinstance(e, slice):
            for part in (e.start, e.stop, e.step):
                if part is not None and not isinstance(part, (int, np.integer)):
                    raise ShapeError(f"slice bounds must be ints, got {e!r}")
            if e.step == 0:
                raise ShapeError("slice step cannot be zero")
            key.append(("s", *(None if p is None else int(p) for p in (e.start, e.stop, e.step))))
        elif isinstance(e, (int, np.integer)) and not isinstance(e, bool):
            key.append(("i", int(e)))
        elif isinstance(e, Node):
            raise ShapeError(
                "indexing with a node is not supported by x[...]; use sd.take(x, indices, axis) for a "
                "gather by an integer node"
            )
        else:
            arr = np.asarray(e)
            if arr.dtype == bool:
                for part in np.nonzero(arr):
                    key.append(("a", tuple(int(v) for v in part), part.shape))
                continue
            if arr.dtype.kind not in "iu":
                raise ShapeError(f"index {e!r} is not an int, slice, None, ..., or integer array")
            key.append(("a", tuple(int(v) for v in arr.reshape(-1)), arr.shape))
    n_axes = sum(1 for k in key if k[0] != "n")
    key.extend([("s", None, None, None)] * (len(shape) - n_axes))
    return Index(tuple(key))


def _advanced_entries(key: tuple) -> list[int]:
    """Positions of the advanced entries: integer arrays, and integers when arrays are present
    (numpy then treats an integer as a 0-d array index)."""
    if not any(k[0] == "a" for k in key):
        return []
    return [i for i, k in enumerate(key) if k[0] in ("a", "i")]


def _separated(key: tuple) -> bool:
    advanced = _advanced_entries(key)
    return bool(advanced) and advanced != list(range(advanced[0], advanced[-1] + 1))


def _front_advanced(key: tuple) -> tuple[tuple[int, ...], Index]:
    """For advanced entries separated by a slice or None, numpy puts their axes first.

    Returns the permutation that moves the advanced-indexed axes of x to the front and the
    index that, applied to x transposed by it, gives numpy's result: the advanced entries
    first (now adjacent), then the others in order.
    """
    advanced = set(_advanced_entries(key))
    axis_of: dict[int, int] = {}
    for i, k in enumerate(key):
        if k[0] != "n":
            axis_of[i] = len(axis_of)
    first = [i for i in range(len(key)) if i in advanced]
    rest = [i for i in range(len(key)) if i not in advanced]
    perm = tuple(axis_of[i] for i in first) + tuple(axis_of[i] for i in rest if i in axis_of)
    return perm, Index(tuple(key[i] for i in first + rest))


def _getitem_shape(shape: Shape, *, index: Index) -> Shape:
    if _separated(index.key):  # getitem moves such axes first (_front_advanced); a loaded file may not
        raise ShapeError(f"index [{index!r}] has advanced indices separated by a slice; build it with x[...]")
    out: list[int | None] = []
    axis = 0
    adv_shapes = []
    adv_at = None
    for kind, *rest in index.key:
        if kind == "n":
            out.append(1)
            continue
        size = shape[axis]
        if kind == "i":
            k = rest[0]
            if size is not None and not -size <= k < size:
                raise ShapeError(f"index {k} is out of bounds for axis {axis} with size {size}")
            if adv_at is None and any(k[0] == "a" for k in index.key):
                adv_at = len(out)  # with arrays present, an integer is an advanced (0-d) index
        elif kind == "s":
            out.append(None if size is None else len(range(*slice(*rest).indices(size))))
        else:
            flat, ashape = rest
            if size is not None and any(not -size <= v < size for v in flat):
                raise ShapeError(f"index array {list(flat)[:8]} is out of bounds for axis {axis} with size {size}")
            if adv_at is None:
                adv_at = len(out)
            adv_shapes.append(ashape)
        axis += 1
    if adv_at is not None:
        out[adv_at:adv_at] = list(broadcast_shapes(*adv_shapes))
    return tuple(out)


def _getitem_forward(xp, x, index):
    return x[index.numpy]


def _unindex_forward(xp, g, ref, index):
    nb = np.ndim(g) - index.result_ndim(np.ndim(ref))
    out = xp.zeros(np.shape(g)[:nb] + np.shape(ref), dtype=np.result_type(g))
    full = index.with_batch(nb).numpy
    if index.advanced:
        xp.add.at(out, full, g)  # repeated indices accumulate
    else:
        out[full] = g
    return out


GETITEM = define_op(
    "getitem",
    _getitem_forward,
    _getitem_shape,
    kind="structural",
    dtype=first_dtype,
    vjp=(lambda g, out, x, index: unindex(g, x, index),),
    jvp=(lambda t, out, x, index: _getitem(t, index.with_batch(t.ndim - x.ndim)),),
    precedence=60,
    text=lambda node, args, wrap: (wrap(0, 60) + f"[{node.attrs['index']!r}]", 60),
    latex=lambda node, args, wrap: (f"{wrap(0, 60)}_{{{node.attrs['index']!r}}}", 60),
    label=lambda node: f"[{node.attrs['index']!r}]",
    doc="x[index]; the gradient is scattered back into zeros shaped like x",
)
UNINDEX = define_op(
    "unindex",
    _unindex_forward,
    lambda g, ref, index: tuple(g[: len(g) - len(_getitem_shape(ref, index=index))]) + tuple(ref),
    dtype=first_dtype,
    kind="structural",
    vjp=(lambda g, out, h, ref, index: _getitem(g, index.with_batch(g.ndim - ref.ndim)), None),
    properties=("linear",),
    # the gradient of x[i]: zeros shaped like x with g added at [i]
    text=lambda node, args, wrap: (f"zeros_like({args[1][0]}).at[{node.attrs['index']!r}].add({args[0][0]})", 60),
    doc="zeros shaped like ref with g added at [index] (the adjoint of getitem)",
)


def _getitem(x: Node, index: Index) -> Node:
    return apply(GETITEM, x, index=index)


def getitem(x: ArrayLike, index: Any) -> Node:
    """``x[index]`` with numpy's basic and integer-array indexing; also ``x[...]``.

    Differentiable: the gradient is scattered into zeros of x's shape (repeated
    integer indices accumulate).

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,))
    >>> print(w[1:3])
    w[1:3]
    """
    (x,) = as_nodes("getitem", x)
    try:
        idx = _make_index(index, x.shape)
    except ShapeError as exc:
        raise ShapeError(f"getitem: {exc} (shape {format_shape(x.shape)})") from None
    if _separated(idx.key):
        perm, idx = _front_advanced(idx.key)
        x = transpose(x, perm)
    return _getitem(x, idx)


def unindex(g: Node, ref: Node, index: Index) -> Node:
    """Zeros shaped like ``ref`` (after g's leading batch axes) with ``g`` added at ``[index]``."""
    return apply(UNINDEX, g, ref, index=index)


# -- take (gather by an integer node) ------------------------------------------------------
def _take_shape(shape: Shape, ishape: Shape, *, axis: int) -> Shape:
    a = axis % len(shape)
    return tuple(shape[:a]) + tuple(ishape) + tuple(shape[a + 1 :])


def _untake_forward(xp, g, ref, indices, axis):
    nb = np.ndim(g) - (np.ndim(ref) - 1 + np.ndim(indices))
    out = xp.zeros(np.shape(g)[:nb] + np.shape(ref), dtype=np.result_type(g))
    a = axis % np.ndim(ref)
    index = (slice(None),) * (nb + a) + (indices,)
    xp.add.at(out, index, g)
    return out


def _sympy_gather(forward):
    """take/untake on arrays of sympy expressions: the forward itself, once the indices are numbers."""

    def run(*arrays, axis):
        *values, indices = arrays
        try:
            indices = np.asarray(indices, dtype=np.intp)
        except TypeError:
            raise GraphError(
                "to_sympy: take by indices that are a variable has no sympy form (an expression cannot "
                "select an element); use constant indices"
            ) from None
        return forward(np, *values, indices, axis=axis)

    return run


TAKE = define_op(
    "take",
    numpy="take",
    shape=_take_shape,
    kind="structural",
    dtype=lambda x, i, axis: x,
    vjp=(lambda g, out, x, indices, axis: apply(UNTAKE, g, x, indices, axis=axis), not_differentiable),
    jvp=(lambda t, out, x, indices, axis: take(t, indices, axis=axis), None),
    sympy=_sympy_gather(lambda xp, x, indices, axis: xp.take(x, indices, axis=axis)),
    doc="gather along an axis by integer indices; the indices have no gradient",
)
UNTAKE = define_op(
    "untake",
    _untake_forward,
    lambda g, ref, ishape, axis: tuple(g[: len(g) - (len(ref) - 1 + len(ishape))]) + tuple(ref),
    dtype=lambda g, r, i, axis: g,
    vjp=(lambda g, out, h, ref, indices, axis: take(g, indices, axis=axis), None, not_differentiable),
    kind="structural",
    jvp=(lambda t, out, h, ref, indices, axis: apply(UNTAKE, t, ref, indices, axis=axis), None, None),
    sympy=_sympy_gather(_untake_forward),
    doc="the adjoint of take: g added into zeros shaped like ref",
)


def take(x: ArrayLike, indices: ArrayLike, axis: int = 0) -> Node:
    """Elements of ``x`` at integer ``indices`` along ``axis`` (numpy's ``take``).

    ``indices`` may be an integer node; it has no derivative (asking for one
    through it raises NonDifferentiableError).

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,)); i = g.variable("i", shape=(2,), dtype="int64")
    >>> print(sd.evaluate(sd.take(w, i), {w: [1.0, 2.0, 3.0, 4.0], i: [3, 0]}))
    [4. 1.]
    """
    if not isinstance(indices, Node):  # a Python int or list is an index, not a value of x's dtype
        indices = np.asarray(indices)
    x, indices = as_nodes("take", x, indices)
    if x.ndim == 0:
        raise ShapeError("take: cannot take from a scalar node")
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"take: axis {axis} is out of range for shape {format_shape(x.shape)}")
    if indices.dtype.kind not in "iu":
        raise ShapeError(f"take: indices must be integers, got {indices.dtype}")
    # negative axis: batch-safe in the rules
    return apply(TAKE, x, indices, axis=int(axis) % x.ndim - x.ndim)
