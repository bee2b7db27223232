"""A small pattern-matching rewrite engine: patterns over nodes, rules, one table.

Patterns read like the expressions they match (tinygrad's ``UPat`` is the model)::

    x = Pat.var("x")
    Rule(x * 1, lambda root, x: x if same_type(x, root) else None)

``Pat.var(name)`` matches any node and binds it; a number matches a constant whose every
element is that number (seen through broadcasts); ``Pat(op, *inputs)`` matches a node of
that op (or of any op in a set) whose inputs match, trying both orders for an op with the
``commutative`` property. A rule's function gets the matched root and the bindings as
keywords and returns the replacement or None (the rule does not apply after all: a check
the pattern cannot express, such as "same shape").

A rule is either applied while building (``build=True``: to every node as it is made,
before it is appended, so ``x + 0`` never exists) or only by :func:`symdiff.simplify`.
Both phases read the same :class:`RuleTable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from symdiff.graph import Node
from symdiff.ops.core import REGISTRY

_NUMBER = (int, float)
_CONSTANT_OPS = frozenset({"constant", "broadcast_like", "broadcast_to"})  # where fill_value looks


def fill_value(node: Any) -> float | int | bool | None:
    """The one value every element of ``node`` has, when that is known at build time."""
    while node.op in ("broadcast_like", "broadcast_to"):
        node = node.inputs[0]
    return node.uniform if node.op == "constant" else None


def _operators(op: str) -> tuple[Callable[[Pat, Any], Pat], Callable[[Pat, Any], Pat]]:
    """``p <op> q`` and the reflected ``q <op> p`` as methods building the pattern ``Pat(op, ...)``."""

    def forward(self: Pat, other: Any) -> Pat:
        return Pat(op, self, other)

    def reflected(self: Pat, other: Any) -> Pat:
        return Pat(op, other, self)

    return forward, reflected


class Pat:
    """A pattern: an op (a name, a set of names, or any), input patterns, a binding name
    and a test on the node."""

    __slots__ = ("ops", "src", "name", "test", "ordered", "hint")

    def __init__(
        self,
        ops: str | Iterable[str] | None = None,
        *src: Any,
        name: str | None = None,
        test: Callable[[Any], bool] | None = None,
        ordered: bool = False,
    ):
        self.ops = None if ops is None else frozenset([ops] if isinstance(ops, str) else ops)
        self.src = tuple(_pattern(s) for s in src) if src else None
        self.name = name
        self.test = test
        self.ordered = ordered  # match the inputs in this order only, even for a commutative op
        self.hint = self.ops  # the ops a node it matches can have (None: any), for a quick rejection

    @classmethod
    def var(cls, name: str, test: Callable[[Any], bool] | None = None, ops: Iterable[str] | None = None) -> Pat:
        """Any node (passing ``test``), bound to ``name``; ``ops``: the ops such a node can have."""
        pattern = cls(name=name, test=test)
        pattern.hint = None if ops is None else frozenset(ops)
        return pattern

    @classmethod
    def const(cls, value: float, name: str | None = None) -> Pat:
        """A constant every element of which equals ``value`` (a broadcast constant too)."""

        def test(node: Any) -> bool:
            v = fill_value(node)
            return v is not None and v == value

        pattern = cls(name=name, test=test)
        pattern.hint = _CONSTANT_OPS
        return pattern

    def _root_matches(self, node: Any) -> bool:
        if self.ops is None or node.op in self.ops:
            return True
        entry = REGISTRY.get(node.op)
        return entry is not None and f"kind:{entry.kind}" in self.ops

    def matches(self, node: Any, env: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every way ``node`` matches, as the bindings (``env`` extended); none if it does not."""
        if not self._root_matches(node) or (self.test is not None and not self.test(node)):
            return
        if self.name is not None:
            if self.name in env and env[self.name] is not node:
                return
            env = {**env, self.name: node}
        if self.src is None:
            yield env
            return
        inputs = node.inputs
        if len(inputs) != len(self.src):
            return
        yield from self._inputs_match(inputs, env)
        if len(inputs) == 2 and not self.ordered and "commutative" in REGISTRY[node.op].properties:
            yield from self._inputs_match((inputs[1], inputs[0]), env)

    def _inputs_match(self, inputs: tuple, env: dict[str, Any], k: int = 0) -> Iterator[dict[str, Any]]:
        if k == len(inputs):
            yield env
            return
        for found in self.src[k].matches(inputs[k], env):
            yield from self._inputs_match(inputs, found, k + 1)

    # expressions of patterns are patterns of expressions
    __add__, __radd__ = _operators("add")
    __sub__, __rsub__ = _operators("sub")
    __mul__, __rmul__ = _operators("mul")
    __truediv__, __rtruediv__ = _operators("div")
    __pow__ = _operators("pow")[0]

    def __neg__(self) -> Pat:
        return Pat("neg", self)

    def __repr__(self) -> str:
        head = "|".join(sorted(self.ops)) if self.ops else "_"
        args = "" if self.src is None else "(" + ", ".join(map(repr, self.src)) + ")"
        return f"{head}{args}" + (f":{self.name}" if self.name else "")


def _pattern(p: Any) -> Pat:
    if isinstance(p, Pat):
        return p
    if isinstance(p, _NUMBER) and not isinstance(p, bool):
        return Pat.const(p)
    raise TypeError(f"not a pattern: {p!r}")


