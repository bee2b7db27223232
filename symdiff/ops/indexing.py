"""Indexing: ``x[index]`` (basic, integer-array and integer-node), ``take``,
``take_along_axis`` and ``one_hot``, and the adjoints, which scatter a gradient back into zeros.

An index may hold integer *nodes* (``logp[sd.arange(n), labels]``): they are inputs of the
getitem node after x, and the static ``Index`` marks their places."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from symdiff.errors import GraphError, ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.arithmetic import add, astype, multiply
from symdiff.ops.core import (
    apply,
    as_nodes,
    broadcast_shapes,
    define_op,
    first_dtype,
    index_add,
    index_set,
    not_differentiable,
    per_input,
)
from symdiff.ops.logic import equal, greater_equal, less, where
from symdiff.ops.reduce import count
from symdiff.ops.structure import broadcast_to, expand_dims, moving_op, reshape, reshape_like, transpose

ArrayLike = Any


# -- indexing -------------------------------------------------------------------------
class Index:
    """A static numpy index (ints, slices, None, Ellipsis, integer arrays, places of integer
    nodes), hashable.

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
            elif kind in ("n", "x"):
                out.append(None)  # an integer node's place: see resolve
            else:
                flat, shape = rest
                out.append(np.array(flat, dtype=np.intp).reshape(shape))
        return tuple(out)

    def resolve(self, arrays: Any) -> tuple:
        """The numpy index with the values of the index nodes (in order) in their places."""
        if not arrays:
            return self.numpy
        return tuple(arrays[k[1]] if k[0] == "x" else part for k, part in zip(self.key, self.numpy))

    @cached_property
    def advanced(self) -> bool:
        return any(k[0] in ("a", "x") for k in self.key)

    def with_batch(self, nb: int) -> Index:
        if nb == 0:
            return self
        cache = self.__dict__.setdefault("_batched", {})
        if nb not in cache:
            cache[nb] = Index((("s", None, None, None),) * nb + self.key)
        return cache[nb]

    def result_ndim(self, ndim: int) -> int:
        """How many axes x[index] has for an x with ``ndim`` axes (an index without index nodes)."""
        cache = self.__dict__.setdefault("_ndim", {})
        if ndim not in cache:
            cache[ndim] = len(_getitem_shape((None,) * ndim, index=self))
        return cache[ndim]

    def __repr__(self) -> str:
        return self.text()

    def text(self, names: Any = None) -> str:
        """The index as written in brackets; ``names`` are the index nodes' texts."""
        parts = []
        for kind, *rest in self.key:
            if kind == "x":
                parts.append(names[rest[0]] if names else f"#{rest[0]}")
            elif kind == "i":
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


def _make_index(index: Any, shape: Shape, nodes: list[Node] | None = None) -> Index:
    """The Index of a numpy index for a node of ``shape``; integer nodes in it are appended to
    ``nodes`` (refused when it is None)."""
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
            if nodes is None:
                raise ShapeError("an index node is not allowed here")
            if e.dtype.kind not in "iu":
                why = (
                    "a boolean mask selects a number of elements known only from its values" if e.dtype == bool else ""
                )
                raise ShapeError(f"an index node must have an integer dtype, got {e.dtype} {why}".rstrip())
            key.append(("x", len(nodes)))
            nodes.append(e)
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
    if not any(k[0] in ("a", "x") for k in key):
        return []
    return [i for i, k in enumerate(key) if k[0] in ("a", "i", "x")]


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


def _getitem_shape(shape: Shape, *node_shapes: Shape, index: Index) -> Shape:
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
            if adv_at is None and index.advanced:
                adv_at = len(out)  # with arrays present, an integer is an advanced (0-d) index
        elif kind == "s":
            out.append(None if size is None else len(range(*slice(*rest).indices(size))))
        elif kind == "x":  # an integer node: its values are checked when evaluated
            if adv_at is None:
                adv_at = len(out)
            adv_shapes.append(node_shapes[rest[0]])
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


