"""Specialization: a graph rewritten for concrete input shapes, as primitives only.

A backend that prints code of fixed shapes (C) prints a graph in which every node has a
concrete shape and is a **primitive** (``symdiff.lower``). :func:`specialized` replays the
nodes the outputs need into a fresh graph (the user's graph gains no node): each variable
becomes a variable of the concrete shape given, each node is rebuilt on the new inputs through
the build-time rules (which may fold what concrete shapes settle: ``match_shape``,
``broadcast_like``), each op that is not a primitive is replaced by its lowering (recursively),
a composite call by its body (inlined), and a loop keeps its node, its bodies specialized in
turn for the shapes of the values they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symdiff.errors import BackendError, GraphError, ShapeError
from symdiff.graph import (
    INTERN_MAX_SIZE,
    Graph,
    Node,
    Region,
    ancestors,
    check_same_graph,
    describe,
    format_shape,
    gc_paused,
    node_list,
    normalize_shape,
    shape_matches,
)
from symdiff.loops import check_carry, make_scan, make_while
from symdiff.lower import lowered
from symdiff.ops.core import REGISTRY, rebuild
from symdiff.rules import _computed

__all__ = ["specialized"]

# how deep lowerings may nest (a lowering holding ops that lower, ...): far more than any op
# needs; past it, a lowering or build rule keeps making the op it replaces
_MAX_DEPTH = 64
_LOOPS = ("scan", "while_loop")
_BODIES = ("composite", *_LOOPS)


def specialized(
    outputs: Sequence[Node], inputs: Sequence[Node], shapes: Sequence[Sequence[int]]
) -> tuple[list[Node], list[Node]]:
    """``outputs`` rebuilt in a new graph for concrete input shapes, from primitives only.

    Parameters
    ----------
    outputs : list of Node
        Nodes of one graph.
    inputs : list of Node
        That graph's variables the outputs read, in order.
    shapes : list of tuple of int
        One concrete shape per input, fitting its static shape (a None dimension: any size).

    Returns
    -------
    (new_outputs, new_inputs)
        Nodes of a fresh :class:`~symdiff.graph.Graph` (``specialized``): the inputs are
        variables of the same names and dtypes and the given shapes; every node the outputs
        reach has a tuple-of-int shape and is a primitive (``symdiff.lower.primitive_ops``), a
        variable, a constant or an ``output``. Composite calls are inlined; a ``scan`` or
        ``while_loop`` stays one node whose bodies are specialized likewise.

    Raises
    ------
    GraphError
        If the number of shapes is not the number of inputs, an input is not a variable of the
        outputs' graph, or the outputs read a variable that is not among the inputs.
    ShapeError
        If a shape does not fit its variable's static shape, or the graph's ops refuse the
        shapes (what evaluating at values of these shapes would refuse).

    Examples
    --------
    >>> g = sd.Graph(); X = g.variable("X", (None, 3)); w = g.variable("w", (3,))
    >>> (y,), (X2, w2) = specialized([sd.mean(X @ w)], [X, w], [(5, 3), (3,)])
    >>> X2.shape, y.shape, y.graph is g, y.op
    ((5, 3), (), False, 'div')
    """
    outs, _ = node_list(list(outputs), "specialized", "outputs")
    ins, _ = node_list(list(inputs), "specialized", "inputs", allow_empty=True)
    check_same_graph("specialized", *outs, *ins)
    shapes = list(shapes)
    if len(shapes) != len(ins):
        raise GraphError(f"specialized: {len(shapes)} shape(s) for {len(ins)} input(s)")
    graph = Graph(f"{outs[0].graph.name or 'graph'}_specialized")
    memo: dict[Node, Any] = {}
    for x, shape in zip(ins, shapes):
        if x.op != "variable":
            raise GraphError(f"specialized: input {describe(x)} is not a variable")
        if x in memo:
            raise GraphError(f"specialized: {describe(x)} is given twice among the inputs")
        concrete = normalize_shape(shape, f"variable {x.name!r}")
        if None in concrete or not shape_matches(x.shape, concrete):
            raise ShapeError(
                f"variable {x.name!r} has shape {format_shape(x.shape)}; it cannot be specialized to "
                f"{format_shape(concrete)}"
            )
        memo[x] = graph.variable(x.name, concrete, x.dtype)
    with gc_paused():
        found = _Specializer().replay(outs, memo, graph, 0, "the graph")
    return list(found), [memo[x] for x in ins]


def _kept(op: str) -> bool:
    """Whether a node of ``op`` stays as it is (its inputs being so): a leaf, an output, or a
    primitive that runs no body."""
    return op in ("variable", "constant", "output") or (REGISTRY[op].lower is None and op not in _BODIES)


class _Specializer:
    """One call's state: the nodes known to hold primitives only, the bodies made so far."""

    def __init__(self) -> None:
        self.clean: set[Node] = set()  # new nodes whose ancestors are all primitives, leaves or outputs
        self.bodies: dict[tuple, Region] = {}  # (region, parent graph, param types) -> specialized body

    def replay(self, outs: Sequence[Node], memo: dict[Node, Any], graph: Graph, depth: int, what: str) -> list[Any]:
        """``outs`` computed in ``graph`` from ``memo`` (their leaves' replacements; updated):
        one pass in topological order, no recursion on the graph's depth."""
        for x in memo.values():
            if isinstance(x, Node):
                self.clean.add(x)
        for n in ancestors(outs, lambda m: () if m in memo else m.inputs):
            if n in memo:
                continue
            if n.op == "constant":
                memo[n] = self.constant(graph, n)
            elif n.op == "variable":
                raise GraphError(f"specialized: {what} reads {describe(n)}, which is not among its inputs")
            else:
                memo[n] = self.put(n, [memo[u] for u in n.inputs], depth)
        return [memo[o] for o in outs]

    def constant(self, graph: Graph, n: Node) -> Node:
        """``n``'s value as a constant of ``graph`` (a large one shared, not copied)."""
        if n.value.size <= INTERN_MAX_SIZE:
            new = graph.constant(n.value)
        else:
            new = graph._table.get(n._key) or graph._restore_constant(n.value, n._key)
        self.clean.add(new)
        return new

    def put(self, n: Node, inputs: list[Any], depth: int) -> Any:
        """``n`` on ``inputs`` (new nodes, all clean; a tuple for an output node's source): a
        clean node, or the tuple of a node's outputs."""
        if depth > _MAX_DEPTH:
            raise GraphError(
                f"specialized: {describe(n)}: lowering {n.op} nests more than {_MAX_DEPTH} deep (a lowering or "
                "build rule that keeps making the op it replaces); this is a bug in symdiff, please report it"
            )
        if n.op == "composite":  # its body, inlined
            return self.inline(n.regions[0], inputs, depth, f"the body {n.regions[0].name!r}")
        if n.op in _LOOPS:
            return self.loop(n, inputs, depth)
        if n.op == "output":
            return self.settle(rebuild(n, inputs), depth)
        graph = inputs[0].graph
        mark = (len(graph._nodes), len(graph._aliases))
        new = rebuild(n, inputs)
        if isinstance(new, Node) and new.inputs and new not in self.clean and all(u in self.clean for u in new.inputs):
            # the node itself is taken back at once when it is replaced (the new graph holds the
            # nodes computed only); else settle replaces what the build rules made
            if REGISTRY[new.op].lower is not None:
                region = lowered(new)
                graph._rollback(mark)
                return self.inline(region, list(new.inputs), depth, f"the lowering of {new.op}")
            if not new.is_multi and None in new.shape:
                return self.sized(new, mark)
        return self.settle(new, depth)

    def sized(self, n: Node, mark: tuple[int, int]) -> Node:
        """A node whose shape depends on the values it reads (``arange``), on constants: its value."""
        if any(u.op != "constant" for u in n.inputs):
            raise BackendError(
                f"specialized: {describe(n)} has shape {format_shape(n.shape)}, which depends on the values it "
                "reads, not only on the shapes of the inputs: code of fixed shapes cannot compute it"
            )
        value = np.asarray(_computed(n), dtype=n.dtype)
        n.graph._rollback(mark)
        new = n.graph.constant(value)
        self.clean.add(new)
        return new

    def inline(self, region: Region, args: list[Node], depth: int, what: str) -> Any:
        """``region``'s outputs on ``args`` (a tuple if it has several), in their graph."""
        found = self.replay(region.outputs, dict(zip(region.params, args)), args[0].graph, depth + 1, what)
        return tuple(found) if region.several else found[0]

    def settle(self, result: Any, depth: int) -> Any:
        """``result`` (what rebuilding made: a node, or a tuple of folded outputs) with every
        op that is not a primitive among its new ancestors replaced by its lowering."""
        items = result if isinstance(result, tuple) else (result,)
        if all(x in self.clean or (_kept(x.op) and all(u in self.clean for u in x.inputs)) for x in items):
            self.clean.update(items)  # the common case: a primitive on clean inputs
            return result
        done: dict[Node, Any] = {}
        for m in ancestors(items, lambda m: () if m in self.clean else m.inputs):
            if m in self.clean:
                done[m] = m
                continue
            inputs = [done[u] for u in m.inputs]
            if any(a is not u for a, u in zip(inputs, m.inputs)) or m.op in _BODIES:
                # an input was replaced: m on the new one; or a body's node a build rule made
                done[m] = self.put(m, inputs, depth + 1)
            elif _kept(m.op):
                self.clean.add(m)
                done[m] = m
            else:
                done[m] = self.inline(lowered(m), list(m.inputs), depth + 1, f"the lowering of {m.op}")
        return tuple(done[x] for x in items) if isinstance(result, tuple) else done[result]

    def loop(self, n: Node, inputs: list[Node], depth: int) -> Node:
        """A scan or while_loop node on ``inputs``, running its bodies specialized for the shapes
        they read (a scan's sequences without their leading axis)."""
        attrs = dict(n._attrs)
        graph = inputs[0].graph
        nc = attrs["carries"]
        if n.op == "scan":
            region = n.regions[0]
            nx = attrs["xs"]
            args = inputs[: len(region.params)]
            types = [(x.shape[1:] if nc <= k < nc + nx else x.shape, x.dtype) for k, x in enumerate(args)]
            body = self.body(region, graph, types, nc, attrs["name"], depth)
            node = make_scan(body, inputs, attrs)
        else:
            cond_region, body_region = n.regions
            ncond = attrs["conds"]
            init, ccaps, bcaps = inputs[:nc], inputs[nc : nc + ncond], inputs[nc + ncond :]
            cond = self.body(cond_region, graph, [(x.shape, x.dtype) for x in init + ccaps], 0, attrs["name"], depth)
            body = self.body(body_region, graph, [(x.shape, x.dtype) for x in init + bcaps], nc, attrs["name"], depth)
            node = make_while(cond, body, init, ccaps, bcaps, attrs)
        self.clean.add(node)
        return node

    def body(self, region: Region, parent: Graph, types: list[tuple], carries: int, name: str, depth: int) -> Region:
        """``region`` specialized for params of ``types``, as a body of ``parent`` (made once per
        call); its first ``carries`` outputs must keep the shapes of its first params."""
        key = (region, parent, tuple((shape, dtype.str) for shape, dtype in types))
        found = self.bodies.get(key)
        if found is not None:
            return found
        inner = parent.body(region.name)
        try:
            params = tuple(inner.variable(p.name, shape, dtype) for p, (shape, dtype) in zip(region.params, types))
            memo: dict[Node, Any] = dict(zip(region.params, params))
            outs = self.replay(region.outputs, memo, inner, depth + 1, f"the body {region.name!r}")
        finally:
            inner.seal()
        check_carry(name, outs[:carries], params[:carries], True)
        found = Region(inner, params, tuple(outs), region.name, region.several)
        found.arguments = region.arguments
        self.bodies[key] = found
        return found
