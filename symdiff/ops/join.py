"""Assembling arrays from parts and repeating them: concatenate, stack, split, pad, tile,
repeat, kron.

Axes are stored negative (counted from the end), so every rule works unchanged on
cotangents and tangents that carry batch axes in front.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symdiff.errors import ShapeError
from symdiff.graph import Node, Shape, format_shape
from symdiff.ops.arithmetic import astype, multiply
from symdiff.ops.core import apply, as_nodes, op_axes, per_input
from symdiff.ops.creation import zeros_like
from symdiff.ops.families import product_op
from symdiff.ops.indexing import getitem, take
from symdiff.ops.reduce import sum as sum_over
from symdiff.ops.structure import (
    broadcast_like,
    broadcast_to,
    expand_dims,
    length,
    moving_op,
    positions,
    reshape,
    reshape_like,
)

ArrayLike = Any


def _along(axis: int, part: Any) -> tuple:
    """An index that applies ``part`` to the (negative) ``axis`` and keeps every other axis."""
    return (Ellipsis, part) + (slice(None),) * (-axis - 1)


def _same_but(op: str, shapes: Sequence[Shape], axis: int) -> None:
    """numpy's rule for joining: equal ranks, equal sizes on every axis but ``axis``."""
    first = shapes[0]
    for k, s in enumerate(shapes[1:], 1):
        if len(s) != len(first):
            raise ShapeError(f"{op}: input 0 has {len(first)} dimension(s) but input {k} has {len(s)}")
        for a, (d, e) in enumerate(zip(first, s)):
            if a - len(first) != axis and d is not None and e is not None and d != e:
                raise ShapeError(
                    f"{op}: sizes must match except along axis {axis + len(first)}: "
                    f"input 0 is {format_shape(first)}, input {k} is {format_shape(s)}"
                )


def _joined(op: str, arrays: Any) -> tuple[Node, ...]:
    """The arrays as nodes of one graph, cast to their common dtype as numpy does."""
    if isinstance(arrays, Node) or not isinstance(arrays, (list, tuple)):
        raise ShapeError(f"{op}: takes a list or tuple of arrays, got {type(arrays).__name__}")
    if not arrays:
        raise ShapeError(f"{op}: needs at least one array")
    nodes = as_nodes(op, *arrays)
    dt = np.result_type(*(n.dtype for n in nodes))
    return tuple(n if n.dtype == dt else astype(n, dt) for n in nodes)


# -- concatenate -----------------------------------------------------------------------
def _concatenate_shape(*shapes: Shape, axis: int) -> Shape:
    _same_but("concatenate", shapes, axis)
    sizes = [s[axis] for s in shapes]
    total = None if any(d is None for d in sizes) else int(np.sum(sizes))
    out = [next((s[a] for s in shapes if s[a] is not None), None) for a in range(len(shapes[0]))]
    out[axis] = total
    return tuple(out)


def _offsets(refs: Sequence[Any], index: int, axis: int) -> tuple[int, int]:
    sizes = [np.shape(r)[axis] for r in refs]
    start = int(np.sum(sizes[:index], dtype=np.int64))
    return start, start + sizes[index]


def _part_forward(xp, g, *refs, index, axis):
    start, stop = _offsets(refs, index, axis)
    return g[_along(axis, slice(start, stop))]


def _place_forward(xp, t, *refs, index, axis):
    # zeros before and after, joined: no item assignment, so every array module runs it
    start, stop = _offsets(refs, index, axis)
    total = int(np.sum([np.shape(r)[axis] for r in refs], dtype=np.int64))
    shape = list(np.shape(t))
    parts = []
    for size in (start, total - stop):
        shape[axis] = size
        parts.append(xp.zeros(tuple(shape), dtype=t.dtype))
    return xp.concatenate([parts[0], t, parts[1]], axis=axis)


