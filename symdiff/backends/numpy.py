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
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import symdiff.scalar as sx
from symdiff.graph import Node, Region
from symdiff.loops import bad_count, carry_changed, scan_call, too_many_steps
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op, numpy_function
from symdiff.plan import SCALAR_DTYPES, Plan, check_call, wanted_outputs

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


def _sum(x, axis=None, keepdims=False):
    # np.sum on an ndarray is np.add.reduce behind a Python dispatch that costs twice the sum
    # of a small array (a loop body's reductions, once per step); anything else goes through it
    if type(x) is np.ndarray:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return np.sum(x, axis=axis, keepdims=keepdims)


# Where this backend computes an op other than by the op's numpy name or its generic forward.
OVERRIDES: dict[str, Callable[..., Any]] = {"where": _where, "sum": _sum}


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
    """``np.tanh(t3)``, ``_sum(t4, axis=(-1,), keepdims=False)``: a call to the op's function
    (``t5[1]`` for output 1 of a node with several)."""
    attrs = dict(node._attrs)
    if op.name == "output":
        return f"{args[0]}[{attrs['index']}]"
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


def _statement(expr: str) -> str:
    """A printed expression without outer parentheses, when they enclose all of it: ``t = a + b``."""
    if expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for k, ch in enumerate(expr):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and k < len(expr) - 1:
                return expr
        return expr[1:-1]
    return expr


