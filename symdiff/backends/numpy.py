"""The numpy backend: which numpy function computes each op, and a plan printed as
straight-line Python, one line per node, no interpreter loop.

An op that declares its numpy name (``numpy="tanh"``) is called as ``np.tanh``; one with
a forward written against an array module gets ``xp = numpy``; ``OVERRIDES`` holds the
exceptions (a numpy-only fast path). The interpreter (``Plan.run``) and the generated
code call the same functions. Scalar float64 nodes are inlined as Python expressions on
floats (``math`` speed).
Arrays are deleted after their last use, so peak memory stays close to hand-written
code. Where a scalar expression raises (``math.log(0)``, ``1.0 / 0.0``, overflow),
the call is redone by the interpreter, which gives numpy's IEEE result for that node:
so compiled functions and ``evaluate`` agree to the last bit.
"""

from __future__ import annotations

import functools
import keyword
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from symdiff.graph import Node, Region
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op, numpy_function
from symdiff.plan import SCALAR_DTYPES, Plan

_RESERVED = {"np", "max", "abs", "float", "bool"}
_LITERAL_TYPES = (int, float, bool, str, type(None))
# A single-use scalar is written into its consumer's expression, to this nesting depth.
INLINE_DEPTH = 12


def _identifier(name: str, taken: set[str]) -> str:
    """A Python name for a variable, unique in the generated function."""
    base = re.sub(r"\W", "_", name)
    if not base or base[0].isdigit() or keyword.iskeyword(base) or base.startswith("_") or base in _RESERVED:
        base = f"v_{base}"
    label, k = base, 1
    while label in taken:
        k += 1
        label = f"{base}_{k}"
    taken.add(label)
    return label


def _attr_literal(value: Any) -> str | None:
    """Source text for an op attribute, if it is a plain literal (ints, tuples, strings)."""
    if isinstance(value, _LITERAL_TYPES) or (
        isinstance(value, tuple) and all(isinstance(v, _LITERAL_TYPES) for v in value)
    ):
        return repr(value)
    return None


def _where(condition, x, y):
    # Selecting against zero (the gradient of relu, of a branch) by a boolean mask is
    # branch-free as a product, and 5x faster than np.where on an unpredictable mask. The
    # product equals the selection wherever it is finite (a zero may differ in sign):
    # otherwise (inf or nan in the values) np.where decides. A numpy-only fast path: the
    # op's forward (xp.where) stays free of data-dependent branches.
    if np.ndim(condition) and np.result_type(condition).kind == "b" and np.size(condition) >= 4096:
        for value, other, mask in ((x, y, condition), (y, x, None)):
            if np.ndim(other) == 0 and other == 0 and np.result_type(value).kind == "f":
                out = np.multiply(value, condition if mask is not None else ~condition)
                if np.isfinite(out).all():
                    return out
                break
    return np.where(condition, x, y)


# Where this backend computes an op other than by the op's numpy name or its generic forward.
OVERRIDES: dict[str, Callable[..., Any]] = {"where": _where}


def _named(op: Op) -> str | None:
    """``np.tanh``: the op is the numpy function of its name (its forward was derived from it)."""
    if op.numpy is not None and "forward" in op.derived and op.name not in OVERRIDES:
        return f"np.{op.numpy}"
    return None


@functools.cache
def function(op: Op) -> Callable[..., Any]:
    """The callable that computes ``op`` on numpy arrays: ``fn(*arrays, **attrs)``."""
    if op.name in OVERRIDES:
        return OVERRIDES[op.name]
    if _named(op) is not None:
        return numpy_function(np, op.numpy)
    return functools.partial(op.forward, np)


def _call(op: Op, node: Node, args: list[str], namespace: dict[str, Any]) -> str:
    """``np.tanh(t3)``, ``_sum(t4, axis=(-1,), keepdims=False)``: a call to the op's function."""
    attrs = dict(node._attrs)
    name = _named(op)
    fn = function(op)
    if name is None:
        name = f"_{op.name}"
        namespace[name] = fn
    literals = {k: _attr_literal(v) for k, v in attrs.items()}
    if all(text is not None for text in literals.values()):
        return f"{name}({', '.join(args + [f'{k}={text}' for k, text in literals.items()])})"
    bound = f"_{op.name}{node.index}"  # attributes with no literal form (an index) are bound once
    namespace[bound] = functools.partial(fn, **attrs)
    return f"{bound}({', '.join(args)})"


@functools.cache
def _statement_template(template: str) -> str:
    """The template without outer parentheses, when they enclose all of it: ``t = a + b``.

    Arguments are balanced, so whether the parentheses can go depends on the template alone.
    """
    if template.startswith("(") and template.endswith(")"):
        depth = 0
        for k, ch in enumerate(template):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and k < len(template) - 1:
                return template
        return template[1:-1]
    return template