def _known_sizes(refs: Sequence[Node], axis: int) -> list[int] | None:
    """The sizes along ``axis`` of the inputs of a concatenation, where every one is known."""
    sizes = [r.shape[axis] for r in refs]
    return None if None in sizes else sizes


def _part(g: Node, refs: Sequence[Node], index: int, axis: int) -> Node:
    """The part of ``g`` that input ``index`` of a concatenation of ``refs`` became (concatenate's
    transpose for that input): a slice where every size along the axis is known, else concat_part
    (a slice whose ends or length are known only at evaluation would lose the part's static size)."""
    sizes = _known_sizes(refs, axis)
    if sizes is not None:
        start, stop = sum(sizes[:index]), sum(sizes[: index + 1])
        return getitem(g, _along(axis, slice(start or None, None if stop == sum(sizes) else stop)))
    return apply(CONCAT_PART, g, *refs, index=index, axis=axis)


def _place(t: Node, refs: Sequence[Node], index: int, axis: int) -> Node:
    """``t`` in the place of input ``index`` of a concatenation of ``refs``, zeros elsewhere (the
    transpose of _part): a zero border (pad) where every size along the axis is known, else concat_place."""
    sizes = _known_sizes(refs, axis)
    if sizes is not None:
        widths = ((sum(sizes[:index]), sum(sizes[index + 1 :])),) + ((0, 0),) * (-axis - 1)
        return apply(PAD, t, widths=widths, value=0.0) if any(widths[0]) else t
    return apply(CONCAT_PLACE, t, *refs, index=index, axis=axis)


def _replace_axis(shape: Shape, axis: int, size: int | None) -> Shape:
    out = list(shape)
    out[axis] = size
    return tuple(out)


def _block(value: float, like: Node, axis: int, size: int) -> Node:
    """``value`` in ``like``'s dtype, shaped like ``like`` but ``size`` long on ``axis`` (negative)."""
    shape = _replace_axis(like.shape, axis, size)
    if None not in shape:
        return broadcast_to(like.graph.constant(np.asarray(value, like.dtype)), shape)
    # other sizes known at evaluation: a line of values broadcast against `like` one long on
    # axis (summed to one when that axis may be empty, its first element otherwise)
    line = like.graph.constant(np.full((size,) + (1,) * (-axis - 1), value, like.dtype))
    one = getitem(like, _along(axis, slice(0, 1))) if like.shape[axis] else sum_over(like, axis, keepdims=True)
    return broadcast_like(line, one)


def _zeros_for(t: Node, refs: Sequence[Node], axis: int) -> list[Node]:
    """Zeros in the place of ``refs`` along ``axis`` of a concatenation that holds ``t``."""
    sizes = [r.shape[axis] for r in refs]
    if None not in sizes:
        total = sum(sizes)
        return [_block(0.0, t, axis, total)] if total else []
    blocks = []
    for r, size in zip(refs, sizes):
        if size is None:  # shaped like r: t's batch axes put in front of it
            z = astype(zeros_like(r), t.dtype)
            nb = t.ndim - r.ndim
            blocks.append(broadcast_like(z, sum_over(t, tuple(range(nb, t.ndim)), keepdims=True)) if nb else z)
        elif size:
            blocks.append(_block(0.0, t, axis, size))
    return blocks


def _part_slice(refs: Sequence[Node], index: int, axis: int) -> slice | None:
    """The static slice of input ``index`` of a concatenation of ``refs`` along ``axis``, each end
    counted from the front or the back, where the sizes on that side are known (else None)."""
    sizes = [r.shape[axis] for r in refs]
    before, own, after = sizes[:index], sizes[index], sizes[index + 1 :]
    if own == 0:
        return slice(0, 0)
    start = sum(before) if None not in before else None
    if start is None and own is not None and None not in after:
        start = -(own + sum(after))
    if None not in after:
        stop = -sum(after) or None
    elif start is not None and start >= 0 and own is not None:
        stop = start + own
    else:
        return None
    return None if start is None else slice(start, stop)


