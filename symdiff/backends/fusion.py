"""Fused elementwise loops, whatever the backend: which steps of a plan run together in one loop.

A backend that prints code (numba, C) asks ``fused(plan, as_map, as_sum)`` for the order in
which to print the plan: single steps, and groups of steps of one static shape that one loop
over the shape's elements computes, each member an element (a **map**: an elementwise step)
or an accumulator (a **sum** over all the shape's elements). The backend says which steps may
join (its two predicates: what it can print as an element of a loop, what it can accumulate
there) and prints each group as one loop, storing only the members read after the loop
(``Group.stored``: read by a step outside the group, or an output). The scheduling is here
once; the printing is each backend's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from symdiff.graph import Node
from symdiff.ops import REGISTRY
from symdiff.plan import Plan, Step

__all__ = ["Group", "extents", "fused"]


class Group:
    """Steps of one shape computed in one loop over its elements.

    ``steps``: the members in the order to compute them (node -> its step); ``maps``: the
    elementwise members (node -> what the backend's ``as_map`` answered, e.g. its element's
    template); ``sums``: the members accumulated over all the elements (node -> what ``as_sum``
    answered); ``stored``: the maps read after the loop (by a step outside the group, or as an
    output), in order: the only members the loop stores in arrays. A shape with ``None`` sizes
    has a ``root``: the array whose run-time shape every member's is (see ``fused``); else
    ``root`` is None."""

    __slots__ = ("shape", "root", "steps", "maps", "sums", "stored")

    def __init__(self, shape: tuple[int | None, ...], root: Node | None = None):
        self.shape, self.root = shape, root
        self.steps: dict[Node, Step] = {}
        self.maps: dict[Node, Any] = {}
        self.sums: dict[Node, Any] = {}
        self.stored: list[Node] = []

    @property
    def key(self) -> tuple:
        """What the scheduler keeps an open group under: its shape and root."""
        return self.shape, self.root

    def __repr__(self) -> str:
        return f"Group({self.shape}, {len(self.maps)} maps, {len(self.sums)} sums, {len(self.stored)} stored)"


def fused(
    plan: Plan,
    as_map: Callable[[Step], Any],
    as_sum: Callable[[Step], Any],
    sized: Callable[[Step], bool] = lambda step: False,
) -> list[Step | Group]:
    """The plan's steps in an order to print them, chains of elementwise steps grouped into loops.

    ``as_map(step)``: not None if the step can be computed element by element in a loop over
    its own shape (an elementwise step of a static shape); ``as_sum(step)``: not None if it can
    be accumulated in a loop over its input's shape (a sum over all the input's axes). Their
    answers are kept in ``Group.maps`` and ``Group.sums`` for the printer.

    Steps are taken in the plan's order. A map joins its shape's open group, a sum over the
    group's shape joins it as an accumulator, once each of its inputs is computed or an element
    the group computes: an input that another open group computes, or a sum of this one,
    flushes that group first. Another step comes at once if its inputs are computed, else it
    waits (for a group's results) and comes once they are. A group comes, as one loop, when a
    step needs a value it computes after the loop (a sum, or any member for a step that cannot
    join), and at the end. A group of one step comes as that step alone. Steps have no side
    effects: order among them matters only through what they read, so a step may come before
    an open group's loop.

    ``sized(step)``: True if the step reads its inputs' shapes alone (``count``): it comes once
    each input is computed or has an extent whose root is (below), as the root's shape is the
    input's; the printer reads the root for such an input not yet computed.

    A shape with ``None`` sizes is known only when the function runs, and two arrays of shape
    ``(None,)`` may differ in length, so such steps are grouped by *extent*: an array that no
    map computes from arrays of its own shape (an input, a product, ...) is its own extent's
    root, and a map whose inputs with ``None`` sizes all have its shape and one extent has that
    extent too; its other inputs are of static shapes. Members of one extent have their root's
    shape whatever it is at run time, so one loop over the root's shape computes them all; a map
    whose inputs of unknown size have two extents (``x + r``, both ``(None,)``) runs alone,
    where numpy's broadcasting checks them.

    >>> from symdiff.backends.numpy import function
    >>> g = sd.Graph(); x = g.variable("x", shape=(8,))
    >>> fused(Plan([sd.sin(x) * x], [x], function), lambda step: True, lambda step: None)
    [Group((8,), 2 maps, 0 sums, 1 stored)]
    """
    return _Scheduler(plan, as_map, as_sum, sized).run()


def _unknown(n: Node) -> bool:
    """Whether ``n`` is an array with a size known only at run time (a multi-output node: no)."""
    return n.shape is not None and None in n.shape


def extents(plan: Plan) -> dict[Node, tuple]:
    """The extent ``(shape, root)`` of each array of the plan with ``None`` sizes: an elementwise
    step whose inputs with ``None`` sizes all have its shape and one extent has that extent (its
    other inputs have static shapes, so its shape when it runs is theirs); any other array is its
    own extent's root. Arrays of one extent have their root's shape whatever it is at run time:
    no size of theirs can broadcast against another, and one loop over the root's shape computes
    them (``fused``)."""
    extent: dict[Node, tuple] = {}
    for n in (*plan.leaves, *(step.node for step in plan.steps)):
        if not _unknown(n):
            continue
        unknown = {extent.get(u, (u.shape, u)) for u in n.inputs if _unknown(u)}
        inherits = n.op in REGISTRY and REGISTRY[n.op].elementwise and len(unknown) == 1
        for u in n.inputs:  # the same shape, or static sizes of 1 along the unknown ones
            if _unknown(u):
                inherits = inherits and u.shape == n.shape
            else:
                inherits = inherits and all(d == 1 for d, s in zip(u.shape[::-1], n.shape[::-1]) if s is None)
        if inherits:
            extent[n] = unknown.pop()
        else:
            extent[n] = (n.shape, n)
    return extent


class _Scheduler:
    def __init__(self, plan: Plan, as_map: Callable[[Step], Any], as_sum: Callable[[Step], Any], sized):
        self.plan, self.as_map, self.as_sum, self.sized = plan, as_map, as_sum, sized
        self.outputs = set(plan.outputs)
        self.readers: dict[Node, set[Node]] = {}
        for step in plan.steps:
            for u in step.node.inputs:
                self.readers.setdefault(u, set()).add(step.node)
        self.done: set[Node] = set(plan.leaves)  # computed: readable by any step after
        self.groups: dict[tuple, Group] = {}  # the open ones, by key (shape, root)
        self.extent = extents(plan)
        self.early: set[Node] = set()  # sized steps that came before an input: they read its root
        self.group_of: dict[Node, Group] = {}
        self.waiting: dict[Node, Step] = {}  # in the plan's order
        self.items: list[Step | Group] = []

    def run(self) -> list[Step | Group]:
        for step in self.plan.steps:
            self._add(step)
        for group in list(self.groups.values()):
            self._flush(group)
        assert not self.waiting
        return self.items

    def _add(self, step: Step) -> None:
        n = step.node
        mapped = self.as_map(step)
        summed = self.as_sum(step) if mapped is None else None
        key = self._key(n, mapped is not None) if mapped is not None or summed is not None else None
        if key is not None:
            for u in n.inputs:
                if not self._available(u, self.groups.get(key)):
                    self._need(u)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(*key)
            group.steps[n] = step
            if mapped is not None:
                group.maps[n] = mapped
            else:
                group.sums[n] = summed
            self.group_of[n] = group
        elif all(u in self.done for u in n.inputs):
            self._put(step)
        elif self.sized(step) and all(u in self.done or self.extent.get(u, (0, u))[1] in self.done for u in n.inputs):
            self._put(step)
            self.early.add(n)
        else:
            self.waiting[n] = step

    def _key(self, n: Node, mapped: bool) -> tuple | None:
        """The key (shape, root) of the group a map (``mapped``) or sum ``n`` joins: its shape and
        no root if static, else its extent; None for a map that is its own extent's root."""
        x = n if mapped else n.inputs[0]
        if not _unknown(x):
            return x.shape, None
        return None if self.extent[x][1] is x and mapped else self.extent[x]

    def _put(self, step: Step) -> None:
        self.items.append(step)
        self.done.add(step.node)

    def _available(self, u: Node, group: Group | None) -> bool:
        """True if a member of ``group`` can read ``u`` in its loop."""
        return u in self.done or (group is not None and self.group_of.get(u) is group and u in group.maps)

    def _need(self, u: Node) -> None:
        """Flush what ``u`` waits for: its group's loop, or (if ``u`` waits) every open group's."""
        if u in self.done:
            return
        group = self.group_of.get(u)
        if group is not None and self.groups.get(group.key) is group:
            self._flush(group)
        else:
            for open_group in list(self.groups.values()):
                self._flush(open_group)

    def _flush(self, group: Group) -> None:
        del self.groups[group.key]
        if len(group.steps) == 1:
            self._put(next(iter(group.steps.values())))
        else:
            inside = group.steps.keys() | self.early  # a sized step that came early reads the root
            group.stored = [
                n for n in group.maps if n in self.outputs or any(r not in inside for r in self.readers.get(n, ()))
            ]
            self.items.append(group)
            self.done.update(group.stored)
            self.done.update(group.sums)
        for n, step in list(self.waiting.items()):  # in order: a waiting input comes first
            if all(u in self.done for u in n.inputs):
                del self.waiting[n]
                self._put(step)
