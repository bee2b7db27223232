"""The numba backend: the plan printed as one Python function that numba compiles to native
code, with the compiled machine code cached on disk.

Each step becomes one statement. The backend prints the **primitives** (symdiff.lower): an
elementwise op is numpy's ufunc of its name where numba has it, else its scalar expression
(symdiff.scalar, printed for numba) in a loop over the broadcast inputs; a float64 scalar
step is its scalar expression on floats (as in the numpy backend); the structural ops,
reductions, scans and dense linear-algebra kernels (numba's LAPACK one matrix at a time over
leading batch axes; ``expm`` as scipy.linalg.expm's algorithm, ``solve_triangular`` as
substitution loops) have a printer in ``PRINTERS``; the fixed kernels they call live in
symdiff.backends.numba_kernels, compiled once per machine and linked into every generated
module. Any other op runs as a call of its **lowering**, its body printed in the node's place, down to primitives.
Chains of elementwise steps over one static shape are fused (symdiff.backends.fusion): one loop over the
elements computes each as a scalar, storing only the values read outside the loop, with
sums over all the elements accumulated in it. A node that owns a body (a composite's) calls
the body's own njit function, printed once (and fused the same way); a loop (``scan``,
``while_loop``: ``LOOPS``) is a native ``for`` or ``while`` in the function calling it once
per step, filling buffers made before the loop. An op with neither (a user's op declared
with a numpy forward alone) is refused by name when compiling (``unsupported`` says why;
docs/ops.md shows it): nothing falls back to the numpy backend silently.

Cache: the printed module is written to ``$SYMDIFF_CACHE_DIR`` (default
``~/.cache/symdiff/numba``) under a name made of its own hash, and compiled with numba's
``cache=True``, so the same graph compiled in another process loads the machine code
instead of compiling again. Array constants are arguments, not part of the code.

Arithmetic follows numpy's IEEE rules (``error_model="numpy"``: 1/0 is inf, log(0) is
-inf); results agree with the numpy backend to rounding (1e-12 relative in the tests).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import symdiff.scalar as sx
from symdiff.backends import described, numba_kernels, unsupported_error
from symdiff.backends.base import Compiled as _NumpyCompiled
from symdiff.backends.base import check_value
from symdiff.backends.fusion import Group, extents, fused
from symdiff.backends.numpy import function as numpy_function
from symdiff.errors import BackendError, LoopError, ShapeError
from symdiff.graph import Node, Region
from symdiff.loops import scan_call
from symdiff.lower import lowered
from symdiff.ops import REGISTRY
from symdiff.ops.core import Op
from symdiff.plan import Plan, Step, check_shapes, finish, wanted_outputs

# numpy ufuncs that numba compiles for arrays and scalars alike (numba's supported-numpy list)
UFUNCS = frozenset(
    "add subtract multiply true_divide negative power exp log sin cos tan tanh sqrt log1p expm1 abs sign "
    "arcsin arccos arctan sinh cosh arcsinh arccosh arctanh floor ceil arctan2 logaddexp hypot maximum minimum "
    "greater greater_equal less less_equal equal not_equal".split()
)


class Writer:
    """Statements of the function being printed, its extra arguments and helpers."""

    def __init__(self, outer: Writer | None = None) -> None:
        self.lines: list[str] = []
        self.constants: list[np.ndarray] = []  # passed as arguments after the inputs
        # name -> source, printed before the function; shared with the bodies' writers
        self.helpers: dict[str, str] = outer.helpers if outer is not None else {}
        # (body, the outputs printed) -> its function, printed once; None while it is printed
        self.bodies: dict[tuple[Region, tuple[int, ...]], Body | None] = outer.bodies if outer is not None else {}
        self.checks: list[tuple[str, Node]] = []  # (flag, node): returned after the outputs
        self.shaped: list[tuple[str, Node]] = []  # ((shape, *input shapes), node): returned last
        # the outputs the plan reads of each node with several (plan.wanted_outputs; None: all)
        self.wanted: dict[Node, frozenset[int] | None] = {}
        self._k = 0

    def name(self) -> str:
        """A fresh local name ``_uN``."""
        self._k += 1
        return f"_u{self._k}"

    def temp(self, expr: str) -> str:
        """A statement ``_uN = expr``; returns the name."""
        name = self.name()
        self.lines.append(f"    {name} = {expr}")
        return name

    def constant(self, value: np.ndarray) -> str:
        self.constants.append(np.ascontiguousarray(value))
        return f"_c{len(self.constants) - 1}"

    def helper(self, name: str, source: str) -> str:
        self.helpers.setdefault(name, source)
        return name


class Body:
    """A body printed as a function of its own (``@numba.njit``), as ``compiled`` is: it takes its
    parameters, then its array constants, and returns its outputs (those at ``kept``), then its
    checks' flags and shapes (a node calling it passes them on)."""

    def __init__(self, outer: Writer, region: Region, name: str, kept: tuple[int, ...]):
        w = Writer(outer)
        outs = _print(w, Plan([region.outputs[k] for k in kept], list(region.params), function))
        self.name, self.constants, self.outputs = name, w.constants, len(outs)
        self.checks, self.shaped = [node for _, node in w.checks], [node for _, node in w.shaped]
        w.helper(name, _function(name, len(region.params), w, outs))

    def call(self, w: Writer, args: list[str]) -> str:
        """The call of the function on ``args`` (the body's parameters), its constants passed on."""
        return f"{self.name}({', '.join([*args, *(w.constant(c) for c in self.constants)])})"

    def extras(self, result: str) -> tuple[list[tuple[str, Node]], list[tuple[str, Node]]]:
        """The checks' flags and the shapes in the tuple ``result`` a call returned, with their nodes."""
        k = self.outputs
        flags = [(f"{result}[{k + j}]", checked) for j, checked in enumerate(self.checks)]
        k += len(self.checks)
        return flags, [(f"{result}[{k + j}]", checked) for j, checked in enumerate(self.shaped)]


def _body(w: Writer, region: Region, kept: tuple[int, ...] | None = None) -> Body:
    """The function of ``region`` returning its outputs at ``kept`` (all: None), printed once."""
    kept = tuple(range(len(region.outputs))) if kept is None else kept
    body = w.bodies.get((region, kept))
    if body is None:
        name = f"_body{len(w.bodies)}_{region.name}"
        w.bodies[region, kept] = None  # the number taken before the bodies it calls take theirs
        body = w.bodies[region, kept] = Body(w, region, name, kept)
    return body


def _p_body(w: Writer, node: Node, a: list[str]) -> str:
    """A node that runs a body: a call of the body's function (printed once per body)."""
    return _call(w, node.regions[0], a)


def _p_lowered(w: Writer, node: Node, a: list[str]) -> str:
    """A node of an op that is not a primitive: its lowering (symdiff.lower) printed in place, its
    parameters the node's arguments (inline, not a function: numba compiles one function the
    fewer, and nothing is called per node)."""
    try:
        region = lowered(node)
    except ShapeError as exc:
        raise unsupported_error("numba", node.op, str(exc)) from None
    plan = Plan(list(region.outputs), list(region.params), function)
    names: dict[Node, str] = dict(zip(region.params, a))
    for n in plan.leaves:
        if n not in names:
            names[n] = _literal(n) or w.constant(n.value)
    shaped = _checked(plan, extents(plan))
    for step in plan.steps:
        _emit(w, step, names, shaped, target=w.name())
    outs = [names[o] for o in region.outputs]
    return f"({', '.join(outs)},)" if region.several else outs[0]


def _call(w: Writer, region: Region, a: list[str]) -> str:
    body = _body(w, region)
    called = w.temp(body.call(w, a))
    flags, shapes = body.extras(called)
    w.checks += flags
    w.shaped += shapes
    return called if region.several else f"{called}[0]"


def _dtype(dtype: np.dtype) -> str:
    return "np.bool_" if dtype == np.bool_ else f"np.{dtype.name}"


def _no_step_shapes(checked: Node) -> str:
    """The value of a shape check (``(shape, *input shapes)``) that passes it, for a body that
    ran no step: the static shapes with each None dimension 0 (as on both sides)."""
    parts = [tuple(0 if d is None else d for d in m.shape) for m in (checked, *checked.inputs)]
    return repr(tuple(parts))


class _Loop:
    """A native loop calling body functions: the values carried from step to step, the lines of
    the loop (written out by ``close``, after whatever the printer put before the loop), and the
    checks of its bodies (flags and'ed over the steps, the shapes of the last step), returned
    as the function's own."""

    def __init__(self, w: Writer, init: list[str]):
        self.w = w
        self.carries = [w.temp(x) for x in init]
        self.lines: list[str] = []
        self.flags: dict[Node, str] = {}
        self.shapes: dict[Node, str] = {}

    def line(self, text: str, depth: int = 1) -> None:
        self.lines.append("    " * (depth + 1) + text)

    def run(self, body: Body, args: list[str]) -> str:
        """A line calling ``body`` on ``args``; its checks gathered. Returns the result's name."""
        w, result = self.w, self.w.name()
        self.line(f"{result} = {body.call(w, args)}")
        flags, shapes = body.extras(result)
        for flag, checked in flags:
            if checked not in self.flags:
                self.flags[checked] = w.temp("True")
            self.line(f"{self.flags[checked]} = {self.flags[checked]} and {flag}")
        for shape, checked in shapes:
            if checked not in self.shapes:
                self.shapes[checked] = w.temp(_no_step_shapes(checked))
            self.line(f"{self.shapes[checked]} = {shape}")
        return result

    def carry(self, result: str) -> None:
        for j, c in enumerate(self.carries):
            self.line(f"{c} = {result}[{j}]")

    def store(self, buffers: list[str], at: str, depth: int = 1) -> None:
        for buf, c in zip(buffers, self.carries):
            self.line(f"{buf}[{at}] = {c}", depth)

    def keep_shapes(self, node: Node, result: str, params: tuple[Node, ...]) -> None:
        """Lines stopping the loop, its flag False, when the step that made ``result`` changed the
        shape of a carry with a None dimension (static ones cannot change): the caller raises the
        interpreter's ShapeError (``loops.carry_changed``)."""
        changing = [j for j, c in enumerate(self.carries) if None in params[j].shape]
        if not changing:
            return
        ok = self.w.temp("True")
        self.w.checks.append((ok, node))
        same = " and ".join(f"{result}[{j}].shape == {self.carries[j]}.shape" for j in changing)
        self.line(f"if not ({same}):")
        self.line(f"{ok} = False", 2)
        self.line("break", 2)

    def close(self, header: str) -> None:
        self.w.lines += [f"    {header}", *self.lines]
        self.w.checks += [(flag, checked) for checked, flag in self.flags.items()]
        self.w.shaped += [(shape, checked) for checked, shape in self.shapes.items()]


