"""Lowering: an op that is not a primitive, written as primitives for the backends that print code.

Every public op keeps its own name, forward, printing, sympy form and derivative rules; the
interpreter, the numpy backend and jax run its forward. A backend that prints code (numba, C)
prints only the **primitives** (the ops declared without ``lower=``) and runs any other op as a
body of its own: the op's ``lower`` function traced once, per op, input types and attributes,
on variables of a graph apart from the user's (so compiling never adds a node to a user's
graph), then printed in the node's place. The body may
hold ops that lower again; each is printed the same way, down to primitives.

This is XLA's and PyTensor's cut (a few dozen primitives, everything else a composite of them),
taken so that a backend is a printer of the primitives and of one scalar-expression language.

>>> import symdiff as sd
>>> x = sd.Graph().variable("x", (2, 3))
>>> region = lowered(sd.tile(x, (2, 1)))
>>> sorted({n.op for n in region.graph.nodes} - {"variable", "constant"})
['broadcast_to', 'expand_dims', 'reshape']
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from symdiff.errors import GraphError, ShapeError
from symdiff.graph import Graph, Node, Region, ancestors, describe, format_shape, regions_in, shape_matches
from symdiff.ops.core import REGISTRY, Op, as_nodes

__all__ = ["lowered", "primitives", "primitive_ops"]

# (op, input types, attributes) -> the body; small (one entry per kind of node a program has)
_LOWERED: dict[tuple, Region] = {}
_LOCK = threading.Lock()


def primitive_ops() -> list[str]:
    """The names of the primitives: the registered ops declared without ``lower``."""
    return sorted(name for name, op in REGISTRY.items() if op.lower is None)


def lowered(node: Node) -> Region | None:
    """``node``'s op written as other ops: a body whose parameters stand for the node's inputs
    and whose outputs are its outputs (None for a primitive). Made once per op, input shapes
    and dtypes, and attributes, in a graph of its own.

    Raises ShapeError if the op cannot be written as primitives for these shapes (a regrouping
    of axes whose sizes are known only at evaluation); GraphError if the op's ``lower`` builds
    something of another shape or dtype than the op's own, or builds the same node again (it
    would never reach primitives): for a built-in op, a bug in symdiff, which the message says.
    """
    op = REGISTRY[node.op]
    if op.lower is None:
        return None
    key = (op.name, tuple((u.shape, u.dtype.str) for u in node.inputs), node._attrs)
    region = _LOWERED.get(key)
    if region is None:
        with _LOCK:
            region = _LOWERED.get(key) or _trace(op, node, key)
            _LOWERED[key] = region
    return region


def _trace(op: Op, node: Node, key: tuple) -> Region:
    graph = Graph(f"{op.name}_lowered")
    params = tuple(graph.variable(f"x{i}", u.shape, u.dtype) for i, u in enumerate(node.inputs))
    try:
        result = op.lower(*params, **node.attrs)
    except ShapeError as exc:
        shapes = ", ".join(format_shape(u.shape) for u in node.inputs)
        raise ShapeError(
            f"{op.name} (node #{node.index}, inputs of shapes {shapes}) cannot be written as primitives: {exc}"
        ) from None
    several = isinstance(result, (tuple, list))
    items = list(result) if several else [result]
    outs = tuple(item if isinstance(item, Node) else as_nodes(op.name, item, *params)[0] for item in items)
    expected = node.results if node.is_multi else ((node.shape, node.dtype),)
    if len(outs) != len(expected):
        raise GraphError(
            f"lowering of {op.name}: gives {len(outs)} output(s), the op has {len(expected)}; {_whose_bug(op)}"
        )
    for k, (out, (shape, dtype)) in enumerate(zip(outs, expected)):
        if out.graph is not graph:
            raise GraphError(
                f"lowering of {op.name}: output {k} is {describe(out)}, not built from its inputs; {_whose_bug(op)}"
            )
        if not shape_matches(shape, out.shape) or out.dtype != dtype:
            raise GraphError(
                f"lowering of {op.name}: output {k} is {format_shape(out.shape)} {out.dtype}, "
                f"the op's {format_shape(shape)} {dtype} (for {describe(node)}); {_whose_bug(op)}"
            )
    for n in _reached(outs):
        if n.op == op.name and (tuple((u.shape, u.dtype.str) for u in n.inputs), n._attrs) == key[1:]:
            raise GraphError(
                f"lowering of {op.name}: builds {describe(n)} again, so it never reaches primitives; {_whose_bug(op)}"
            )
    return Region(graph, params, outs, op.name, several=node.is_multi)


def _whose_bug(op: Op) -> str:
    """Who to tell about a lowering that does not give the op's own result: symdiff's (an
    internal bug, nothing in the user's graph), or the author of a user op's ``lower=``."""
    if getattr(op.lower, "__module__", "").startswith("symdiff."):
        return "this is a bug in symdiff, not in your graph: please report it"
    return f"the lower= given to define_op({op.name!r}) must build exactly the op's shape and dtype"


def _reached(outs: Iterable[Node]) -> list[Node]:
    reached = ancestors(list(outs))
    for region in regions_in(reached):
        reached += ancestors(list(region.outputs))
    return reached


def primitives(outputs: Iterable[Node]) -> set[str]:
    """The primitives a backend that prints code must print to compute ``outputs``: the ops of
    every node reached, each non-primitive replaced by those of its lowering, bodies included."""
    seen: set[str] = set()
    pending = _reached(outputs)
    done: set[Node] = set()
    while pending:
        n = pending.pop()
        if n in done or n.op in ("variable", "constant"):
            continue
        done.add(n)
        region = lowered(n)
        if region is None:
            seen.add(n.op)
        else:
            pending += _reached(region.outputs)
    return seen