def _inlinable(consumer: Node, node: Node, scalar: dict[Node, bool]) -> bool:
    """True if ``node``'s expression can be written inside ``consumer``'s (once, and both scalar)."""
    if not scalar.get(consumer, False):
        return False
    template = REGISTRY[consumer.op].scalar
    position = consumer.inputs.index(node)
    return template.count(f"{{{position}}}") == 1


def _literal(value: Any) -> str | None:
    """Source text for a scalar constant, if it has an exact one."""
    v = np.asarray(value)
    if v.ndim or v.dtype not in SCALAR_DTYPES:
        return None
    item = v.item()
    if isinstance(item, bool):
        return repr(item)
    if math.isfinite(item):
        return repr(float(item))
    return None


def arguments(node: Node, names: dict[Node, str], strong: tuple[int, ...] = ()) -> list[str]:
    """The source text of ``node``'s inputs; those at ``strong`` (``Step.strong``) as
    ``np.float64(...)``, so that NEP 50 promotes them as the graph does."""
    args = [names[u] for u in node.inputs]
    for k in strong:
        args[k] = f"np.float64({args[k]})"
    return args


def body_names(plan: Plan) -> dict[Region, str]:
    """The name under which generated code calls each body its plan's steps run (``_body0``, ...):
    one per body, however many nodes run it."""
    names: dict[Region, str] = {}
    for step in plan.steps:
        if step.node.regions:
            names.setdefault(step.node.regions[0], f"_body{len(names)}")
    return names


def generate(plan: Plan, checks: dict[Node, Callable[..., None]]) -> tuple[str, dict[str, Any]]:
    """Python source for ``def compiled(<inputs>)`` and the namespace it runs in.

    Everything comes from the plan: its leaves (constants and inputs), the steps in order
    with their scalar decisions, and the lifetimes that say when an array can be released.
    ``checks`` maps nodes to run-time shape checks ``check(value, *inputs)``.
    """
    inputs, outputs, computed = plan.inputs, plan.outputs, plan.computed
    taken: set[str] = set()
    namespace: dict[str, Any] = {"_math": math, "np": np}
    names: dict[Node, str] = {}
    for n in inputs:
        names[n] = _identifier(n.name or f"input{n.index}", taken)
    for n in plan.leaves:
        if n in names:
            continue
        text = _literal(n.value)
        if text is None:  # array constants live in the namespace
            text = f"_c{n.index}"
            namespace[text] = n.value
        names[n] = text
    last_use, uses, consumer_of = plan.last_use, plan.uses, plan.consumer
    temporaries = set(computed)
    returned = set(outputs)
    depth: dict[Node, int] = {}
    lines = []
    scalar = {s.node: s.scalar for s in plan.steps}
    strong = {s.node: s.strong for s in plan.steps if s.strong}
    bodies = body_names(plan)
    for k, n in enumerate(computed):
        target = f"t{n.index}"
        args = arguments(n, names, strong.get(n, ()))
        op = REGISTRY[n.op]
        if scalar[n]:
            depth[n] = 1 + max((depth.get(u, 0) for u in n.inputs), default=0)
            consumer = consumer_of.get(n) if uses.get(n) == 1 and n not in returned else None
            if consumer is not None and depth[n] < INLINE_DEPTH and _inlinable(consumer, n, scalar):
                names[n] = op.scalar.format(*args)  # no statement: the consumer's expression holds it
                continue
            expr = _statement_template(op.scalar).format(*args)
        elif n.regions:  # the plan's function of the body (plan.body_function)
            namespace[bodies[n.regions[0]]] = plan.steps[k].call
            expr = f"{bodies[n.regions[0]]}({', '.join(args)})"
        else:
            expr = _call(op, n, args, namespace)
        depth[n] = 0
        lines.append(f"    {target} = {expr}")
        names[n] = target
        if n in checks:
            namespace[f"_check{n.index}"] = checks[n]
            lines.append(f"    _check{n.index}({target}, {', '.join(args)})")
        # release arrays after their last use (Python floats cost nothing to keep)
        dead = [names[u] for u in dict.fromkeys(n.inputs) if last_use.get(u) == k and u in temporaries and u.shape]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    result = ", ".join(names[n] for n in outputs)
    body = "\n".join(lines) if lines else "    pass"
    # math functions become default arguments: local loads, not a global and an attribute each
    used = sorted(set(re.findall(r"_math\.(\w+)", body)))
    body = re.sub(r"_math\.(\w+)", r"_\1", body)
    signature = ", ".join([names[n] for n in inputs] + [f"_{f}=_math.{f}" for f in used])
    source = f"def compiled({signature}):\n{body}\n    return ({result},)\n"
    return source, namespace