def _getitem_forward(xp, x, *nodes, index):
    return x[index.resolve(nodes) if nodes else index.numpy]


def _unindex_forward(xp, g, ref, *nodes, index):
    if nodes:
        nb = np.ndim(g) - len(_getitem_shape(np.shape(ref), *(np.shape(i) for i in nodes), index=index))
    else:
        nb = np.ndim(g) - index.result_ndim(np.ndim(ref))  # cached: this runs in every evaluation
    out = xp.zeros(np.shape(g)[:nb] + np.shape(ref), dtype=np.result_type(g))
    full = index.with_batch(nb).resolve(nodes)
    if index.advanced:
        return index_add(xp, out, full, g)  # repeated indices accumulate
    return index_set(xp, out, full, g)


def _index_inputs(rule, first: int):
    """A rule table for ops whose inputs after ``first`` are index nodes (no derivative)."""
    return lambda i: rule if i == 0 else None if i < first else not_differentiable


def _sympy_indexing(forward, first: int):
    """getitem/unindex on arrays of sympy expressions: the forward, once index nodes are numbers."""

    def run(*arrays, index):
        try:
            nodes = [np.asarray(a, dtype=np.intp) for a in arrays[first:]]
        except TypeError:
            raise GraphError(
                "to_sympy: indexing by a variable has no sympy form (an expression cannot select an element)"
            ) from None
        return forward(np, *arrays[:first], *nodes, index=index)

    return run


def _unindex_shape(g: Shape, ref: Shape, *nodes: Shape, index: Index) -> Shape:
    return tuple(g[: len(g) - len(_getitem_shape(ref, *nodes, index=index))]) + tuple(ref)


GETITEM = define_op(
    "getitem",
    _getitem_forward,
    _getitem_shape,
    kind="structural",
    dtype=first_dtype,
    transpose=per_input(_index_inputs(lambda ct, x, *nodes, index: unindex(ct, x, index, nodes), 1)),
    # written: the index counts axes from the front, and a tangent may have batch axes there
    jvp=_index_inputs(lambda t, out, x, *nodes, index: _getitem(t, index.with_batch(t.ndim - x.ndim), nodes), 1),
    precedence=60,
    text=lambda node, args, wrap: (wrap(0, 60) + f"[{node.attrs['index'].text([a[0] for a in args[1:]])}]", 60),
    latex=lambda node, args, wrap: (f"{wrap(0, 60)}_{{{node.attrs['index'].text([a[0] for a in args[1:]])}}}", 60),
    label=lambda node: f"[{node.attrs['index']!r}]",
    sympy=_sympy_indexing(_getitem_forward, 1),
    doc="x[index]; the gradient is scattered back into zeros shaped like x (index nodes have none)",
)
UNINDEX = moving_op(
    "unindex",
    _unindex_forward,
    _unindex_shape,
    transpose=per_input(
        _index_inputs(lambda ct, h, ref, *nodes, index: _getitem(ct, index.with_batch(ct.ndim - ref.ndim), nodes), 2)
    ),
    # the gradient of x[i]: zeros shaped like x with g added at [i]
    text=lambda node, args, wrap: (
        f"zeros_like({args[1][0]}).at[{node.attrs['index'].text([a[0] for a in args[2:]])}].add({args[0][0]})",
        60,
    ),
    sympy=_sympy_indexing(_unindex_forward, 2),
    doc="zeros shaped like ref with g added at [index] (the transpose of getitem: a scatter-add)",
    sparsity="adjoint:getitem",
)


def _getitem(x: Node, index: Index, nodes: Any = ()) -> Node:
    return apply(GETITEM, x, *nodes, index=index)


