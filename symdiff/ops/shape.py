"""Ops that move elements without computing on them: reshape, transpose, indexing,
broadcasting, triangles, and the identity-like ops (stop_gradient, zeros_like)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.core import (
    apply,
    as_nodes,
    broadcast_shapes,
    define_op,
    first_dtype,
    normalize_axes,
    not_differentiable,
)

ArrayLike = Any


# -- expand_dims, squeeze, lift ---------------------------------------------------------
def _expand_shape(shape: Shape, *, axis: tuple[int, ...]) -> Shape:
    ndim = len(shape) + len(axis)
    out = list(shape)
    for a in sorted(a + ndim for a in axis):
        out.insert(a, 1)
    return tuple(out)


EXPAND_DIMS = define_op(
    "expand_dims",
    lambda x, axis: np.expand_dims(x, axis),
    _expand_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, axis: squeeze(g, axis),),
    jvp=(lambda t, out, x, axis: expand_dims(t, axis),),
    sympy=lambda x, axis: np.expand_dims(x, axis),
    doc="insert axes of length 1",
)


def expand_dims(x: ArrayLike, axis: int | tuple[int, ...]) -> Node:
    """Insert length-1 axes at ``axis`` (positions in the result), as numpy does.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> sd.expand_dims(w, 0).shape
    (1, 3)
    """
    (x,) = as_nodes("expand_dims", x)
    n = 1 if isinstance(axis, (int, np.integer)) else len(axis)
    try:
        axes = normalize_axes(axis, x.ndim + n)
    except ShapeError as exc:
        raise ShapeError(f"expand_dims: {exc}") from None
    if not axes:
        return x
    return apply(EXPAND_DIMS, x, axis=axes)


def _squeeze_shape(shape: Shape, *, axis: tuple[int, ...]) -> Shape:
    for a in axis:
        if shape[a] not in (1, None):
            raise ShapeError(f"cannot squeeze axis {a} of size {shape[a]}")
    return tuple(d for i, d in enumerate(shape) if i - len(shape) not in axis)


SQUEEZE = define_op(
    "squeeze",
    lambda x, axis: np.squeeze(x, axis),
    _squeeze_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, axis: expand_dims(g, axis),),
    jvp=(lambda t, out, x, axis: squeeze(t, axis),),
    sympy=lambda x, axis: np.squeeze(x, axis),
    doc="remove axes of length 1",
)


def squeeze(x: ArrayLike, axis: int | tuple[int, ...] | None = None) -> Node:
    """Remove length-1 axes (all statically known ones when ``axis`` is None).

    >>> g = sd.Graph(); w = g.variable("w", shape=(1, 3))
    >>> sd.squeeze(w).shape
    (3,)
    """
    (x,) = as_nodes("squeeze", x)
    if axis is None:
        axes = tuple(i - x.ndim for i, d in enumerate(x.shape) if d == 1)
    else:
        try:
            axes = normalize_axes(axis, x.ndim)
        except ShapeError as exc:
            raise ShapeError(f"squeeze: {exc}") from None
    if not axes:
        return x
    return apply(SQUEEZE, x, axis=axes)


def lift(t: Node, ndim: int, batch: int) -> Node:
    """Insert axes after ``batch`` leading axes so ``t`` has ``batch + ndim`` axes.

    A batched tangent of a broadcast input must line up with the output's axes,
    not just from the right: (B, 3) for an output of (2, 3) becomes (B, 1, 3).
    """
    missing = batch + ndim - t.ndim
    if missing <= 0 or batch == 0:
        return t
    return expand_dims(t, tuple(range(-ndim, -ndim + missing)))


# -- broadcasting -----------------------------------------------------------------------
def _broadcast_to_shape(shape: Shape, *, shape_to: Shape) -> Shape:
    out = broadcast_shapes(shape, shape_to)
    if out != tuple(shape_to):
        raise ShapeError(f"cannot broadcast {format_shape(shape)} to {format_shape(shape_to)}")
    return out


BROADCAST_TO = define_op(
    "broadcast_to",
    lambda x, shape_to: np.broadcast_to(x, shape_to),
    _broadcast_to_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, shape_to: g,),
    jvp=(lambda t, out, x, shape_to: broadcast_like(t, out),),
    elementwise=True,
    sympy=lambda x, shape_to: np.broadcast_to(x, shape_to),
    doc="repeat along broadcast axes; the gradient sums them back",
)


def broadcast_to(x: ArrayLike, shape: tuple[int, ...]) -> Node:
    """``x`` broadcast to a static ``shape`` (numpy's ``broadcast_to``).

    >>> g = sd.Graph(); x = g.variable("x")
    >>> sd.broadcast_to(x, (2, 3)).shape
    (2, 3)
    """
    (x,) = as_nodes("broadcast_to", x)
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    return apply(BROADCAST_TO, x, shape_to=shape)


BROADCAST_LIKE = define_op(
    "broadcast_like",
    lambda x, ref: np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(ref))),
    lambda x, ref: broadcast_shapes(x, ref),
    dtype=first_dtype,
    vjp=(lambda g, out, x, ref: g, None),
    jvp=(lambda t, out, x, ref: broadcast_like(t, out), None),
    elementwise=True,
    sympy=lambda x, ref: np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(ref))),
    doc="x broadcast against the shape of ref (ref's values are not used)",
)


def broadcast_like(x: ArrayLike, ref: Node) -> Node:
    """``x`` broadcast against ``ref``'s shape, known at evaluation if not before.

    >>> g = sd.Graph(); X = g.variable("X", shape=(None, 3)); b = g.variable("b", shape=(3,))
    >>> sd.broadcast_like(b, X).shape
    (None, 3)
    """
    x, ref = as_nodes("broadcast_like", x, ref)
    shape = broadcast_shapes(x.shape, ref.shape)
    if shape == x.shape:
        return x
    if x.op == "constant" and x.uniform is not None and None not in shape:
        return x.graph.uniform_constant(x.uniform, shape, x.dtype)
    return apply(BROADCAST_LIKE, x, ref)


# -- reshape, transpose ------------------------------------------------------------------
def _reshape_shape(shape: Shape, *, shape_to: tuple[int, ...]) -> Shape:
    if sum(1 for d in shape_to if d == -1) > 1:
        raise ShapeError(f"can only specify one unknown dimension (-1) in {shape_to}")
    known_in = None if any(d is None for d in shape) else int(np.prod(shape, dtype=np.int64))
    known_out = int(np.prod([d for d in shape_to if d != -1], dtype=np.int64))
    if -1 not in shape_to:
        if known_in is not None and known_in != known_out:
            raise ShapeError(f"cannot reshape {format_shape(shape)} ({known_in} elements) to {shape_to}")
        return tuple(shape_to)
    if known_in is None:
        return tuple(None if d == -1 else d for d in shape_to)
    if known_out == 0 or known_in % known_out:
        raise ShapeError(f"cannot reshape {format_shape(shape)} ({known_in} elements) to {shape_to}")
    return tuple(known_in // known_out if d == -1 else d for d in shape_to)


RESHAPE = define_op(
    "reshape",
    lambda x, shape_to: np.reshape(x, shape_to),
    _reshape_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, shape_to: reshape_like(g, x, g.ndim - out.ndim),),
    jvp=(lambda t, out, x, shape_to: reshape_like(t, out, t.ndim - x.ndim),),
    sympy=lambda x, shape_to: np.reshape(x, shape_to),
    doc="the same elements in another shape",
)


def reshape(x: ArrayLike, shape: Any) -> Node:
    """``x`` with a new shape (numpy's ``reshape``; one dimension may be -1).

    >>> g = sd.Graph(); w = g.variable("w", shape=(6,))
    >>> sd.reshape(w, (2, -1)).shape
    (2, 3)
    """
    (x,) = as_nodes("reshape", x)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"reshape: the target shape {shape!r} is not a tuple of ints") from None
    if any(d is None for d in dims):
        raise ShapeError(
            f"reshape: the target shape {dims!r} has None; write -1 for the one dimension to infer "
            "(sd.reshape_like(x, ref) takes a shape known only at evaluation from another node)"
        )
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        raise ShapeError(f"reshape: the target shape {dims!r} is not a tuple of ints")
    shape_to = tuple(int(d) for d in dims)
    if any(d < -1 for d in shape_to):
        raise ShapeError(f"reshape: invalid target shape {shape_to}")
    if shape_to == x.shape:
        return x
    if x.op == "reshape":  # reshape of a reshape is one reshape
        x = x.inputs[0]
        if shape_to == x.shape:
            return x
    return apply(RESHAPE, x, shape_to=shape_to)


def _reshape_like_forward(x, ref, nb):
    return np.reshape(x, np.shape(x)[:nb] + np.shape(ref))


RESHAPE_LIKE = define_op(
    "reshape_like",
    _reshape_like_forward,
    lambda x, ref, nb: tuple(x[:nb]) + tuple(ref),
    dtype=first_dtype,
    vjp=(lambda g, out, x, ref, nb: reshape_like(g, x, g.ndim - out.ndim), None),
    jvp=(lambda t, out, x, ref, nb: reshape_like(t, out, t.ndim - x.ndim), None),
    sympy=_reshape_like_forward,
    doc="x reshaped to its first nb axes followed by ref's shape",
)


def reshape_like(x: Node, ref: Node, nb: int = 0) -> Node:
    """``x`` reshaped to ``x.shape[:nb] + ref.shape`` (ref's shape may be known only at evaluation).

    >>> g = sd.Graph(); a = g.variable("a", shape=(6,)); b = g.variable("b", shape=(2, 3))
    >>> sd.reshape_like(a, b).shape
    (2, 3)
    """
    x, ref = as_nodes("reshape_like", x, ref)
    target = tuple(x.shape[:nb]) + tuple(ref.shape)
    if None not in target:
        return reshape(x, target)
    if x.shape == target:
        return x
    return apply(RESHAPE_LIKE, x, ref, nb=nb)


def _batched_axes(axes: tuple[int, ...], nb: int) -> tuple[int, ...]:
    return tuple(range(nb)) + tuple(nb + a for a in axes)


TRANSPOSE = define_op(
    "transpose",
    lambda x, axes: np.transpose(x, axes),
    lambda shape, axes: tuple(shape[a] for a in axes),
    dtype=first_dtype,
    vjp=(lambda g, out, x, axes: transpose(g, _batched_axes(tuple(np.argsort(axes)), g.ndim - out.ndim)),),
    jvp=(lambda t, out, x, axes: transpose(t, _batched_axes(axes, t.ndim - x.ndim)),),
    symbol=".T",
    precedence=50,
    sympy=lambda x, axes: np.transpose(x, axes),
    doc="permute axes; the gradient permutes back",
)


def transpose(x: ArrayLike, axes: Any = None) -> Node:
    """Permute axes (reverse them when ``axes`` is None), as ``numpy.transpose``; also ``x.T``.

    >>> g = sd.Graph(); X = g.variable("X", shape=(2, 3))
    >>> X.T.shape
    (3, 2)
    """
    (x,) = as_nodes("transpose", x)
    if axes is None:
        axes = tuple(range(x.ndim - 1, -1, -1))
    axes = tuple(int(a) % x.ndim if x.ndim else int(a) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of {x.ndim} axes")
    if axes == tuple(range(x.ndim)):
        return x
    if x.op == "transpose":  # compose two permutations into one
        inner = x.attrs["axes"]
        return transpose(x.inputs[0], tuple(inner[a] for a in axes))
    return apply(TRANSPOSE, x, axes=axes)


def matrix_transpose(x: ArrayLike) -> Node:
    """Swap the last two axes (numpy's ``matrix_transpose``, ``x.mT``).

    >>> g = sd.Graph(); A = g.variable("A", shape=(5, 2, 3))
    >>> sd.matrix_transpose(A).shape
    (5, 3, 2)
    """
    (x,) = as_nodes("matrix_transpose", x)
    if x.ndim < 2:
        raise ShapeError(f"matrix_transpose: needs at least 2 dimensions, got shape {format_shape(x.shape)}")
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose(x, axes)


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


def _getitem_forward(x, index):
    return x[index.numpy]


def _unindex_forward(g, ref, index):
    nb = np.ndim(g) - index.result_ndim(np.ndim(ref))
    out = np.zeros(np.shape(g)[:nb] + np.shape(ref), dtype=np.result_type(g))
    full = index.with_batch(nb).numpy
    if index.advanced:
        np.add.at(out, full, g)  # repeated indices accumulate
    else:
        out[full] = g
    return out


GETITEM = define_op(
    "getitem",
    _getitem_forward,
    _getitem_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, index: unindex(g, x, index),),
    jvp=(lambda t, out, x, index: _getitem(t, index.with_batch(t.ndim - x.ndim)),),
    precedence=60,
    sympy=_getitem_forward,
    doc="x[index]; the gradient is scattered back into zeros shaped like x",
)
UNINDEX = define_op(
    "unindex",
    _unindex_forward,
    lambda g, ref, index: tuple(g[: len(g) - len(_getitem_shape(ref, index=index))]) + tuple(ref),
    dtype=first_dtype,
    vjp=(lambda g, out, h, ref, index: _getitem(g, index.with_batch(g.ndim - ref.ndim)), None),
    jvp=(lambda t, out, h, ref, index: unindex(t, ref, index), None),
    sympy=_unindex_forward,
    doc="zeros shaped like ref with g added at [index] (the adjoint of getitem)",
)


def _getitem(x: Node, index: Index) -> Node:
    if all(k == ("s", None, None, None) for k in index.key):
        return x
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


def _take_forward(x, indices, axis):
    return np.take(x, indices, axis=axis)


def _untake_forward(g, ref, indices, axis):
    nb = np.ndim(g) - (np.ndim(ref) - 1 + np.ndim(indices))
    out = np.zeros(np.shape(g)[:nb] + np.shape(ref), dtype=np.result_type(g))
    a = axis % np.ndim(ref)
    index = (slice(None),) * (nb + a) + (indices,)
    np.add.at(out, index, g)
    return out


TAKE = define_op(
    "take",
    _take_forward,
    _take_shape,
    dtype=lambda x, i, axis: x,
    vjp=(lambda g, out, x, indices, axis: apply(UNTAKE, g, x, indices, axis=axis), not_differentiable),
    jvp=(lambda t, out, x, indices, axis: take(t, indices, axis=axis), None),
    sympy=_take_forward,
    doc="gather along an axis by integer indices; the indices have no gradient",
)
UNTAKE = define_op(
    "untake",
    _untake_forward,
    lambda g, ref, ishape, axis: tuple(g[: len(g) - (len(ref) - 1 + len(ishape))]) + tuple(ref),
    dtype=lambda g, r, i, axis: g,
    vjp=(lambda g, out, h, ref, indices, axis: take(g, indices, axis=axis), None, not_differentiable),
    jvp=(lambda t, out, h, ref, indices, axis: apply(UNTAKE, t, ref, indices, axis=axis), None, None),
    sympy=_untake_forward,
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


# -- triangles -----------------------------------------------------------------------
def _matrix_shape(shape: Shape, **_: Any) -> Shape:
    if len(shape) < 2:
        raise ShapeError(f"needs at least 2 dimensions, got shape {format_shape(shape)}")
    return shape


TRIL = define_op(
    "tril",
    lambda x, k: np.tril(x, k),
    _matrix_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, k: tril(g, k),),
    jvp=(lambda t, out, x, k: tril(t, k),),
    sympy=lambda x, k: np.tril(x, k),
    doc="lower triangle (k-th diagonal and below); linear",
)
TRIU = define_op(
    "triu",
    lambda x, k: np.triu(x, k),
    _matrix_shape,
    dtype=first_dtype,
    vjp=(lambda g, out, x, k: triu(g, k),),
    jvp=(lambda t, out, x, k: triu(t, k),),
    sympy=lambda x, k: np.triu(x, k),
    doc="upper triangle (k-th diagonal and above); linear",
)


def tril(x: ArrayLike, k: int = 0) -> Node:
    """Lower triangle of (a stack of) matrices, as ``numpy.tril``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.tril(A), {A: [[1.0, 2.0], [3.0, 4.0]]}))
    [[1. 0.]
     [3. 4.]]
    """
    return apply(TRIL, *as_nodes("tril", x), k=int(k))


def triu(x: ArrayLike, k: int = 0) -> Node:
    """Upper triangle of (a stack of) matrices, as ``numpy.triu``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.triu(A), {A: [[1.0, 2.0], [3.0, 4.0]]}))
    [[1. 2.]
     [0. 4.]]
    """
    return apply(TRIU, *as_nodes("triu", x), k=int(k))


# -- identity-like ------------------------------------------------------------------------
def _match_shape_forward(x, ref):
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
    dtype=first_dtype,
    vjp=(lambda g, out, x, ref: g, None),
    jvp=(lambda t, out, x, ref: t, None),
    sympy=lambda x, ref: x,
    doc="x, checked at evaluation to have ref's shape (prints as x)",
)


def match_shape(x: Node, ref: Node) -> Node:
    """``x``, with a check at evaluation that its shape equals ``ref``'s (for unknown dimensions).

    >>> g = sd.Graph(); a = g.variable("a", shape=(None,)); b = g.variable("b", shape=(None,))
    >>> print(sd.match_shape(a * 2, b))
    a*2
    """
    x, ref = as_nodes("match_shape", x, ref)
    if None not in x.shape and None not in ref.shape or x is ref:
        return x
    return apply(MATCH_SHAPE, x, ref)


STOP_GRADIENT = define_op(
    "stop_gradient",
    lambda x: x,
    lambda shape: shape,
    dtype=first_dtype,
    vjp=(None,),
    jvp=(None,),
    sympy=lambda x: x,
    doc="x in the forward pass; no gradient flows through it",
    scalar="{0}",
)


def stop_gradient(x: ArrayLike) -> Node:
    """``x`` in the forward pass; passes no gradient (a constant to the derivative).

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(sd.grad(x * sd.stop_gradient(x), x))
    stop_gradient(x)
    """
    return apply(STOP_GRADIENT, *as_nodes("stop_gradient", x))


ZEROS_LIKE = define_op(
    "zeros_like",
    lambda x: np.zeros_like(x),
    lambda shape: shape,
    dtype=first_dtype,
    vjp=(None,),
    jvp=(None,),
    sympy=lambda x: np.zeros_like(x),
    doc="zeros shaped like x",
)
ONES_LIKE = define_op(
    "ones_like",
    lambda x: np.ones_like(x),
    lambda shape: shape,
    dtype=first_dtype,
    vjp=(None,),
    jvp=(None,),
    sympy=lambda x: np.ones_like(x),
    doc="ones shaped like x",
)


def zeros_like(x: ArrayLike) -> Node:
    """Zeros with ``x``'s shape and dtype (a constant when the shape is static).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> sd.zeros_like(w).op
    'constant'
    """
    (x,) = as_nodes("zeros_like", x)
    if x.size is not None:
        return x.graph.uniform_constant(0, x.shape, x.dtype)
    return apply(ZEROS_LIKE, x)


def ones_like(x: ArrayLike) -> Node:
    """Ones with ``x``'s shape and dtype (a constant when the shape is static).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.ones_like(w).value)
    [1. 1.]
    """
    (x,) = as_nodes("ones_like", x)
    if x.size is not None:
        return x.graph.uniform_constant(1, x.shape, x.dtype)
    return apply(ONES_LIKE, x)


def _eye_like_forward(ref, dtype_to):
    shape = np.shape(ref)
    return np.eye(int(np.prod(shape, dtype=np.int64)), dtype=dtype_to).reshape(shape + shape)


EYE_LIKE = define_op(
    "eye_like",
    _eye_like_forward,
    lambda shape, dtype_to: tuple(shape) + tuple(shape),
    dtype=lambda ref, dtype_to: np.dtype(dtype_to),
    vjp=(None,),
    jvp=(None,),
    sympy=_eye_like_forward,
    doc="the identity on ref's elements, shaped ref.shape + ref.shape (the seed of a Jacobian)",
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
    n = ref.size
    if n is not None:
        shape = ref.shape + ref.shape
        return ref.graph._keyed_constant(("eye", n, shape, dt.str), lambda: np.eye(n, dtype=dt).reshape(shape))
    return apply(EYE_LIKE, ref, dtype_to=dt.str)