def _stored(w: Writer, node: Node, at: int, init: list[str]) -> list[str]:
    """Zeros for the carries a loop stores (outputs ``at`` on): its static length, then each
    initial carry's shape."""
    buffers = []
    for j, x in enumerate(init):
        (length, *item), dtype = node.results[at + j]
        shape = f"({length},) + {x}.shape" if item else f"({length},)"
        buffers.append(w.temp(f"np.zeros({shape}, {_dtype(dtype)})"))
    return buffers


def _p_scan(w: Writer, node: Node, a: list[str]) -> str:
    """A scan (symdiff.loops): ``for`` over the steps calling the body's function; the ys
    stacked into buffers made before the loop, the carries each step started from stored only
    where the plan reads them, at the kept positions when checkpointed, and a step changing a
    carry's shape stopping the loop (as ``run_scan``, the interpreter's loop)."""
    at = node.attrs
    nc, ny, length = at["carries"], at["ys"], at["length"]
    region = node.regions[0]
    call = scan_call(a, **at, wanted=w.wanted.get(node))
    body = _body(w, region, tuple(range(nc + ny if call.want_ys else nc)))
    loop = _Loop(w, a[:nc])
    steps = str(length)
    if at["counted"]:  # a count out of range runs no step: the caller raises the interpreter's LoopError
        ok = w.temp(f"0 <= {a[-1]} <= {length}")
        w.checks.append((ok, node))
        steps = w.temp(f"{a[-1]} if {ok} else 0")
    ys = []
    for k in range(ny if call.want_ys else 0):
        shape, dtype = node.results[nc + k]
        ys.append(w.temp(f"np.zeros({tuple(0 if d is None else d for d in shape)}, {_dtype(dtype)})"))
    stored = _stored(w, node, nc + ny, a[:nc]) if call.store else []
    p, t = w.name(), w.name()
    loop.line(f"{t} = {steps} - 1 - {p}" if at["reverse"] else f"{t} = {p}")
    if stored and call.kept is not None:
        # checkpointed: the carries starting the steps at the kept positions (in iteration
        # order, increasing), each at its index there, as loops.run_scan stores them
        kept, slot = w.constant(np.array(call.kept, np.int64)), w.temp("0")
        loop.line(f"if {slot} < {len(call.kept)} and {p} == {kept}[{slot}]:")
        loop.store(stored, slot, 2)
        loop.line(f"{slot} += 1", 2)
    elif stored:
        loop.store(stored, t)
    result = loop.run(body, [*loop.carries, *(f"{x}[{t}]" for x in call.seqs), *call.caps])
    loop.keep_shapes(node, result, region.params)
    loop.carry(result)
    for k, buf in enumerate(ys):
        y = f"{result}[{nc + k}]"
        (_, *item), dtype = node.results[nc + k]
        if None in item:  # the item's size is known once a step made it
            loop.line(f"if {p} == 0:")
            loop.line(f"{buf} = np.zeros(({length},) + {y}.shape, {_dtype(dtype)})", 2)
        loop.line(f"{buf}[{t}] = {y}")
    loop.close(f"for {p} in range({steps}):")
    return "(" + ", ".join([*loop.carries, *(ys or ["None"] * ny), *(stored or ["None"] * nc)]) + ",)"


def _p_while(w: Writer, node: Node, a: list[str]) -> str:
    """A while_loop (symdiff.loops): ``while`` the condition's function says so, calling the
    body's; with ``max_steps``, the carries each step started from stored (where the plan reads
    them) and the trip count kept. A loop still going after ``max_steps`` steps stops, and the
    caller raises the interpreter's LoopError."""
    at = node.attrs
    nc, nconds, bound = at["carries"], at["conds"], at["max_steps"]
    wanted = w.wanted.get(node)
    cond, body = _body(w, node.regions[0]), _body(w, node.regions[1])
    ccaps, bcaps = a[nc : nc + nconds], a[nc + nconds :]
    loop = _Loop(w, a[:nc])
    count = w.temp("0")
    store = bound is not None and (wanted is None or any(nc <= k < 2 * nc for k in wanted))
    stored = _stored(w, node, nc, a[:nc]) if store else []
    holds = loop.run(cond, [*loop.carries, *ccaps])
    loop.line(f"if not {holds}[0]:")
    loop.line("break", 2)
    if bound is not None:
        ok = w.temp("True")
        w.checks.append((ok, node))
        loop.line(f"if {count} >= {bound}:")
        loop.line(f"{ok} = False", 2)
        loop.line("break", 2)
    loop.store(stored, count)
    result = loop.run(body, [*loop.carries, *bcaps])
    loop.keep_shapes(node, result, node.regions[1].params)
    loop.carry(result)
    loop.line(f"{count} += 1")
    loop.close("while True:")
    if bound is None:
        return "(" + ", ".join(loop.carries) + ",)"
    return "(" + ", ".join([*loop.carries, *(stored or ["None"] * nc), f"np.int64({count})"]) + ",)"


LOOPS: dict[str, Callable[[Writer, Node, list[str]], str]] = {"scan": _p_scan, "while_loop": _p_while}


def _refuse(node: Node, reason: str) -> BackendError:
    shapes = ", ".join(str(u.shape) for u in node.inputs)
    return BackendError(
        f"the numba backend cannot run op {node.op!r} (node #{node.index}, inputs of shapes {shapes}): {reason}; "
        "use backend='numpy' for this graph"
    )


def _axes(node: Node, ndim: int, key: str = "axis") -> list[int]:
    axes = node.attrs[key]
    axes = (axes,) if isinstance(axes, int) else axes
    return sorted(a % ndim for a in axes)


def _shape_expr(x: str, dims: list[int]) -> str:
    return "(" + "".join(f"{x}.shape[{d}], " for d in dims) + ")"


def permuted(x: str, ndim: int, perm: list[int] | tuple[int, ...]) -> str:
    """``x`` (of ``ndim`` axes) with its axes permuted as np.transpose(x, perm), a C-contiguous
    copy: by the kernels of symdiff.backends.numba_kernels (numba compiles np.transpose with
    axes, and np.swapaxes, for seconds at each distinct array type)."""
    perm = [int(p) for p in perm]
    if perm == list(range(ndim)):
        return f"np.ascontiguousarray({x})"
    if ndim == 2:
        return f"_k.transposed({x})"
    shape = "".join(f"{x}.shape[{d}], " for d in range(ndim))
    to = "".join(f"{x}.shape[{d}], " for d in perm)
    return (
        f"_k.permuted(np.ascontiguousarray({x}).reshape(-1), np.array(({shape}), np.int64), "
        f"np.array({tuple(perm)}, np.int64)).reshape(({to}))"
    )


def reduce(w: Writer, fn: str, x: str, ndim: int, axes: list[int], keepdims: bool, dtype: np.dtype) -> str:
    """``fn`` (sum, max or min) of ``x`` over ``axes`` in numba: nested single-axis sums, or the
    reduced axes moved last and reduced row by row (numba's max takes no axis)."""
    if len(axes) == ndim:
        value = f"np.{fn}({x})"
        return f"np.full({(1,) * ndim}, {value})" if keepdims else value
    if fn == "sum":  # axis by axis, each in order (as numba's np.sum with an axis, quicker to compile)
        acc = _dtype(np.sum(np.zeros(1, dtype)).dtype)
        out, shape = x, [f"{x}.shape[{d}]" for d in range(ndim)]
        for a in reversed(axes):
            pre, post = " * ".join(shape[:a]) or "1", " * ".join(shape[a + 1 :]) or "1"
            flat3 = f"np.ascontiguousarray({out}).reshape(({pre}, {shape[a]}, {post}))"
            del shape[a]
            summed = w.temp(f"_k.sum_axis({flat3}, np.zeros(({pre}, {post}), {acc}))")
            out = w.temp(f"{summed}.reshape(({''.join(d + ', ' for d in shape)}))")
    else:
        kept = [d for d in range(ndim) if d not in axes]
        moved = w.temp(permuted(x, ndim, kept + axes))
        size = " * ".join(f"{moved}.shape[{k}]" for k in range(len(kept), ndim))
        out = f"_k.{fn}_rows({moved}.reshape((-1, {size}))).reshape({_shape_expr(moved, list(range(len(kept))))})"
    if keepdims:
        for a in axes:
            out = f"np.expand_dims({out}, {a})"
    return out


def _count(x: str, axes: list[int]) -> str:
    return " * ".join(f"{x}.shape[{a}]" for a in axes) or "1"


def _p_reduction(fn: str) -> Callable[..., str]:
    def printer(w: Writer, node: Node, a: list[str]) -> str:
        x = node.inputs[0]
        return reduce(w, fn, a[0], x.ndim, _axes(node, x.ndim), node.attrs["keepdims"], x.dtype)

    return printer