def getitem(x: ArrayLike, index: Any) -> Node:
    """``x[index]`` with numpy's basic and advanced indexing; also ``x[...]``.

    Integer arrays and integer *nodes* index as in numpy (``logp[sd.arange(n), labels]``
    picks one element per row). Differentiable in x: the gradient is scattered into zeros
    of x's shape (repeated indices accumulate); index nodes have no derivative.

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,))
    >>> print(w[1:3])
    w[1:3]
    """
    (x,) = as_nodes("getitem", x)
    nodes: list[Node] = []
    try:
        idx = _make_index(index, x.shape, nodes)
    except ShapeError as exc:
        raise ShapeError(f"getitem: {exc} (shape {format_shape(x.shape)})") from None
    if nodes:
        x, *nodes = as_nodes("getitem", x, *nodes)
    if _separated(idx.key):
        perm, idx = _front_advanced(idx.key)
        x = transpose(x, perm)
    return _getitem(x, idx, nodes)


def unindex(g: Node, ref: Node, index: Index, nodes: Any = ()) -> Node:
    """Zeros shaped like ``ref`` (after g's leading batch axes) with ``g`` added at ``[index]``."""
    return apply(UNINDEX, g, ref, *nodes, index=index)


# -- lowerings (symdiff.lower): a gather or scatter by ONE 1-D integer array ----------------
# The simplest gather a printing backend has (a C loop; numba's own indexing): the ops below
# gather from (or scatter into) x with its indices flattened, and give the result its axes back
# by a reshape.
def _flat(indices: Node) -> Node:
    return indices if indices.ndim == 1 else reshape(indices, (-1,))


def _regroup(y: Node, at: int, k: int, ref: Node) -> Node:
    """``y`` with its axes ``at .. at + k - 1`` (the elements of ``ref``, in order) given ref's shape."""
    if k == 1 and ref.ndim == 1:
        return y
    target = (*y.shape[:at], *ref.shape, *y.shape[at + k :])
    if sum(d is None for d in target) <= 1:
        return reshape(y, tuple(-1 if d is None else d for d in target))
    # sizes known only at evaluation: the axes moved last and shaped as ref is then
    rest = [j for j in range(y.ndim) if not at <= j < at + k]
    shaped = reshape_like(transpose(y, (*rest, *range(at, at + k))), ref, nb=len(rest))
    return transpose(shaped, (*range(at), *range(len(rest), shaped.ndim), *range(at, len(rest))))


def _scatter(g: Node, ref: Node, key: tuple) -> Node:
    """Zeros shaped like ``ref`` (after g's batch axes) with ``g`` added at ``ref[key]``."""
    nodes: list[Node] = []
    return unindex(g, ref, _make_index(key, ref.shape, nodes), nodes)


def iota(x: Node, axis: int, ndim: int, at: int) -> Node:
    """0, 1, ..., n - 1 for n the size of ``x``'s ``axis``, along axis ``at`` of ``ndim`` axes
    (the others of length 1); an arange of a count when the size is known only at evaluation.

    >>> g = sd.Graph(); x = g.variable("x", shape=(None, 3))
    >>> iota(x, 1, 2, 0).shape, iota(x, 0, 2, 1).shape
    ((3, 1), (1, None))
    """
    n = x.shape[axis]
    line = x.graph.constant(np.arange(n)) if n is not None else arange(count(x, axis=axis))
    return expand_dims(line, tuple(j for j in range(ndim) if j != at)) if ndim > 1 else line


def _size(x: Node, axis: int) -> int | Node:
    """The size of ``x``'s axis: an int, or an int64 scalar node when known only at evaluation."""
    n = x.shape[axis]
    return n if n is not None else astype(count(x, axis=axis), np.int64)