def _lower_part(g: Node, *refs: Node, index: int, axis: int) -> Node:
    """A slice of g, or where its ends or length are known only at evaluation, g gathered at
    the part's positions (the slice's length would be unknown where g's size is)."""
    part = _part_slice(refs, index, axis)
    size = refs[index].shape[axis]
    if part is not None and (g.shape[axis] is not None or size is None):
        return getitem(g, _along(axis, part))
    if part is not None:
        return getitem(g, _along(axis, np.arange(part.start, part.start + size)))
    at = positions(refs[index], axis) + sum(r.shape[axis] or 0 for r in refs[:index])
    for r in refs[:index]:
        if r.shape[axis] is None:
            at = at + length(r, axis)
    return getitem(g, _along(axis, at))


def _lower_place(t: Node, *refs: Node, index: int, axis: int) -> Node:
    """t joined between zeros in the places of the other inputs."""
    return concatenate([*_zeros_for(t, refs[:index], axis), t, *_zeros_for(t, refs[index + 1 :], axis)], axis=axis)


def _place_back(ct: Node, g: Node, *refs: Node, index: int, axis: int) -> Node:
    """concat_part's transpose: concat_place (sizes known only at evaluation, as concat_part's)."""
    return apply(CONCAT_PLACE, ct, *refs, index=index, axis=axis)


def _part_back(ct: Node, t: Node, *refs: Node, index: int, axis: int) -> Node:
    """concat_place's transpose: concat_part."""
    return apply(CONCAT_PART, ct, *refs, index=index, axis=axis)


CONCATENATE = moving_op(
    "concatenate",
    numpy="concatenate",
    shape=_concatenate_shape,
    transpose=per_input(lambda i: lambda ct, *xs, axis: _part(ct, xs, i, axis)),
    # linear in every input together: input i's tangent goes in its place, zeros in the others'
    jvp=lambda i: lambda t, out, *xs, axis: _place(t, xs, i, axis),
    forward=lambda xp, *xs, axis: xp.concatenate(xs, axis=axis),
    doc="join along an existing axis; each input's transpose is its part of the cotangent",
)
CONCAT_PART = moving_op(
    "concat_part",
    _part_forward,
    lambda g, *refs, index, axis: _replace_axis(g, axis, refs[index][axis]),
    transpose=per_input(lambda i: _place_back if i == 0 else None),  # the refs give sizes only
    lower=_lower_part,
    doc="the part of g that input `index` of a concatenation of refs along axis became (sizes known "
    "only at evaluation: a slice where they are known)",
)
CONCAT_PLACE = moving_op(
    "concat_place",
    _place_forward,
    lambda t, *refs, index, axis: _replace_axis(t, axis, _concatenate_shape(*refs, axis=axis)[axis]),
    transpose=per_input(lambda i: _part_back if i == 0 else None),
    lower=_lower_place,
    doc="t in the place of input `index` of a concatenation of refs along axis, zeros elsewhere (sizes "
    "known only at evaluation: a zero border where they are known)",
)


def concatenate(arrays: Sequence[ArrayLike], axis: int | None = 0) -> Node:
    """Join arrays along an existing axis, as ``numpy.concatenate`` (axis None: flattened first).

    >>> g = sd.Graph(); a = g.variable("a", shape=(2,)); b = g.variable("b", shape=(3,))
    >>> print(sd.evaluate(sd.concatenate([a, b]), {a: [1.0, 2.0], b: [3.0, 4.0, 5.0]}))
    [1. 2. 3. 4. 5.]
    """
    nodes = _joined("concatenate", arrays)
    if axis is None:
        nodes = tuple(reshape(n, (-1,)) for n in nodes)
        axis = 0
    if nodes[0].ndim == 0:
        raise ShapeError("concatenate: zero-dimensional arrays cannot be concatenated (use sd.stack)")
    (a,) = op_axes("concatenate", nodes[0], axis)
    if len(nodes) == 1:
        return nodes[0]
    return apply(CONCATENATE, *nodes, axis=a)


