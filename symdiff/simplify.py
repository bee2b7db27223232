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
original refuses an r whose length is not x's when it runs (``_sized``).

Everything simpler that can be done while building (``x*1``, ``x+0``, ``0*x``,
``--x``, ``sum`` of a broadcast constant, transpose of transpose, reshape of
reshape, constant folding) already is, by the build rules of the same table: this pass
is for what needs to look at a whole sum or product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from symdiff.graph import Node, ancestors, check_same_graph, consumers, gc_paused, node_list
from symdiff.ops.core import rebuild
from symdiff.rules import RULES, forget_reads

MAX_PASSES = 8


Settled = dict  # node -> the nodes whose uses the rules counted when none fired, and the counts
Sized = dict  # node -> _sized(node), remembered for one simplify call
_NO_SOURCES: frozenset[Node] = frozenset()


def _sized(node: Node, memo: Sized) -> frozenset[Node]:
    """The sources of the unknown sizes whose agreement evaluating ``node`` checks: its
    ancestors that have a None dimension while none of their inputs has one (variables of shape
    (None,), ``arange(n)``). A rewrite keeps them all: ``x*ones_like(r)`` refuses an r whose
    length is not x's when it runs, and ``x`` alone would not (``r`` is then a source lost)."""
    found = memo.get(node)
    if found is not None:
        return found
    stack = [node]
    while stack:
        n = stack[-1]
        if n in memo:
            stack.pop()
            continue
        waiting = [u for u in n.inputs if u not in memo]
        if waiting:
            stack += waiting
            continue
        stack.pop()
        parts = {memo[u] for u in n.inputs} - {_NO_SOURCES}
        found = frozenset().union(*parts) if len(parts) > 1 else next(iter(parts), _NO_SOURCES)
        if _unknown_size(n) and not any(_unknown_size(u) for u in n.inputs):
            found = found | {n}
        memo[n] = found
    return memo[node]


def _narrower(new: Node, made: int, dtype: Any) -> bool:
    """Whether a node a rule made (its index at least ``made``) for a node of float ``dtype``
    computes in a narrower float: the rewrite would round float64 arithmetic to float32 (a
    float64 constant merged into float32 factors). The rules build such products and sums at
    the original's precision (``_widened``); this keeps any rule from doing otherwise."""
    if dtype.kind != "f":
        return False
    stack, seen = [new], set()
    while stack:
        n = stack.pop()
        if n.index < made or n in seen:
            continue
        seen.add(n)
        if n.shape is not None and n.dtype.kind == "f" and n.dtype.itemsize < dtype.itemsize:
            return True
        stack += n.inputs
    return False


def _unknown_size(n: Node) -> bool:
    return n.shape is not None and None in n.shape  # (a node of several outputs has no shape of its own)


def _rewrite(node: Node, uses: Callable[[Node], int], settled: Settled, sized: Sized) -> Node:
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

        before, made = _sized(node, sized), len(node.graph)

        def keeps(new: Node, before: frozenset[Node] = before, made: int = made) -> bool:
            return before <= _sized(new, sized) and not _narrower(new, made, node.dtype)

        new = RULES.rewrite(node, RULES.for_op(node.op, build=False), recording, keeps)
        if new is None:
            settled[node] = tuple(asked.items())
            return node
        node = new
    return node


def _one_pass(outputs: Sequence[Node], settled: Settled, sized: Sized) -> list[Node]:
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
                        done[n] = _rewrite(rebuilt, counted, settled, sized)
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
        sized: Sized = {}
        try:
            for _ in range(MAX_PASSES):
                new = _one_pass(outs, settled, sized)
                if all(a is b for a, b in zip(new, outs)):
                    break
                outs = new
        finally:
            forget_reads()
    return outs[0] if single else outs
