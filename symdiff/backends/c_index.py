"""C printers of indexing and the other structural primitives: getitem (a gather), unindex (its
adjoint: a scatter that adds, so repeated indices accumulate), concatenate, arange, cumsum and
cumprod.

The graph is specialized (every shape is a tuple of ints), so each printer works out in Python
what numpy's indexing works out as it runs: the element strides, the start of every slice, the
wrapped constant indices. What is left for the C code is a nest of loops over the result whose
offsets are affine in the loop counters, plus the values of the index *nodes*: each is read where
its loop reaches it, checked against its axis (out of range: the function returns 1, and Python
reruns numpy for its IndexError), wrapped where negative, and times its axis's stride added to
the offset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from symdiff.backends.c import PRINTERS, CWriter, _wrapped, broadcast_strides, cast, ctype, strides
from symdiff.errors import BackendError
from symdiff.graph import Node
from symdiff.ops.core import broadcast_shapes
from symdiff.ops.indexing import Index

_OUT_OF_BOUNDS = 1  # symdiff.backends.c.ERRORS


@dataclass
class _Load:
    """An index read as the loops run and added to the offset of the indexed array ("t"): the
    value of an index node (checked against ``size``, wrapped where negative, times ``stride``)
    or an entry of a table of ``offsets`` worked out while printing (a constant index array)."""

    operand: str  # the operand whose offset reads it
    array: str  # the C array (or local, for a 0-d index node)
    node: Node | None  # the index node (None: a table of ``offsets``, printed with the loops)
    size: int = 0
    stride: int = 1
    offsets: tuple[int, ...] = ()


@dataclass
class _Nest:
    """Loops over ``shape`` (row-major) with each operand (name -> (base, strides)) at the offset
    ``base + sum(stride * i)``; the indexed array "t" also at the sum of the ``loads``."""

    shape: tuple
    operands: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    loads: list[_Load] = field(default_factory=list)


def _index_value(w: CWriter, node: Node, load: _Load, element: str) -> str:
    """A local holding the index ``element`` (a C expression of the index node's dtype) in
    0 .. size - 1; the function returns 1 where it is outside -size .. size - 1 (as numpy's
    IndexError). Read as an int64, as numpy reads indices (intp): a uint64 past 2**63 counts
    from the end, as in numpy (2**64 - 1 is -1, the last element)."""
    k = w.local("int64_t", f"(int64_t){element}")
    w.line(f"if ({k} < 0) {k} += {load.size};")
    w.fail(f"{k} < 0 || {k} >= {load.size}", _OUT_OF_BOUNDS, node)
    return k


def _term(load_value: str, stride: int) -> str:
    return load_value if stride == 1 else f"{load_value} * {stride}"


def _sum(*terms: str) -> str:
    """``terms`` added in C, the zeros left out."""
    return " + ".join(t for t in terms if t != "0") or "0"


def _emit(w: CWriter, node: Node, nest: _Nest, body: Callable[[dict[str, str]], None]) -> None:
    """Print the loops of ``nest`` and, innermost, ``body(offsets)`` (operand -> C offset).

    Each index is read (and checked) in the innermost loop its operand moves in, not in the
    loops inside it: the axes are cut there, and each run of axes between cuts is one
    ``CWriter.nest`` (axes of length 1 dropped, axes every operand walks alike merged)."""
    if 0 in nest.shape:
        return
    for ld in nest.loads:
        if ld.node is None:
            w.line(f"static const long {ld.array}[{len(ld.offsets)}] = {{{', '.join(map(str, ld.offsets))}}};")
    keys = list(nest.operands)
    offsets = {k: base for k, (base, _) in nest.operands.items()}
    # the axis after which each load's operand no longer moves (-1: before the loops)
    last = [
        max((a for a, n in enumerate(nest.shape) if n != 1 and nest.operands[ld.operand][1][a]), default=-1)
        for ld in nest.loads
    ]

    def read(at: int) -> list[str]:
        terms = []
        for ld, end in zip(nest.loads, last):
            if end != at:
                continue
            if ld.node is None:  # a table of offsets
                terms.append(f"{ld.array}[{offsets[ld.operand]}]")
            else:
                element = w.at(ld.array, ld.node, offsets[ld.operand])
                terms.append(_term(_index_value(w, node, ld, element), ld.stride))
        return terms

    offsets["t"] = _sum(offsets["t"], *read(-1))
    with contextlib.ExitStack() as stack:
        start = 0
        for end in sorted({*last, len(nest.shape) - 1} - {-1}):
            axes = range(start, end + 1)
            steps = [[nest.operands[k][1][a] for a in axes] for k in keys]
            moved = dict(zip(keys, stack.enter_context(w.nest([nest.shape[a] for a in axes], steps))))
            for k in keys:
                if moved[k] != "0" and k != "t":
                    offsets[k] = w.local("long", _sum(offsets[k], moved[k]))
            terms = read(end)
            if moved["t"] != "0" or terms:
                offsets["t"] = w.local("long", _sum(offsets["t"], moved["t"], *terms))
            start = end + 1
        body(offsets)


def _indexed(w: CWriter, node: Node, shape: tuple, index: Index, index_nodes: list[Node], names: list[str]) -> _Nest:
    """The loops of ``target[index]`` for a ``target`` of ``shape``: the nest over the result's
    shape with the operand "t" at target's element and one operand per index array.

    The index nodes (``index_nodes``, C ``names``) are loads; constant index arrays (and index
    nodes that are constants in range) become tables of offsets printed in the function."""
    key = index.key
    steps = strides(shape)
    advanced = [j for j, k in enumerate(key) if k[0] in "ax"]
    if advanced:
        advanced = [j for j, k in enumerate(key) if k[0] in "aix"]  # with arrays, ints index as 0-d arrays
    arrays: dict[int, tuple] = {}  # entry -> (kind, shape, values or node)
    for j in advanced:
        kind, *rest = key[j]
        if kind == "x":
            u = index_nodes[rest[0]]
            value = u.value if u.op == "constant" else None
            arrays[j] = ("x", u.shape, u, names[rest[0]]) if value is None else ("a", np.shape(value), value, "")
        elif kind == "a":
            arrays[j] = ("a", rest[1], np.array(rest[0], dtype=np.int64).reshape(rest[1]), "")
        else:
            arrays[j] = ("a", (), np.int64(rest[0]), "")
    broadcast = tuple(broadcast_shapes(*(a[1] for a in arrays.values()))) if arrays else ()

    out_shape: list[int] = []
    t_strides: list[int] = []
    base = 0
    axis = 0
    for j, (kind, *rest) in enumerate(key):
        if advanced and j == advanced[0]:
            out_shape.extend(broadcast)
            t_strides.extend([0] * len(broadcast))
        if kind == "n":
            out_shape.append(1)
            t_strides.append(0)
            continue
        if kind == "s":
            r = range(*slice(*rest).indices(shape[axis]))
            out_shape.append(len(r))
            t_strides.append(steps[axis] * r.step)
            base += steps[axis] * r.start if len(r) else 0
        elif kind == "i" and not advanced:
            base += steps[axis] * (rest[0] % shape[axis])
        axis += 1
    nest = _Nest(tuple(out_shape))
    loads = []
    at = advanced[0] if advanced else 0  # result axes before the broadcast ones: one per slice or None
    after = len(out_shape) - at - len(broadcast)
    for j, (kind, ishape, value, name) in arrays.items():
        a = sum(k[0] != "n" for k in key[:j])  # the axis of the indexed array entry j picks on
        size = shape[a]
        read = [0] * at + broadcast_strides(ishape, broadcast) + [0] * after
        if kind == "x":
            operand = f"i{j}"
            nest.operands[operand] = ("0", read)
            loads.append(_Load(operand, name, value, size, steps[a]))
            continue
        values = np.asarray(value)
        if values.size and not (-size <= values.min() and values.max() < size):
            w.fail("1", _OUT_OF_BOUNDS, node)  # a constant out of range: numpy's IndexError
            values = np.zeros_like(values)
        offsets = (values % max(size, 1)) * steps[a]
        if values.size == 0 or np.all(offsets == offsets.flat[0]):
            base += int(offsets.flat[0]) if values.size else 0
            continue
        table = w.name()
        operand = f"i{j}"
        nest.operands[operand] = ("0", read)
        loads.append(_Load(operand, table, None, offsets=tuple(int(v) for v in offsets.flat)))
    nest.operands["t"] = (str(base), t_strides)
    nest.loads = loads
    return nest


def _checked_empty(w: CWriter, node: Node, nest: _Nest, args: list[str]) -> None:
    """A result with no elements still raises numpy's IndexError for an index out of range: each
    index node's values are checked on their own (and the inputs marked used: no warnings)."""
    for a in args:
        w.line(f"(void){a};")
    for ld in nest.loads:
        if ld.node is None or ld.node.size == 0:
            continue
        i = w.name()
        with w.loop(i, ld.node.size):
            _index_value(w, node, ld, w.at(ld.array, ld.node, i))


def _combined(dtype: np.dtype, a: str, b: str, op: str = "+") -> str:
    """``a op b`` (+ or *) in ``dtype`` as numpy computes it: integers wrap around, booleans add
    as or and multiply as and."""
    if dtype.kind == "f":
        return f"{a} {op} {b}"
    if dtype == np.bool_:
        return f"({a} {'||' if op == '+' else '&&'} {b})"
    return _wrapped(ctype(dtype), op, a, b)


def _p_getitem(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    x = node.inputs[0]
    nest = _indexed(w, node, x.shape, node.attrs["index"], node.inputs[1:], args[1:])
    if nest.shape != node.shape:
        raise BackendError(
            f"getitem (node #{node.index}): the C gather's shape {nest.shape} is not the node's {node.shape}; "
            "this is a bug in symdiff, please report it"
        )
    if node.size == 0:
        _checked_empty(w, node, nest, args)
        return
    nest.operands["o"] = ("0", strides(node.shape))
    _emit(w, node, nest, lambda o: w.line(f"{w.at(out, node, o['o'])} = {w.at(args[0], x, o['t'])};"))


def _p_unindex(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    g, ref = node.inputs[:2]
    nb = node.ndim - ref.ndim  # g's leading batch axes
    index = node.attrs["index"].with_batch(nb)
    PRINTERS["zeros_like"](w, node, out, args)
    nest = _indexed(w, node, node.shape, index, node.inputs[2:], args[2:])
    if 0 in nest.shape:
        _checked_empty(w, node, nest, args)
        return
    nest.operands["g"] = ("0", broadcast_strides(g.shape, nest.shape))
    at, value = w.at(out, node, "{t}"), w.at(args[0], g, "{g}")
    if any(k[0] in "ax" for k in index.key):  # repeated indices accumulate (numpy's add.at)
        statement = f"{at} = {_combined(node.dtype, at, value)};"
    else:  # each element written once: a copy (a -0.0 kept, as numpy's setitem keeps it)
        statement = f"{at} = {value};"
    _emit(w, node, nest, lambda o: w.line(statement.format(t=o["t"], g=o["g"])))


def _p_concatenate(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    axis = node.attrs["axis"] % node.ndim
    outer = int(np.prod(node.shape[:axis], dtype=np.int64))
    inner = int(np.prod(node.shape[axis + 1 :], dtype=np.int64))
    row = node.shape[axis] * inner
    start = 0
    for x, name in zip(node.inputs, args):  # each input a block of each row of the result
        run = x.shape[axis] * inner
        with w.nest((outer, run), [[row, 1], [run, 1]]) as (o, i):
            w.line(f"{out}[{_sum(str(start), o)}] = {cast(w, f'{name}[{i}]', x.dtype, node.dtype)};")
        start += run


def _p_arange(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    w.line(f"(void){args[0]};")  # the length: the shape, once specialized
    i = w.name()
    with w.loop(i, node.shape[0]):
        w.line(f"{out}[{i}] = {cast(w, i, np.int64, node.dtype)};")


def _p_running(w: CWriter, node: Node, out: str, args: list[str]) -> None:
    """cumsum, cumprod: each lane accumulated in order in the node's dtype (numpy's accumulator:
    an int32 sum runs in int64), the lanes of one step side by side in the innermost loop."""
    x = node.inputs[0]
    axis = node.attrs["axis"] % x.ndim
    n = x.shape[axis]
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    if 0 in x.shape:
        w.line(f"(void){args[0]};")
        return
    op = "+" if node.op == "cumsum" else "*"
    p, j, q = w.name(), w.name(), w.name()
    with w.loop(p, outer):
        base = w.local("long", f"{p} * {n * inner}")
        with w.loop(q, inner):
            w.line(f"{out}[{base} + {q}] = {cast(w, f'{args[0]}[{base} + {q}]', x.dtype, node.dtype)};")
        with w.loop(j, n - 1):  # step j + 1 of each lane from step j
            here = w.local("long", f"{base} + ({j} + 1) * {inner}")
            with w.loop(q, inner):
                previous = f"{out}[{here} - {inner} + {q}]"
                value = cast(w, f"{args[0]}[{here} + {q}]", x.dtype, node.dtype)
                w.line(f"{out}[{here} + {q}] = {_combined(node.dtype, previous, value, op)};")


PRINTERS.update(
    getitem=_p_getitem,
    unindex=_p_unindex,
    concatenate=_p_concatenate,
    arange=_p_arange,
    cumsum=_p_running,
    cumprod=_p_running,
)