# -- stack, split ----------------------------------------------------------------------
def _stack_shape(*shapes: Shape, axis: int) -> Shape:
    _same_but("stack", [tuple(s) + (0,) for s in shapes], -1)
    out = [next((s[a] for s in shapes if s[a] is not None), None) for a in range(len(shapes[0]))]
    out.insert(len(out) + 1 + axis, len(shapes))
    return tuple(out)


def _stack_text(node: Node, args: list, wrap: Any) -> tuple[str, int] | None:
    if node.attrs["axis"] == -1 and all(x.ndim == 0 for x in node.inputs):
        return "[" + ", ".join(a[0] for a in args) + "]", 100  # a vector of scalars: a literal
    return None


def _stack_latex(node: Node, args: list, wrap: Any) -> tuple[str, int] | None:
    if node.attrs["axis"] == -1 and all(x.ndim == 0 for x in node.inputs):
        return r"\begin{bmatrix}" + r" \\ ".join(a[0] for a in args) + r"\end{bmatrix}", 100
    return None


def _stack_jvp(i: int):
    def rule(t: Node, out: Node, *xs: Node, axis: int) -> Node:
        # t in slot i of the new axis, zeros in the others
        widths = ((i, len(xs) - 1 - i),) + ((0, 0),) * (-axis - 1)
        return apply(PAD, expand_dims(t, axis), widths=widths, value=0.0)

    return rule


STACK = moving_op(
    "stack",
    numpy="stack",
    shape=_stack_shape,
    transpose=per_input(lambda i: lambda ct, *xs, axis: getitem(ct, _along(axis, i))),
    jvp=_stack_jvp,
    forward=lambda xp, *xs, axis: xp.stack(xs, axis=axis),
    text=_stack_text,
    latex=_stack_latex,
    lower=lambda *xs, axis: concatenate([expand_dims(x, axis) for x in xs], axis=axis),
    doc="join along a new axis; input i's gradient is g's slice i along it",
)


def stack(arrays: Sequence[ArrayLike], axis: int = 0) -> Node:
    """Join equally shaped arrays along a new axis, as ``numpy.stack``; scalars make a vector.

    >>> g = sd.Graph(); x = g.variable("x"); y = g.variable("y")
    >>> print(sd.stack([x * y, x, 1.0]))
    [x*y, x, 1]
    """
    nodes = _joined("stack", arrays)
    ndim = nodes[0].ndim + 1
    if not -ndim <= int(axis) < ndim:
        raise ShapeError(f"stack: axis {axis} is out of range for {ndim}-dimensional results")
    return apply(STACK, *nodes, axis=int(axis) % ndim - ndim)