def _inlinable(consumer: Node, node: Node, scalar: dict[Node, bool]) -> bool:
    """True if ``node``'s expression can be written inside ``consumer``'s (once, and both scalar)."""
    if not scalar.get(consumer, False):
        return False
    return sx.uses(REGISTRY[consumer.op].scalar, consumer.inputs.index(node)) == 1


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
    one per body (a while_loop's condition and body each), however many nodes run it."""
    names: dict[Region, str] = {}
    for step in plan.steps:
        for region in step.node.regions:
            names.setdefault(region, f"_body{len(names)}")
    return names


# Nodes that generated code runs as Python loops over their bodies' functions; another node
# with a body (a composite call) calls the plan's function of it (``Step.call``).
LOOPS = ("scan", "while_loop")


# The errors a loop raises, made by symdiff.loops's functions (the interpreter's messages), under
# the names generated code calls them by.
LOOP_ERRORS = {"_bad_count": bad_count, "_carry_changed": carry_changed, "_too_many_steps": too_many_steps}


def loop_lines(
    node: Node,
    target: str,
    args: Sequence[str],
    bodies: Sequence[str],
    wanted: frozenset[int] | None,
    namespace: dict[str, Any],
) -> list[str]:
    """The statements that run a loop node (``LOOPS``) as a Python loop and leave the tuple of its
    outputs in ``target``: the body's function (``bodies``: the names of its regions' functions)
    called once per step, ys and stored carries written into arrays made before the loop, only
    the outputs the plan reads (``wanted``, None: all) kept. The functions of ``LOOP_ERRORS`` the
    lines call are put in ``namespace``. Each line does what the op's ``runs``
    (``symdiff.loops``) does, in the same order and with the same checks, so the values (and
    errors) are the interpreter's to the last bit."""
    attrs = dict(node._attrs)
    if node.op == "while_loop":
        lines = _while_lines(node, attrs, target, args, bodies, wanted)
    else:
        lines = _scan_lines(node, attrs, target, args, bodies[0], wanted)
    text = "\n".join(lines)
    namespace.update({k: f for k, f in LOOP_ERRORS.items() if f"{k}(" in text})
    return lines


def _carry_checks(
    node: Node, results: Sequence[tuple], target: str, carries: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """A step's check that each carry with a None dimension kept its shape (a static one cannot
    change): the names of the initial shapes, the lines before the loop that note them, and those
    after the body's call (each step is checked, so a step starts from the initial shape)."""
    names, before, after = [], [], []
    name = dict(node._attrs)["name"]
    for j, (carry, (shape, _)) in enumerate(zip(carries, results)):
        if None in shape:
            first = f"{target}_k{j}"
            names.append(first)
            before.append(f"    {first} = np.shape({carry})")
            after += [
                f"        if np.shape({carry}) != {first}:",
                f"            raise _carry_changed({name!r}, {j}, {first}, np.shape({carry}))",
            ]
    return names, before, after


def _zeros(result: tuple, item: str | None = None) -> str:
    """``np.zeros`` of a stacked output, as the op's ``_buffer`` makes it: its static length,
    then ``item`` (source text of the item's shape as computed) or the item's static shape
    (a None dimension 0)."""
    shape, dtype = result
    text = repr(tuple(0 if d is None else d for d in shape)) if item is None else f"({shape[0]}, *{item})"
    return f"np.zeros({text}, dtype={dtype.str!r})"


def _buffers(
    names: Sequence[str], results: Sequence[tuple], values: Sequence[str], empties: Sequence[str | None], indent: str
) -> tuple[list[str], list[str], list[str]]:
    """Arrays of stacked outputs (``names``): the lines before the loop (each made from its
    static shape, or None where the item has a None dimension), those in a step that make the
    rest from the step's ``values`` (at ``indent``), and those after the loop for a loop that
    ran no step (``empties``: the item's shape then, None for its static shape)."""
    before, during, after = [], [], []
    for name, result, value, empty in zip(names, results, values, empties):
        if None not in result[0]:
            before.append(f"    {name} = {_zeros(result)}")
            continue
        before.append(f"    {name} = None")
        during += [f"{indent}if {name} is None:", f"{indent}    {name} = {_zeros(result, f'np.shape({value})')}"]
        after += [f"    if {name} is None:", f"        {name} = {_zeros(result, empty)}"]
    return before, during, after


def _scan_lines(
    node: Node,
    attrs: dict[str, Any],
    target: str,
    args: Sequence[str],
    body: str,
    wanted: frozenset[int] | None,
) -> list[str]:
    """A scan: ``for t in range(n): stored[t] = c; c, ys[t] = body(c, xs[t])`` (``run_scan``)."""
    nc, ny, length = attrs["carries"], attrs["ys"], attrs["length"]
    name, policy, counted, reverse = attrs["name"], attrs["checkpoint"], attrs["counted"], attrs["reverse"]
    found = scan_call(args, wanted=wanted, **attrs)
    init, seqs, caps, want_ys, store, kept = found.init, found.seqs, found.caps, found.want_ys, found.store, found.kept
    # read for its stored carries alone (a checkpointed reverse's recomputation): no last step
    skip_last = wanted is not None and not any(k < nc + ny for k in wanted)
    t = f"{target}_t"
    p = f"{target}_p" if reverse else t  # the step's position in iteration order
    carries = [f"{target}_c{j}" for j in range(nc)]
    ys = [f"{target}_y{k}" for k in range(ny)]
    stacked = [f"{target}_ys{k}" for k in range(ny)]
    stored = [f"{target}_s{j}" for j in range(nc)]
    steps = f"{target}_n" if counted else str(length)
    how = f"{'a counted number of' if counted else length} steps{' in reverse' if reverse else ''}"
    lines = [f"    # {name}: {how}"] + [f"    {c} = {a}" for c, a in zip(carries, init)]
    noted, before, checks = _carry_checks(node, node.results[:nc], target, carries)
    lines += before
    if counted:
        lines += [
            f"    {steps} = int({found.count})",
            f"    if not 0 <= {steps} <= {length}:",
            f"        raise _bad_count({name!r}, {steps}, {length})",
        ]
    last = f"{steps} - 1" if counted else str(length - 1)
    order = f"range({last}, -1, -1)" if reverse else f"range({steps})"
    enumerated = reverse and (kept is not None or skip_last)
    loop = [f"    for {p}, {t} in enumerate({order}):" if enumerated else f"    for {t} in {order}:"]
    after = []
    if store:
        indent, at = " " * 8, t
        if kept is not None and policy[0] == "every":
            every = policy[1]
            at = p if every == 1 else f"{p} // {every}"
            if every > 1:
                loop.append(f"        if {p} % {every} == 0:")
                indent = " " * 12
        elif kept is not None:  # the positions a schedule keeps, and where
            slots = {position: k for k, position in enumerate(kept)}
            lines.append(f"    {target}_slots = {slots!r}")
            at = f"{target}_at"
            loop += [f"        {at} = {target}_slots.get({p})", f"        if {at} is not None:"]
            indent = " " * 12
        shapes = [f"np.shape({a})" for a in init]
        made, during, empty = _buffers(stored, node.results[nc + ny :], carries, shapes, indent)
        lines += made
        after += empty
        loop += during + [f"{indent}{s}[{at}] = {c}" for s, c in zip(stored, carries)]
    if skip_last:
        loop += [f"        if {p} == {last}:", "            break"]
    outs = carries + ys
    call = f"{body}({', '.join(carries + [f'{x}[{t}]' for x in seqs] + list(caps))})"
    loop.append(f"        {', '.join(outs)}{',' if len(outs) == 1 else ''} = {call}")
    loop += checks
    if want_ys:
        made, during, empty = _buffers(stacked, node.results[nc : nc + ny], ys, [None] * ny, " " * 8)
        lines += made
        after += empty
        loop += during + [f"        {b}[{t}] = {y}" for b, y in zip(stacked, ys)]
    held = carries + (stacked if want_ys else []) + (stored if store else []) + noted
    parts = carries + (stacked if want_ys else ["None"] * ny) + (stored if store else ["None"] * nc)
    return lines + loop + after + [f"    {target} = ({', '.join(parts)},)", f"    del {', '.join(held)}"]


def _while_lines(
    node: Node,
    attrs: dict[str, Any],
    target: str,
    args: Sequence[str],
    bodies: Sequence[str],
    wanted: frozenset[int] | None,
) -> list[str]:
    """A while_loop: ``while cond(c): stored[n] = c; c = body(c); n += 1``, at most max_steps."""
    nc, conds, bound, name = attrs["carries"], attrs["conds"], attrs["max_steps"], attrs["name"]
    init, ccaps, bcaps = args[:nc], args[nc : nc + conds], args[nc + conds :]
    store = bound is not None and (wanted is None or any(k >= nc for k in wanted))
    carries = [f"{target}_c{j}" for j in range(nc)]
    stored = [f"{target}_s{j}" for j in range(nc)]
    n = f"{target}_n"
    lines = [f"    # {name}{f': at most {bound} steps' if bound is not None else ''}"]
    lines += [f"    {c} = {a}" for c, a in zip(carries, init)] + [f"    {n} = 0"]
    noted, before, checks = _carry_checks(node, node.results[:nc], target, carries)
    lines += before
    loop = [f"    while {bodies[0]}({', '.join(carries + list(ccaps))}):"]
    after = []
    if bound is not None:
        loop += [f"        if {n} >= {bound}:", f"            raise _too_many_steps({name!r}, {bound})"]
    if store:
        made, during, empty = _buffers(
            stored, node.results[nc : 2 * nc], carries, [f"np.shape({a})" for a in init], " " * 8
        )
        lines += made
        after += empty
        loop += during + [f"        {s}[{n}] = {c}" for s, c in zip(stored, carries)]
    call = f"{bodies[1]}({', '.join(carries + list(bcaps))})"
    loop += [f"        {', '.join(carries)}{',' if nc == 1 else ''} = {call}", *checks, f"        {n} += 1"]
    parts = list(carries)
    if bound is not None:
        parts += (stored if store else ["None"] * nc) + [f"np.int64({n})"]
    held = carries + (stored if store else []) + [n] + noted
    return lines + loop + after + [f"    {target} = ({', '.join(parts)},)", f"    del {', '.join(held)}"]


def generate(
    plan: Plan, checks: dict[Node, Callable[..., None]], compile_bodies: bool = True
) -> tuple[str, dict[str, Any]]:
    """Python source for ``def compiled(<inputs>)`` and the namespace it runs in.

    Everything comes from the plan: its leaves (constants and inputs), the steps in order
    with their scalar decisions, and the lifetimes that say when an array can be released.
    ``checks`` maps nodes to run-time shape checks ``check(value, *inputs)``. A loop node is a
    Python loop (``loop_lines``) calling its bodies as ``_body0``, ...; ``compile_bodies`` puts
    their generated functions (``body_function``) in the namespace (``to_source`` prints its own).
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
    wanted = wanted_outputs(computed, outputs)
    for k, n in enumerate(computed):
        target = f"t{n.index}"
        args = arguments(n, names, strong.get(n, ()))
        op = REGISTRY[n.op]
        if scalar[n]:
            depth[n] = 1 + max((depth.get(u, 0) for u in n.inputs), default=0)
            consumer = consumer_of.get(n) if uses.get(n) == 1 and n not in returned else None
            if consumer is not None and depth[n] < INLINE_DEPTH and _inlinable(consumer, n, scalar):
                names[n] = sx.to_python(op.scalar, args)  # no statement: the consumer's expression holds it
                continue
            expr = _statement(sx.to_python(op.scalar, args))
        elif n.op in LOOPS:  # a Python loop over the bodies' own generated functions
            called = [bodies[r] for r in n.regions]
            if compile_bodies:
                for region, local in zip(n.regions, called):
                    if local not in namespace:  # not setdefault: a body is compiled once
                        namespace[local] = body_function(region)
            statements = loop_lines(n, target, args, called, wanted.get(n), namespace)
        elif n.regions:  # the plan's function of the body (plan.body_function)
            namespace[bodies[n.regions[0]]] = plan.steps[k].call
            expr = f"{bodies[n.regions[0]]}({', '.join(args)})"
        else:
            expr = _call(op, n, args, namespace)
        depth[n] = 0
        lines.extend(statements if n.op in LOOPS else [f"    {target} = {expr}"])
        names[n] = target
        if n in checks:
            namespace[f"_check{n.index}"] = checks[n]
            lines.append(f"    _check{n.index}({target}, {', '.join(args)})")
        # release arrays after their last use (Python floats cost nothing to keep)
        dead = [
            names[u]
            for u in dict.fromkeys(n.inputs)
            if last_use.get(u) == k and u in temporaries and (u.shape or u.is_multi)
        ]
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


# Each body's generated function, while something holds it: a body is compiled once however many
# nodes run it (a checkpointed reverse runs one body from many loops, nested ones from each of
# theirs). Weak values: a function reaches its region's graph, so a strong cache would keep
# every graph it ever compiled alive.
_COMPILED: weakref.WeakValueDictionary[Region, Callable[..., Any]] = weakref.WeakValueDictionary()


def body_function(region: Region) -> Callable[..., Any]:
    """A body (``Region``) as generated code: ``generate`` on the plan of its outputs from its
    parameters, returning its outputs' values (a tuple if it has several, as
    ``plan.body_function``). A scalar step that raises (an IEEE edge) raises through the loop, and
    the compiled function's call is redone by the interpreter. Made once per body while the
    function lives."""
    run = _COMPILED.get(region)
    if run is None:
        run = _COMPILED[region] = _body_function(region)
    return run


def _body_function(region: Region) -> Callable[..., Any]:
    plan = Plan(list(region.outputs), list(region.params), function)
    checks = {s.node: functools.partial(check_call, s.node) for s in plan.compiled_checks()}
    source, namespace = generate(plan, checks)
    if not region.several:
        source = re.sub(r"return \((.*),\)\n$", r"return \1\n", source)
    exec(compile(source, f"<symdiff body {region.name}>", "exec"), namespace)  # our own generated code
    run = namespace["compiled"]
    run.source = source
    return run