def _p_mean(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    axes = _axes(node, x.ndim)
    return f"{reduce(w, 'sum', a[0], x.ndim, axes, node.attrs['keepdims'], x.dtype)} / ({_count(a[0], axes)})"


def _p_count(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    return f"np.{node.dtype.name}({_count(a[0], _axes(node, x.ndim))})"


def _scalar_filled(node: Node, a: list[str]) -> str | None:
    """numba's array functions take no scalars: a scalar made an array is np.full."""
    if node.inputs[0].ndim:
        return None
    if node.ndim == 0:  # a 0-d node is a scalar in the generated code, never a 0-d array
        return a[0]
    return f"np.full({tuple(1 if d is None or d < 0 else d for d in node.shape)}, {a[0]})"


def _p_expand_dims(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    out = a[0]
    for axis in _axes(node, node.ndim):
        out = f"np.expand_dims({out}, {axis})"
    return out


def _p_squeeze(w: Writer, node: Node, a: list[str]) -> str:
    x = node.inputs[0]
    gone = _axes(node, x.ndim)
    return a[0] + "[" + ", ".join("0" if d in gone else ":" for d in range(x.ndim)) + "]"


def _p_reshape(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    if node.ndim == 0:  # the one element, as a scalar (numba's reshape to () gives a 0-d array)
        return f"np.ascontiguousarray({a[0]}).reshape(1)[0]"
    return f"np.ascontiguousarray({a[0]}).reshape({tuple(node.attrs['shape_to'])})"


def _p_transpose(w: Writer, node: Node, a: list[str]) -> str:
    return permuted(a[0], node.ndim, node.attrs["axes"])


def _p_broadcast_to(w: Writer, node: Node, a: list[str]) -> str:
    if node.inputs[0].ndim == 0:
        return _scalar_filled(node, a)
    return f"np.broadcast_to({a[0]}, {tuple(node.attrs['shape_to'])})"


def _p_broadcast_like(w: Writer, node: Node, a: list[str]) -> str:
    # x broadcast against ref, both ways (a Hessian's (n, 1) against (n,) is (n, n))
    x, ref = node.inputs
    if ref.ndim == 0:
        return a[0]
    if x.ndim == 0:
        return f"np.full({a[1]}.shape, {a[0]})"
    return f"np.broadcast_to({a[0]}, np.broadcast_shapes({a[0]}.shape, {a[1]}.shape))"


def _p_astype(w: Writer, node: Node, a: list[str]) -> str:
    name = np.dtype(node.attrs["dtype_to"]).name
    return f"np.{name}({a[0]})" if node.ndim == 0 else f"{a[0]}.astype(np.{name})"


def _p_match_shape(w: Writer, node: Node, a: list[str]) -> str:
    # a raise inside the native code would keep numba from caching it: the function returns
    # the check, and the caller raises
    w.checks.append((w.temp(f"{a[0]}.shape == {a[1]}.shape"), node))
    return a[0]


# An index whose values are known only at evaluation (an index node; an integer on an axis whose
# size is None) is checked before numba reads or writes by it: numba's integer and advanced
# indexing does no bounds check and would read or write other memory. A value outside -n..n-1
# raises (numba_kernels.bounded), and the compiled function then raises the numpy backend's IndexError for the same
# values, naming the op, the node, the index and the axis size (Compiled._refuse).


def _bounded(w: Writer, name: str, value: Any, ndim: int, target: str, axis: int, size: int | None) -> str:
    """The index ``name`` (of ``ndim`` axes) on ``axis`` of the array ``target``, checked as it
    runs unless its ``value`` is known while printing (a constant; else None) and in range of a
    static ``size``."""
    if value is not None and size is not None:
        value = np.asarray(value)
        if value.size == 0 or -size <= value.min() and value.max() < size:
            return name
    helper = "_k.bounded_int" if ndim == 0 else "_k.bounded"
    return f"{helper}({name}, {target}.shape[{axis}])"


def _index_parts(w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple) -> list[str]:
    """The entries of ``index``'s subscript of the array ``target`` of ``shape``; ``nodes`` name
    the index nodes (the node's last inputs). For an index numba takes as it is: at most one
    integer array of more than zero axes, and of one axis (else ``_Gathered``)."""
    index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
    parts: list[str] = []
    axis = 0
    for kind, *rest in index.key:
        if kind == "n":
            parts.append("None")
            continue
        size = shape[axis]
        if kind == "s":
            parts.append(_slice(*rest))
        elif kind == "i":  # checked when the graph was built where the size is static
            parts.append(_bounded(w, str(rest[0]), rest[0], 0, target, axis, size))
        elif kind == "x":
            u = index_nodes[rest[0]]
            value = u.value if u.op == "constant" else None
            parts.append(_bounded(w, nodes[rest[0]], value, u.ndim, target, axis, size))
        elif rest[1] == ():  # a 0-d integer array indexes as its integer does
            parts.append(_bounded(w, str(rest[0][0]), rest[0][0], 0, target, axis, size))
        else:
            values = np.array(rest[0], dtype=np.intp).reshape(rest[1])
            parts.append(_bounded(w, w.constant(values), values, values.ndim, target, axis, size))
        axis += 1
    return parts


def _slice(start: int | None, stop: int | None, step: int | None) -> str:
    text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
    return text + (f":{step}" if step else "")


def _subscript(w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple) -> str:
    """``index`` printed as the subscript of ``target`` (see ``_index_parts``)."""
    return ", ".join(_index_parts(w, node, index, nodes, target, shape)) or "()"


def _array_dims(node: Node, index: Any, nodes: list[str]) -> list[int]:
    """The number of axes of each integer array (constant or node) in ``index``, in order."""
    index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
    return [index_nodes[k[1]].ndim if k[0] == "x" else len(k[2]) for k in index.key if k[0] in "ax"]


def _numba_indexes(node: Node, index: Any, nodes: list[str]) -> bool:
    """Whether numba indexes by ``index`` itself: at most one integer array of more than zero
    axes (a 0-d one indexes as an integer does), and of one axis."""
    dims = [d for d in _array_dims(node, index, nodes) if d]
    return len(dims) <= 1 and all(d == 1 for d in dims)


def _tuple(items: list[str]) -> str:
    return "(" + "".join(f"{e}, " for e in items) + ")"


class _Gathered:
    """An index numba does not take (several integer arrays, or one of several axes, broadcast
    together), as one it does: the axes its integers and arrays index (adjacent: getitem moves
    separated ones to the front first) merged into ONE axis of ``target`` by a reshape, indexed
    by the flat positions of the elements picked (``pos``, shaped as the broadcast indices).

    Each index is checked against its own axis's size (``_bounded``: an index out of range
    raises, and the compiled function then the numpy backend's IndexError) and wrapped where
    negative before the positions are summed, so no index can reach another's element."""

    def __init__(self, w: Writer, node: Node, index: Any, nodes: list[str], target: str, shape: tuple):
        index_nodes = node.inputs[len(node.inputs) - len(nodes) :]
        advanced = [k for k, kind in enumerate(index.key) if kind[0] in "aix"]
        self.first, self.last = advanced[0], advanced[-1] + 1  # the entries merged, adjacent
        self.pre = [kind[0] for kind in index.key[: self.first]]  # "s" or "n" (numba's own parts)
        self.post = [kind[0] for kind in index.key[self.last :]]
        self.sliced = [_slice(*kind[1:]) for kind in index.key if kind[0] == "s"]
        self.at = sum(kind != "n" for kind in self.pre)  # the first axis of target merged
        axes = range(self.at, self.at + len(advanced))
        # each index times its stride in target's merged axes: a static product and runtime sizes
        terms, known, runtime, factors = [], 1, [], []
        for axis, k in zip(reversed(axes), reversed(advanced)):
            kind, *rest = index.key[k]
            size, n = shape[axis], f"{target}.shape[{axis}]"
            if kind == "x":
                u = index_nodes[rest[0]]
                name, value, ndim, dtype = nodes[rest[0]], u.value if u.op == "constant" else None, u.ndim, u.dtype
            elif kind == "i" or rest[1] == ():
                value = rest[0] if kind == "i" else rest[0][0]
                name, ndim, dtype = str(value), 0, np.dtype(np.intp)
            else:
                value = np.array(rest[0], dtype=np.intp).reshape(rest[1])
                name, ndim, dtype = "", value.ndim, value.dtype
            terms.append(" * ".join([self._wrapped(w, name, value, ndim, dtype, target, axis, size), *factors]))
            if size is not None:
                known *= size
            else:
                runtime.append(n)
            factors = [str(known)] * (known != 1) + runtime
        self.size = " * ".join(factors) or "1"  # the merged axis's length
        self.pos = w.temp(" + ".join(reversed(terms)))  # the broadcast indices' shape
        self.flat = f"{self.pos}.ravel()"
        self.merged = f"{target}.shape[:{self.at}] + ({self.size},) + {target}.shape[{self.at + len(advanced)}:]"

    @staticmethod
    def _wrapped(w: Writer, name: str, value: Any, ndim: int, dtype: Any, target: str, axis: int, size: Any) -> str:
        """The index on ``axis`` of ``target``, checked and with negative values counted from the
        end: 0 .. size - 1 (a constant known in range of a static size: wrapped as printed)."""
        if value is not None and size is not None:
            value = np.asarray(value)
            if value.size == 0 or -size <= value.min() and value.max() < size:
                wrapped = value % size if size else value
                return str(int(wrapped)) if ndim == 0 else w.constant(wrapped.astype(np.intp))
        if not name:  # a constant array on an axis whose size is known only at evaluation
            name = w.constant(value)
        checked = _bounded(w, name, None, ndim, target, axis, None)
        if dtype != np.intp:  # an unsigned or narrower index would promote the sum to float
            checked = f"np.intp({checked})" if ndim == 0 else f"{checked}.astype(np.intp)"
        return f"({checked} % {target}.shape[{axis}])"

    def subscript(self, flat: str) -> str:
        """The subscript of ``target`` merged: the slices in place, ``flat`` on the merged axis."""
        pre = sum(kind == "s" for kind in self.pre)
        return ", ".join([*self.sliced[:pre], flat, *self.sliced[pre:]])


def _p_getitem(w: Writer, node: Node, a: list[str]) -> str:
    index = node.attrs["index"]
    if _numba_indexes(node, index, a[1:]):
        return f"{a[0]}[{_subscript(w, node, index, a[1:], a[0], node.inputs[0].shape)}]"
    gather = _Gathered(w, node, index, a[1:], a[0], node.inputs[0].shape)
    merged = w.temp(f"np.ascontiguousarray({a[0]}).reshape({gather.merged})")
    y = w.temp(f"{merged}[{gather.subscript(gather.flat)}]")
    # numpy's layout: the sliced axes in place, None's of length 1, the broadcast indices' axes
    # where the first index was
    axes = iter(range(len(gather.pre) + len(gather.post) + 1))
    pre = ["1" if kind == "n" else f"{y}.shape[{next(axes)}]" for kind in gather.pre]
    next(axes)
    post = ["1" if kind == "n" else f"{y}.shape[{next(axes)}]" for kind in gather.post]
    return f"np.ascontiguousarray({y}).reshape({_tuple(pre)} + {gather.pos}.shape + {_tuple(post)})"


def _p_unindex(w: Writer, node: Node, a: list[str]) -> str:
    ref = node.inputs[1]
    nb = node.ndim - ref.ndim  # g's leading batch axes
    index = node.attrs["index"].with_batch(nb)
    shape = f"{a[0]}.shape[:{nb}] + {a[1]}.shape" if nb else f"{a[1]}.shape"  # g may be a scalar
    out = w.temp(f"np.zeros({shape}, np.{node.dtype.name})")
    if not _numba_indexes(node, index, a[2:]):
        return _scatter_added(w, node, index, a, out)
    parts = _index_parts(w, node, index, a[2:], out, node.shape)
    arrays = [k for k, kind in enumerate(index.key) if kind[0] in "ax"]
    dims = _array_dims(node, index, a[2:])
    if not any(dims):
        w.lines.append(f"    {out}[{', '.join(parts) or '()'}] = {a[0]}")  # each element of out written once
        return out
    # g's elements added one index at a time, so repeated indices accumulate (a setitem by the
    # array keeps the last); the indexed axes are one axis of g, where the first of them is
    (at,) = [k for k, d in zip(arrays, dims) if d]
    first = next(k for k, kind in enumerate(index.key) if kind[0] in "aix")
    idx, j = w.temp(parts[at]), w.name()
    target, values = [], []
    for k, (kind, *_) in enumerate(index.key):
        if kind != "n":
            target.append(f"{idx}[{j}]" if k == at else parts[k])
        if k == first:
            values.append(j)
        elif kind in "sn":  # an axis of g; None's has length 1 and no axis of out
            values.append(":" if kind == "s" else "0")
    w.lines.append(f"    for {j} in range({idx}.shape[0]):")
    w.lines.append(f"        {out}[{', '.join(target)}] += {a[0]}[{', '.join(values)}]")
    return out


def _scatter_added(w: Writer, node: Node, index: Any, a: list[str], out: str) -> str:
    """g added into the zeros ``out`` at an index numba does not take (``_Gathered``): one
    element (or slice) of g at a time on the merged axis, so repeated positions accumulate."""
    scatter = _Gathered(w, node, index, a[2:], out, node.shape)
    merged = w.temp(f"{out}.reshape({scatter.merged})")  # a view: out is contiguous
    # g's axes: one per entry before the indices (None's of length 1), the broadcast indices'
    # (merged into one), one per entry after them (counted from the end)
    pre = [f"{a[0]}.shape[{k}]" for k, kind in enumerate(scatter.pre) if kind == "s"]
    post = [f"{a[0]}.shape[{k - len(scatter.post)}]" for k, kind in enumerate(scatter.post) if kind == "s"]
    flat, j = w.temp(scatter.flat), w.name()
    g = w.temp(f"np.ascontiguousarray({a[0]}).reshape({_tuple([*pre, f'{flat}.shape[0]', *post])})")
    values = ", ".join([":"] * len(pre) + [j] + [":"] * len(post))
    w.lines.append(f"    for {j} in range({flat}.shape[0]):")
    w.lines.append(f"        {merged}[{scatter.subscript(f'{flat}[{j}]')}] += {g}[{values}]")
    return out


def _p_concatenate(w: Writer, node: Node, a: list[str]) -> str:
    arrays = ", ".join(f"np.ascontiguousarray({x})" for x in a)
    return f"np.concatenate(({arrays},), {node.attrs['axis'] % node.ndim})"


def _core_shape(x: str, dims: int) -> str:
    return "(" + "".join(f"{x}.shape[{-k}], " for k in range(dims, 0, -1)) + ")"


def _batched(
    w: Writer, node: Node, a: list[str], cores: list[int], out_core: str | list[str], call: Callable[..., str]
) -> str:
    """A linear-algebra routine numba runs on single matrices, looped over the stack's
    (broadcast) leading axes. A node with several outputs (``eigh``) gives ``out_core`` per
    output, and ``call`` returns their tuple. Each operand is made a C-contiguous stack of its
    cores (its leading axes flattened), and ``numba_kernels.batch_index`` gives each result's
    position in each stack: loops over flat arrays, the same code for any number of axes (numba
    compiles np.broadcast_to and np.ndindex over stacks for seconds at each distinct type)."""
    if all(u.ndim == c for u, c in zip(node.inputs, cores)):
        return call(*(f"np.ascontiguousarray({x})" for x in a))
    a = [x if x.isidentifier() else w.temp(x) for x in a]  # each cast once
    leading = [u.ndim - c for u, c in zip(node.inputs, cores)]
    nb = max(leading)
    sizes = []
    for x, lead in zip(a, leading):
        sizes += ["1"] * (nb - lead) + [f"{x}.shape[{d}]" for d in range(lead)]
    found = w.temp(f"_k.batch_index(np.array(({', '.join(sizes)},), np.int64), {len(a)})")
    idx = w.temp(f"{found}[0]")
    stacks = []
    for x, u, lead in zip(a, node.inputs, leading):
        count = " * ".join(f"{x}.shape[{d}]" for d in range(lead)) or "1"
        core = "".join(f", {x}.shape[{d}]" for d in range(lead, u.ndim))
        stacks.append(w.temp(f"np.ascontiguousarray({x}).reshape(({count}{core}))"))
    cores_out = out_core if isinstance(out_core, list) else [out_core]
    dtypes = [d for _, d in node.results] if node.is_multi else [node.dtype]
    outs = [w.temp(f"np.empty(({idx}.shape[1],) + {core}, {_dtype(d)})") for core, d in zip(cores_out, dtypes)]
    i, done = w.name(), w.name()
    w.lines.append(f"    for {i} in range({idx}.shape[1]):")
    w.lines.append(f"        {done} = {call(*(f'{p}[{idx}[{j}, {i}]]' for j, p in enumerate(stacks)))}")
    results = [f"{done}[{j}]" for j in range(len(outs))] if isinstance(out_core, list) else [done]
    for out, result, core in zip(outs, results, cores_out):
        # an array into its slot by numba_kernels.put (numba's setitem of an array checks the
        # shapes with an error message that takes seconds to compile)
        scalar = not core.replace("()", "").replace("+", "").strip()
        w.lines.append(f"        {out}[{i}] = {result}" if scalar else f"        _k.put({out}, {i}, {result})")
    batch = "(" + "".join(f"{found}[1][{d}], " for d in range(nb)) + ")"
    shaped = [f"{out}.reshape({batch} + {core})" for out, core in zip(outs, cores_out)]
    return f"({', '.join(shaped)},)" if isinstance(out_core, list) else shaped[0]


def _p_matmul(w: Writer, node: Node, a: list[str]) -> str:
    x, y = node.inputs
    cx, cy = min(x.ndim, 2), min(y.ndim, 2)
    rows = f"({a[0]}.shape[-2],)" if cx == 2 else "()"
    cols = f"({a[1]}.shape[-1],)" if cy == 2 else "()"
    dtype = _dtype(node.dtype)
    if node.dtype.kind in "fc":  # numpy casts both operands to the result's type first (int32 @ float32)
        cast = [f"{p}.astype({dtype})" if u.dtype != node.dtype else p for p, u in zip(a, node.inputs)]
        return _batched(w, node, cast, [cx, cy], f"{rows} + {cols}", lambda p, q: f"_k.dot({p}, {q})")
    count = "np.int64" if node.dtype.kind == "b" else dtype  # bool @ bool: any of the products
    cast = [f"{p}.astype({count})" if u.dtype.name != count[3:] else p for p, u in zip(a, node.inputs)]

    def dot(p: str, q: str) -> str:
        p2 = p if cx == 2 else f"{p}.reshape(1, -1)"
        q2 = q if cy == 2 else f"{q}.reshape(-1, 1)"
        product = f"_k.integer_dot({p2}, {q2}, np.empty(({p2}.shape[0], {q2}.shape[1]), {count}))"
        product = product if node.dtype.kind != "b" else f"({product} != 0)"
        return product + ("" if cx == 2 and cy == 2 else "[0, :]" if cy == 2 else "[:, 0]" if cx == 2 else "[0, 0]")

    return _batched(w, node, cast, [cx, cy], f"{rows} + {cols}", dot)


def _p_linalg(name: str) -> Callable[..., str]:
    def printer(w: Writer, node: Node, a: list[str]) -> str:
        cores = [2] + [1 if u.ndim == 1 else 2 for u in node.inputs[1:]]  # solve: b a vector only if 1-D
        out_core = {"det": "()", "inv": _core_shape(a[0], 2)}.get(name) or _core_shape(a[-1], cores[-1])
        return _batched(w, node, a, cores, out_core, lambda *m: f"np.linalg.{name}({', '.join(m)})")

    return printer


def _p_adjugate(w: Writer, node: Node, a: list[str]) -> str:
    fn = f"_k.{node.op}"
    return _batched(w, node, a, [2] * len(a), _core_shape(a[0], 2), lambda *m: f"{fn}({', '.join(m)})")


def _p_var(w: Writer, node: Node, a: list[str], root: bool = False) -> str:
    x = node.inputs[0]
    axes = _axes(node, x.ndim)
    count = f"({_count(a[0], axes)})"
    centered = w.temp(f"{a[0]} - {reduce(w, 'sum', a[0], x.ndim, axes, True, x.dtype)} / {count}")
    squares = w.temp(f"{centered} * {centered}")
    squares = reduce(w, "sum", squares, x.ndim, axes, node.attrs["keepdims"], node.dtype)
    var = f"{squares} / ({count} - {node.attrs['ddof']})"
    return f"np.sqrt({var})" if root else var


def _p_running(w: Writer, node: Node, a: list[str]) -> str:
    """cumsum, cumprod: the axis moved last, each lane accumulated in order (as numpy's)."""
    x = node.inputs[0]
    axis = node.attrs["axis"] % x.ndim
    dtype = getattr(np, node.op)(np.zeros(1, x.dtype)).dtype
    name = "_k.running_sum" if node.op == "cumsum" else "_k.running_product"
    perm = [k for k in range(x.ndim) if k != axis] + [axis]
    moved = w.temp(permuted(a[0], x.ndim, perm))
    lanes = f"({_count(moved, list(range(x.ndim - 1)))}, {moved}.shape[{x.ndim - 1}])"  # one kernel type
    done = f"{name}({moved}.reshape({lanes}), np.empty({lanes}, {_dtype(dtype)})).reshape({moved}.shape)"
    if axis == x.ndim - 1:
        return done
    return permuted(w.temp(done), x.ndim, [int(k) for k in np.argsort(perm)])


def _p_prod(w: Writer, node: Node, a: list[str]) -> str:
    """prod over axes: those moved last and multiplied row by row, in numpy's dtype (int32 in int64)."""
    x = node.inputs[0]
    dtype = np.prod(np.zeros(1, x.dtype)).dtype
    if x.ndim == 0:
        return f"{_dtype(dtype)}({a[0]})"
    axes = _axes(node, x.ndim)
    kept = [d for d in range(x.ndim) if d not in axes]
    moved = w.temp(permuted(a[0], x.ndim, kept + axes))
    size = _count(moved, list(range(len(kept), x.ndim)))
    count = _count(moved, list(range(len(kept))))
    rows = f"_k.prod_rows({moved}.reshape(({count}, {size})), np.empty({count}, {_dtype(dtype)}))"
    keep = node.attrs["keepdims"]
    if not kept and not keep:
        return f"{rows}[0]"
    parts = ["1" if d in axes else f"{moved}.shape[{kept.index(d)}]" for d in range(x.ndim) if keep or d in kept]
    return f"{rows}.reshape(({''.join(p + ', ' for p in parts)}))"


def _half(dtype: np.dtype) -> str:
    """0.5 in ``dtype`` (numba makes a float32 array times a float64 literal float64)."""
    return "0.5" if dtype == np.float64 else f"{_dtype(dtype)}(0.5)"


def _p_cholesky(w: Writer, node: Node, a: list[str]) -> str:
    # of the symmetric part, as the op's forward
    x = node.inputs[0]
    swapped = permuted(a[0], x.ndim, [*range(x.ndim - 2), x.ndim - 1, x.ndim - 2])
    sym = w.temp(f"{_half(node.dtype)} * ({a[0]} + {swapped})")
    return _batched(w, node, [sym], [2], _core_shape(sym, 2), lambda m: f"np.linalg.cholesky({m})")


def _decomposition(w: Writer, name: str, dtype: np.dtype, a: list[str], inputs: tuple[Node, ...]) -> str:
    """The kernel ``name`` of symdiff.backends.numba_kernels (it works in its arguments' dtype),
    and ``a`` cast to ``dtype`` where an input has another."""
    for k, u in enumerate(inputs):
        if u.dtype != dtype:
            a[k] = f"{a[k]}.astype({_dtype(dtype)})"
    return f"_k.{name}"


def _p_eigh(w: Writer, node: Node, a: list[str]) -> str:
    a = list(a)
    fn = _decomposition(w, "eigh", node.results[0][1], a, node.inputs)
    return _batched(w, node, a, [2], [f"({a[0]}.shape[-1],)", _core_shape(a[0], 2)], lambda m: f"{fn}({m})")


def _p_slogdet(w: Writer, node: Node, a: list[str]) -> str:
    a = list(a)
    fn = _decomposition(w, "slogdet", node.results[0][1], a, node.inputs)
    return _batched(w, node, a, [2], ["()", "()"], lambda m: f"{fn}({m})")


def _p_singular_values(w: Writer, node: Node, a: list[str]) -> str:
    a = list(a)
    fn = _decomposition(w, "singular_values", node.dtype, a, node.inputs)
    core = f"(min({a[0]}.shape[-2], {a[0]}.shape[-1]),)"
    return _batched(w, node, a, [2], core, lambda m: f"{fn}({m})")


def _p_eigh_gaps(w: Writer, node: Node, a: list[str]) -> str:
    # a repeated eigenvalue: the function returns the check, and the caller raises the op's SymdiffError
    x = node.inputs[0]
    a = list(a)
    fn = _decomposition(w, "eigh_gaps", node.dtype, a, node.inputs)
    rows = _count(a[0], list(range(x.ndim - 1)))
    eps = repr(float(np.finfo(node.dtype).eps))
    done = w.temp(f"{fn}(np.ascontiguousarray({a[0]}).reshape(({rows}, {a[0]}.shape[-1])), {eps})")
    w.checks.append((w.temp(f"{done}[1]"), node))
    return f"{done}[0].reshape({a[0]}.shape + ({a[0]}.shape[-1],))"


def _p_solve_triangular(w: Writer, node: Node, a: list[str]) -> str:
    at = node.attrs
    vector = node.inputs[1].ndim == 1
    a = list(a)
    fn = _decomposition(w, "solve_triangular_vector" if vector else "solve_triangular", node.dtype, a, node.inputs)
    flags = f"{bool(at['lower'])}, {bool(at['trans'])}, {bool(at['unit'])}"
    core = _core_shape(a[1], 1 if vector else 2)
    return _batched(w, node, a, [2, 1 if vector else 2], core, lambda m, b: f"{fn}({m}, {b}, {flags})")


# the bounds on the Pade approximants' backward error for float64 and float32 (scipy's coeff)
_EXPM_COEFF = {
    np.dtype(np.float64): "(1.1191048088221578e-11, 1.1167770708198077e-06, 4.9826124310493469e-01, "
    "6.5662862500000000e+05, 1.2573361865339437e+19)",
    np.dtype(np.float32): "(6.0081481933593750e-03, 5.9956512451171875e+02, 2.6750196800000000e+08, "
    "3.5252480874905600e+14, 6.7502722515508048e+27)",
}


def _p_expm(w: Writer, node: Node, a: list[str]) -> str:
    coeff = _EXPM_COEFF[node.dtype]
    cast = "" if node.dtype == np.float64 else f".astype({_dtype(node.dtype)})"
    return _batched(w, node, a, [2], _core_shape(a[0], 2), lambda m: f"_k.expm({m}, {coeff}){cast}")


PRINTERS: dict[str, Callable[[Writer, Node, list[str]], str]] = {
    "sum": _p_reduction("sum"),
    "max": _p_reduction("max"),
    "min": _p_reduction("min"),
    "mean": _p_mean,
    "count": _p_count,
    "expand_dims": _p_expand_dims,
    "squeeze": _p_squeeze,
    "reshape": _p_reshape,
    "transpose": _p_transpose,
    "broadcast_to": _p_broadcast_to,
    "broadcast_like": _p_broadcast_like,
    "astype": _p_astype,
    "match_shape": _p_match_shape,
    "stop_gradient": lambda w, node, a: a[0],
    "zeros_like": lambda w, node, a: f"np.zeros_like({a[0]})" if node.ndim else "0.0",
    "ones_like": lambda w, node, a: f"np.ones_like({a[0]})" if node.ndim else "1.0",
    "getitem": _p_getitem,
    "unindex": _p_unindex,
    "concatenate": _p_concatenate,
    "matmul": _p_matmul,
    "inv": _p_linalg("inv"),
    "det": _p_linalg("det"),
    "adjugate": _p_adjugate,
    "adjugate_jvp": _p_adjugate,
    "solve": _p_linalg("solve"),
    "clip": lambda w, node, a: flat(w, node, a, lambda n, d: f"np.minimum(np.maximum({n[0]}, {n[1]}), {n[2]})"),
    "round": lambda w, node, a: f"np.round({a[0]}, {node.attrs['decimals']})" if node.ndim else "",
    "var": _p_var,
    "std": functools.partial(_p_var, root=True),
    "outer": lambda w, node, a: f"np.outer({a[0]}, {a[1]})" if all(u.ndim == 1 for u in node.inputs) else "",
    "clip_below": lambda w, node, a: flat(w, node, a, lambda n, d: f"np.maximum({n[0]}, {n[1]})"),
    "clip_above": lambda w, node, a: flat(w, node, a, lambda n, d: f"np.minimum({n[0]}, {n[1]})"),
    # h or its matrix transpose, by the shape of ref, known at evaluation (a copy: one array type)
    "tall": lambda w, node, a: (
        f"(np.ascontiguousarray({a[0]}) if {a[1]}.shape[-2] >= {a[1]}.shape[-1] "
        f"else {permuted(a[0], node.ndim, [*range(node.ndim - 2), node.ndim - 1, node.ndim - 2])})"
    ),
    "reshape_like": lambda w, node, a: (
        f"np.ascontiguousarray({a[0]}).reshape({a[0]}.shape[:{node.ndim - node.inputs[1].ndim}] + {a[1]}.shape)"
    ),
    "output": lambda w, node, a: f"{a[0]}[{node.attrs['index']}]",
    "cumsum": _p_running,
    "cumprod": _p_running,
    "prod": _p_prod,
    "arange": lambda w, node, a: f"np.arange(np.int64({a[0]})).astype({_dtype(node.dtype)})",
    "cholesky": _p_cholesky,
    "eigh": _p_eigh,
    "eigh_gaps": _p_eigh_gaps,
    "slogdet": _p_slogdet,
    "singular_values": _p_singular_values,
    "solve_triangular": _p_solve_triangular,
    "expm": _p_expm,
}


def lowers(op: Op) -> bool:
    """Whether this backend runs ``op`` as its lowering (symdiff.lower) rather than a printer of its own."""
    return op.lower is not None and op.name not in PRINTERS and op.name not in LOOPS and op.sparsity != "body"


def unsupported(op: Op) -> str | None:
    """Why this backend cannot run ``op`` (None: it can, for the shapes its printer accepts)."""
    if op.sparsity == "body":  # runs its body, each op of it as here
        return None
    if op.name in PRINTERS or op.name in LOOPS or lowers(op):
        return None
    if op.numpy in UFUNCS and op.elementwise or op.scalar is not None and op.elementwise:
        return None
    # every op of the registry has one of those; an op defined since without any lands here
    return (
        "it has no numba printer (PRINTERS), no lowering to primitives (define_op's lower=) "
        "and no elementwise scalar form"
    )


def support(op: Op) -> str:
    """How this backend runs ``op``, for docs/ops.md's table."""
    return described(
        unsupported(op),
        (op.sparsity == "body", "its body, a njit function of its own"),
        (op.name in LOOPS, "a native loop calling its bodies' njit functions"),
        (op.name in PRINTERS, "printer"),
        (lowers(op), "lowered to primitives"),
        otherwise=f"`np.{op.numpy}`" if op.numpy in UFUNCS else "scalar expression, looped",
    )


@functools.cache
def function(op: Op) -> Callable[..., str]:
    """The printer of ``op``: ``printer(writer, node, argument_names) -> expression``."""
    reason = unsupported(op)
    if reason is not None:
        raise unsupported_error("numba", op.name, reason)
    if op.sparsity == "body":
        return _p_body
    if op.name in PRINTERS or op.name in LOOPS:
        return PRINTERS.get(op.name) or LOOPS[op.name]
    if lowers(op):
        return _p_lowered
    return functools.partial(_elementwise, op)


function.prints = True  # a plan's steps hold printers, bodies included (symdiff.plan.Step)


_NUMBA_TYPES = {"bool": "boolean"}


def _numba_type(dtype: np.dtype) -> str:
    return _NUMBA_TYPES.get(dtype.name, dtype.name)


def flat(w: Writer, node: Node, a: list[str], call: Callable[[list[str], list[int]], str]) -> str:
    """An elementwise ``node`` of 2 axes or more computed on arrays of one axis:
    ``call(names, ndims)`` prints it on its inputs given as ``names`` of ``ndims`` axes (1 or
    0), and the result is reshaped. An input of the node's shape is flattened; inputs that
    may broadcast are gathered at the positions ``numba_kernels.batch_index`` gives (past 2
    axes; at 2, numba broadcasts them). Numba compiles
    a ufunc over arrays of n axes for a time growing fast with n (a binary one: 2.5 s at 2
    axes, 30 s at 4; 1.4 s flat)."""
    dims = [u.ndim for u in node.inputs]
    arrays = [k for k, d in enumerate(dims) if d]
    if node.ndim <= 1 or not arrays:
        return call(a, dims)
    a = [x if x.isidentifier() or not dims[k] else w.temp(x) for k, x in enumerate(a)]
    ref = a[arrays[0]]
    names = list(a)
    if len(arrays) == 1 or all(_static(node.inputs[k].shape) and node.inputs[k].shape == node.shape for k in arrays):
        for k in arrays:
            names[k] = f"np.ascontiguousarray({a[k]}).reshape(-1)"
        shape = f"{ref}.shape"
    elif node.ndim == 2:  # numba's own broadcasting, still quick to compile at 2 axes
        return call(a, dims)
    else:
        sizes = []
        for k in arrays:
            sizes += ["1"] * (node.ndim - dims[k]) + [f"{a[k]}.shape[{d}]" for d in range(dims[k])]
        found = w.temp(f"_k.batch_index(np.array(({', '.join(sizes)},), np.int64), {len(arrays)})")
        idx = w.temp(f"{found}[0]")
        for j, k in enumerate(arrays):
            names[k] = f"np.ascontiguousarray({a[k]}).reshape(-1)[{idx}[{j}]]"
        shape = "(" + "".join(f"{found}[1][{d}], " for d in range(node.ndim)) + ")"
    return f"{call(names, [min(d, 1) for d in dims])}.reshape({shape})"


def _elementwise(op: Op, w: Writer, node: Node, a: list[str]) -> str:
    if op.numpy in UFUNCS:
        return flat(w, node, a, lambda names, dims: f"np.{op.numpy}({', '.join(names)})")
    return _mapped(op, w, node, a)


def _mapped(op: Op, w: Writer, node: Node, a: list[str]) -> str:
    """The scalar expression mapped over the broadcast inputs by loops over the result's axes,
    an input's index 0 on an axis where its size is 1 (a size neither 1 nor the result's raises
    ValueError, as numpy's broadcasting). A helper per op and input types (numba.vectorize's own
    disk cache cannot load from a generated module; np.broadcast_to takes seconds to compile)."""
    dims = [u.ndim for u in node.inputs]
    name = f"_map_{op.name}_" + "_".join(f"{u.dtype.name}{u.ndim}" for u in node.inputs)
    arrays = [k for k, d in enumerate(dims) if d]
    nd = node.ndim
    params = [f"a{k}" for k in range(len(a))]
    lines = []
    for d in range(nd):  # the result's size on axis d, and each input's step there (0 or 1)
        sizes = [f"a{k}.shape[{d - nd + dims[k]}]" for k in arrays if d - nd + dims[k] >= 0]
        # numpy's broadcast size: the one size not 1 (0 against 1 is 0), 1 if all are
        lines.append(f"    n{d} = 0 if min(({', '.join(sizes)},)) == 0 else max(({', '.join(sizes)},))")
        for k in arrays:
            if d - nd + dims[k] >= 0:
                size = f"a{k}.shape[{d - nd + dims[k]}]"
                lines.append(f"    s{k}_{d} = 0 if {size} == 1 else 1")
                lines.append(f"    if {size} != 1 and {size} != n{d}:")
                lines.append('        raise ValueError("operands could not be broadcast together")')
    lines.append(f"    out = np.empty(({''.join(f'n{d}, ' for d in range(nd))}), np.{node.dtype.name})")
    for d in range(nd):
        lines.append("    " * (d + 1) + f"for i{d} in range(n{d}):")
    items = []
    for k in range(len(a)):
        at = [f"i{d} * s{k}_{d}" for d in range(nd - dims[k], nd)]
        items.append(f"a{k}[{', '.join(at)}]" if dims[k] else f"a{k}")
    index = ", ".join(f"i{d}" for d in range(nd)) or "()"
    lines.append("    " * (nd + 1) + f"out[{index}] = {sx.to_numba(op.scalar, items, node.dtype)}")
    lines.append("    return out" if nd else "    return out[()]")
    source = (
        f'\n@numba.njit(cache=True, error_model="numpy")\ndef {name}({", ".join(params)}):\n' + "\n".join(lines) + "\n"
    )
    return f"{w.helper(name, source)}({', '.join(a)})"


def _literal(node: Node) -> str | None:
    return _value_literal(np.asarray(node.value))


def _value_literal(v: np.ndarray) -> str | None:
    """A 0-d value as numba source text of its dtype; None for an array."""
    if v.ndim:
        return None
    item = v.item()
    if v.dtype == bool:
        return repr(item)
    if v.dtype.kind == "f":
        if math.isfinite(item):
            text = repr(float(item))
        else:
            text = "np.nan" if math.isnan(item) else f"{'-' if item < 0 else ''}np.inf"
        return text if v.dtype == np.float64 else f"np.{v.dtype.name}({text})"
    return f"np.{v.dtype.name}({item})"


def generate(plan: Plan) -> tuple[str, list[np.ndarray], list[Node], list[Node]]:
    """The module source (helpers, then ``def compiled(inputs..., constants...)``), the
    array constants to pass after the inputs, the nodes whose shape check the function
    returns after the outputs (True: passed), and then the nodes whose shapes it returns
    (``(shape, *input_shapes)`` each, last), for ``plan.check_shapes`` to check after the
    call: where numpy's broadcasting could take a None dimension bound to 1. A body (a
    composite's) is a njit function of its own, printed once, called where nodes run it."""
    w = Writer()
    outs = _print(w, plan)
    function_source = _function("compiled", len(plan.inputs), w, outs)
    helpers = "".join(w.helpers[k] for k in sorted(w.helpers))
    source = (
        "# generated by symdiff's numba backend\nimport math as _math\n\nimport numba\nimport numpy as np\n\n"
        "from symdiff.backends import numba_kernels as _k\n"
        f"{helpers}\n{function_source}"
    )
    return source, w.constants, [node for _, node in w.checks], [node for _, node in w.shaped]


# statements per njit function: LLVM's optimization time grows faster than the size of the
# function it optimizes, so a very long plan is printed as a chain of functions of about this
# many lines each, called in turn (``_segments``). Each part's code is generated twice (in its
# own library and in the caller's, which links it), so splitting pays only for long functions:
# measured, the 2700 lines of chain300's gradient build in 7.6 s whole and 14 s in parts of 150
# lines, the norm Hessian's 240 lines in 28 s whole and 37 s in parts of 40.
SEGMENT_LINES = 2000
_JIT_LINE = '@numba.njit(cache=True, error_model="numpy")'


def _function(name: str, arity: int, w: Writer, outs: list[str]) -> str:
    """``def name(x0.., constants..)`` of ``w``'s statements, returning ``outs``, the flags of
    its checks and the shapes to check; past ``SEGMENT_LINES`` lines, it calls the functions
    of its segments in turn (printed before it)."""
    result = ", ".join(outs + [flag for flag, _ in w.checks] + [shape for shape, _ in w.shaped])
    params = [f"x{k}" for k in range(arity)] + [f"_c{k}" for k in range(len(w.constants))]
    segments, lines = _segments(name, params, w.lines, f"({result},)")
    body = "\n".join(lines) or "    pass"
    return "".join(segments) + (f"\n\n{_JIT_LINE}\ndef {name}({', '.join(params)}):\n{body}\n    return ({result},)\n")


def _names(statements: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """The local names the statements assign and those they read."""
    stored, loaded = set(), set()
    for statement in statements:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name):
                (stored if isinstance(node.ctx, ast.Store) else loaded).add(node.id)
    return stored, loaded


def _segments(name: str, params: list[str], lines: list[str], result: str) -> tuple[list[str], list[str]]:
    """A function body of many ``lines`` split at its top-level statements into functions of
    about ``SEGMENT_LINES`` lines each (``{name}_partN``), each taking the values it reads that
    earlier ones made and returning those read later: their sources, and the body calling them.
    A short body is returned as it is."""
    if len(lines) <= SEGMENT_LINES * 3 // 2:
        return [], lines
    tree = ast.parse("\n".join(line[4:] for line in lines))
    groups: list[list[ast.stmt]] = [[]]
    size = 0
    for statement in tree.body:
        span = statement.end_lineno - statement.lineno + 1
        if size and size + span > SEGMENT_LINES:
            groups.append([])
            size = 0
        groups[-1].append(statement)
        size += span
    if len(groups) == 1:
        return [], lines
    used = [_names(group) for group in groups]
    later: list[set[str]] = []  # the names read from group k + 1 on, and by the result
    reads = _names([ast.parse(result).body[0]])[1]
    for _, loaded in reversed(used):
        later.append(set(reads))
        reads |= loaded
    later.reverse()
    local = set(params).union(*(stored for stored, _ in used))  # anything else is a global
    defined = set(params)
    sources, body = [], []
    for k, (group, (stored, loaded)) in enumerate(zip(groups, used)):
        takes = sorted((loaded | stored) & defined & local, key=_order)
        gives = sorted(stored & later[k], key=_order)
        text = "\n".join("    " + line for statement in group for line in ast.unparse(statement).splitlines())
        part = f"{name}_part{k}"
        out = "".join(f"{g}, " for g in gives)
        sources.append(f"\n\n{_JIT_LINE}\ndef {part}({', '.join(takes)}):\n{text}\n    return ({out})\n")
        body.append(f"    ({out}) = {part}({', '.join(takes)})" if gives else f"    {part}({', '.join(takes)})")
        defined |= stored
    return sources, body


def _order(name: str) -> tuple[str, int]:
    """Names in the order printed: the prefix, then the number (``t12`` after ``t9``)."""
    digits = len(name) - len(name.rstrip("0123456789"))
    return (name[: len(name) - digits], int(name[len(name) - digits :] or -1))


def _checked(plan: Plan, extent: dict[Node, tuple]) -> set[Node]:
    """The nodes whose sizes the generated code returns for checking (plan.compiled_checks), but
    those of one extent (symdiff.backends.fusion.extents): their sizes are equal by construction."""
    return {s.node for s in plan.compiled_checks() if extent.get(s.node, (None, s.node))[1] is s.node}


def _print(w: Writer, plan: Plan) -> list[str]:
    """The plan's steps as statements of ``w``, chains of elementwise steps fused into loops
    (symdiff.backends.fusion); the names of its outputs."""
    extent = extents(plan)
    shaped = _checked(plan, extent)
    names: dict[Node, str] = {}
    for n in (*plan.inputs, *(s.node for s in plan.steps)):
        if n.dtype == np.float16:  # numba types no half-precision arithmetic (NotImplementedError)
            what = f"variable {n}" if n.op == "variable" else f"op {n.op!r} (node #{n.index})"
            raise BackendError(
                f"the numba backend cannot run float16 ({what}): numba has no half-precision arithmetic; "
                "use backend='numpy' or backend='jax' for this graph"
            )
    w.wanted = wanted_outputs(plan.computed, plan.outputs)
    for k, n in enumerate(plan.inputs):
        names[n] = f"x{k}"
    for n in plan.leaves:
        if n not in names:
            names[n] = _literal(n) or w.constant(n.value)

    def _as_map(step: Step) -> str | None:
        return None if step.scalar or step.node in shaped else _element_template(step.node)

    def _sum(step: Step) -> str | None:
        return None if step.node in shaped else _reduced(step.node)

    for item in fused(plan, _as_map, _sum, lambda step: step.node.op == "count"):
        if isinstance(item, Group):
            _loop(w, item, names)
        elif (
            not item.node.is_multi
            and item.node.ndim >= 2
            and _static(item.node.shape)
            and (template := _as_map(item)) is not None
        ):
            # an elementwise step of 2 axes or more alone: a loop too (numba compiles a ufunc
            # over arrays of n axes for a time growing fast with n)
            group = Group(item.node.shape)
            group.steps[item.node], group.maps[item.node], group.stored = item, template, [item.node]
            _loop(w, group, names)
        else:
            early = [u for u in item.node.inputs if u not in names]  # a count's: its extent's root
            names.update({u: names[extent[u][1]] for u in early})
            _emit(w, item, names, shaped)
            for u in early:
                del names[u]
    return [names[n] for n in plan.outputs]


def _emit(w: Writer, step: Step, names: dict[Node, str], shaped: set[Node], target: str | None = None) -> None:
    """One step as one statement ``tN = expr`` (its printer's, or its scalar expression's; ``target``
    in place of ``tN``)."""
    n = step.node
    args = [names[u] for u in n.inputs]
    if step.scalar:
        expr = sx.to_numba(REGISTRY[n.op].scalar, args, n.dtype)
    else:
        expr = step.fn(w, n, args)  # the plan's function of the op: this backend's printer
        if not expr:
            raise _refuse(n, "this form of it (broadcast operands, a scalar) has no numba printer")
    target = target or f"t{n.index}"
    w.lines.append(f"    {target} = {expr}")
    names[n] = target
    if n in shaped:  # a raise here would keep numba from caching: the caller checks
        parts = [f"{names[m]}.shape" if m.ndim else "()" for m in (n, *n.inputs)]
        w.shaped.append((w.temp(f"({', '.join(parts)},)"), n))


# elementwise ops printed by PRINTERS whose element is a scalar expression of their inputs' elements
_FUSED = {
    "stop_gradient": "{0}",
    "broadcast_to": "{0}",
    "broadcast_like": "{0}",  # input 1 gives the shape only
    "astype": "{0}",  # made the node's dtype as every member is
    "clip": "np.minimum(np.maximum({0}, {1}), {2})",
    "clip_below": "np.maximum({0}, {1})",
    "clip_above": "np.minimum({0}, {1})",
}
# the ops whose scalar form has numpy's meaning on integers and booleans too; any other is fused
# only where it makes floats (or ints, for _INTEGER): numpy's bool + bool or int ** -1 are its own
_ANY_KIND = frozenset(
    "equal not_equal less less_equal greater greater_equal where maximum minimum clip clip_below clip_above "
    "stop_gradient broadcast_to broadcast_like".split()
)
_INTEGER = frozenset("add sub mul neg abs".split())


def _static(shape: tuple) -> bool:
    return None not in shape


def _element_template(node: Node) -> str | None:
    """The scalar expression, a template over its inputs' elements, computing one element of
    ``node`` in a fused loop; None if the node is printed on its own. Fused: an elementwise op
    with a scalar form (numba's kernel of its numpy ufunc, else its scalar expression), whose
    inputs broadcast to it by static size-1 axes alone (an unknown size only against the same
    unknown size: which loops it joins is symdiff.backends.fusion's), in a float, int or bool
    dtype where the scalar form means what numpy's array op does."""
    op = REGISTRY[node.op]
    if not (op.elementwise or node.op == "stop_gradient") or node.is_multi or node.regions:
        return None
    if not node.shape or node.dtype.kind not in "fbi":
        return None
    if node.op == "astype" and node.dtype.kind != "f":
        if node.dtype.kind != "i" or node.inputs[0].dtype.kind not in "ib":
            return None  # float to int or anything to bool: numpy's casts, not numba's scalar ones
    if node.dtype.kind != "f" and node.op not in _ANY_KIND and not (node.dtype.kind == "i" and node.op in _INTEGER):
        return None
    for u in node.inputs:
        if u.dtype.kind not in "fbi" or len(u.shape) > node.ndim:
            return None
        if any(d not in (1, s) for d, s in zip(u.shape, node.shape[node.ndim - u.ndim :])):
            return None
    if node.op in _FUSED:
        template = _FUSED[node.op]
    elif node.op in PRINTERS:
        return None
    elif op.numpy in UFUNCS:  # numba's own kernel of its array ufunc: the same numbers as unfused
        template = f"np.{op.numpy}({', '.join(f'{{{k}}}' for k in range(len(node.inputs)))})"
    elif op.scalar is not None:  # a format string over the inputs' elements, as the others
        template = sx.to_numba(op.scalar, [f"{{{k}}}" for k in range(len(node.inputs))], node.dtype)
    else:
        return None
    if node.dtype != np.float64 or any(u.dtype != np.float64 for u in node.inputs):
        # numba's scalar types are not numpy's arrays' (int32 + int32 is int64, float32 * a
        # float64 literal float64): each element is made the node's dtype, as numpy's result is
        template = f"{_dtype(node.dtype)}({template})"
    return template


def _reduced(node: Node) -> str | None:
    """The op ("sum" or "mean") of a float64 sum or mean of a float64 array over all its axes,
    which a loop over the array's elements accumulates (in numba's np.sum's order); else None."""
    if node.op not in ("sum", "mean") or node.shape != () or node.dtype != np.float64:
        return None
    (x,) = node.inputs
    if not x.shape or x.dtype != np.float64 or len(_axes(node, x.ndim)) != x.ndim:
        return None
    return node.op


# sin, cos, tanh, exp and log of float64 elements in a fused loop: numba_kernels' straight-line
# forms, which LLVM vectorizes (the C library's are calls, one element at a time); sin and cos hold
# for arguments that trig_ok accepts, and the loop runs again with numpy's own where one does not.
_VECTOR_MATH = {
    "sin": ("_k.sin_fast({0})", True),
    "cos": ("_k.cos_fast({0})", True),
    "tanh": ("_k.tanh_fast({0})", False),
    "exp": ("_k.exp_fast({0})", False),
    "log": ("_k.log_fast({0})", False),
}
# A loop with vector math runs over tiles of _TILE elements of its last axis, in one inner loop a
# vector-math call (a segment), the values one segment passes to a later one kept in buffers of a
# tile: a loop body with several of these calls in a chain is a few thousand instructions, more
# than the processor looks ahead, and runs at the chain's latency; one call a loop, LLVM
# interleaves vectors of consecutive elements (about 2x faster on ewchain in benchmarks/run.py;
# numexpr evaluates in blocks for the same reason). A last axis shorter than _TILE_MIN is not cut.
_TILE, _TILE_MIN = 512, 64


def _loop(w: Writer, group: Group, names: dict[Node, str]) -> None:
    """A group of steps (symdiff.backends.fusion) as one loop over its shape: each map an element
    (its template, ``_element_template``), each sum an accumulator; arrays for the stored maps.
    A group with float64 sin, cos, tanh, exp or log computes them in vectorizable forms
    (``_tiled_lines``); if an argument of sin or cos is out of those forms' range (inf, nan,
    beyond 2**19 pi/2) the loop runs again as numpy computes it."""
    fast = {
        n: _VECTOR_MATH[n.op]
        for n in group.maps
        if n.op in _VECTOR_MATH and n.dtype == np.float64 and n.inputs[0].dtype == np.float64
    }
    sizes = [str(d) for d in group.shape]
    if group.root is not None:  # sizes known when it runs: the root's (fusion's extents)
        ref = names[group.root] if names[group.root].isidentifier() else w.temp(names[group.root])
        sizes = [f"{ref}.shape[{k}]" if d is None else str(d) for k, d in enumerate(group.shape)]
    if not fast:
        w.lines += _loop_lines(w, group, names, sizes)
    elif not any(checked for _, checked in fast.values()):  # no sin or cos: every value holds, no rerun
        w.lines += _tiled_lines(w, group, names, sizes, fast, None)
    else:
        ok = w.name()
        w.lines.append(f"    {ok} = True")
        w.lines += _tiled_lines(w, group, names, sizes, fast, ok)
        w.lines.append(f"    if not {ok}:")
        w.lines += ["    " + line for line in _loop_lines(w, group, names, sizes)]
    count = str(math.prod(group.shape)) if group.root is None else " * ".join(sizes)
    for n in group.steps:
        if n.op == "mean":
            w.lines.append(f"    t{n.index} = t{n.index} / ({count})")
    for n in (*group.stored, *group.sums):
        names[n] = f"t{n.index}"


def _element_loader(w: Writer, names: dict[Node, str], index: list[str], shape: tuple, lines: list[str], pad: str):
    """``element(u)``: the name of input ``u``'s element at ``index`` of the loop over ``shape``,
    loaded once (a line indented by ``pad`` appended to ``lines``) and kept in ``element.local``;
    a 0-d input is its name, a uniform constant its one value."""
    local: dict[Node, str] = {}

    def element(u: Node) -> str:
        if u in local:
            return local[u]
        if not u.ndim:
            return names[u]
        if u.op == "constant" and u.uniform is not None:  # ones(n), a seed: its one value, not n loads
            return _value_literal(np.asarray(u.uniform, dtype=u.dtype))
        skip = len(shape) - u.ndim
        at = [i if d == size else "0" for i, d, size in zip(index[skip:], u.shape, shape[skip:])]
        local[u] = w.name()
        lines.append(f"{pad}{local[u]} = {names[u]}[{', '.join(at)}]")
        return local[u]

    element.local = local  # type: ignore[attr-defined]
    return element


def _shape_text(sizes: list[str]) -> str:
    return f"({sizes[0]},)" if len(sizes) == 1 else f"({', '.join(sizes)})"


def _loop_lines(w: Writer, group: Group, names: dict[Node, str], sizes: list[str]) -> list[str]:
    """The group as nested loops over its shape (``sizes``: printed) computing each element as
    numpy does, its sums accumulated in C order."""
    shape, lines = group.shape, []
    index = [w.name() for _ in shape]
    for n in group.stored:
        lines.append(f"    t{n.index} = np.empty({_shape_text(sizes)}, {_dtype(n.dtype)})")
    for n in group.steps:
        if n in group.sums:
            lines.append(f"    t{n.index} = 0.0")
    for depth, (i, size) in enumerate(zip(index, sizes)):
        lines.append("    " * (depth + 1) + f"for {i} in range({size}):")
    pad = "    " * (len(shape) + 1)
    element = _element_loader(w, names, index, shape, lines, pad)
    local = element.local
    for n in group.steps:
        args = [element(u) for u in n.inputs]
        if n in group.sums:
            lines.append(f"{pad}t{n.index} += {args[0]}")
            continue
        local[n] = w.name()
        lines.append(f"{pad}{local[n]} = {group.maps[n].format(*args)}")
    for n in group.stored:
        lines.append(f"{pad}t{n.index}[{', '.join(index)}] = {local[n]}")
    return lines


def _tiled_lines(
    w: Writer, group: Group, names: dict[Node, str], sizes: list[str], fast: dict, ok: str | None
) -> list[str]:
    """The group as loops over its shape's outer axes and tiles of its last one, each tile's
    elements computed by one inner loop a segment (see _TILE), vector math by numba_kernels'
    forms: sin and cos of one argument by one ``sincos_fast``, the argument checked once into
    the flag ``ok`` (None: no sin or cos). Sums are stored in a tile's buffer and added after
    its segments, so the elements are added in C order as in ``_loop_lines``."""
    shape = group.shape
    *outer, last = index = [w.name() for _ in shape]
    cut = shape[-1] is None or shape[-1] >= _TILE_MIN
    tile = min(_TILE, shape[-1] or _TILE) if cut else shape[-1]
    start, count, j = (w.name(), w.name(), w.name()) if cut else ("0", str(tile), last)
    twin = {}  # sin or cos node -> the other of one argument, if the group has both
    by_argument: dict[Node, dict[str, Node]] = {}
    for n in fast:
        if n.op in ("sin", "cos"):
            by_argument.setdefault(n.inputs[0], {})[n.op] = n
    for pair in by_argument.values():
        if len(pair) == 2:
            twin[pair["sin"]], twin[pair["cos"]] = pair["cos"], pair["sin"]
    segments: list[list[Node]] = [[]]
    home: dict[Node, int] = {}  # a member -> the segment computing it
    calls = 0
    for n in group.steps:
        if n in twin and twin[n] in home:  # computed with its twin
            home[n] = home[twin[n]]
            continue
        if n in fast:
            if calls and cut:
                segments.append([])
            calls += 1
        segments[-1].append(n)
        home[n] = len(segments) - 1
    carried = {u for n in group.steps for u in n.inputs if u in home and home[u] < home[n]}
    lines = [f"    t{n.index} = np.empty({_shape_text(sizes)}, {_dtype(n.dtype)})" for n in group.stored]
    lines += [f"    b{n.index} = np.empty({tile}, {_dtype(n.dtype)})" for n in group.steps if n in carried]
    lines += [f"    s{n.index} = np.empty({tile}, np.float64)" for n in group.sums]
    lines += [f"    t{n.index} = 0.0" for n in group.sums]
    for depth, (i, size) in enumerate(zip(outer, sizes)):
        lines.append("    " * (depth + 1) + f"for {i} in range({size}):")
    pad = "    " * (len(outer) + 1)
    if cut:
        lines.append(f"{pad}for {start} in range(0, {sizes[-1]}, {tile}):")
        lines.append(f"{pad}    {count} = min({tile}, {sizes[-1]} - {start})")
        pad += "    "
    inner = pad + "    "
    for segment in segments:
        lines.append(f"{pad}for {j} in range({count}):")
        if cut:
            lines.append(f"{inner}{last} = {start} + {j}")
        body: list[str] = []
        element = _element_loader(w, names, index, shape, body, inner)
        local, checked = element.local, set()

        def value(u: Node) -> str:
            if u in home and u not in local:  # computed by an earlier segment
                local[u] = w.name()
                body.append(f"{inner}{local[u]} = b{u.index}[{j}]")
            return element(u)

        for n in segment:
            args = [value(u) for u in n.inputs]
            if n in group.sums:
                body.append(f"{inner}s{n.index}[{j}] = {args[0]}")
                continue
            local[n] = w.name()
            if n in fast:
                template, check = fast[n]
                if check and args[0] not in checked:
                    checked.add(args[0])
                    body.append(f"{inner}{ok} = {ok} & _k.trig_ok({args[0]})")
                if n in twin:
                    local[twin[n]] = w.name()
                    sin, cos = (local[n], local[twin[n]]) if n.op == "sin" else (local[twin[n]], local[n])
                    body.append(f"{inner}{sin}, {cos} = _k.sincos_fast({args[0]})")
                else:
                    body.append(f"{inner}{local[n]} = {template.format(*args)}")
            else:
                body.append(f"{inner}{local[n]} = {group.maps[n].format(*args)}")
        for n in (*segment, *(twin[n] for n in segment if n in twin)):
            if n in carried:
                body.append(f"{inner}b{n.index}[{j}] = {local[n]}")
            if n in group.stored:
                body.append(f"{inner}t{n.index}[{', '.join(index)}] = {local[n]}")
        lines += body
    for n in group.sums:  # the accumulator's order: the elements in C order
        item = w.name()
        lines.append(f"{pad}for {item} in s{n.index}[:{count}]:")
        lines.append(f"{inner}t{n.index} += {item}")
    return lines


def cache_dir() -> Path:
    """Where generated modules and numba's machine code are kept."""
    if os.environ.get("SYMDIFF_CACHE_DIR"):
        return Path(os.environ["SYMDIFF_CACHE_DIR"]) / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symdiff" / "numba"


@functools.cache
def _kernels_source() -> str:
    return Path(numba_kernels.__file__).read_text()


def load_module(source: str) -> Any:
    """The module of ``source``, written once under its hash (the key of numba's disk cache)."""
    # the kernels' source too: numba's cache of a caller keeps the kernels' code it linked
    digest = hashlib.sha256(f"{numba.__version__}\n{_kernels_source()}\n{source}".encode()).hexdigest()[:24]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sd_{digest}.py"
    if not path.exists():  # never rewritten: numba's cache index keys on the file's time stamp
        partial = folder / f".sd_{digest}.{os.getpid()}.tmp"
        partial.write_text(source)
        os.replace(partial, path)
    name = f"symdiff_numba_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: numba's cache looks the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _signature(inputs: list[Node], constants: list[np.ndarray]) -> tuple:
    types = []
    for n in inputs:
        scalar = numba.from_dtype(n.dtype)
        types.append(scalar if n.ndim == 0 else numba.types.Array(scalar, n.ndim, "C"))
    for c in constants:
        types.append(numba.typeof(c))
    return tuple(types)


class Compiled(_NumpyCompiled):
    """``sd.compile(..., backend="numba")``: native code from the plan, cached on disk."""

    backend = "numba"

    def _build(self, outputs: list[Node], inputs: list[Node]) -> None:
        self._plan = plan = Plan(outputs, inputs, function)
        self._check_bound(plan)
        self.source, self._constants, self._checked, self._shaped = generate(plan)
        module = load_module(self.source)
        self._dispatcher = module.compiled
        signature = _signature(inputs, self._constants)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", numba.core.errors.NumbaPerformanceWarning)
                self._dispatcher.compile(signature)
        except (numba.core.errors.NumbaError, RecursionError) as exc:  # (numba's passes recurse on a long chain)
            first = [line for line in str(exc).strip().splitlines() if line.strip()]  # the signature too
            raise BackendError(
                "the numba backend could not compile this graph: "
                + " ".join(line.strip() for line in first[:3])
                + " (the generated source is in "
                + str(module.__file__)
                + "); use backend='numpy' for it"
            ) from None
        self._code = self._dispatcher.overloads[signature].entry_point
        self._scalar = [n.ndim == 0 for n in inputs]
        self._kinds = [n.dtype for n in inputs]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(self.inputs):
            args = self._positional(args, kwargs)
        values = []
        for node, value, scalar in zip(self.inputs, args, self._scalar):
            if scalar:
                fast = type(value) is float and node.dtype == np.float64
                values.append(value if fast else check_value(node, value, "compiled function")[()])
            else:
                values.append(np.ascontiguousarray(check_value(node, value, "compiled function")))
        try:
            raw = self._code(*values, *self._constants)
        except Exception:
            self._refuse(values)  # the numpy backend's error for these values (a ShapeError naming them)
            raise
        if self._shaped:
            raw, shapes = raw[: len(raw) - len(self._shaped)], raw[len(raw) - len(self._shaped) :]
            for node, (shape, *inputs) in zip(self._shaped, shapes):
                try:
                    check_shapes(node, shape, inputs)
                except ShapeError:
                    self._refuse(values)
                    raise
        if self._checked:
            flags, raw = raw[len(raw) - len(self._checked) :], raw[: len(raw) - len(self._checked)]
            if not all(flags):
                self._refuse(values)  # unreachable past here: the interpreter raised
                failed = next(node for node, flag in zip(self._checked, flags) if not flag)
                if failed.op in LOOPS:
                    raise LoopError(f"{failed.attrs['name']}: ran out of its steps' bounds")
                raise ShapeError("a gradient has a shape other than its variable's")
        results = [_finish(v, node.dtype) for v, node in zip(raw, self.outputs)]
        return results[0] if self._single else results

    def _refuse(self, values: list[Any]) -> None:
        """Raise what the numpy interpreter raises for these values (the same ShapeError, naming
        the op and the variables, as every backend); return if it computes them."""
        Plan(self.outputs, self.inputs, numpy_function).run(dict(zip(self.inputs, values)))


def _finish(value: Any, dtype: np.dtype) -> Any:
    """A result as ``sd.evaluate`` returns it, in the output node's dtype: numba returns a
    float32 scalar as a Python float, and promotes float32 by int64 (a count) to float64."""
    if type(value) is float and dtype == np.float64:
        return np.float64(value)
    value = finish(value)
    if value.dtype != dtype:
        value = value.astype(dtype) if isinstance(value, np.ndarray) else dtype.type(value)
    return value