def split(x: ArrayLike, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Node]:
    """Split ``x`` into parts along ``axis``, as ``numpy.split``: slices of x, each differentiable.

    >>> g = sd.Graph(); w = g.variable("w", shape=(6,))
    >>> [p.shape for p in sd.split(w, [1, 4])]
    [(1,), (3,), (2,)]
    """
    (x,) = as_nodes("split", x)
    (a,) = op_axes("split", x, axis)
    size = x.shape[a]
    if isinstance(indices_or_sections, (int, np.integer)):
        n = int(indices_or_sections)
        if size is None:
            raise ShapeError(
                f"split: {n} equal sections need axis {a + x.ndim}'s size, unknown in {format_shape(x.shape)}"
            )
        if n <= 0 or size % n:
            raise ShapeError(f"split: axis {a + x.ndim} of size {size} does not divide into {n} equal sections")
        bounds = [size // n * k for k in range(1, n)]
    else:
        bounds = [int(b) for b in indices_or_sections]
    edges = [None, *bounds, None]
    return [getitem(x, _along(a, slice(lo, hi))) for lo, hi in zip(edges, edges[1:])]


# -- pad -------------------------------------------------------------------------------
def _pad_forward(xp, x, widths, value):
    full = ((0, 0),) * (np.ndim(x) - len(widths)) + widths  # batch axes in front are not padded
    return xp.pad(x, full, constant_values=value)


def _pad_shape(shape: Shape, *, widths: tuple, value: float) -> Shape:
    lead = len(shape) - len(widths)
    return tuple(d if k < lead or d is None else d + sum(widths[k - lead]) for k, d in enumerate(shape))


def _unpad(g: Node, widths: tuple) -> Node:
    return getitem(g, (Ellipsis,) + tuple(slice(b, -a if a else None) for b, a in widths))


def _lower_pad(x: Node, widths: tuple, value: float) -> Node:
    """Per padded axis, x joined between blocks of the value (the corners get it, as numpy's)."""
    for k, (before, after) in enumerate(widths):
        axis = k - len(widths)
        parts = [_block(value, x, axis, w) if w else None for w in (before, after)]
        x = concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)
    return x


PAD = moving_op(
    "pad",
    _pad_forward,
    _pad_shape,
    numpy="pad",
    lower=_lower_pad,
    transpose=lambda ct, x, widths, value: _unpad(ct, widths),  # of the linear part: the border is constant
    jvp=(lambda t, out, x, widths, value: apply(PAD, t, widths=widths, value=0.0),),
    doc="x with a constant border; the gradient is g without it",
)

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad(x: ArrayLike, pad_width: Any, mode: str = "constant", constant_values: float = 0) -> Node:
    """``x`` with a border, as ``numpy.pad``: modes "constant", "edge", "reflect", "symmetric", "wrap".

    The other modes are gathers of x's own elements (their gradients add up where an
    element is repeated) and need the padded axes' sizes.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.pad(w, 1, constant_values=9.0), {w: [1.0, 2.0]}))
    [9. 1. 2. 9.]
    """
    (x,) = as_nodes("pad", x)
    if mode not in _PAD_MODES:
        raise ShapeError(f"pad: mode {mode!r} is not one of {', '.join(map(repr, _PAD_MODES))}")
    try:
        widths = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width {pad_width!r} does not fit {x.ndim} axes (one pair per axis)") from None
    if widths.dtype.kind not in "iu" or (widths < 0).any():
        raise ShapeError(f"pad: pad_width {pad_width!r} must be non-negative integers")
    pairs = tuple((int(b), int(a)) for b, a in widths)
    if not any(b or a for b, a in pairs):
        return x
    if mode == "constant":
        if isinstance(constant_values, Node) or np.ndim(constant_values):
            raise ShapeError("pad: constant_values must be one number")
        return apply(PAD, x, widths=pairs, value=float(constant_values))
    for k, (b, a) in enumerate(pairs):
        if b or a:
            if x.shape[k] is None:
                raise ShapeError(f"pad: mode {mode!r} needs the size of axis {k}, unknown in {format_shape(x.shape)}")
            x = take(x, np.pad(np.arange(x.shape[k]), (b, a), mode=mode), axis=k)
    return x


# -- tile, repeat, kron ------------------------------------------------------------------
def _batched_reshape(
    op: str, g: Node, nb: int, dims: Sequence[int | None], like: Callable[[], Node] | None = None
) -> Node:
    """``g``'s batch axes followed by ``dims``: at most one unknown size, given as -1, or else the
    shape of the node ``like()`` builds (whose shape is ``dims``), taken at evaluation."""
    target = [*g.shape[:nb], *dims]
    if sum(d is None for d in target) > 1 and like is not None:
        return reshape_like(g, like(), nb)
    if sum(d is None for d in target) > 1:
        raise ShapeError(
            f"{op}: regrouping axes {format_shape(g.shape)} into {format_shape(tuple(target))} "
            "needs all but one of these sizes known"
        )
    return reshape(g, tuple(-1 if d is None else d for d in target))