class Rule:
    """``pattern -> fn(root, **bindings)``; ``build`` rules also run while building.

    ``context=True`` passes the simplifier's context as the keyword ``ctx`` (which nodes
    are shared); build rules have none. ``extends_domain=True`` marks a rule that can give a
    finite value where the original gives inf or nan (``x - x -> 0`` at an infinite x), other
    than by moving where a reassociated sum or product overflows: docs/concepts.md lists
    exactly these. ``flattens``: the ops of inputs the rule reads through as part of its root
    (the inner sums of a sum), so the simplifier rewrites such an input with its consumer
    rather than on its own. ``guard``: the ops one of the root's inputs must have, for a
    pattern that cannot say so itself ("every input is a constant").
    """

    __slots__ = ("pattern", "fn", "build", "context", "name", "extends_domain", "flattens", "_hints", "_guard")

    def __init__(
        self,
        pattern: Pat,
        fn: Callable[..., Node | None],
        *,
        build: bool = True,
        context: bool = False,
        name: str | None = None,
        extends_domain: bool = False,
        flattens: Iterable[str] = (),
        guard: Iterable[str] | None = None,
    ):
        if pattern.ops is None and not name:
            raise TypeError("a rule's root pattern names its op(s)")
        self.pattern, self.fn, self.build, self.context = pattern, fn, build, context
        self.name = name or getattr(fn, "__name__", "rule")
        self.extends_domain = extends_domain
        self.flattens = frozenset(flattens)
        # what each input's op can be; a rule whose inputs cannot match is skipped without a search
        hints = tuple(p.hint for p in pattern.src or ())
        self._hints = hints if any(h is not None for h in hints) else None
        self._guard = None if guard is None else frozenset(guard)

    @property
    def guard(self) -> frozenset[str] | None:
        """The ops one of the root's inputs must have for the rule to match (None: no such need)."""
        if self._guard is not None:
            return self._guard
        if self._hints is None:
            return None
        return frozenset().union(*(h for h in self._hints if h is not None))

    def _may_match(self, root: Any) -> bool:
        inputs = root.inputs
        hints = self._hints
        if len(inputs) != len(hints):
            return False
        for h, u in zip(hints, inputs):
            if h is not None and u.op not in h:
                break
        else:
            return True
        if len(inputs) == 2 and not self.pattern.ordered and "commutative" in REGISTRY[root.op].properties:
            h0, h1 = hints
            return (h0 is None or inputs[1].op in h0) and (h1 is None or inputs[0].op in h1)
        return False

    def apply(self, root: Any, ctx: Any = None) -> Node | None:
        """The replacement for ``root`` from the first way it matches that the function accepts."""
        if self._hints is not None and not self._may_match(root):
            return None
        for env in self.pattern.matches(root, {}):
            if self.context:
                env["ctx"] = ctx
            new = self.fn(root, **env)
            if new is not None:
                return new
        return None

    def __repr__(self) -> str:
        flags = ("" if self.build else " (simplify)") + (" (extends the domain)" if self.extends_domain else "")
        return f"<Rule {self.name}: {self.pattern!r}{flags}>"


class RuleTable:
    """Rules indexed by the op (or the kind) their root pattern names, in table order."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        self.by_op: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for op in rule.pattern.ops:
                self.by_op.setdefault(op, []).append(rule)
        self._position = {rule: k for k, rule in enumerate(self.rules)}
        self._found: dict[tuple[str, str | None, bool], list[Rule]] = {}  # for_op's answers
        self._flattened: dict[str, frozenset[str]] = {}

    def for_op(self, op: str, *, build: bool) -> list[Rule]:  # build: the build rules, else simplify's
        """The rules whose root is ``op`` or its kind (``"kind:elementwise"``), in table order."""
        entry = REGISTRY.get(op)
        kind = None if entry is None else entry.kind
        key = (op, kind, build)
        found = self._found.get(key)
        if found is None:
            found = self.by_op.get(op, []) + self.by_op.get(f"kind:{kind}", [])
            found = sorted((r for r in found if r.build == build), key=self._position.__getitem__)
            self._found[key] = found
        return found

    def flattened(self, op: str) -> frozenset[str]:
        """The ops the simplify rules at ``op`` read through (``flattens``): a sum's inner sums.
        An input of one of these ops used nowhere else is rewritten as part of ``op``'s node."""
        found = self._flattened.get(op)
        if found is None:
            found = self._flattened[op] = frozenset().union(*(r.flattens for r in self.for_op(op, build=False)))
        return found

    def rewrite(
        self, root: Any, rules: Iterable[Rule], ctx: Any = None, accept: Callable[[Node], bool] | None = None
    ) -> Node | None:
        """The first rule's replacement for ``root`` that is not root itself (and that
        ``accept`` takes, given it), or None."""
        for rule in rules:
            new = rule.apply(root, ctx)
            if new is not None and new is not root and (accept is None or accept(new)):
                return new
        return None


def of_kind(kind: str | Iterable[str], *src: Any, name: str | None = None) -> Pat:
    """A pattern for the root of every op of a kind, or of any of several kinds
    (``of_kind("elementwise")``, ``of_kind(KINDS)``: every op)."""
    kinds = [kind] if isinstance(kind, str) else kind
    return Pat([f"kind:{k}" for k in kinds], *src, name=name)
