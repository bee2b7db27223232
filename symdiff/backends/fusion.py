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
from symdiff.plan import Plan, Step

__all__ = ["Group", "fused"]


class Group:
    """Steps of one shape computed in one loop over its elements.

    ``steps``: the members in the order to compute them (node -> its step); ``maps``: the
    elementwise members (node -> what the backend's ``as_map`` answered, e.g. its element's
    template); ``sums``: the members accumulated over all the elements (node -> what ``as_sum``
    answered); ``stored``: the maps read after the loop (by a step outside the group, or as an
    output), in order: the only members the loop stores in arrays."""

    __slots__ = ("shape", "steps", "maps", "sums", "stored")

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.steps: dict[Node, Step] = {}
        self.maps: dict[Node, Any] = {}
        self.sums: dict[Node, Any] = {}
        self.stored: list[Node] = []

    def __repr__(self) -> str:
        return f"Group({self.shape}, {len(self.maps)} maps, {len(self.sums)} sums, {len(self.stored)} stored)"


def fused(
    plan: Plan,
    as_map: Callable[[Step], Any],
    as_sum: Callable[[Step], Any],
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

    >>> from symdiff.backends.numpy import function
    >>> g = sd.Graph(); x = g.variable("x", shape=(8,))
    >>> fused(Plan([sd.sin(x) * x], [x], function), lambda step: True, lambda step: None)
    [Group((8,), 2 maps, 0 sums, 1 stored)]
    """
    return _Scheduler(plan, as_map, as_sum).run()


class _Scheduler:
    def __init__(self, plan: Plan, as_map: Callable[[Step], Any], as_sum: Callable[[Step], Any]):
        self.plan, self.as_map, self.as_sum = plan, as_map, as_sum
        self.outputs = set(plan.outputs)
        self.readers: dict[Node, set[Node]] = {}
        for step in plan.steps:
            for u in step.node.inputs:
                self.readers.setdefault(u, set()).add(step.node)
        self.done: set[Node] = set(plan.leaves)  # computed: readable by any step after
        self.groups: dict[tuple[int, ...], Group] = {}  # the open ones, by shape
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
        if mapped is not None or summed is not None:
            shape = n.shape if mapped is not None else n.inputs[0].shape
            for u in n.inputs:
                if not self._available(u, self.groups.get(shape)):
                    self._need(u)
            group = self.groups.get(shape)
            if group is None:
                group = self.groups[shape] = Group(shape)
            group.steps[n] = step
            if mapped is not None:
                group.maps[n] = mapped
            else:
                group.sums[n] = summed
            self.group_of[n] = group
        elif all(u in self.done for u in n.inputs):
            self._put(step)
        else:
            self.waiting[n] = step

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
        if group is not None and self.groups.get(group.shape) is group:
            self._flush(group)
        else:
            for open_group in list(self.groups.values()):
                self._flush(open_group)

    def _flush(self, group: Group) -> None:
        del self.groups[group.shape]
        if len(group.steps) == 1:
            self._put(next(iter(group.steps.values())))
        else:
            group.stored = [
                n for n in group.maps if n in self.outputs or any(r not in group.steps for r in self.readers.get(n, ()))
            ]
            self.items.append(group)
            self.done.update(group.stored)
            self.done.update(group.sums)
        for n, step in list(self.waiting.items()):  # in order: a waiting input comes first
            if all(u in self.done for u in n.inputs):
                del self.waiting[n]
                self._put(step)