def _untile_forward(xp, g, x, reps):
    # reps count from the last axis, as tile's: a tile made by a derivative rule (tile's
    # adjoint's adjoint) has x with leading batch axes and the reps of the unbatched x
    reps = (1,) * (np.ndim(x) - len(reps)) + tuple(reps)
    nb = np.ndim(g) - np.ndim(x)
    grouped = xp.reshape(g, np.shape(g)[:nb] + tuple(d for pair in zip(reps, np.shape(x)) for d in pair))
    return xp.sum(grouped, axis=tuple(nb + 2 * k for k in range(len(reps))))


def _tile_shape(shape: Shape, reps: tuple[int, ...]) -> Shape:
    lead = len(shape) - len(reps)  # leading (batch) axes are not tiled
    return tuple(shape[:lead]) + tuple(None if d is None else d * r for d, r in zip(shape[lead:], reps))


def _untile(g: Node, x: Node, reps: tuple[int, ...]) -> Node:
    return apply(UNTILE, g, x, reps=reps)


def _lower_tile(x: Node, reps: tuple[int, ...]) -> Node:
    """Each tiled axis split in two, (copy, element): an axis of length 1 broadcast to the copies."""
    lead = x.ndim - len(reps)
    if None in x.shape:  # sizes known only at evaluation: the copies joined, one axis at a time
        for k, r in enumerate(reps):
            x = concatenate([x] * r, axis=lead + k) if r != 1 else x
        return x
    spread = expand_dims(x, tuple(lead + 2 * k for k in range(len(reps))))
    pairs = [d for r, n in zip(reps, x.shape[lead:]) for d in (r, n)]
    wide = broadcast_to(spread, (*x.shape[:lead], *pairs))
    return _batched_reshape("tile", wide, lead, _tile_shape(x.shape[lead:], reps))


def _lower_untile(g: Node, x: Node, reps: tuple[int, ...]) -> Node:
    """The copies apart on axes of their own, (copy, element) as tile made them, then summed."""
    reps = (1,) * (x.ndim - len(reps)) + tuple(reps)
    nb = g.ndim - x.ndim
    dims = [d for pair in zip(reps, x.shape) for d in pair]

    def like() -> Node:  # x broadcast to (copy, element) pairs: a node of the grouped shape
        ones = x.graph.constant(np.ones([d for r in reps for d in (r, 1)], np.int8))
        return broadcast_like(expand_dims(x, tuple(range(-2 * x.ndim, 0, 2))), ones)

    grouped = _batched_reshape("untile", g, nb, dims, like)
    return sum_over(grouped, axis=tuple(nb + 2 * k for k in range(len(reps))))


TILE = moving_op(
    "tile",
    lambda xp, x, reps: xp.tile(x, reps),
    _tile_shape,
    numpy="tile",
    transpose=lambda ct, x, reps: _untile(ct, x, reps),
    lower=_lower_tile,
    # numpy's tile leaves leading (batch) axes alone: the jvp is tile(t)
    doc="x repeated reps[k] times along axis k; the gradient sums the copies",
)
UNTILE = moving_op(
    "untile",
    _untile_forward,
    lambda g, x, reps: tuple(g[: len(g) - len(x)]) + tuple(x),
    transpose=(lambda ct, h, x, reps: apply(TILE, ct, reps=reps), None),
    lower=_lower_untile,
    doc="the copies of tile(x, reps) in g summed (the transpose of tile)",
    sparsity="adjoint:tile",
)