def _positions(ref: Node, indices: Node, axis: int, over: Node, nb: int) -> Node:
    """Where, in ``ref`` flattened, each element of ``take_along_axis(ref, indices, axis)`` is
    (its axes are ``over``'s after ``nb``): the indices along ``axis``, positions elsewhere."""
    n = ref.ndim
    a = n + axis
    idx = astype(indices, np.int64)
    if idx.ndim < n:
        idx = expand_dims(idx, tuple(range(n - idx.ndim)))
    sizes = [_size(ref, k) for k in range(n)]
    idx = where(less(idx, 0), add(idx, sizes[a]), idx)  # a negative index counts from the end
    position, stride = None, 1
    for k in reversed(range(n)):
        term = idx if k == a else iota(over, nb + k, n, k)
        term = term if isinstance(stride, int) and stride == 1 else multiply(term, stride)
        position = term if position is None else add(term, position)
        known = isinstance(stride, int) and isinstance(sizes[k], int)
        stride = stride * sizes[k] if known else multiply(stride, sizes[k])
    # an index still outside 0..n-1 would name another row's element: it goes past the end of
    # ref flattened instead, where the gather's (or scatter's) bounds check finds it
    return where(less(idx, 0), stride, where(greater_equal(idx, sizes[a]), stride, position))


def _lower_take(x: Node, indices: Node, axis: int) -> Node:
    a = x.ndim + axis
    flat = _flat(indices)
    return _regroup(getitem(x, (slice(None),) * a + (flat,)), a, 1, indices)


def _lower_take_along(x: Node, indices: Node, axis: int) -> Node:
    positions = _positions(x, indices, axis, x, 0)
    flat = _flat(positions)
    return _regroup(getitem(_flat(x), flat), 0, 1, positions)


def _lower_untake_along(g: Node, ref: Node, indices: Node, axis: int) -> Node:
    nb = g.ndim - ref.ndim
    if indices.ndim > ref.ndim:
        raise ShapeError(f"indices {format_shape(indices.shape)} have more axes than ref {format_shape(ref.shape)}")
    positions = _positions(ref, indices, axis, g, nb)
    if any(p == 1 and d != 1 for p, d in zip(positions.shape, g.shape[nb:])):  # indices broadcast along axis
        if None in g.shape[nb:]:
            raise ShapeError(f"indices {format_shape(indices.shape)} broadcast to {format_shape(g.shape)}")
        positions = broadcast_to(positions, g.shape[nb:])
    flat = _flat(positions)
    whole = _scatter(_regroup(g, nb, ref.ndim, flat), _flat(ref), (flat,))
    return _regroup(whole, nb, 1, ref)


# -- take (gather by an integer node) ------------------------------------------------------
def _take_shape(shape: Shape, ishape: Shape, *, axis: int) -> Shape:
    a = axis % len(shape)
    return tuple(shape[:a]) + tuple(ishape) + tuple(shape[a + 1 :])


def _take_transpose(ct: Node, x: Node, indices: Node, axis: int) -> Node:
    """take's transpose: ct added into zeros shaped like x at ``x[..., indices, ...]`` (take along
    ``axis`` is that index, whose numpy result has the same axes), repeated indices accumulating."""
    nodes: list[Node] = []
    index = _make_index((slice(None),) * (x.ndim + axis) + (indices,), x.shape, nodes)
    return unindex(ct, x, index, nodes)


def _sympy_gather(forward):
    """take/take_along_axis/untake_along_axis on arrays of sympy expressions: the forward itself,
    once the indices are numbers."""

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
    transpose=(_take_transpose, not_differentiable),
    sympy=_sympy_gather(lambda xp, x, indices, axis: xp.take(x, indices, axis=axis)),
    lower=_lower_take,
    doc="gather along an axis by integer indices; the transpose scatter-adds back (unindex); indices have none",
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


# -- take_along_axis --------------------------------------------------------------------
def _lifted(indices: Any, ndim: int) -> Any:
    """Indices with leading axes of length 1 up to ``ndim`` (a batched x has more axes)."""
    missing = ndim - np.ndim(indices)
    return indices.reshape((1,) * missing + np.shape(indices)) if missing > 0 else indices


def _take_along_forward(xp, x, indices, axis):
    return xp.take_along_axis(x, _lifted(indices, np.ndim(x)), axis=axis)


