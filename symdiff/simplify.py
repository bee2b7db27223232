"""Algebraic simplification: rewrite a graph's outputs to equivalent, smaller forms.

``simplify`` rebuilds the nodes the outputs need, bottom-up, applying the simplify rules
of the one rule table (``symdiff.rules``) until nothing changes: like terms collected (``cos t + cos t`` ->
``2*cos(t)``), constant factors merged (``2*(3*x)`` -> ``6*x``), repeated factors
turned into powers (``x*x`` -> ``x**2``), like factors cancelled (``x**3/x`` -> ``x**2``),
``exp(log x)`` for positive x,
``log(exp x)``, powers of powers. Shapes and dtypes never change, and neither do
values, up to rounding (a rewrite may reassociate floating-point arithmetic), except
that the rules flagged ``extends_domain`` may give a number where the original gives
inf or nan (``x - x`` is 0 for an infinite x): docs/concepts.md lists them. Nor does what
is refused: a rewrite that would drop an array of unknown length from a node (``x*r/r``,
``x*ones_like(r)``, ``x + r - r`` for x, r of shape (None,)) is not made, since the
original refuses an r whose length is not x's when it runs (``Keeps``).

Everything simpler that can be done while building (``x*1``, ``x+0``, ``0*x``,
``--x``, ``sum`` of a broadcast constant, transpose of transpose, reshape of
reshape, constant folding) already is, by the build rules of the same table: this pass
is for what needs to look at a whole sum or product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from symdiff.graph import Node, ancestors, check_same_graph, consumers, gc_paused, node_list
from symdiff.ops.core import REGISTRY, rebuild
from symdiff.rules import RULES, forget_reads

MAX_PASSES = 8


Settled = dict  # node -> the nodes whose uses the rules counted when none fired, and the counts
_NONE: frozenset = frozenset()
# Sources and ties are followed up to _MOST of each: a chain joining thousands of distinct arrays of
# unknown length would make them quadratic. Past it a node's are _MANY, and rewrites of it are not made.
_MOST = 64
_MANY: frozenset = frozenset({"many"})
_SAME_SIZES = frozenset({"broadcast_like", "ones_like", "zeros_like", "full_like", "stop_gradient"})


class Keeps:
    """What a rewrite of a node must keep, read once per simplify call and remembered per node.

    Sizes: arrays of unknown length (a None size) are checked against each other where they
    meet, so ``x*ones_like(r)`` refuses an r whose length is not x's, and ``x`` alone would
    not. A node's *sources* are where its None sizes come from: an elementwise node passes its
    inputs' on, any other node with a None size (a variable, a slice, a transpose, a product,
    a reduction that keeps one) is a source of its own. A *tie* is a set of sources checked
    equal where two inputs with None sizes meet; a node's ties are those of every node it
    runs (a reduction's too: ``sum(x*ones_like(r))`` checks x against r). A rewrite must keep
    every tie, directly or through others (ties {x, r} and {r, y} keep {x, y}).

    Precision: a float64 node computes in float64 whatever its float32 inputs; a rewrite may not
    add a computation in a narrower float (a float64 constant merged into float32 factors would
    round to float32). Nodes the original already computed may stay."""

    def __init__(self) -> None:
        self.sources: dict[Node, frozenset] = {}
        self.ties: dict[Node, frozenset] = {}
        self.narrowest: dict[Node, int] = {}  # the smallest float itemsize a node's subgraph computes in

    def __call__(self, old: Node, new: Node) -> bool:
        return self._keeps_ties(old, new) and not self._narrows(old, new)

    def _read(self, node: Node) -> None:
        stack = [node]
        while stack:
            n = stack[-1]
            if n in self.ties:
                stack.pop()
                continue
            waiting = [u for u in n.inputs if u not in self.ties]
            if waiting:
                stack += waiting
                continue
            stack.pop()
            unknown = [u for u in n.inputs if _unknown_size(u)]
            own = n.dtype.itemsize if n.inputs and n.shape is not None and n.dtype.kind == "f" else 16
            self.narrowest[n] = min([own, *(self.narrowest[u] for u in n.inputs)])
            if any(self.ties[u] is _MANY for u in n.inputs):
                self.sources[n] = self.ties[n] = _MANY
                continue
            if not _unknown_size(n):
                sources = _NONE
            elif unknown and (REGISTRY[n.op].kind == "elementwise" or n.op in _SAME_SIZES):
                sources = _union(self.sources[u] for u in unknown)
            else:
                sources = frozenset([n])
            ties = _union(self.ties[u] for u in n.inputs)
            met = _union(self.sources[u] for u in unknown)
            if len(met) > 1 and met not in ties:
                ties = ties | {met}
            if len(sources) > _MOST or len(ties) > _MOST:
                sources = ties = _MANY  # past this many, a rewrite here is not made (_keeps_ties)
            self.sources[n], self.ties[n] = sources, ties

    def _keeps_ties(self, old: Node, new: Node) -> bool:
        self._read(old)
        before = self.ties[old]
        if not before:
            return True
        if before is _MANY:
            return False  # too many arrays of unknown length meet here to follow: kept as built
        self._read(new)
        after = self.ties[new]
        if after is _MANY:
            return False
        if before <= after:
            return True
        parent: dict[Node, Node] = {}

        def find(a: Node) -> Node:
            while parent.get(a, a) is not a:
                a = parent[a]
            return a

        for tie in after:
            first, *rest = tie
            for other in rest:
                parent[find(other)] = find(first)
        return all(len({find(a) for a in tie}) == 1 for tie in before)

    def _narrows(self, old: Node, new: Node) -> bool:
        if old.dtype.kind != "f":
            return False
        self._read(new)
        width = old.dtype.itemsize
        if self.narrowest[new] >= width:
            return False
        original = set(ancestors([old]))  # the original's own narrower computations may stay
        stack, seen = [new], set()
        while stack:
            n = stack.pop()
            if n in original or n in seen or self.narrowest[n] >= width:
                continue
            seen.add(n)
            if n.inputs and n.shape is not None and n.dtype.kind == "f" and n.dtype.itemsize < width:
                return True
            stack += n.inputs
        return False


def _union(sets: Any) -> frozenset:
    found = _NONE
    for one in sets:
        if one and one is not found:
            found = one if not found else found | one
    return found


def _unknown_size(n: Node) -> bool:
    return n.shape is not None and None in n.shape  # (a node of several outputs has no shape of its own)


def _rewrite(node: Node, uses: Callable[[Node], int], settled: Settled, keeps: Keeps) -> Node:
    """Apply the simplify rules to ``node`` (whose inputs are already simplified) until none fires.

    Only float nodes are rewritten: integer arithmetic wraps, so its sums do not regroup. A
    node none fired on is remembered in ``settled`` with what the rules asked about sharing:
    the rules read nothing else that can change, so the next pass skips it while those
    counts hold.
    """
    for _ in range(MAX_PASSES):
        if node.is_multi or node.dtype.kind != "f":
            return node
        asked: dict[Node, int] = {}

        def recording(n: Node) -> int:
            asked[n] = answer = uses(n)
            return answer

        def kept(new: Node, node: Node = node) -> bool:
            return keeps(node, new)

        new = RULES.rewrite(node, RULES.for_op(node.op, build=False), recording, kept)
        if new is None:
            settled[node] = tuple(asked.items())
            return node
        node = new
    return node


def _one_pass(outputs: Sequence[Node], settled: Settled, keeps: Keeps) -> list[Node]:
    graph = outputs[0].graph
    nodes = ancestors(outputs)
    uses, consumer = consumers(nodes, outputs)
    done: dict[Node, Node] = {}
    new_uses: dict[Node, int] = {}  # consumers of the rebuilt nodes, carried over from the originals

    def counted(n: Node) -> int:
        return new_uses.get(n, 1)

    with graph._transaction():
        for n in nodes:
            if not n.inputs:
                done[n] = n
            else:
                inputs = tuple(done[u] for u in n.inputs)
                # Only the root of a sum or a product is rewritten: flattening each node of a
                # long chain again would take quadratic time. An inner node is one that the
                # rules at its only consumer read through (the table's ``flattens``).
                parent = consumer.get(n) if uses.get(n) == 1 else None
                interior = parent is not None and n.op in RULES.flattened(parent.op)
                graph._gradient_depth += n.is_gradient  # a simplified derivative node is still one
                try:
                    # a node whose inputs did not change is itself, unless a rule fires; rebuild
                    # runs the build rules (a rebuilt node is as simple as building makes it) and
                    # knows output nodes, nodes with several outputs and nodes with bodies
                    rebuilt = rebuild(n, inputs)
                    if interior or not RULES.for_op(n.op, build=False):
                        done[n] = rebuilt
                    elif (known := settled.get(rebuilt)) is not None and all(counted(q) == a for q, a in known):
                        done[n] = rebuilt  # settled in an earlier pass, and nothing it read changed
                    else:
                        done[n] = _rewrite(rebuilt, counted, settled, keeps)
                finally:
                    graph._gradient_depth -= n.is_gradient
            new_uses[done[n]] = new_uses.get(done[n], 0) + uses.get(n, 0)
    return [done[n] for n in outputs]


def simplify(outputs: Node | Sequence[Node]) -> Any:
    """Equivalent, simpler nodes for ``outputs`` (appended to the same graph).

    Collects like terms, merges constant factors, turns repeated factors into powers,
    cancels like factors (``x**3/x`` is ``x**2``) and removes ``exp(log x)`` / ``log(exp x)``
    pairs, to a fixed point. Values are unchanged up to floating-point rounding wherever the
    original's are finite (the rewrites that may turn an inf or nan into a number, ``x/x`` to
    1 among them, are listed in docs/concepts.md); shapes and dtypes are unchanged.

    >>> g = sd.Graph(); t = g.variable("t")
    >>> d2 = sd.grad(sd.grad(sd.sin(t) * t, t), t)
    >>> print(d2)
    cos(t) - t*sin(t) + cos(t)
    >>> print(sd.simplify(d2))
    2*cos(t) - t*sin(t)
    """
    outs, single = node_list(outputs, "simplify", "outputs")
    check_same_graph("simplify", *outs)
    # Each pass rewrites every node to a fixed point of the rules after its inputs were; a
    # pass can still leave work for the next (a node shared before the pass may be used once
    # after it, and is then read through), so passes repeat until one changes nothing: then
    # simplify(simplify(e)) is simplify(e), node for node.
    with gc_paused():
        settled: Settled = {}
        keeps = Keeps()
        try:
            for _ in range(MAX_PASSES):
                new = _one_pass(outs, settled, keeps)
                if all(a is b for a, b in zip(new, outs)):
                    break
                outs = new
        finally:
            forget_reads()
    return outs[0] if single else outs