def tile(x: ArrayLike, reps: int | Sequence[int]) -> Node:
    """``x`` repeated as a block ``reps`` times, as ``numpy.tile``.

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.tile(w, 2), {w: [1.0, 2.0]}))
    [1. 2. 1. 2.]
    """
    (x,) = as_nodes("tile", x)
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    if not all(isinstance(r, (int, np.integer)) and r >= 0 for r in reps):
        raise ShapeError(f"tile: reps {reps!r} must be non-negative integers")
    if len(reps) > x.ndim:
        x = expand_dims(x, tuple(range(len(reps) - x.ndim)))
    reps = (1,) * (x.ndim - len(reps)) + tuple(int(r) for r in reps)
    if all(r == 1 for r in reps):
        return x
    return apply(TILE, x, reps=reps)


def _unrepeat_forward(xp, g, x, repeats, axis):
    shape = list(np.shape(g))
    shape[axis : axis + 1 or None] = [np.shape(x)[axis], repeats]
    return xp.sum(xp.reshape(g, tuple(shape)), axis=axis)  # the copies' axis is now at `axis`


def _unrepeat(g: Node, x: Node, repeats: int, axis: int) -> Node:
    return apply(UNREPEAT, g, x, repeats=repeats, axis=axis)


def _spread(x: Node, axis: int, size: int) -> Node:
    """``x``, one long on ``axis`` (negative), broadcast to ``size`` there."""
    shape = _replace_axis(x.shape, axis, size)
    if None not in shape:
        return broadcast_to(x, shape)
    return broadcast_like(x, x.graph.constant(np.ones((size,) + (1,) * (-axis - 1), np.int8)))


def _lower_repeat(x: Node, repeats: int, axis: int) -> Node:
    """Each element's copies on an axis of their own after it, merged with it; where that
    regrouping needs more than one size known only at evaluation, x gathered at its positions
    repeated (one integer array, the same lowering on a vector)."""
    n = x.shape[axis]
    shape = _replace_axis(x.shape, axis, None if n is None else n * repeats)
    if sum(d is None for d in shape) > 1:
        return getitem(x, _along(axis, _lower_repeat(positions(x, axis), repeats, -1)))
    copies = _spread(expand_dims(x, axis), axis, repeats)
    return reshape(copies, tuple(-1 if d is None else d for d in shape))