def _untake_along_forward(xp, g, ref, indices, axis):
    out = xp.zeros(np.shape(g)[: np.ndim(g) - np.ndim(ref)] + np.shape(ref), dtype=np.result_type(g))
    a = np.ndim(g) + axis
    where_ = []
    for k, size in enumerate(np.shape(g)):
        if k == a:
            where_.append(xp.broadcast_to(_lifted(indices, np.ndim(g)), np.shape(g)))
        else:
            where_.append(np.arange(size).reshape([-1 if j == k else 1 for j in range(np.ndim(g))]))
    return index_add(xp, out, tuple(where_), g)  # repeated indices accumulate


def _take_along_shape(shape: Shape, ishape: Shape, *, axis: int) -> Shape:
    if len(ishape) > len(shape):
        raise ShapeError(f"indices have {len(ishape)} dimension(s) but x has {len(shape)}")
    ishape = (1,) * (len(shape) - len(ishape)) + tuple(ishape)  # batch axes of a derivative
    out = []
    for k, (d, i) in enumerate(zip(shape, ishape)):
        if k - len(shape) == axis:
            out.append(i)
        elif i not in (1, None) and d is not None and i != d:
            raise ShapeError(f"indices {format_shape(ishape)} do not match x {format_shape(shape)} off axis {axis}")
        else:
            out.append(d)
    return tuple(out)


TAKE_ALONG_AXIS = define_op(
    "take_along_axis",
    _take_along_forward,
    _take_along_shape,
    numpy="take_along_axis",
    kind="structural",
    dtype=lambda x, i, axis: x,
    transpose=(lambda ct, x, indices, axis: apply(UNTAKE_ALONG_AXIS, ct, x, indices, axis=axis), not_differentiable),
    sympy=_sympy_gather(_take_along_forward),
    lower=_lower_take_along,
    doc="x[..., indices[...], ...] along axis (numpy's take_along_axis); the indices have no gradient",
)
UNTAKE_ALONG_AXIS = define_op(
    "untake_along_axis",
    _untake_along_forward,
    lambda g, ref, ishape, axis: tuple(g[: len(g) - len(ref)]) + tuple(ref),
    kind="structural",
    dtype=lambda g, r, i, axis: g,
    transpose=(
        lambda ct, h, ref, indices, axis: apply(TAKE_ALONG_AXIS, ct, indices, axis=axis),
        None,
        not_differentiable,
    ),
    sympy=_sympy_gather(_untake_along_forward),
    lower=_lower_untake_along,
    doc="the transpose of take_along_axis: g added into zeros shaped like ref (a scatter-add)",
    sparsity="adjoint:take_along_axis",
)


def take_along_axis(x: ArrayLike, indices: ArrayLike, axis: int) -> Node:
    """Elements of ``x`` picked along ``axis`` by integer ``indices`` of the same rank, as
    ``numpy.take_along_axis`` (indices of length 1 off the axis broadcast).

    >>> g = sd.Graph(); P = g.variable("P", shape=(2, 3))
    >>> print(sd.evaluate(sd.take_along_axis(P, np.array([[2], [0]]), 1), {P: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}))
    [[3.]
     [4.]]
    """
    if not isinstance(indices, Node):
        indices = np.asarray(indices)
    x, indices = as_nodes("take_along_axis", x, indices)
    if indices.dtype.kind not in "iu":
        raise ShapeError(f"take_along_axis: indices must be integers, got {indices.dtype}")
    if indices.ndim != x.ndim:
        raise ShapeError(
            f"take_along_axis: indices {format_shape(indices.shape)} and x {format_shape(x.shape)} differ in rank"
        )
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"take_along_axis: axis {axis!r} is out of range for shape {format_shape(x.shape)}")
    return apply(TAKE_ALONG_AXIS, x, indices, axis=int(axis) % x.ndim - x.ndim)


# -- one_hot, arange --------------------------------------------------------------------
def _one_hot_forward(xp, labels, num_classes, dtype_to):
    return (labels[..., None] == xp.arange(num_classes)).astype(dtype_to)


def _lower_one_hot(labels: Node, num_classes: int, dtype_to: str) -> Node:
    classes = labels.graph.constant(np.arange(num_classes))
    return astype(equal(expand_dims(labels, -1), classes), dtype_to)


