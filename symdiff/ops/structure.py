"""Ops that move elements without computing on them: axes inserted and removed, broadcasting,
reshape, transpose, triangles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.core import (
    DerivativeRule,
    Op,
    apply,
    as_nodes,
    broadcast_shapes,
    define_op,
    first_dtype,
    normalize_axes,
    op_axes,
)

ArrayLike = Any


def moving_op(name: str, forward: Any = None, shape: Any = None, *, numpy: str | None = None, **declaration: Any) -> Op:
    """An op that moves or selects the elements of its first input without computing on them
    (expand_dims, concatenate, tile): structural, that input's dtype kept, and linear in it, so
    it declares its ``transpose`` and its forward-mode rule is the op itself on the tangent; with
    no forward, numpy's function of its name (``numpy.flip``) unless ``numpy`` names another.
    The rest as for ``define_op``."""
    if forward is None and numpy is None:
        numpy = name
    return define_op(
        name, forward, shape, numpy=numpy, kind="structural", dtype=first_dtype, properties=("linear",), **declaration
    )


# -- expand_dims, squeeze, lift ---------------------------------------------------------
def _expand_shape(shape: Shape, *, axis: tuple[int, ...]) -> Shape:
    ndim = len(shape) + len(axis)
    out = list(shape)
    for a in sorted(a + ndim for a in axis):
        out.insert(a, 1)
    return tuple(out)


EXPAND_DIMS = moving_op(
    "expand_dims",
    shape=_expand_shape,
    transpose=lambda ct, x, axis: squeeze(ct, axis),
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


SQUEEZE = moving_op(
    "squeeze",
    shape=_squeeze_shape,
    transpose=lambda ct, x, axis: expand_dims(ct, axis),
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
def _to_shape(
    names: tuple[str, str],
    kind: str,
    forwards: tuple[Callable[..., Any], Callable[..., Any]],
    shapes: tuple[Callable[..., Shape], Callable[..., Shape]],
    rules: tuple[DerivativeRule, DerivativeRule],
    docs: tuple[str, str],
    **like: Any,
) -> tuple[Op, Op]:
    """numpy's ``names[0](x, shape)`` as two ops that keep x's dtype and have the same derivative
    rules: ``names[0]`` to a static shape (the attribute ``shape_to``), and ``names[1]`` to a shape
    given by a second input ``ref`` and known only at evaluation (ref's values are not used and
    get no gradient). ``forwards``, ``shapes`` and ``docs`` are the two ops' (as ``define_op``
    takes them); ``rules`` their transpose, ``transpose(ct, x, *ref, **attrs)``, and forward
    rule, ``jvp(t, out, x, *ref, **attrs)`` (written: the op's attributes do not know a
    tangent's batch axes); ``like`` the rest of the second op's declaration (how it is written)."""
    transpose, jvp = rules
    common: dict[str, Any] = {"kind": kind, "dtype": first_dtype, "sympy": "forward"}
    op = define_op(
        names[0], forwards[0], shapes[0], numpy=names[0], transpose=(transpose,), jvp=(jvp,), doc=docs[0], **common
    )
    like_op = define_op(
        names[1], forwards[1], shapes[1], transpose=(transpose, None), jvp=(jvp, None), doc=docs[1], **common, **like
    )
    return op, like_op


def _broadcast_to_shape(shape: Shape, *, shape_to: Shape) -> Shape:
    out = broadcast_shapes(shape, shape_to)
    if out != tuple(shape_to):
        raise ShapeError(f"cannot broadcast {format_shape(shape)} to {format_shape(shape_to)}")
    return out


def _broadcast_like_forward(xp, x, ref):
    return xp.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(ref)))


BROADCAST_TO, BROADCAST_LIKE = _to_shape(
    ("broadcast_to", "broadcast_like"),
    "elementwise",
    (lambda xp, x, shape_to: xp.broadcast_to(x, shape_to), _broadcast_like_forward),
    (_broadcast_to_shape, lambda x, ref: broadcast_shapes(x, ref)),
    # the transpose is ct itself, shaped like the output: the driver sums the broadcast axes away
    (lambda ct, x, *ref, **attrs: ct, lambda t, out, x, *ref, **attrs: broadcast_like(t, out)),
    (
        "repeat along broadcast axes; the gradient sums them back",
        "x broadcast against the shape of ref (ref's values are not used)",
    ),
    transparent=True,  # broadcast_like is an implicit broadcast: printed as the value
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


def broadcast_like(x: ArrayLike, ref: Node) -> Node:
    """``x`` broadcast against ``ref``'s shape, known at evaluation if not before.

    >>> g = sd.Graph(); X = g.variable("X", shape=(None, 3)); b = g.variable("b", shape=(3,))
    >>> sd.broadcast_like(b, X).shape
    (None, 3)
    """
    return apply(BROADCAST_LIKE, *as_nodes("broadcast_like", x, ref))


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


def _reshaped_ndim(ref: tuple[Node, ...], shape_to: tuple[int, ...] = (), nb: int = 0) -> int:
    """How many axes a reshape (to ``shape_to``) or a reshape_like (to ``nb`` axes and ``ref``'s) gives."""
    return nb + ref[0].ndim if ref else len(shape_to)


def _reshape_like_forward(xp, x, ref, nb):
    return xp.reshape(x, np.shape(x)[:nb] + np.shape(ref))


RESHAPE, RESHAPE_LIKE = _to_shape(
    ("reshape", "reshape_like"),
    "structural",
    (lambda xp, x, shape_to: xp.reshape(x, shape_to), _reshape_like_forward),
    (_reshape_shape, lambda x, ref, nb: tuple(x[:nb]) + tuple(ref)),
    (
        lambda ct, x, *ref, **attrs: reshape_like(ct, x, ct.ndim - _reshaped_ndim(ref, **attrs)),
        lambda t, out, x, *ref, **attrs: reshape_like(t, out, t.ndim - x.ndim),
    ),
    ("the same elements in another shape", "x reshaped to its first nb axes followed by ref's shape"),
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
    return apply(RESHAPE, x, shape_to=shape_to)


def reshape_like(x: Node, ref: Node, nb: int = 0) -> Node:
    """``x`` reshaped to ``x.shape[:nb] + ref.shape`` (ref's shape may be known only at evaluation).

    >>> g = sd.Graph(); a = g.variable("a", shape=(6,)); b = g.variable("b", shape=(2, 3))
    >>> sd.reshape_like(a, b).shape
    (2, 3)
    """
    return apply(RESHAPE_LIKE, *as_nodes("reshape_like", x, ref), nb=nb)


def _batched_axes(axes: tuple[int, ...], nb: int) -> tuple[int, ...]:
    return tuple(range(nb)) + tuple(nb + a for a in axes)


TRANSPOSE = define_op(
    "transpose",
    numpy="transpose",
    shape=lambda shape, axes: tuple(shape[a] for a in axes),
    kind="structural",
    dtype=first_dtype,
    transpose=lambda ct, x, axes: transpose(ct, _batched_axes(tuple(np.argsort(axes)), ct.ndim - x.ndim)),
    # written: the axes are counted from the front, and a tangent may have batch axes there
    jvp=(lambda t, out, x, axes: transpose(t, _batched_axes(axes, t.ndim - x.ndim)),),
    precedence=60,  # x.T binds as x[i] and f(x) do (Python's primaries)
    text=lambda node, args, wrap: (wrap(0, 60) + ".T", 60) if _reverses(node) else None,
    latex=lambda node, args, wrap: (rf"{wrap(0, 60)}^{{\top}}", 60) if _reverses(node) else None,
    label="T",
    doc="permute axes; the gradient permutes back",
)


def _reverses(node: Node) -> bool:
    """A transpose that reverses every axis: written ``x.T``."""
    return node.attrs["axes"] == tuple(range(node.ndim - 1, -1, -1))


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


# -- flip, roll --------------------------------------------------------------------------
# The lowerings (symdiff.lower) below are written with ops of modules that import this one,
# so those are imported when a lowering is traced.
def length(x: Node, axis: int) -> Node:
    """The size of ``x``'s ``axis`` as an int64 scalar node (known at evaluation if not before)."""
    from symdiff.ops.reduce import COUNT

    return apply(COUNT, x, axis=(axis % x.ndim - x.ndim,), dtype_to=np.dtype(np.int64).str)


def positions(x: Node, axis: int) -> Node:
    """0, 1, ..., n - 1 (int64) for n the size of ``x``'s ``axis``: a constant when n is known,
    else ``sd.arange`` of the size at evaluation."""
    from symdiff.ops.indexing import arange

    n = x.shape[axis]
    return x.graph.constant(np.arange(n, dtype=np.int64)) if n is not None else arange(length(x, axis))


def _lower_flip(x: Node, axis: tuple[int, ...]) -> Node:
    """A slice with step -1 on each flipped axis."""
    from symdiff.ops.indexing import getitem

    return getitem(x, (Ellipsis, *(slice(None, None, -1) if a in axis else slice(None) for a in range(min(axis), 0))))


def _lower_roll(x: Node, shift: tuple[int, ...], axis: tuple[int, ...]) -> Node:
    """Per axis, the last ``shift`` elements joined in front of the others (numpy adds the
    shifts of a repeated axis: so does rolling once per entry); where the axis's size is known
    only at evaluation, x gathered at positions i - (shift mod n), negative ones counting from
    the end as numpy's do."""
    from symdiff.ops.arithmetic import astype, divide
    from symdiff.ops.functions import floor, maximum
    from symdiff.ops.indexing import getitem
    from symdiff.ops.join import _along, concatenate

    for k, a in zip(shift, axis):
        n = x.shape[a]
        if n is None:
            size = length(x, a)
            # floor(k / n) in float64 is exact for sizes and shifts below 2**50
            turns = astype(floor(divide(float(k), astype(maximum(size, 1), np.float64))), np.int64)
            x = getitem(x, _along(a, positions(x, a) - (k - size * turns)))
            continue
        cut = n - k % n if n else n
        if cut != n:
            x = concatenate([getitem(x, _along(a, slice(cut, None))), getitem(x, _along(a, slice(None, cut)))], axis=a)
    return x


FLIP = moving_op(
    "flip",
    shape=lambda shape, axis: shape,
    transpose=lambda ct, x, axis: flip(ct, axis),  # negative axes: batch axes stay in front
    lower=_lower_flip,
    doc="reverse the order of elements along axis; the gradient flips back",
)


def flip(x: ArrayLike, axis: Any = None) -> Node:
    """``x`` with the order of its elements reversed along ``axis`` (all axes when None), as ``numpy.flip``.

    >>> g = sd.Graph(); w = g.variable("w", shape=(3,))
    >>> print(sd.evaluate(sd.flip(w), {w: [1.0, 2.0, 3.0]}))
    [3. 2. 1.]
    """
    (x,) = as_nodes("flip", x)
    axes = op_axes("flip", x, axis)
    if not axes:
        return x
    return apply(FLIP, x, axis=axes)


ROLL = moving_op(
    "roll",
    shape=lambda shape, shift, axis: shape,
    transpose=lambda ct, x, shift, axis: apply(ROLL, ct, shift=tuple(-k for k in shift), axis=axis),
    lower=_lower_roll,
    doc="shift elements cyclically along axes; the gradient shifts back",
)


def roll(x: ArrayLike, shift: int | tuple[int, ...], axis: int | tuple[int, ...] | None = None) -> Node:
    """Elements shifted cyclically by ``shift`` along ``axis``, as ``numpy.roll`` (with axis None,
    over the flattened array, in its shape).

    >>> g = sd.Graph(); w = g.variable("w", shape=(4,))
    >>> print(sd.evaluate(sd.roll(w, 1), {w: [1.0, 2.0, 3.0, 4.0]}))
    [4. 1. 2. 3.]
    """
    (x,) = as_nodes("roll", x)
    if axis is None:
        if x.ndim == 1:
            return roll(x, shift, 0)
        flat = reshape(x, (-1,))
        return reshape_like(roll(flat, shift, 0), x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    shifts = (shift,) * len(axes) if isinstance(shift, (int, np.integer)) else tuple(shift)
    if len(shifts) != len(axes) or not all(isinstance(k, (int, np.integer)) for k in shifts):
        raise ShapeError(f"roll: shift {shift!r} does not give one int per axis of {axis!r}")
    for a in axes:  # normalize_axes would merge a repeated axis; numpy adds its shifts
        op_axes("roll", x, a)
    neg = tuple(int(a) % x.ndim - x.ndim for a in axes)
    if all(k == 0 for k in shifts):
        return x
    return apply(ROLL, x, shift=tuple(int(k) for k in shifts), axis=neg)


# -- triangles -----------------------------------------------------------------------
def _matrix_shape(shape: Shape, **_: Any) -> Shape:
    if len(shape) < 2:
        raise ShapeError(f"needs at least 2 dimensions, got shape {format_shape(shape)}")
    return shape


def _lower_triangle(lower: bool) -> Callable[..., Node]:
    """tril/triu as numpy writes them: x where column - row <= k (lower) or >= k (upper), else
    zero (a select, not a product by a mask: the dropped triangle may hold inf or nan)."""

    def lowering(x: Node, k: int) -> Node:
        from symdiff.ops.arithmetic import subtract
        from symdiff.ops.logic import greater_equal, less_equal, where

        offset = subtract(positions(x, -1), expand_dims(positions(x, -2), -1))
        keep = less_equal(offset, k) if lower else greater_equal(offset, k)
        return where(keep, x, x.graph.constant(np.zeros((), x.dtype)))

    return lowering


def _triangle(name: str, which: str, doc: str, result: str) -> tuple[Op, Callable[..., Node]]:
    """numpy's ``tril`` or ``triu`` (the ``which`` triangle) as an op, linear (the gradient is the
    same triangle of g), and its public function, whose example prints ``result``."""
    op = moving_op(
        name,
        shape=_matrix_shape,
        transpose=lambda ct, x, k: function(ct, k),
        lower=_lower_triangle(name == "tril"),
        doc=doc,
    )

    def function(x: ArrayLike, k: int = 0) -> Node:
        return apply(op, *as_nodes(name, x), k=int(k))

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"""{which} triangle of (a stack of) matrices, as ``numpy.{name}``.

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> print(sd.evaluate(sd.{name}(A), {{A: [[1.0, 2.0], [3.0, 4.0]]}}))
    {result}
    """
    return op, function


TRIL, tril = _triangle("tril", "Lower", "lower triangle (k-th diagonal and below); linear", "[[1. 0.]\n     [3. 4.]]")
TRIU, triu = _triangle("triu", "Upper", "upper triangle (k-th diagonal and above); linear", "[[1. 2.]\n     [0. 4.]]")