def _lower_unrepeat(g: Node, x: Node, repeats: int, axis: int) -> Node:
    """g's copies apart on an axis of their own after each element's, as repeat made them, then summed."""
    nb = g.ndim - x.ndim
    dims = [d if d is not None else e for d, e in zip(x.shape, g.shape[nb:])]  # known in either
    n, total = x.shape[axis], g.shape[axis]
    dims[axis : axis + 1 or None] = [total // repeats if n is None and total is not None and repeats else n, repeats]
    grouped = _batched_reshape("unrepeat", g, nb, dims, lambda: _spread(expand_dims(x, axis), axis, repeats))
    return sum_over(grouped, axis)


REPEAT = moving_op(
    "repeat",
    lambda xp, x, repeats, axis: xp.repeat(x, repeats, axis=axis),
    lambda shape, repeats, axis: _replace_axis(shape, axis, None if shape[axis] is None else shape[axis] * repeats),
    numpy="repeat",
    transpose=lambda ct, x, repeats, axis: _unrepeat(ct, x, repeats, axis),
    lower=_lower_repeat,
    doc="each element repeated along axis; the gradient sums each element's copies",
)
UNREPEAT = moving_op(
    "unrepeat",
    _unrepeat_forward,
    lambda g, x, repeats, axis: tuple(g[: len(g) - len(x)]) + tuple(x),
    transpose=(lambda ct, h, x, repeats, axis: apply(REPEAT, ct, repeats=repeats, axis=axis), None),
    lower=_lower_unrepeat,
    doc="the copies of each element of repeat(x, repeats, axis) in g summed (the transpose of repeat)",
    sparsity="adjoint:repeat",
)


def repeat(x: ArrayLike, repeats: int | Sequence[int], axis: int | None = None) -> Node:
    """Each element of ``x`` repeated, as ``numpy.repeat`` (axis None: over the flattened array).

    ``repeats`` is one count, or one per element along the axis (then a gather by those
    positions, whose gradient adds up each element's copies).

    >>> g = sd.Graph(); w = g.variable("w", shape=(2,))
    >>> print(sd.evaluate(sd.repeat(w, [1, 3]), {w: [1.0, 2.0]}))
    [1. 2. 2. 2.]
    """
    (x,) = as_nodes("repeat", x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    (a,) = op_axes("repeat", x, axis)
    counts = np.asarray(repeats)
    if counts.dtype.kind not in "iu" or (counts < 0).any() or counts.ndim > 1:
        raise ShapeError(f"repeat: repeats {repeats!r} must be a non-negative integer or a list of them")
    if counts.ndim == 1 and counts.size != 1:
        size = x.shape[a]
        if size != counts.size:
            known = "unknown" if size is None else str(size)
            raise ShapeError(f"repeat: {counts.size} counts for axis {a + x.ndim} of size {known}")
        return take(x, np.repeat(np.arange(size), counts), axis=a)
    r = int(counts.reshape(-1)[0])
    if r == 1:
        return x
    return apply(REPEAT, x, repeats=r, axis=a)


def _kron_vjp(i: int):
    def rule(g: Node, out: Node, a: Node, b: Node) -> Node:
        nb = g.ndim - out.ndim
        # g's axis k is (a's axis k, b's axis k) interleaved: regroup, weight by the other, sum it out
        grouped = _batched_reshape("kron", g, nb, [d for pair in zip(a.shape, b.shape) for d in pair])
        other = (b, a)[i]
        spread = expand_dims(other, tuple(2 * k + i - 2 * other.ndim for k in range(other.ndim)))
        return sum_over(multiply(grouped, spread), tuple(nb + 2 * k + (1 - i) for k in range(other.ndim)))

    return rule


def _kron_shape(a: Shape, b: Shape) -> Shape:
    return tuple(None if d is None or e is None else d * e for d, e in zip(a, b))


def _lower_kron(a: Node, b: Node) -> Node:
    """a's axes interleaved with b's, (a's, b's) on each, their product, each pair merged."""
    pairs = 2 * a.ndim
    spread = multiply(expand_dims(a, tuple(range(1 - pairs, 0, 2))), expand_dims(b, tuple(range(-pairs, 0, 2))))
    return _batched_reshape("kron", spread, 0, _kron_shape(a.shape, b.shape))


KRON = product_op(
    "kron",
    _kron_shape,
    vjp=(_kron_vjp(0), _kron_vjp(1)),
    # bilinear; numpy's kron prepends axes of length 1 to the smaller operand, so a batched
    # tangent's leading axes pass through
    jvp=(lambda t, out, a, b: kron(t, b), lambda t, out, a, b: kron(a, t)),
    sympy="forward",
    lower=_lower_kron,
    doc="Kronecker product; d(a ⊗ b) = da ⊗ b + a ⊗ db",
)


def kron(a: ArrayLike, b: ArrayLike) -> Node:
    """Kronecker product, as ``numpy.kron`` (the operand with fewer axes gets leading ones).

    >>> g = sd.Graph(); A = g.variable("A", shape=(2, 2))
    >>> sd.kron(A, np.eye(3)).shape
    (6, 6)
    """
    a, b = as_nodes("kron", a, b)
    if a.ndim < b.ndim:
        a = expand_dims(a, tuple(range(b.ndim - a.ndim)))
    elif b.ndim < a.ndim:
        b = expand_dims(b, tuple(range(a.ndim - b.ndim)))
    return apply(KRON, a, b)


__all__ = ["concatenate", "kron", "pad", "repeat", "split", "stack", "tile"]
__test__ = {f.__name__: f for f in (concatenate, stack, split, pad, tile, repeat, kron)}