ONE_HOT = define_op(
    "one_hot",
    _one_hot_forward,
    lambda shape, num_classes, dtype_to: tuple(shape) + (num_classes,),
    kind="other",
    dtype=lambda d, num_classes, dtype_to: np.dtype(dtype_to),
    vjp=(not_differentiable,),
    jvp=(not_differentiable,),
    sympy=lambda labels, num_classes, dtype_to: _sympy_gather(
        lambda xp, labels, axis: _one_hot_forward(xp, labels, num_classes, object)
    )(labels, axis=None),
    lower=_lower_one_hot,
    doc="out[..., k] = 1 where labels == k, else 0; integer labels, no derivative",
)


def one_hot(labels: ArrayLike, num_classes: int, dtype: Any = "float64") -> Node:
    """Rows of the identity picked by integer ``labels``: shape ``labels.shape + (num_classes,)``
    (a label outside [0, num_classes) gives a row of zeros, as JAX's ``one_hot``).

    >>> g = sd.Graph(); y = g.variable("y", shape=(3,), dtype="int64")
    >>> print(sd.evaluate(sd.one_hot(y, 3), {y: [2, 0, 1]}))
    [[0. 0. 1.]
     [1. 0. 0.]
     [0. 1. 0.]]
    """
    if not isinstance(labels, Node):
        labels = np.asarray(labels)
    (labels,) = as_nodes("one_hot", labels)
    if labels.dtype.kind not in "iu":
        raise ShapeError(f"one_hot: labels must be integers, got {labels.dtype}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ShapeError(f"one_hot: num_classes must be a non-negative int, got {num_classes!r}")
    return apply(ONE_HOT, labels, num_classes=int(num_classes), dtype_to=np.dtype(dtype).str)


def _arange_forward(xp, stop, dtype_to):
    return xp.arange(int(stop), dtype=dtype_to)


ARANGE = define_op(
    "arange",
    _arange_forward,
    lambda shape, dtype_to: (None,),
    kind="other",
    dtype=lambda d, dtype_to: np.dtype(dtype_to),
    vjp=(not_differentiable,),
    jvp=(not_differentiable,),
    sympy=lambda stop, dtype_to: np.arange(int(stop), dtype=object),
    fold=False,
    doc="0, 1, ..., stop - 1 for a stop known at evaluation (e.g. sd.count of a batch axis); no derivative",
)


def arange(start: Any, stop: Any = None, step: Any = None, *, dtype: Any = None, like: Node | None = None) -> Any:
    """Evenly spaced values, as ``numpy.arange``.

    With numbers it is numpy's array (a constant, a node wherever it is used), or with
    ``like=node`` a constant node of that node's graph. ``sd.arange(n)`` with a scalar node
    ``n`` (a length known at evaluation, such as ``sd.count(X, axis=0)``) is a node of
    shape ``(None,)`` and dtype int64.

    >>> g = sd.Graph(); logp = g.variable("logp", shape=(None, 3)); y = g.variable("y", shape=(None,), dtype="int64")
    >>> picked = logp[sd.arange(sd.count(logp, axis=0)), y]
    >>> print(sd.evaluate(picked, {logp: [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]], y: [2, 0]}))
    [0.7 0.5]
    """
    if isinstance(start, Node) and stop is None and step is None:
        if start.ndim != 0:
            raise ShapeError(f"arange: a node length must be a scalar, got shape {format_shape(start.shape)}")
        dt = np.dtype(dtype) if dtype is not None else np.dtype(np.int64)
        return apply(ARANGE, start, dtype_to=dt.str)
    parts = [p for p in (start, stop, step) if p is not None]
    if any(isinstance(p, Node) for p in parts):
        raise ShapeError("arange: only a single length argument, sd.arange(n), may be a node")
    values = np.arange(*parts, dtype=dtype)
    if like is not None:
        (like,) = as_nodes("arange", like)
        return like.graph.constant(values)
    return values
