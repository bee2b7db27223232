"""Scalar expressions (``symdiff.scalar``) as graph nodes, and an elementwise op's partial
derivatives derived from its scalar tree (what ``define_op`` gives an op declared with
``scalar=`` and neither ``vjp`` nor ``partials``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import symdiff.scalar as sx
from symdiff.graph import Node
from symdiff.ops.core import REGISTRY, apply, float_dtype

# the vocabulary's functions that are not the op of the same name
_ALIASES = {"select": "where"}
_LOGICAL: dict[str, Callable[..., tuple[str, tuple]]] = {
    "logical_and": lambda a, b: (a, b, False),
    "logical_or": lambda a, b: (a, True, b),
    "logical_not": lambda a: (a, False, True),
}


def to_nodes(
    tree: sx.Expr, inputs: Sequence[Node], known: Mapping[sx.Expr, Node] | None = None, dtype: Any = None
) -> Node:
    """The scalar tree as nodes of ``inputs``' graph, elementwise over them (argument ``i`` is
    ``inputs[i]``), each call as the op of its name (``select`` as ``where``, the logical
    functions as ``where`` of booleans); subtrees in ``known`` are the nodes given (an op's own
    output in its derivative). Constants are of ``dtype`` (by default the inputs' float dtype,
    so a float32 graph stays float32); a part over constants alone is computed at once by the
    ops' numpy forwards, as constant folding would.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> print(to_nodes(sx.partial(sx.sin(sx.arg(0)) * sx.arg(0), 0), [x]))
    x*cos(x) + sin(x)
    """
    graph = inputs[0].graph
    dtype = np.dtype(dtype) if dtype is not None else float_dtype(*(u.dtype for u in inputs))
    values: dict[sx.Expr, Any] = dict(known or {})

    def array(v: Any) -> np.ndarray:
        return np.asarray(v, dtype=bool if isinstance(v, (bool, np.bool_)) else dtype)

    for node in sx.walk(tree):
        if node in values:
            continue
        if node.op == "arg":
            values[node] = inputs[node.value]
        elif node.op == "const":
            values[node] = node.value
        else:
            args = [values[a] for a in node.args]
            name = node.op
            if name in _LOGICAL:
                name, args = "where", list(_LOGICAL[name](*args))
            op = REGISTRY[_ALIASES.get(name, name)]
            if not any(isinstance(a, Node) for a in args):  # constants alone: the number
                with np.errstate(all="ignore"):
                    values[node] = np.asarray(op.forward(np, *map(array, args))).item()
            else:
                values[node] = apply(op, *(a if isinstance(a, Node) else graph.constant(array(a)) for a in args))
    result = values[tree]
    return result if isinstance(result, Node) else graph.constant(array(result))


def tree_partials(tree: sx.Expr, arity: int) -> tuple[Callable[..., Node] | None, ...]:
    """An elementwise op's partials (``partials[i](out, *inputs)``, see ``define_op``) from its
    scalar tree: :func:`symdiff.scalar.partial` by each input, as nodes (the op's output node
    where the derivative reuses the whole tree, as exp's does); None for an input the tree's
    value does not vary with.

    >>> from symdiff.ops.core import REGISTRY
    >>> g = sd.Graph(); x = g.variable("x")
    >>> (d,) = tree_partials(REGISTRY["exp"].scalar, 1)
    >>> print(d(sd.exp(x), x))
    exp(x)
    """
    rules: list[Callable[..., Node] | None] = []
    for i in range(arity):
        derivative = sx.partial(tree, i)
        if derivative.op == "const" and derivative.value == 0:
            rules.append(None)
            continue

        def rule(out: Node, *inputs: Node, _derivative: sx.Expr = derivative, **attrs: Any) -> Node:
            dtype = out.dtype if out.dtype.kind == "f" else None
            return to_nodes(_derivative, inputs, known={tree: out}, dtype=dtype)

        rules.append(rule)
    return tuple(rules)
